"""Input checks, through the gateway's public calls: bad input is refused and nothing is sent."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from pytest_httpx import HTTPXMock

from jobmon_gateway import (
    GatewayError,
    InvalidRequestError,
    Requester,
    ServerGateway,
    WorkflowRunStatus,
)

BAD_IDS: list[Any] = [True, False, "1", "abc", 1.0, 2.5, 0, -1, -100, None, [1]]
BAD_NON_NEGATIVE: list[Any] = [True, False, "1", 1.0, -1, None]

RUN_STATUS: dict[str, Any] = {"status": "R"}
QUEUED: dict[str, Any] = {"tasks_by_status": {"Q": [1]}}
DOWNSTREAM: dict[str, Any] = {"downstream_tasks": {}}


@pytest.fixture
async def gateway(make_requester: Callable[..., Requester]) -> AsyncIterator[ServerGateway]:
    gateway = ServerGateway(make_requester(route_prefix="/api/v3"), 1, 1)
    yield gateway
    await gateway.close()


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


async def run(gateway: ServerGateway, mode: str, name: str, *args: Any) -> Any:
    """Call ``name`` on the gateway: ``<name>_sync`` in sync mode, awaited in async mode."""
    if mode == "sync":
        return getattr(gateway, f"{name}_sync")(*args)
    return await getattr(gateway, name)(*args)


def assert_refused(error: InvalidRequestError, name: str) -> None:
    assert isinstance(error, ValueError)
    assert isinstance(error, GatewayError)
    assert name in str(error)
    assert error.attempts == 0
    assert error.status is None


def sent_body(httpx_mock: HTTPXMock) -> Any:
    (request,) = httpx_mock.get_requests()
    return json.loads(request.content)


# -- ids -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
@pytest.mark.parametrize("which", ["workflow_id", "workflow_run_id"])
def test_gateway_ids_are_checked(
    which: str, bad: Any, make_requester: Callable[..., Requester], httpx_mock: HTTPXMock
) -> None:
    ids: dict[str, Any] = {"workflow_id": 1, "workflow_run_id": 1, which: bad}
    with pytest.raises(InvalidRequestError) as refused:
        ServerGateway(make_requester(), **ids)
    assert_refused(refused.value, which)
    assert httpx_mock.get_requests() == []


def test_gateway_needs_a_requester() -> None:
    with pytest.raises(InvalidRequestError):
        ServerGateway("http://jobmon.test", 1, 1)  # type: ignore[arg-type]


# (name of the refused argument, gateway call, arguments with BAD in place of it)
BAD = object()
ID_CASES: list[tuple[str, str, tuple[Any, ...]]] = [
    ("array_id", "get_array_concurrency", (BAD,)),
    ("array_id", "queue_task_batch", (BAD, [1], 1, 1)),
    ("task_ids[1]", "queue_task_batch", (1, [1, BAD], 1, 1)),
    ("task_resources_id", "queue_task_batch", (1, [1], BAD, 1)),
    ("cluster_id", "queue_task_batch", (1, [1], 1, BAD)),
    ("dag_id", "get_downstream_tasks", ([1], BAD)),
    ("task_ids[0]", "get_downstream_tasks", ([BAD], 1)),
    ("chunk_size", "get_tasks", (0, BAD)),
    ("chunk_size", "get_task_rows", (0, BAD)),
]


def _fill(args: tuple[Any, ...], bad: Any) -> tuple[Any, ...]:
    def put(item: Any) -> Any:
        if item is BAD:
            return bad
        if isinstance(item, list):
            return [put(inner) for inner in item]
        return item

    return tuple(put(item) for item in args)


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
@pytest.mark.parametrize(
    ("name", "call", "args"), ID_CASES, ids=[f"{call}-{name}" for name, call, _ in ID_CASES]
)
async def test_ids_are_checked_before_sending(
    gateway: ServerGateway,
    mode: str,
    httpx_mock: HTTPXMock,
    name: str,
    call: str,
    args: tuple[Any, ...],
    bad: Any,
) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        await run(gateway, mode, call, *_fill(args, bad))
    assert_refused(refused.value, name)
    assert httpx_mock.get_requests() == []


@pytest.mark.parametrize("bad", BAD_NON_NEGATIVE, ids=repr)
@pytest.mark.parametrize("page", ["get_tasks", "get_task_rows"])
async def test_max_task_id_must_be_a_non_negative_int(
    gateway: ServerGateway, mode: str, httpx_mock: HTTPXMock, bad: Any, page: str
) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        await run(gateway, mode, page, bad, 10)
    assert_refused(refused.value, "max_task_id")
    assert httpx_mock.get_requests() == []


async def test_max_task_id_zero_starts_at_the_first_task(
    gateway: ServerGateway, mode: str, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(json={"tasks": {}})
    assert await run(gateway, mode, "get_tasks", 0, 10) == {}
    (request,) = httpx_mock.get_requests()
    assert request.url.params["max_task_id"] == "0"
    assert request.url.params["chunk_size"] == "10"


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_iter_tasks_checks_chunk_size_at_once(
    gateway: ServerGateway, httpx_mock: HTTPXMock, bad: Any
) -> None:
    # Refused on the call itself, before any iteration starts.
    with pytest.raises(InvalidRequestError) as refused_async:
        gateway.iter_tasks(bad)
    assert_refused(refused_async.value, "chunk_size")
    with pytest.raises(InvalidRequestError) as refused_sync:
        gateway.iter_tasks_sync(bad)
    assert_refused(refused_sync.value, "chunk_size")
    for iterate in (gateway.iter_task_rows, gateway.iter_task_rows_sync):
        with pytest.raises(InvalidRequestError) as refused_rows:
            iterate(bad)
        assert_refused(refused_rows.value, "chunk_size")
    assert httpx_mock.get_requests() == []


def _from_generator() -> Iterator[int]:
    yield from (7, 3, 7)


@pytest.mark.parametrize(
    "bad", ["12", b"12", bytearray(b"12"), 5, None, [1, "2"], [1.0], {"1": 1}], ids=repr
)
async def test_task_ids_must_be_an_iterable_of_ids(
    gateway: ServerGateway, mode: str, httpx_mock: HTTPXMock, bad: Any
) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        await run(gateway, mode, "get_downstream_tasks", bad, 1)
    assert_refused(refused.value, "task_ids")
    assert httpx_mock.get_requests() == []


async def test_task_ids_keep_order_and_duplicates(
    gateway: ServerGateway, mode: str, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(json=QUEUED)
    await run(gateway, mode, "queue_task_batch", 2, [5, 3, 5, 1], 4, 6)
    assert sent_body(httpx_mock) == {
        "task_ids": [5, 3, 5, 1],
        "task_resources_id": 4,
        "workflow_run_id": 1,
        "cluster_id": 6,
    }


@pytest.mark.parametrize(
    "task_ids",
    [_from_generator, lambda: (7, 3, 7), lambda: iter([7, 3, 7]), lambda: {7: "a", 3: "b"}],
    ids=["generator", "tuple", "iterator", "dict-keys"],
)
async def test_any_iterable_of_task_ids_is_accepted(
    gateway: ServerGateway,
    mode: str,
    httpx_mock: HTTPXMock,
    task_ids: Callable[[], Any],
) -> None:
    httpx_mock.add_response(json=DOWNSTREAM)
    ids = task_ids()
    expected = list(ids) if isinstance(ids, dict) else [7, 3, 7]
    await run(gateway, mode, "get_downstream_tasks", ids, 9)
    assert sent_body(httpx_mock) == {"task_ids": expected, "dag_id": 9}


async def test_an_empty_batch_is_sent(
    gateway: ServerGateway, mode: str, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(json={"tasks_by_status": {}})
    answer = await run(gateway, mode, "queue_task_batch", 1, [], 1, 2)
    assert answer.tasks_by_status == {}
    assert sent_body(httpx_mock)["task_ids"] == []


# -- status letters --------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", ["r", "RR", "", " R", "R ", "R\n", "1", "É", 1, None, b"R"], ids=repr
)
@pytest.mark.parametrize("call", ["log_heartbeat", "update_status"])
async def test_status_must_be_one_upper_case_letter(
    gateway: ServerGateway, mode: str, httpx_mock: HTTPXMock, call: str, bad: Any
) -> None:
    args = (bad, 30.0) if call == "log_heartbeat" else (bad,)
    with pytest.raises(InvalidRequestError) as refused:
        await run(gateway, mode, call, *args)
    assert_refused(refused.value, "status")
    assert httpx_mock.get_requests() == []


@pytest.mark.parametrize(
    ("status", "sent"), [(WorkflowRunStatus.RUNNING, "R"), ("R", "R"), ("Z", "Z")]
)
async def test_status_letters_accepted(
    gateway: ServerGateway, mode: str, httpx_mock: HTTPXMock, status: Any, sent: str
) -> None:
    # A letter the SDK does not know yet is passed on: the server decides.
    httpx_mock.add_response(json=RUN_STATUS)
    await run(gateway, mode, "update_status", status)
    assert sent_body(httpx_mock) == {"status": sent}


# -- next_report_increment -------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", [math.nan, math.inf, -math.inf, 0, 0.0, -1, -0.5, True, False, "30", None], ids=repr
)
async def test_next_report_increment_must_be_positive_and_finite(
    gateway: ServerGateway, mode: str, httpx_mock: HTTPXMock, bad: Any
) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        await run(gateway, mode, "log_heartbeat", "R", bad)
    assert_refused(refused.value, "next_report_increment")
    assert httpx_mock.get_requests() == []


@pytest.mark.parametrize("increment", [30, 30.0, 0.5])
async def test_next_report_increment_is_sent_as_a_float(
    gateway: ServerGateway, mode: str, httpx_mock: HTTPXMock, increment: float
) -> None:
    httpx_mock.add_response(json=RUN_STATUS)
    await run(gateway, mode, "log_heartbeat", WorkflowRunStatus.RUNNING, increment)
    body = sent_body(httpx_mock)
    assert body == {"status": "R", "next_report_increment": float(increment)}
    assert type(body["next_report_increment"]) is float


# -- since -----------------------------------------------------------------------------

UPDATES = {"tasks_by_status": {}, "time": "2026-11-28 17:56:39"}


@pytest.mark.parametrize(
    ("since", "sent"),
    [
        (datetime(2026, 11, 28, 17, 56, 34), "2026-11-28 17:56:34"),
        (datetime(2026, 11, 28, 17, 56, 34, 999_999), "2026-11-28 17:56:34"),
        (datetime(2000, 1, 1), "2000-01-01 00:00:00"),
        ("2026-11-28 17:56:34", "2026-11-28 17:56:34"),
    ],
    ids=["datetime", "fraction-floored", "midnight", "string"],
)
async def test_since_is_sent_in_the_server_format(
    gateway: ServerGateway, mode: str, httpx_mock: HTTPXMock, since: Any, sent: str
) -> None:
    httpx_mock.add_response(json=UPDATES)
    await run(gateway, mode, "get_task_status_updates", since)
    assert sent_body(httpx_mock) == {"last_sync": sent}


async def test_no_since_asks_for_a_full_snapshot(
    gateway: ServerGateway, mode: str, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(json=UPDATES)
    await run(gateway, mode, "get_task_status_updates")
    assert sent_body(httpx_mock) == {}


async def test_time_of_an_answer_can_be_passed_back_as_since(
    gateway: ServerGateway, mode: str, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(json=UPDATES, is_reusable=True)
    first = await run(gateway, mode, "get_task_status_updates")
    await run(gateway, mode, "get_task_status_updates", first.time)
    assert json.loads(httpx_mock.get_requests()[1].content) == {"last_sync": UPDATES["time"]}


@pytest.mark.parametrize(
    "bad",
    [
        datetime(2026, 11, 28, 17, 56, 34, tzinfo=timezone.utc),
        datetime(2026, 11, 28, 17, 56, 34, tzinfo=timezone(timedelta(hours=2))),
        "2026-11-28T17:56:34",
        "2026-11-28",
        "yesterday",
        "",
        date(2026, 11, 28),
        1764352594,
    ],
    ids=repr,
)
async def test_bad_since_is_refused(
    gateway: ServerGateway, mode: str, httpx_mock: HTTPXMock, bad: Any
) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        await run(gateway, mode, "get_task_status_updates", bad)
    assert_refused(refused.value, "since")
    assert httpx_mock.get_requests() == []
