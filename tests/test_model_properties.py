"""Property tests of every response model, fed as bytes through the public API.

Each gateway call is served by an ``httpx.MockTransport`` that answers 200
with whatever bytes the property hands it. Whatever those bytes are, the call
either returns a well-typed result or raises the SDK's own error
(:class:`~jobmon_gateway.InvalidResponseError`; ``WorkflowNotFoundError`` for
an empty workflow row), never anything else. Payloads generated from the wire
shape round-trip: the decoded result, and the model's
``model_dump(mode="json")``, mean what the payload meant (string task-id keys
become ints, positional rows become fields, Python-literal strings become
dicts and lists, the three forms of downstream ids become one list).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from jobmon_gateway import (
    DownstreamTasksResponse,
    GatewayError,
    HeartbeatResponse,
    InvalidResponseError,
    QueueResponse,
    Requester,
    ServerGateway,
    ServerTimeResponse,
    StatusUpdateResponse,
    TaskMetadata,
    TaskRow,
    TasksResponse,
    TaskStatusUpdatesResponse,
    TerminateTaskInstancesResponse,
    WorkflowConcurrencyResponse,
    WorkflowMetadata,
    WorkflowMetadataResponse,
    WorkflowNotFoundError,
)

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------------------
# A gateway whose server answers 200 with the bytes we choose.


class Served:
    """One sync and one async gateway whose every answer is ``200 self.body``."""

    def __init__(self) -> None:
        self.body = b"{}"
        transport = httpx.MockTransport(self._answer)
        requester = Requester(
            "http://jobmon.test",
            route_prefix="/api/v3",
            retries_attempts=1,
            transport=transport,
            async_transport=transport,
        )
        self.gateway = ServerGateway(requester, 1, 1)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=self.body, headers={"content-type": "application/json"})


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    serving = Served()
    yield serving
    serving.gateway.close_sync()
    asyncio.run(serving.gateway.close())


# ---------------------------------------------------------------------------
# The routes: which call decodes which model, and what a valid payload means.

JsonValue = Any

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values: st.SearchStrategy[JsonValue] = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=15,
)

ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
task_ids = st.integers(min_value=1, max_value=2**40)
status_letters = st.text(max_size=3) | st.sampled_from(list("GQIORDEAFLBSCHT"))
id_lists = st.lists(ints, max_size=8)
tasks_by_status = st.dictionaries(status_letters, id_lists, max_size=6)

server_datetimes = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)
).map(lambda moment: moment.replace(microsecond=0))


def wire_time(moment: datetime) -> str:
    """The server's format; strftime("%Y") would not zero-pad years below 1000."""
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f" {moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )


# Values a Python-literal resource field can hold (and JSON can represent).
literal_leaves = (
    st.none()
    | st.booleans()
    | ints
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
literal_values = st.recursive(
    literal_leaves,
    lambda children: (
        st.lists(children, max_size=2) | st.dictionaries(st.text(max_size=4), children, max_size=2)
    ),
    max_leaves=4,
)
literal_dicts = st.dictionaries(st.text(max_size=6), literal_values, max_size=3)
literal_lists = st.lists(literal_values, max_size=3)


@st.composite
def literal_field(draw: st.DrawFn, values: st.SearchStrategy[Any], empty: Any) -> tuple[Any, Any]:
    """(wire value, meaning) of a resource field: a Python literal in a string, or None."""
    form = draw(st.sampled_from(["literal", "literal", "literal", "None", "null"]))
    if form == "literal":
        value = draw(values)
        return repr(value), value
    return ("None" if form == "None" else None), empty


@st.composite
def task_rows(draw: st.DrawFn) -> tuple[list[Any], dict[str, Any]]:
    """(positional wire row, the TaskMetadata it means as JSON)."""
    scales, scales_meaning = draw(literal_field(literal_dicts, {}))
    queues, queues_meaning = draw(literal_field(literal_lists, []))
    resources, resources_meaning = draw(literal_field(literal_dicts, {}))
    array_id, max_attempts, array_max = draw(ints), draw(ints), draw(ints)
    status, cluster, queue = (
        draw(status_letters),
        draw(st.text(max_size=8)),
        draw(st.text(max_size=8)),
    )
    row = [array_id, status, max_attempts, scales, queues, resources, cluster, queue, array_max]
    meaning = {
        "array_id": array_id,
        "status": status,
        "max_attempts": max_attempts,
        "resource_scales": scales_meaning,
        "fallback_queues": queues_meaning,
        "requested_resources": resources_meaning,
        "cluster_name": cluster,
        "queue_name": queue,
        "array_max_concurrently_running": array_max,
    }
    return row, meaning


@st.composite
def downstream_entries(draw: st.DrawFn) -> tuple[list[Any], list[Any]]:
    """(wire [node_id, ids], meaning): ids as a JSON list, a JSON-encoded string or null."""
    node, ids = draw(ints), draw(id_lists)
    form = draw(st.sampled_from(["list", "string", "null"]))
    if form == "null":
        return [node, None], [node, []]
    return [node, ids if form == "list" else json.dumps(ids)], [node, ids]


Sample = tuple[JsonValue, JsonValue]
"""(payload as the server sends it, its meaning as the model dumps it in JSON mode)."""


def _status_payloads() -> st.SearchStrategy[Sample]:
    return status_letters.map(lambda s: ({"status": s}, {"status": s}))


def _queue_payloads() -> st.SearchStrategy[Sample]:
    return tasks_by_status.map(lambda t: ({"tasks_by_status": t}, {"tasks_by_status": t}))


@st.composite
def _status_update_payloads(draw: st.DrawFn) -> Sample:
    by_status, moment = draw(tasks_by_status), draw(server_datetimes)
    return (
        {"tasks_by_status": by_status, "time": wire_time(moment)},
        {"tasks_by_status": by_status, "time": moment.isoformat()},
    )


@st.composite
def _terminate_payloads(draw: st.DrawFn) -> Sample:
    payload = {"workflow_run_id": draw(ints), "num_terminated": draw(ints)}
    return payload, payload


@st.composite
def _metadata_payloads(draw: st.DrawFn) -> Sample:
    if draw(st.integers(0, 9)) == 0:
        return {"workflow": []}, {"workflow": None}
    row = [draw(ints), draw(ints), draw(ints)]
    return {"workflow": row}, {
        "workflow": dict(
            zip(("workflow_id", "dag_id", "max_concurrently_running"), row, strict=True)
        )
    }


@st.composite
def _tasks_payloads(draw: st.DrawFn) -> Sample:
    rows = draw(st.dictionaries(task_ids, task_rows(), max_size=3))
    return (
        {"tasks": {str(task_id): row for task_id, (row, _) in rows.items()}},
        {"tasks": {str(task_id): meaning for task_id, (_, meaning) in rows.items()}},
    )


@st.composite
def _downstream_payloads(draw: st.DrawFn) -> Sample:
    entries = draw(st.dictionaries(task_ids, downstream_entries(), max_size=5))
    return (
        {"downstream_tasks": {str(k): wire for k, (wire, _) in entries.items()}},
        {"downstream_tasks": {str(k): meaning for k, (_, meaning) in entries.items()}},
    )


def _concurrency_payloads() -> st.SearchStrategy[Sample]:
    return ints.map(lambda n: ({"max_concurrently_running": n}, {"max_concurrently_running": n}))


def _time_payloads() -> st.SearchStrategy[Sample]:
    return server_datetimes.map(lambda m: ({"time": wire_time(m)}, {"time": m.isoformat()}))


def _is_int(value: object) -> bool:
    return type(value) is int


def _ok_ids_by_status(mapping: object) -> bool:
    return isinstance(mapping, dict) and all(
        isinstance(key, str) and isinstance(ids, list) and all(map(_is_int, ids))
        for key, ids in mapping.items()
    )


def _naive(moment: object) -> bool:
    return isinstance(moment, datetime) and moment.tzinfo is None


def _ok_task(task: object, row_type: type = TaskMetadata) -> bool:
    return (
        isinstance(task, row_type)
        and isinstance(task, TaskMetadata | TaskRow)
        and all(
            map(_is_int, (task.array_id, task.max_attempts, task.array_max_concurrently_running))
        )
        and isinstance(task.status, str)
        and isinstance(task.resource_scales, dict)
        and isinstance(task.fallback_queues, list)
        and isinstance(task.requested_resources, dict)
        and isinstance(task.cluster_name, str)
        and isinstance(task.queue_name, str)
    )


@dataclass(frozen=True)
class Route:
    """A gateway call, the model that decodes its answer, and what a result must look like."""

    name: str
    model: type[BaseModel] | None
    call: Callable[[ServerGateway], Any]
    acall: Callable[[ServerGateway], Any]
    payloads: st.SearchStrategy[Sample] | None
    well_typed: Callable[[Any], bool]
    meaning: Callable[[Any], JsonValue] | None = None
    """The gateway's result as the JSON its model dumps (None: the result is the model)."""


def _dump(result: Any) -> JsonValue:
    assert isinstance(result, BaseModel)
    return result.model_dump(mode="json")


ROUTES = [
    Route(
        "log_heartbeat",
        HeartbeatResponse,
        lambda g: g.log_heartbeat_sync("R", 30.0),
        lambda g: g.log_heartbeat("R", 30.0),
        _status_payloads(),
        lambda r: isinstance(r, HeartbeatResponse) and isinstance(r.status, str),
    ),
    Route(
        "update_status",
        StatusUpdateResponse,
        lambda g: g.update_status_sync("D"),
        lambda g: g.update_status("D"),
        _status_payloads(),
        lambda r: isinstance(r, StatusUpdateResponse) and isinstance(r.status, str),
    ),
    Route(
        "queue_task_batch",
        QueueResponse,
        lambda g: g.queue_task_batch_sync(1, [4, 5], 1, 2),
        lambda g: g.queue_task_batch(1, [4, 5], 1, 2),
        _queue_payloads(),
        lambda r: isinstance(r, QueueResponse) and _ok_ids_by_status(r.tasks_by_status),
    ),
    Route(
        "get_task_status_updates",
        TaskStatusUpdatesResponse,
        lambda g: g.get_task_status_updates_sync(),
        lambda g: g.get_task_status_updates(),
        _status_update_payloads(),
        lambda r: (
            isinstance(r, TaskStatusUpdatesResponse)
            and _ok_ids_by_status(r.tasks_by_status)
            and _naive(r.time)
        ),
    ),
    Route(
        "terminate_task_instances",
        TerminateTaskInstancesResponse,
        lambda g: g.terminate_task_instances_sync(),
        lambda g: g.terminate_task_instances(),
        _terminate_payloads(),
        lambda r: (
            isinstance(r, TerminateTaskInstancesResponse)
            and _is_int(r.workflow_run_id)
            and (r.num_terminated is None or _is_int(r.num_terminated))
        ),
    ),
    Route(
        "get_workflow_metadata",
        WorkflowMetadataResponse,
        lambda g: g.get_workflow_metadata_sync(),
        lambda g: g.get_workflow_metadata(),
        _metadata_payloads(),
        lambda r: (
            isinstance(r, WorkflowMetadata)
            and all(map(_is_int, (r.workflow_id, r.dag_id, r.max_concurrently_running)))
        ),
        meaning=lambda r: {"workflow": _dump(r)},
    ),
    Route(
        "get_tasks",
        TasksResponse,
        lambda g: g.get_tasks_sync(0, 500),
        lambda g: g.get_tasks(0, 500),
        _tasks_payloads(),
        lambda r: (
            isinstance(r, dict) and all(_is_int(key) and _ok_task(task) for key, task in r.items())
        ),
        meaning=lambda r: {"tasks": {str(key): _dump(task) for key, task in r.items()}},
    ),
    Route(
        "get_task_rows",
        TasksResponse,
        lambda g: g.get_task_rows_sync(0, 500),
        lambda g: g.get_task_rows(0, 500),
        _tasks_payloads(),
        lambda r: (
            isinstance(r, dict)
            and all(_is_int(key) and _ok_task(task, TaskRow) for key, task in r.items())
        ),
        meaning=lambda r: {
            "tasks": {str(key): _dump(task.to_metadata()) for key, task in r.items()}
        },
    ),
    Route(
        "get_downstream_tasks",
        DownstreamTasksResponse,
        lambda g: g.get_downstream_tasks_sync([1, 2], 1),
        lambda g: g.get_downstream_tasks([1, 2], 1),
        _downstream_payloads(),
        lambda r: (
            isinstance(r, DownstreamTasksResponse)
            and all(
                _is_int(key)
                and isinstance(entry, tuple)
                and _is_int(entry[0])
                and isinstance(entry[1], list)
                and all(map(_is_int, entry[1]))
                for key, entry in r.downstream_tasks.items()
            )
        ),
    ),
    Route(
        "get_workflow_concurrency",
        WorkflowConcurrencyResponse,
        lambda g: g.get_workflow_concurrency_sync(),
        lambda g: g.get_workflow_concurrency(),
        _concurrency_payloads(),
        _is_int,
        meaning=lambda r: {"max_concurrently_running": r},
    ),
    Route(
        "get_array_concurrency",
        WorkflowConcurrencyResponse,
        lambda g: g.get_array_concurrency_sync(3),
        lambda g: g.get_array_concurrency(3),
        _concurrency_payloads(),
        _is_int,
        meaning=lambda r: {"max_concurrently_running": r},
    ),
    Route(
        "get_server_time",
        ServerTimeResponse,
        lambda g: g.get_server_time_sync(),
        lambda g: g.get_server_time(),
        _time_payloads(),
        _naive,
        meaning=lambda r: {"time": r.isoformat()},
    ),
    Route(
        "request_triage",
        None,
        lambda g: g.request_triage_sync(),
        lambda g: g.request_triage(),
        None,
        lambda r: r is None,
    ),
]
DECODED = [route for route in ROUTES if route.payloads is not None]


def test_every_exported_response_model_is_covered() -> None:
    import jobmon_gateway

    exported = {
        name
        for name in jobmon_gateway.__all__
        if isinstance(obj := getattr(jobmon_gateway, name), type)
        and issubclass(obj, BaseModel)
        and (name.endswith("Response") or name == "TaskMetadata")
    }
    covered = {route.model.__name__ for route in ROUTES if route.model is not None}
    assert exported <= covered | {"TaskMetadata"}
    assert any(route.name == "get_tasks" for route in ROUTES)  # TaskMetadata's rows


# ---------------------------------------------------------------------------
# The properties.


def outcome(served: Served, route: Route, body: bytes) -> tuple[Any, GatewayError | None]:
    """Serve `body` to `route`'s sync call; (result, None) or (None, the SDK's error).

    Anything but a GatewayError propagates and fails the property.
    """
    served.body = body
    try:
        return route.call(served.gateway), None
    except GatewayError as exc:
        return None, exc


def check_refusal(route: Route, error: GatewayError, body: bytes) -> None:
    """A refused 200 answer is InvalidResponseError (or WorkflowNotFoundError), fully described."""
    if isinstance(error, WorkflowNotFoundError):
        assert route.name == "get_workflow_metadata"
    else:
        assert type(error) is InvalidResponseError, repr(error)
        assert error.body_excerpt is not None
        excerpt = error.body_excerpt
        assert len(excerpt) <= 501
        assert body.decode("utf-8", errors="replace").startswith(excerpt.removesuffix("…"))
    assert error.status == 200
    assert error.attempts == 1
    assert error.method in ("GET", "POST", "PUT")
    assert error.route is not None
    assert error.route.startswith("/")
    assert not error.retryable


def check(route: Route, served: Served, body: bytes) -> Any:
    result, error = outcome(served, route, body)
    if error is not None:
        check_refusal(route, error, body)
        return None
    assert route.well_typed(result), repr(result)
    return result


@settings(PROPERTY, max_examples=150)
@given(value=json_values)
@example(value={})
@example(value=None)
@example(value=[])
@example(value={"workflow": []})
@example(value={"time": "0000-00-00 00:00:00"})
@example(value={"time": 0})
@example(value={"time": "2026-11-28T17:56:34+05:00"})
@example(value={"tasks_by_status": {"Q": [True, 1.0]}, "time": "2026-11-28 17:56:34"})
def test_any_json_gives_a_result_or_the_sdks_error(served: Served, value: JsonValue) -> None:
    body = json.dumps(value).encode()
    for route in ROUTES:
        check(route, served, body)


@settings(PROPERTY, max_examples=100)
@given(body=st.binary(max_size=200))
@example(body=b"")
@example(body=b"\xff\xfe{")
@example(body=b'{"status": "R')
@example(body=b"[" * 100_000)
@example(body=b"NaN")
@example(body=b'{"max_concurrently_running": 1e400}')
@example(body=b'{"max_concurrently_running": ' + b"9" * 5000 + b"}")
def test_any_bytes_give_a_result_or_the_sdks_error(served: Served, body: bytes) -> None:
    for route in ROUTES:
        check(route, served, body)


@st.composite
def mutated(draw: st.DrawFn, value: JsonValue, depth: int = 0) -> JsonValue:
    """`value` with one spot broken: replaced, dropped, re-typed or padded with junk."""
    containers = isinstance(value, dict | list) and value and depth < 6
    how = draw(
        st.sampled_from(
            ["descend", "descend", "replace", "wrap"]
            if containers
            else ["replace", "wrap", "stringify"]
        )
    )
    if how == "replace":
        return draw(json_values)
    if how == "wrap":
        return [value]
    if how == "stringify":
        return json.dumps(value)
    if isinstance(value, dict):
        key = draw(st.sampled_from(sorted(value)))
        change = draw(st.sampled_from(["child", "child", "drop", "junk"]))
        copy = dict(value)
        if change == "drop":
            del copy[key]
        elif change == "junk":
            copy[draw(st.text(max_size=8))] = draw(json_values)
            copy[key] = draw(mutated(value[key], depth + 1))
        else:
            copy[key] = draw(mutated(value[key], depth + 1))
        return copy
    assert isinstance(value, list)
    index = draw(st.integers(0, len(value) - 1))
    change = draw(st.sampled_from(["child", "child", "drop", "extra"]))
    items = list(value)
    if change == "drop":
        del items[index]
    elif change == "extra":
        items.append(draw(json_values))
    else:
        items[index] = draw(mutated(value[index], depth + 1))
    return items


@pytest.mark.parametrize("route", DECODED, ids=[route.name for route in DECODED])
@PROPERTY
@given(data=st.data())
def test_structured_but_wrong_payloads_give_a_result_or_the_sdks_error(
    route: Route, served: Served, data: st.DataObject
) -> None:
    assert route.payloads is not None
    payload, _ = data.draw(route.payloads, label="valid payload")
    broken = data.draw(mutated(payload), label="broken payload")
    check(route, served, json.dumps(broken).encode())


@pytest.mark.parametrize("route", DECODED, ids=[route.name for route in DECODED])
@PROPERTY
@given(data=st.data())
def test_valid_payloads_round_trip_and_keep_unknown_fields(
    route: Route, served: Served, data: st.DataObject
) -> None:
    assert route.payloads is not None
    assert route.model is not None
    payload, meaning = data.draw(route.payloads, label="payload")
    body = json.dumps(payload).encode()

    # The model itself: decode, then dump in JSON mode.
    assert route.model.model_validate_json(body).model_dump(mode="json") == meaning

    # The gateway call that decodes it.
    result, error = outcome(served, route, body)
    if meaning == {"workflow": None}:
        assert isinstance(error, WorkflowNotFoundError)
        assert error.status == 200
        return
    assert error is None, repr(error)
    assert route.well_typed(result)
    as_json = route.meaning(result) if route.meaning is not None else _dump(result)
    assert as_json == meaning

    # Fields a newer server adds are kept in model_extra when the call hands
    # back the answer's model, and change nothing else.
    extra = data.draw(
        st.dictionaries(st.text(min_size=1, max_size=8), json_values, max_size=3), label="extra"
    )
    added = {k: v for k, v in extra.items() if k not in payload}
    padded, padded_error = outcome(served, route, json.dumps({**added, **payload}).encode())
    assert padded_error is None, repr(padded_error)
    if isinstance(padded, route.model):
        assert padded.model_extra == added
        assert padded.model_dump(mode="json", exclude=set(added)) == meaning
    else:
        assert padded == result


@settings(PROPERTY, max_examples=50)
@given(value=json_values)
def test_async_calls_decode_like_sync_ones(served: Served, value: JsonValue) -> None:
    body = json.dumps(value).encode()

    async def run(route: Route) -> tuple[Any, GatewayError | None]:
        try:
            return await route.acall(served.gateway), None
        except GatewayError as exc:
            return None, exc

    async def run_all() -> list[tuple[Any, GatewayError | None]]:
        return [await run(route) for route in ROUTES]

    served.body = body
    async_outcomes = asyncio.run(run_all())
    for route, (async_result, async_error) in zip(ROUTES, async_outcomes, strict=True):
        sync_result, sync_error = outcome(served, route, body)
        assert async_result == sync_result
        assert type(async_error) is type(sync_error)
        if sync_error is not None and async_error is not None:
            assert (async_error.status, async_error.route, async_error.body_excerpt) == (
                sync_error.status,
                sync_error.route,
                sync_error.body_excerpt,
            )


@pytest.mark.parametrize(
    "time", ["2026-11-28 17:56:34", "2026-11-28T17:56:34+05:00", "2026-11-28T17:56:34Z"]
)
def test_a_decoded_time_can_be_sent_back_as_since(served: Served, time: str) -> None:
    # The time of one answer is what the next call sends back as `since`; a
    # time the SDK accepts must never be one that it then refuses to send.
    served.body = json.dumps({"tasks_by_status": {}, "time": time}).encode()
    try:
        answer = served.gateway.get_task_status_updates_sync()
    except InvalidResponseError:
        return
    assert _naive(answer.time)
    served.body = b'{"tasks_by_status": {}, "time": "2026-11-28 17:56:35"}'
    assert served.gateway.get_task_status_updates_sync(since=answer.time).time.second == 35
    assert served.gateway.get_task_status_updates_sync(since=str(wire_time(answer.time)))
