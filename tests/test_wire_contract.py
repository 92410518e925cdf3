"""Every recorded request/response pair, replayed through the public API, sync and async.

For each file in ``wire/jobmon-server-3.6/`` and ``wire/jobmon-server-3.2.2/``
the recorded answer (status, content type, exact bytes) is served for the
recorded method and URL; the matching gateway call is made with arguments
taken from the recording; then the request the SDK really sent and the typed
result (or the raised error) are checked. ``PLANS`` says how each recording
is invoked: a recording it does not cover fails the suite, so it grows with
the fixtures.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from jobmon_gateway import (
    CLIENT_JOBMON_VERSION,
    BadRequestError,
    Call,
    DownstreamTasksResponse,
    GatewayError,
    HeartbeatResponse,
    NotFoundError,
    QueueResponse,
    Requester,
    RetryBudgetExhaustedError,
    ServerError,
    ServerGateway,
    StatusUpdateResponse,
    TaskMetadata,
    TaskStatus,
    TaskStatusUpdatesResponse,
    TerminateTaskInstancesResponse,
    UnprocessableEntityError,
    WorkflowMetadata,
    WorkflowNotFoundError,
    WorkflowRunStatus,
)

SERVICE_URL = "http://jobmon.test"
ROUTE_PREFIX = {"jobmon-server-3.6": "/api/v3", "jobmon-server-3.2.2": ""}
RETRIES = 3
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

Rec = dict[str, Any]


def _answer(rec: Rec) -> Any:
    return json.loads(rec["response_text"])


def _route_id(rec: Rec, pattern: str) -> int:
    found = re.fullmatch(pattern, rec["route"])
    assert found is not None, f"{rec['route']!r} does not match {pattern!r}"
    return int(found.group(1))


# -- checks of typed results (the oracle is the recorded JSON) -------------------


def _check_run_status(rec: Rec, result: Any) -> None:
    assert isinstance(result, HeartbeatResponse | StatusUpdateResponse)
    assert result.status == _answer(rec)["status"]
    assert isinstance(result.status, WorkflowRunStatus)


def _check_heartbeat(rec: Rec, result: Any) -> None:
    assert type(result) is HeartbeatResponse
    _check_run_status(rec, result)


def _check_update_status(rec: Rec, result: Any) -> None:
    assert type(result) is StatusUpdateResponse
    _check_run_status(rec, result)
    # An illegal transition is no error: the current status simply comes back.
    if rec["name"] == "update_status_invalid_transition":
        assert result.status != rec["request_json"]["status"]


def _check_terminate(rec: Rec, result: Any) -> None:
    assert isinstance(result, TerminateTaskInstancesResponse)
    answer = _answer(rec)
    if answer is None:
        # 3.2 answers null after doing the work: the run is the one we named.
        assert result.workflow_run_id == _route_id(
            rec, r"/workflow_run/(\d+)/terminate_task_instances"
        )
        assert result.num_terminated is None
        return
    assert result.workflow_run_id == answer["workflow_run_id"]
    assert result.num_terminated == answer["num_terminated"]


def _check_none(rec: Rec, result: Any) -> None:
    # 3.6 answers {} and 3.2 answers null: both mean "done".
    assert result is None


def _check_tasks_by_status(expected: dict[str, list[int]], got: dict[Any, list[int]]) -> None:
    assert got == {TaskStatus(letter): ids for letter, ids in expected.items()}
    assert all(isinstance(letter, TaskStatus) for letter in got)


def _check_status_updates(rec: Rec, result: Any) -> None:
    assert isinstance(result, TaskStatusUpdatesResponse)
    answer = _answer(rec)
    _check_tasks_by_status(answer["tasks_by_status"], result.tasks_by_status)
    assert result.time == datetime.strptime(answer["time"], TIME_FORMAT)
    assert result.time.tzinfo is None


def _check_int(rec: Rec, result: Any) -> None:
    assert type(result) is int
    assert result == _answer(rec)["max_concurrently_running"]


def _check_queue(rec: Rec, result: Any) -> None:
    assert isinstance(result, QueueResponse)
    _check_tasks_by_status(_answer(rec)["tasks_by_status"], result.tasks_by_status)


def _check_metadata(rec: Rec, result: Any) -> None:
    workflow_id, dag_id, max_concurrently_running = _answer(rec)["workflow"]
    assert result == WorkflowMetadata(
        workflow_id=workflow_id, dag_id=dag_id, max_concurrently_running=max_concurrently_running
    )


def _check_tasks(rec: Rec, result: Any) -> None:
    rows = _answer(rec)["tasks"]
    assert isinstance(result, dict)
    assert list(result) == [int(key) for key in rows]
    assert all(type(key) is int for key in result)
    for key, row in rows.items():
        task = result[int(key)]
        assert isinstance(task, TaskMetadata)
        assert task.array_id == row[0]
        assert task.status == row[1]
        assert isinstance(task.status, TaskStatus)
        assert task.max_attempts == row[2]
        # The three resource fields are Python literals on the wire, not JSON.
        assert task.resource_scales == ast.literal_eval(row[3])
        assert isinstance(task.resource_scales, dict)
        assert task.fallback_queues == ast.literal_eval(row[4])
        assert isinstance(task.fallback_queues, list)
        assert task.requested_resources == ast.literal_eval(row[5])
        assert isinstance(task.requested_resources, dict)
        assert (task.cluster_name, task.queue_name) == (row[6], row[7])
        assert task.array_max_concurrently_running == row[8]


def _node_ids(wire: Any) -> list[int]:
    # The three wire forms: JSON list, JSON-encoded string, null.
    if wire is None:
        return []
    if isinstance(wire, str):
        decoded: list[int] = json.loads(wire)
        return decoded
    assert isinstance(wire, list)
    return wire


def _check_downstream(rec: Rec, result: Any) -> None:
    assert isinstance(result, DownstreamTasksResponse)
    expected = {
        int(key): (node_id, _node_ids(ids))
        for key, (node_id, ids) in _answer(rec)["downstream_tasks"].items()
    }
    assert result.downstream_tasks == expected
    for node_id, ids in result.downstream_tasks.values():
        assert type(node_id) is int
        assert isinstance(ids, list)
        assert all(type(item) is int for item in ids)


def _check_time(rec: Rec, result: Any) -> None:
    assert type(result) is datetime
    assert result == datetime.strptime(_answer(rec)["time"], TIME_FORMAT)
    assert result.tzinfo is None


# -- the table: recording file name -> how to invoke it ---------------------------


@dataclass(frozen=True)
class Plan:
    """How to replay one recording.

    ``call`` is a ServerGateway method (``<call>_sync`` in sync mode), fed
    ``args(rec)``. ``call=None`` replays the recorded request as a hand-made
    ``Call`` through ``Requester.send`` / ``send_async``: for requests the
    typed API refuses to build (a bad body, a non-int id, an unknown route).
    """

    call: str | None
    args: Callable[[Rec], tuple[Any, ...]]
    check: Callable[[Rec, Any], None]


def _no_args(rec: Rec) -> tuple[Any, ...]:
    return ()


def _unused(rec: Rec, result: Any) -> None:
    raise AssertionError("a raw replay is only used for error recordings")


_RAW = Plan(None, _no_args, _unused)
_HEARTBEAT = Plan(
    "log_heartbeat",
    lambda rec: (rec["request_json"]["status"], rec["request_json"]["next_report_increment"]),
    _check_heartbeat,
)
_UPDATE_STATUS = Plan(
    "update_status", lambda rec: (rec["request_json"]["status"],), _check_update_status
)
_STATUS_UPDATES = Plan(
    "get_task_status_updates",
    lambda rec: (rec["request_json"].get("last_sync"),),
    _check_status_updates,
)
_QUEUE = Plan(
    "queue_task_batch",
    lambda rec: (
        _route_id(rec, r"/array/(\d+)/queue_task_batch"),
        rec["request_json"]["task_ids"],
        rec["request_json"]["task_resources_id"],
        rec["request_json"]["cluster_id"],
    ),
    _check_queue,
)
_GET_TASKS = Plan(
    "get_tasks",
    lambda rec: (rec["query"]["max_task_id"], rec["query"]["chunk_size"]),
    _check_tasks,
)
_DOWNSTREAM = Plan(
    "get_downstream_tasks",
    lambda rec: (rec["request_json"]["task_ids"], rec["request_json"]["dag_id"]),
    _check_downstream,
)
_METADATA = Plan("get_workflow_metadata", _no_args, _check_metadata)

PLANS: dict[str, Plan] = {
    "error_bad_body": _RAW,
    "error_bad_path_id": _RAW,
    "error_unknown_route": _RAW,
    "error_missing_workflow_run": _HEARTBEAT,
    "log_heartbeat": _HEARTBEAT,
    "update_status": _UPDATE_STATUS,
    "update_status_invalid_transition": _UPDATE_STATUS,
    "terminate_task_instances": Plan("terminate_task_instances", _no_args, _check_terminate),
    "set_status_for_triaging": Plan("request_triage", _no_args, _check_none),
    "task_status_updates_full": _STATUS_UPDATES,
    "task_status_updates_since": _STATUS_UPDATES,
    "get_max_concurrently_running": Plan("get_workflow_concurrency", _no_args, _check_int),
    "get_max_concurrently_running_missing": Plan("get_workflow_concurrency", _no_args, _check_int),
    "get_array_max_concurrently_running": Plan(
        "get_array_concurrency",
        lambda rec: (_route_id(rec, r"/array/(\d+)/get_array_max_concurrently_running"),),
        _check_int,
    ),
    "queue_task_batch": _QUEUE,
    "queue_task_batch_empty": _QUEUE,
    "fetch_workflow_metadata": _METADATA,
    "fetch_workflow_metadata_missing": _METADATA,
    "get_tasks_first_chunk": _GET_TASKS,
    "get_tasks_next_chunk": _GET_TASKS,
    "get_tasks_past_end": _GET_TASKS,
    "get_downstream_tasks_new_client": _DOWNSTREAM,
    "get_downstream_tasks_old_client": _DOWNSTREAM,
    "get_downstream_tasks_no_version": _DOWNSTREAM,
    "time": Plan("get_server_time", _no_args, _check_time),
}

# What the server said in each non-2xx recording: (server_message, server_error_type).
_BAD_BODY_TYPE = "jobmon.server.web.server_side_exception.InvalidUsage"
SERVER_SAID: dict[tuple[str, str], tuple[str, str | None]] = {
    ("jobmon-server-3.6", "error_bad_body"): (
        "\"'next_report_increment' in request to /api/v3/workflow_run/1/log_heartbeat\"",
        _BAD_BODY_TYPE,
    ),
    ("jobmon-server-3.2.2", "error_bad_body"): (
        "\"'next_report_increment' in request to /workflow_run/1/log_heartbeat\"",
        _BAD_BODY_TYPE,
    ),
    ("jobmon-server-3.6", "error_bad_path_id"): (
        "path.workflow_id: Input should be a valid integer, unable to parse string as an integer",
        None,
    ),
    ("jobmon-server-3.6", "error_missing_workflow_run"): (
        "No row was found when one was required",
        "sqlalchemy.exc.NoResultFound",
    ),
    ("jobmon-server-3.2.2", "error_missing_workflow_run"): (
        "No row was found when one was required",
        "sqlalchemy.exc.NoResultFound",
    ),
    ("jobmon-server-3.6", "error_unknown_route"): ("Not Found", None),
    ("jobmon-server-3.2.2", "error_unknown_route"): (
        "This route does not exist: http://127.0.0.1:18322/no_such_route",
        None,
    ),
    ("jobmon-server-3.6", "get_max_concurrently_running_missing"): (
        "Workflow with ID 999 not found in database.",
        None,
    ),
    ("jobmon-server-3.2.2", "get_max_concurrently_running_missing"): (
        "No row was found when one was required",
        "sqlalchemy.exc.NoResultFound",
    ),
    ("jobmon-server-3.2.2", "error_bad_path_id"): (
        "invalid literal for int() with base 10: 'abc'",
        "ValueError",
    ),
    ("jobmon-server-3.2.2", "get_array_max_concurrently_running"): (
        "This route does not exist:"
        " http://127.0.0.1:18322/array/1/get_array_max_concurrently_running",
        None,
    ),
}

ERROR_BY_STATUS: dict[int, type[GatewayError]] = {
    400: BadRequestError,
    404: NotFoundError,
    422: UnprocessableEntityError,
    500: ServerError,
}


@dataclass(frozen=True)
class Expected:
    kind: type[GatewayError]
    server_message: str | None
    server_error_type: str | None


def expected_error(rec: Rec) -> Expected | None:
    """The error a recording must raise, or None for a typed result."""
    status = rec["status"]
    if status >= 400:
        key = (rec["server_dir"], rec["name"])
        assert key in SERVER_SAID, f"add what the server said in {key} to SERVER_SAID"
        return Expected(ERROR_BY_STATUS[status], *SERVER_SAID[key])
    if rec["name"].startswith("fetch_workflow_metadata") and _answer(rec)["workflow"] == []:
        # 200 with an empty row: the workflow is unknown.
        return Expected(WorkflowNotFoundError, None, None)
    return None


# -- replaying ---------------------------------------------------------------------


def gateway_ids(rec: Rec) -> tuple[int, int]:
    """workflow_id and workflow_run_id as the recording implies (1 where it does not say)."""
    workflow_id = workflow_run_id = 1
    if found := re.match(r"/workflow_run/(\d+)/", rec["route"]):
        workflow_run_id = int(found.group(1))
    if found := re.match(r"/workflow/(?:get_tasks/)?(\d+)(?:/|$)", rec["route"]):
        workflow_id = int(found.group(1))
    if isinstance(rec["request_json"], dict) and "workflow_run_id" in rec["request_json"]:
        workflow_run_id = rec["request_json"]["workflow_run_id"]
    return workflow_id, workflow_run_id


def sent_query(rec: Rec) -> dict[str, str]:
    """The recorded query as the SDK must send it: plus client_jobmon_version."""
    query = {name: str(value) for name, value in rec["query"].items()}
    query.setdefault("client_jobmon_version", CLIENT_JOBMON_VERSION)
    return query


async def invoke(
    plan: Plan,
    rec: Rec,
    gateway: ServerGateway,
    requester: Requester,
    mode: str,
    *,
    retry: bool = True,
) -> Any:
    if plan.call is None:
        call: Call[bytes] = Call(
            rec["method"],
            rec["route"],
            bytes,
            query=rec["query"],
            body=rec["request_json"],
        )
        if mode == "sync":
            with requester.new_client() as client:
                return requester.send(call, client, retry=retry)
        async with requester.new_async_client() as async_client:
            return await requester.send_async(call, async_client, retry=retry)
    target = gateway if retry else gateway.without_retries()
    if mode == "sync":
        return getattr(target, f"{plan.call}_sync")(*plan.args(rec))
    return await getattr(target, plan.call)(*plan.args(rec))


def check_sent(rec: Rec, request: httpx.Request) -> None:
    prefix = ROUTE_PREFIX[rec["server_dir"]]
    assert request.method == rec["method"]
    assert request.url.scheme == "http"
    assert request.url.host == "jobmon.test"
    assert request.url.path == prefix + rec["route"]
    assert dict(request.url.params) == sent_query(rec)
    assert request.headers["Content-Type"] == "application/json"
    if rec["request_json"] is None:
        assert request.content == b""
    else:
        assert json.loads(request.content) == rec["request_json"]


def check_error(rec: Rec, error: GatewayError, expected: Expected, attempts: int) -> None:
    assert error.method == rec["method"]
    assert error.route == rec["route"]
    assert error.status == rec["status"]
    assert error.server_message == expected.server_message
    assert error.server_error_type == expected.server_error_type
    assert error.attempts == attempts


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_recorded_pair(
    recording: Rec,
    mode: str,
    httpx_mock: HTTPXMock,
    make_requester: Callable[..., Requester],
) -> None:
    rec = recording
    plan = PLANS.get(rec["name"])
    if plan is None:
        pytest.fail(f"no plan for recording {rec['server_dir']}/{rec['name']}: add it to PLANS")
    expected = expected_error(rec)
    retried = expected is not None and expected.kind is ServerError
    prefix = ROUTE_PREFIX[rec["server_dir"]]
    requester = make_requester(
        route_prefix=prefix,
        retries_attempts=RETRIES,
        client_jobmon_version=sent_query(rec)["client_jobmon_version"],
    )
    httpx_mock.add_response(
        status_code=rec["status"],
        headers={"Content-Type": rec["content_type"]},
        content=rec["response_text"].encode("utf-8"),
        method=rec["method"],
        url=SERVICE_URL + prefix + rec["route"],
        match_params=sent_query(rec),
        is_reusable=retried,
    )
    workflow_id, workflow_run_id = gateway_ids(rec)
    gateway = ServerGateway(requester, workflow_id, workflow_run_id)
    try:
        if expected is None:
            plan.check(rec, await invoke(plan, rec, gateway, requester, mode))
            sent = 1
        elif retried:
            # Retries on: the budget runs out, the 500's own message is kept.
            with pytest.raises(RetryBudgetExhaustedError) as exhausted:
                await invoke(plan, rec, gateway, requester, mode)
            assert isinstance(exhausted.value, RuntimeError)
            check_error(rec, exhausted.value, expected, RETRIES)
            assert type(exhausted.value.last_error) is ServerError
            assert len(httpx_mock.get_requests()) == RETRIES
            # Retries off: one request, the ServerError itself.
            with pytest.raises(ServerError) as once:
                await invoke(plan, rec, gateway, requester, mode, retry=False)
            assert type(once.value) is ServerError
            check_error(rec, once.value, expected, 1)
            sent = RETRIES + 1
        else:
            with pytest.raises(expected.kind) as raised:
                await invoke(plan, rec, gateway, requester, mode)
            assert type(raised.value) is expected.kind
            check_error(rec, raised.value, expected, 1)
            if expected.kind is WorkflowNotFoundError:
                assert isinstance(raised.value, ValueError)
            sent = 1
    finally:
        await gateway.close()
    requests = httpx_mock.get_requests()
    assert len(requests) == sent
    for request in requests:
        check_sent(rec, request)


def test_every_recording_has_a_plan(wire_dir: Path) -> None:
    names = {path.stem for server in ROUTE_PREFIX for path in (wire_dir / server).glob("*.json")}
    assert names, "the wire dir holds no recordings"
    assert sorted(names - PLANS.keys()) == []
    # Every server the contract names has recordings to replay.
    for server in ROUTE_PREFIX:
        assert list((wire_dir / server).glob("*.json")), server


def test_every_error_recording_names_what_the_server_said(wire_dir: Path) -> None:
    for server in ROUTE_PREFIX:
        for path in (wire_dir / server).glob("*.json"):
            recorded = json.loads(path.read_text(encoding="utf-8"))
            if recorded["status"] >= 400:
                assert (server, path.stem) in SERVER_SAID
                assert recorded["status"] in ERROR_BY_STATUS
