"""The wire side of a Jobmon 3.2.2 server (Flask): what it answers, and how it fails.

Checked against a live ``jobmon-server==3.2.2`` (Werkzeug 3.1): the routes
are mounted at ``/``; answers are Flask's ``jsonify`` (compact, keys sorted,
ASCII only, a trailing newline) with content type ``application/json``, errors
included; an unknown route is a plain-text 404 quoting the URL; there is no
422 and no array concurrency route; triage and terminate answer ``null``;
downstream node ids always come as JSON-encoded strings; and every exception
a route handler does not turn into ``InvalidUsage`` (400) becomes a 500 whose
envelope names the Python exception, a wrong method included.

The handlers below do what the 3.2.2 route handlers do, in the same order, so
that a bad request fails with the same status and message: Python's own
exceptions (``int("x")``, a missing key) are raised for real and written into
the envelope as the server writes them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .routes import ROUTES, Answer, task_row, tasks_after
from .state import JobmonDatabase, _group_by_status, format_server_time, parse_server_time

__all__ = ["ABSENT_ROUTES", "answer_request_3_2_2", "flask_answer", "flask_error"]

ABSENT_ROUTES = frozenset({"get_array_max_concurrently_running"})
"""Route names of the fake's table that a 3.2.2 server does not have."""

_JSON_CONTENT_TYPE = "application/json"
_NOT_FOUND_CONTENT_TYPE = "text/html; charset=utf-8"
_INVALID_USAGE = "<class 'jobmon.server.web.server_side_exception.InvalidUsage'>"
_NO_RESULT_FOUND = "<class 'sqlalchemy.exc.NoResultFound'>"
_NO_RESULT_MESSAGE = "No row was found when one was required"
_ARGUMENT_ERROR = "<class 'sqlalchemy.exc.ArgumentError'>"
_BAD_REQUEST = "<class 'werkzeug.exceptions.BadRequest'>"
_BAD_REQUEST_MESSAGE = (
    "400 Bad Request: The browser (or proxy) sent a request that this server could not understand."
)
_UNSUPPORTED_MEDIA_TYPE = "<class 'werkzeug.exceptions.UnsupportedMediaType'>"
_UNSUPPORTED_MEDIA_TYPE_MESSAGE = (
    "415 Unsupported Media Type: Did not attempt to load JSON data because the request"
    " Content-Type was not 'application/json'."
)
_NONE_COMPARISON_MESSAGE = (
    "Only '=', '!=', 'is_()', 'is_not()', 'is_distinct_from()', 'is_not_distinct_from()'"
    " operators can be used with None/True/False"
)
_METHOD_NOT_ALLOWED = "<class 'werkzeug.exceptions.MethodNotAllowed'>"
_METHOD_NOT_ALLOWED_MESSAGE = (
    "405 Method Not Allowed: The method is not allowed for the requested URL."
)


def _sort_key(key: Any) -> tuple[int, int, str]:
    # The server's dicts are keyed by int task ids, which Flask sorts as ints
    # before writing them as strings; the fake's are already strings.
    text = str(key)
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def _sorted(payload: Any) -> Any:
    if isinstance(payload, dict):
        return {str(key): _sorted(payload[key]) for key in sorted(payload, key=_sort_key)}
    if isinstance(payload, list | tuple):
        return [_sorted(item) for item in payload]
    return payload


def flask_answer(status: int, payload: Any) -> Answer:
    """Encode ``payload`` as Flask's ``jsonify`` does: compact, sorted, ASCII, newline."""
    text = json.dumps(_sorted(payload), ensure_ascii=True, separators=(",", ":"))
    return Answer(status, (text + "\n").encode("ascii"), _JSON_CONTENT_TYPE)


def flask_error(exception_type: str, message: str, status: int = 500) -> Answer:
    """The 3.2.2 server's envelope for an exception (``handle_anything``): it has ``status_code``.

    ``exception_type`` is what ``str(type(error))`` gives on the server, e.g.
    ``"<class 'ValueError'>"``.
    """
    envelope = {"type": exception_type, "exception_message": message, "status_code": str(status)}
    return flask_answer(status, {"error": envelope})


def _invalid_usage(detail: str, path: str) -> Answer:
    # InvalidUsage's handler leaves status_code out, and str() of it is repr().
    envelope = {"type": _INVALID_USAGE, "exception_message": repr(f"{detail} in request to {path}")}
    return flask_answer(400, {"error": envelope})


class _RefusedError(Exception):
    """Stops a handler with the answer the server gives."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


class _BadJsonError(Exception):
    """``request.get_json()`` on a body that is no JSON (werkzeug's BadRequest)."""

    def __str__(self) -> str:
        return _BAD_REQUEST_MESSAGE


def _no_result() -> _RefusedError:
    return _RefusedError(flask_error(_NO_RESULT_FOUND, _NO_RESULT_MESSAGE))


@dataclass(frozen=True)
class FlaskCall:
    """One request as a 3.2.2 route handler sees it.

    Attributes:
        path: ``request.path`` (error messages quote it).
        params: The path parameters, as text (Flask's default converter).
        query: Query parameters (the last value of a repeated one).
        data: The parsed JSON body after the ``before_request`` hook took
            ``server_structlog_context`` out of it; ``_BAD_JSON`` if none parses.
    """

    path: str
    params: Mapping[str, str]
    query: Mapping[str, str]
    data: Any

    def get_json(self) -> Any:
        """What ``request.get_json()`` returns; raises as werkzeug does on a bad body."""
        if self.data is _BAD_JSON:
            raise _BadJsonError
        return self.data


_BAD_JSON = object()

FlaskHandler = Callable[[JobmonDatabase, FlaskCall], Answer]


def _int_id(text: str) -> int | None:
    # A route that filters by the text id matches no row when it is no integer
    # (the database compares it as text).
    return int(text) if text.isascii() and text.isdigit() else None


def _run_id_or_400(call: FlaskCall) -> int:
    try:
        return int(call.params["workflow_run_id"])
    except ValueError as exc:
        raise _RefusedError(_invalid_usage(str(exc), call.path)) from exc


def _log_heartbeat(database: JobmonDatabase, call: FlaskCall) -> Answer:
    try:
        run_id = int(call.params["workflow_run_id"])
        data = call.get_json()
        next_report_increment = data["next_report_increment"]
        status = data["status"]
        # The server reads the number only when it stores it; the fake checks
        # it here, so a non-number is a 400 rather than a database error.
        seconds = float(next_report_increment)
    except (ValueError, TypeError, KeyError, _BadJsonError) as exc:
        raise _RefusedError(_invalid_usage(str(exc), call.path)) from exc
    run = database.workflow_runs.get(run_id)
    if run is None:
        raise _no_result()
    return flask_answer(200, {"status": database.log_heartbeat(run, str(status), seconds)})


def _update_status(database: JobmonDatabase, call: FlaskCall) -> Answer:
    try:
        run_id = int(call.params["workflow_run_id"])
        status = call.get_json()["status"]
    except (ValueError, TypeError, KeyError, _BadJsonError) as exc:
        raise _RefusedError(_invalid_usage(str(exc), call.path)) from exc
    run = database.workflow_runs.get(run_id)
    if run is None:
        raise _no_result()
    database.transition_workflow_run(run, str(status))
    return flask_answer(200, {"status": run.status})


def _terminate_task_instances(database: JobmonDatabase, call: FlaskCall) -> Answer:
    run = database.workflow_runs.get(_run_id_or_400(call))
    if run is None:
        raise _no_result()
    database.terminate_task_instances(run)
    # jsonify() with nothing to say: the work is done, the count is not sent.
    return flask_answer(200, None)


def _set_status_for_triaging(database: JobmonDatabase, call: FlaskCall) -> Answer:
    _run_id_or_400(call)
    return flask_answer(200, None)


def _task_status_updates(database: JobmonDatabase, call: FlaskCall) -> Answer:
    data = call.get_json()
    workflow_id = _int_id(call.params["workflow_id"])
    since_text: str | None = None
    if "last_sync" in data:
        last_sync = data["last_sync"]
        if last_sync is None:
            # `Task.status_date >= None` in SQLAlchemy.
            raise _RefusedError(flask_error(_ARGUMENT_ERROR, _NONE_COMPARISON_MESSAGE))
        try:
            since_text = format_server_time(parse_server_time(str(last_sync)))
        except ValueError:
            # The database compares the text it was given with its own.
            since_text = str(last_sync)
    chosen = [
        task
        for task in database.tasks.values()
        if task.workflow_id == workflow_id
        and (since_text is None or format_server_time(task.status_date) >= since_text)
    ]
    answer = {"tasks_by_status": _group_by_status(chosen), "time": database.server_time()}
    return flask_answer(200, answer)


def _get_max_concurrently_running(database: JobmonDatabase, call: FlaskCall) -> Answer:
    workflow_id = _int_id(call.params["workflow_id"])
    workflow = None if workflow_id is None else database.workflows.get(workflow_id)
    if workflow is None:
        raise _no_result()
    return flask_answer(200, {"max_concurrently_running": workflow.max_concurrently_running})


def _queue_task_batch(database: JobmonDatabase, call: FlaskCall) -> Answer:
    data = call.get_json()
    int(call.params["array_id"])
    task_ids = [int(task_id) for task_id in data["task_ids"]]
    int(data["task_resources_id"])
    workflow_run_id = int(data["workflow_run_id"])
    tasks_by_status = database.queue_tasks(task_ids, workflow_run_id, repeat_safe=False)
    return flask_answer(200, {"tasks_by_status": tasks_by_status})


def _fetch_workflow_metadata(database: JobmonDatabase, call: FlaskCall) -> Answer:
    workflow_id = _int_id(call.params["workflow_id"])
    workflow = None if workflow_id is None else database.workflows.get(workflow_id)
    if workflow is None:
        return flask_answer(200, {"workflow": []})
    row = [workflow.workflow_id, workflow.dag_id, workflow.max_concurrently_running]
    return flask_answer(200, {"workflow": row})


def _get_tasks(database: JobmonDatabase, call: FlaskCall) -> Answer:
    max_task_text = call.query.get("max_task_id")
    chunk_text = call.query.get("chunk_size")
    if max_task_text is None:
        # `Task.id > None` in SQLAlchemy.
        raise _RefusedError(flask_error(_ARGUMENT_ERROR, _NONE_COMPARISON_MESSAGE))
    limit = None if chunk_text is None else int(chunk_text)
    workflow_id = _int_id(call.params["workflow_id"])
    max_task_id = _int_id(max_task_text.strip())
    if workflow_id is None or max_task_id is None:
        # An integer column is never greater than a text that is no number.
        return flask_answer(200, {"tasks": {}})
    remaining = tasks_after(database, workflow_id, max_task_id)
    if limit is not None and limit >= 0:  # a negative LIMIT is no limit
        remaining = remaining[:limit]
    rows = {str(task.task_id): task_row(database, task) for task in remaining}
    return flask_answer(200, {"tasks": rows})


def _get_downstream_tasks(database: JobmonDatabase, call: FlaskCall) -> Answer:
    data = call.get_json()
    task_ids = data["task_ids"]
    dag_id = data["dag_id"]
    if not isinstance(task_ids, list):
        raise _RefusedError(
            flask_error(
                _ARGUMENT_ERROR,
                "IN expression list, SELECT construct, or bound parameter object expected,"
                f" got {task_ids!r}.",
            )
        )
    wanted = {_int_id(str(task_id)) for task_id in task_ids} - {None}
    answer: dict[str, list[Any]] = {}
    for task_id in sorted(i for i in wanted if i is not None):
        task = database.tasks.get(task_id)
        if task is None or str(database.workflows[task.workflow_id].dag_id) != str(dag_id):
            continue
        nodes = database.downstream_node_ids(
            database.workflows[task.workflow_id].dag_id, task.node_id
        )
        # The column holds the list as text, sent as it is whatever the client.
        answer[str(task_id)] = [task.node_id, None if nodes is None else json.dumps(nodes)]
    return flask_answer(200, {"downstream_tasks": answer})


def _time(database: JobmonDatabase, call: FlaskCall) -> Answer:
    return flask_answer(200, {"time": database.server_time()})


_HANDLERS: dict[str, FlaskHandler] = {
    "log_heartbeat": _log_heartbeat,
    "update_status": _update_status,
    "terminate_task_instances": _terminate_task_instances,
    "set_status_for_triaging": _set_status_for_triaging,
    "task_status_updates": _task_status_updates,
    "get_max_concurrently_running": _get_max_concurrently_running,
    "queue_task_batch": _queue_task_batch,
    "fetch_workflow_metadata": _fetch_workflow_metadata,
    "get_tasks": _get_tasks,
    "get_downstream_tasks": _get_downstream_tasks,
    "time": _time,
}


def _is_json(content_type: str | None) -> bool:
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def _before_request(method: str, content_type: str | None, body: bytes) -> Any:
    """The server's ``before_request`` hook: read the JSON body, take out the log context.

    Returns the body as the route handlers then see it; raises ``_RefusedError``
    where the hook itself fails (which happens before routing, so even an
    unknown route answers it).
    """
    if not _is_json(content_type):
        raise _RefusedError(flask_error(_UNSUPPORTED_MEDIA_TYPE, _UNSUPPORTED_MEDIA_TYPE_MESSAGE))
    try:
        data: Any = json.loads(body)
    except ValueError:
        # The hook catches BadRequest and carries on; the handlers that read
        # the body later fail on it.
        return _BAD_JSON
    context: Any = data if method == "GET" else None
    if method in ("POST", "PUT"):
        if isinstance(data, dict):
            context = data.pop("server_structlog_context", {})
        elif isinstance(data, list):
            raise _RefusedError(
                flask_error("<class 'TypeError'>", "pop expected at most 1 argument, got 2")
            )
        else:
            kind = type(data).__name__
            message = f"'{kind}' object has no attribute 'pop'"
            raise _RefusedError(flask_error("<class 'AttributeError'>", message))
    if context and not isinstance(context, dict):
        message = (
            "structlog.contextvars.bind_contextvars() argument after ** must be a mapping,"
            f" not {type(context).__name__}"
        )
        raise _RefusedError(flask_error("<class 'TypeError'>", message))
    return data


def answer_request_3_2_2(
    database: JobmonDatabase,
    method: str,
    url: str,
    url_path: str,
    route_path: str | None,
    query: Mapping[str, str],
    content_type: str | None,
    body: bytes,
) -> tuple[str | None, Answer]:
    """Route one request as a 3.2.2 server does; return the route's name (None if unrouted) too.

    ``url`` is the full request URL, which the 404 text quotes; ``route_path``
    is the path below the route prefix, None when outside it.
    """
    method = method.upper()
    try:
        data = _before_request(method, content_type, body)
    except _RefusedError as refusal:
        return None, refusal.answer
    path_matched = False
    if route_path is not None:
        for route in ROUTES:
            if route.name in ABSENT_ROUTES:
                continue
            params = route.match(route_path)
            if params is None:
                continue
            path_matched = True
            # Flask serves HEAD on every GET route (the body is dropped on the wire).
            if route.method != method and (method, route.method) != ("HEAD", "GET"):
                continue
            call = FlaskCall(url_path, params, query, data)
            return route.name, _answer(database, _HANDLERS[route.name], call)
    if path_matched:
        return None, flask_error(_METHOD_NOT_ALLOWED, _METHOD_NOT_ALLOWED_MESSAGE)
    return None, Answer(404, f"This route does not exist: {url}".encode(), _NOT_FOUND_CONTENT_TYPE)


def _answer(database: JobmonDatabase, handler: FlaskHandler, call: FlaskCall) -> Answer:
    try:
        return handler(database, call)
    except _RefusedError as refusal:
        return refusal.answer
    except _BadJsonError:
        return flask_error(_BAD_REQUEST, _BAD_REQUEST_MESSAGE)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        # What the server's catch-all handler makes of an exception it did not expect.
        return flask_error(str(type(exc)), str(exc))
