"""The fake server's wire side: route table, path and query checks, answers, error bodies.

Each route handler reads one request the way the Jobmon 3.6 server (FastAPI)
does and answers the same bytes: compact JSON, string object keys, the
``application/custom+json`` error envelope for 400 and 500, FastAPI's own
bodies for 404, 405 and 422. A 3.2.2 fake answers through
:mod:`jobmon_gateway.testing.routes_3_2_2` instead, with this route table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .state import FakeTask, FakeWorkflowRun, JobmonDatabase, PythonLiteral, parse_server_time

__all__ = [
    "ERROR_CONTENT_TYPE",
    "GATEWAY_CALLS",
    "JSON_CONTENT_TYPE",
    "ROUTES",
    "Answer",
    "Route",
    "RouteCall",
    "answer_request",
    "error_envelope",
    "json_answer",
    "python_literal",
    "sends_downstream_as_list",
]

JSON_CONTENT_TYPE = "application/json"
"""Content type of every successful answer and of FastAPI's own errors."""

ERROR_CONTENT_TYPE = "application/custom+json"
"""Content type of the server's error envelope."""

_INVALID_USAGE = "jobmon.server.web.server_side_exception.InvalidUsage"
_NO_RESULT_FOUND = "sqlalchemy.exc.NoResultFound"
_NO_RESULT_MESSAGE = "No row was found when one was required"
_INT_PARSING_MESSAGE = "Input should be a valid integer, unable to parse string as an integer"
_LAST_STRING_FORM_VERSION = (3, 4, 23)
_VERSION_PATTERN = re.compile(r"\s*v?(\d+(?:\.\d+)*)(.*)", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, body bytes and content type."""

    status: int
    content: bytes
    content_type: str = JSON_CONTENT_TYPE


def json_answer(status: int, payload: Any, content_type: str = JSON_CONTENT_TYPE) -> Answer:
    """Encode ``payload`` as Starlette's JSONResponse does (compact, UTF-8, no NaN)."""
    content = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Answer(status, content.encode("utf-8"), content_type)


def error_envelope(exception_type: str, message: str, status: int) -> Answer:
    """Build the server's error envelope for an exception of ``exception_type``.

    ``exception_type`` is a dotted class path such as
    ``"sqlalchemy.exc.NoResultFound"``; the envelope shows it as
    ``"<class '...'>"`` and the status code as a string.
    """
    return json_answer(
        status,
        {
            "error": {
                "type": f"<class '{exception_type}'>",
                "exception_message": message,
                "status_code": str(status),
            }
        },
        ERROR_CONTENT_TYPE,
    )


class _RefusedError(Exception):
    """Stops a handler and answers with an error instead."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


def python_literal(value: PythonLiteral) -> str | None:
    """Write a task column the way the server stores it: Python-literal text."""
    if value is None or isinstance(value, str):
        return value
    return repr(value)


def sends_downstream_as_list(client_jobmon_version: str | None) -> bool:
    """Tell whether a client of this version gets downstream node ids as a JSON list.

    Versions above 3.4.23 and any dev or stage build do; older, unparseable
    and missing versions get the JSON-encoded string form.
    """
    if client_jobmon_version is None:
        return False
    lowered = client_jobmon_version.lower()
    if "dev" in lowered or "stage" in lowered:
        return True
    match = _VERSION_PATTERN.fullmatch(client_jobmon_version)
    if match is None:
        return False
    release = tuple(int(part) for part in match.group(1).split("."))
    width = max(len(release), len(_LAST_STRING_FORM_VERSION))
    padded = release + (0,) * (width - len(release))
    floor = _LAST_STRING_FORM_VERSION + (0,) * (width - len(_LAST_STRING_FORM_VERSION))
    if padded != floor:
        return padded > floor
    # 3.4.23.post1 is a later release than 3.4.23; 3.4.23rc1 an earlier one.
    return "post" in match.group(2).lower()


@dataclass(frozen=True)
class RouteCall:
    """One request as a route handler sees it.

    Attributes:
        url_path: The full path, route prefix included (error messages quote it).
        query: Query parameters (the last value of a repeated one).
        body: The raw request body.
        ids: Path parameters and integer query parameters, already checked.
    """

    url_path: str
    query: Mapping[str, str]
    body: bytes
    ids: Mapping[str, int]

    def bad_request(self, detail: str) -> _RefusedError:
        """Return the 400 refusal the server's ``InvalidUsage`` gives for ``detail``."""
        return _RefusedError(
            error_envelope(_INVALID_USAGE, repr(f"{detail} in request to {self.url_path}"), 400)
        )

    def message(self) -> Any:
        """Return the parsed JSON body; 400 if it is no JSON."""
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise self.bad_request(str(exc)) from exc

    def field(self, message: Any, key: str) -> Any:
        """Return ``message[key]``; 400 naming the key (as a KeyError shows it) if absent."""
        try:
            return message[key]
        except (KeyError, TypeError, IndexError) as exc:
            raise self.bad_request(str(exc)) from exc

    def optional_field(self, message: Any, key: str) -> Any:
        """Return ``message[key]``, None if absent; 400 if ``message`` is no object."""
        if not isinstance(message, dict):
            raise self.bad_request(f"{type(message).__name__} has no key {key!r}")
        return message.get(key)

    def integer(self, value: Any) -> int:
        """Return ``int(value)``; 400 if that fails."""
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise self.bad_request(str(exc)) from exc

    def integers(self, value: Any) -> list[int]:
        """Return ``[int(v) for v in value]``; 400 if that fails."""
        try:
            return [int(item) for item in value]
        except (TypeError, ValueError) as exc:
            raise self.bad_request(str(exc)) from exc

    def number(self, value: Any) -> float:
        """Return ``float(value)``; 400 if that fails."""
        try:
            return float(value)
        except (TypeError, ValueError) as exc:
            raise self.bad_request(str(exc)) from exc


Handler = Callable[[JobmonDatabase, RouteCall], Answer]


@dataclass(frozen=True)
class Route:
    """One route: its gateway call name, method, path template and handler.

    ``{name}`` segments of the template are integer path parameters;
    ``int_query`` lists the required integer query parameters.
    """

    name: str
    method: str
    template: str
    handler: Handler
    int_query: tuple[str, ...] = ()

    def match(self, route_path: str) -> dict[str, str] | None:
        """Return the raw path parameters if ``route_path`` fits the template, else None."""
        expected = self.template.split("/")
        given = route_path.split("/")
        if len(expected) != len(given):
            return None
        params: dict[str, str] = {}
        for pattern, segment in zip(expected, given, strict=True):
            if pattern.startswith("{") and pattern.endswith("}"):
                if not segment:
                    return None
                params[pattern[1:-1]] = segment
            elif pattern != segment:
                return None
        return params


def _parse_int(text: str) -> int | None:
    if not text.isascii():
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _check_params(
    route: Route, path_params: Mapping[str, str], query: Mapping[str, str]
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    ids: dict[str, int] = {}
    problems: list[dict[str, Any]] = []
    sources = [("path", name, path_params.get(name)) for name in path_params]
    sources += [("query", name, query.get(name)) for name in route.int_query]
    for where, name, raw in sources:
        if raw is None:
            problems.append(
                {"type": "missing", "loc": [where, name], "msg": "Field required", "input": None}
            )
            continue
        value = _parse_int(raw)
        if value is None:
            problems.append(
                {
                    "type": "int_parsing",
                    "loc": [where, name],
                    "msg": _INT_PARSING_MESSAGE,
                    "input": raw,
                }
            )
        else:
            ids[name] = value
    return ids, problems


def answer_request(
    database: JobmonDatabase,
    method: str,
    url_path: str,
    route_path: str | None,
    query: Mapping[str, str],
    body: bytes,
) -> tuple[str | None, Answer]:
    """Route one request and answer it; return the route's name (None if unrouted) too.

    ``route_path`` is the path below the route prefix, or None when the path
    lies outside the prefix.
    """
    if route_path is None:
        return None, json_answer(404, {"detail": "Not Found"})
    path_matched = False
    for route in ROUTES:
        params = route.match(route_path)
        if params is None:
            continue
        path_matched = True
        if route.method != method.upper():
            continue
        ids, problems = _check_params(route, params, query)
        if problems:
            return route.name, json_answer(422, {"detail": problems})
        call = RouteCall(url_path=url_path, query=query, body=body, ids=ids)
        try:
            return route.name, route.handler(database, call)
        except _RefusedError as refusal:
            return route.name, refusal.answer
    if path_matched:
        return None, json_answer(405, {"detail": "Method Not Allowed"})
    return None, json_answer(404, {"detail": "Not Found"})


# -- handlers -------------------------------------------------------------------


def _workflow_run(database: JobmonDatabase, call: RouteCall) -> FakeWorkflowRun:
    run = database.workflow_runs.get(call.ids["workflow_run_id"])
    if run is None:
        raise _RefusedError(error_envelope(_NO_RESULT_FOUND, _NO_RESULT_MESSAGE, 500))
    return run


def _log_heartbeat(database: JobmonDatabase, call: RouteCall) -> Answer:
    message = call.message()
    increment = call.field(message, "next_report_increment")
    status = call.field(message, "status")
    seconds = call.number(increment)
    run = _workflow_run(database, call)
    return json_answer(200, {"status": database.log_heartbeat(run, str(status), seconds)})


def _update_status(database: JobmonDatabase, call: RouteCall) -> Answer:
    status = call.field(call.message(), "status")
    run = _workflow_run(database, call)
    database.transition_workflow_run(run, str(status))
    return json_answer(200, {"status": run.status})


def _terminate_task_instances(database: JobmonDatabase, call: RouteCall) -> Answer:
    run = _workflow_run(database, call)
    killed = database.terminate_task_instances(run)
    return json_answer(200, {"workflow_run_id": run.workflow_run_id, "num_terminated": killed})


def _set_status_for_triaging(database: JobmonDatabase, call: RouteCall) -> Answer:
    # The server updates task instances by workflow_run_id without loading the
    # run, so an unknown run is no error; the fake keeps no heartbeat deadlines
    # for task instances, so there is nothing to triage.
    return json_answer(200, {})


def _task_status_updates(database: JobmonDatabase, call: RouteCall) -> Answer:
    last_sync = call.optional_field(call.message(), "last_sync")
    since = None
    if last_sync is not None:
        try:
            since = parse_server_time(str(last_sync))
        except ValueError as exc:
            raise call.bad_request(str(exc)) from exc
    tasks_by_status = database.tasks_by_status(call.ids["workflow_id"], since)
    return json_answer(200, {"tasks_by_status": tasks_by_status, "time": database.server_time()})


def _get_max_concurrently_running(database: JobmonDatabase, call: RouteCall) -> Answer:
    workflow_id = call.ids["workflow_id"]
    workflow = database.workflows.get(workflow_id)
    if workflow is None:
        return json_answer(404, {"error": f"Workflow with ID {workflow_id} not found in database."})
    return json_answer(200, {"max_concurrently_running": workflow.max_concurrently_running})


def _get_array_max_concurrently_running(database: JobmonDatabase, call: RouteCall) -> Answer:
    array_id = call.ids["array_id"]
    array = database.arrays.get(array_id)
    if array is None:
        return json_answer(404, {"error": f"Array with ID {array_id} not found in database."})
    return json_answer(200, {"max_concurrently_running": array.max_concurrently_running})


def _queue_task_batch(database: JobmonDatabase, call: RouteCall) -> Answer:
    message = call.message()
    task_ids = call.integers(call.field(message, "task_ids"))
    call.integer(call.field(message, "task_resources_id"))
    workflow_run_id = call.integer(call.field(message, "workflow_run_id"))
    return json_answer(200, {"tasks_by_status": database.queue_tasks(task_ids, workflow_run_id)})


def _fetch_workflow_metadata(database: JobmonDatabase, call: RouteCall) -> Answer:
    workflow = database.workflows.get(call.ids["workflow_id"])
    if workflow is None:
        return json_answer(200, {"workflow": []})
    row = [workflow.workflow_id, workflow.dag_id, workflow.max_concurrently_running]
    return json_answer(200, {"workflow": row})


def tasks_after(database: JobmonDatabase, workflow_id: int, max_task_id: int) -> list[FakeTask]:
    """The workflow's tasks not DONE with ids above ``max_task_id``, by id (get_tasks)."""
    return sorted(
        (
            task
            for task in database.tasks.values()
            if task.workflow_id == workflow_id and task.status != "D" and task.task_id > max_task_id
        ),
        key=lambda task: task.task_id,
    )


def task_row(database: JobmonDatabase, task: FakeTask) -> list[Any]:
    """A task as get_tasks sends it: a positional row, resources as Python literals."""
    return [
        task.array_id,
        task.status,
        task.max_attempts,
        python_literal(task.resource_scales),
        python_literal(task.fallback_queues),
        python_literal(task.requested_resources),
        task.cluster_name,
        task.queue_name,
        database.arrays[task.array_id].max_concurrently_running,
    ]


def _get_tasks(database: JobmonDatabase, call: RouteCall) -> Answer:
    workflow_id = call.ids["workflow_id"]
    max_task_id = call.ids["max_task_id"]
    chunk_size = max(call.ids["chunk_size"], 0)
    remaining = tasks_after(database, workflow_id, max_task_id)[:chunk_size]
    rows = {str(task.task_id): task_row(database, task) for task in remaining}
    return json_answer(200, {"tasks": rows})


def _get_downstream_tasks(database: JobmonDatabase, call: RouteCall) -> Answer:
    message = call.message()
    task_ids = call.integers(call.field(message, "task_ids"))
    dag_id = call.integer(call.field(message, "dag_id"))
    as_list = sends_downstream_as_list(call.query.get("client_jobmon_version"))
    answer: dict[str, list[Any]] = {}
    for task_id in sorted(set(task_ids)):
        task = database.tasks.get(task_id)
        if task is None or database.workflows[task.workflow_id].dag_id != dag_id:
            continue
        nodes = database.downstream_node_ids(dag_id, task.node_id)
        if nodes is None:
            answer[str(task_id)] = [task.node_id, None]
        elif as_list:
            answer[str(task_id)] = [task.node_id, nodes]
        else:
            # Old servers stored the list as text and sent it as is: "[2, 9]".
            answer[str(task_id)] = [task.node_id, json.dumps(nodes)]
    return json_answer(200, {"downstream_tasks": answer})


def _time(database: JobmonDatabase, call: RouteCall) -> Answer:
    return json_answer(200, {"time": database.server_time()})


ROUTES: tuple[Route, ...] = (
    Route("log_heartbeat", "POST", "/workflow_run/{workflow_run_id}/log_heartbeat", _log_heartbeat),
    Route("update_status", "PUT", "/workflow_run/{workflow_run_id}/update_status", _update_status),
    Route(
        "terminate_task_instances",
        "PUT",
        "/workflow_run/{workflow_run_id}/terminate_task_instances",
        _terminate_task_instances,
    ),
    Route(
        "set_status_for_triaging",
        "POST",
        "/workflow_run/{workflow_run_id}/set_status_for_triaging",
        _set_status_for_triaging,
    ),
    Route(
        "task_status_updates",
        "POST",
        "/workflow/{workflow_id}/task_status_updates",
        _task_status_updates,
    ),
    Route(
        "get_max_concurrently_running",
        "GET",
        "/workflow/{workflow_id}/get_max_concurrently_running",
        _get_max_concurrently_running,
    ),
    Route(
        "get_array_max_concurrently_running",
        "GET",
        "/array/{array_id}/get_array_max_concurrently_running",
        _get_array_max_concurrently_running,
    ),
    Route("queue_task_batch", "POST", "/array/{array_id}/queue_task_batch", _queue_task_batch),
    Route(
        "fetch_workflow_metadata",
        "GET",
        "/workflow/{workflow_id}/fetch_workflow_metadata",
        _fetch_workflow_metadata,
    ),
    Route(
        "get_tasks",
        "GET",
        "/workflow/get_tasks/{workflow_id}",
        _get_tasks,
        int_query=("max_task_id", "chunk_size"),
    ),
    Route("get_downstream_tasks", "POST", "/task/get_downstream_tasks", _get_downstream_tasks),
    Route("time", "GET", "/time", _time),
)
"""Every route the fake serves, in matching order."""

GATEWAY_CALLS: Mapping[str, str] = MappingProxyType(
    {
        "log_heartbeat": "log_heartbeat",
        "update_status": "update_status",
        "terminate_task_instances": "terminate_task_instances",
        "set_status_for_triaging": "request_triage",
        "task_status_updates": "get_task_status_updates",
        "get_max_concurrently_running": "get_workflow_concurrency",
        "get_array_max_concurrently_running": "get_array_concurrency",
        "queue_task_batch": "queue_task_batch",
        "fetch_workflow_metadata": "get_workflow_metadata",
        "get_tasks": "get_tasks",
        "get_downstream_tasks": "get_downstream_tasks",
        "time": "get_server_time",
    }
)
"""Each route's name -> the name of the ``ServerGateway`` call that sends it.

Written out here rather than read from the SDK, so the fake never imports the
client it tests; a test checks it against the SDK's route table.
"""
