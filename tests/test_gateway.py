"""ServerGateway: session ownership, paging through tasks, log-correlation headers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from jobmon_gateway import (
    CLIENT_JOBMON_VERSION,
    InvalidRequestError,
    InvalidResponseError,
    Requester,
    ServerGateway,
    TaskMetadata,
    TaskRow,
)

TIME = {"time": "2026-11-28 17:56:34"}
ROW = [1, "Q", 3, "{'memory': 0.5}", "[]", "{}", "sequential", "null.q", 5]
BASE = "http://jobmon.test/api/v3"


class Tracking(httpx.MockTransport):
    """A MockTransport answering the time, counting requests and closes."""

    def __init__(self) -> None:
        super().__init__(self.answer)
        self.requests: list[httpx.Request] = []
        self.closed = 0

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json=TIME)

    def close(self) -> None:
        self.closed += 1

    async def aclose(self) -> None:
        self.closed += 1


def tracked_requester() -> tuple[Requester, Tracking, Tracking]:
    sync_transport, async_transport = Tracking(), Tracking()
    requester = Requester(
        "http://jobmon.test", transport=sync_transport, async_transport=async_transport
    )
    return requester, sync_transport, async_transport


# -- owned clients -------------------------------------------------------------------------


def test_with_closes_the_owned_sync_client() -> None:
    requester, sync_transport, _ = tracked_requester()
    with ServerGateway(requester, 1, 1) as gateway:
        gateway.get_server_time_sync()
        gateway.get_server_time_sync()
        assert sync_transport.closed == 0
    assert len(sync_transport.requests) == 2  # one pooled client for both calls
    assert sync_transport.closed == 1


async def test_async_with_closes_both_owned_clients() -> None:
    requester, sync_transport, async_transport = tracked_requester()
    async with ServerGateway(requester, 1, 1) as gateway:
        await gateway.get_server_time()
        gateway.get_server_time_sync()
    assert len(async_transport.requests) == len(sync_transport.requests) == 1
    assert async_transport.closed == 1
    assert sync_transport.closed == 1


def _use_then_fail(requester: Requester) -> None:
    with ServerGateway(requester, 1, 1) as gateway:
        gateway.get_server_time_sync()
        raise KeyError("boom")


async def _use_then_fail_async(requester: Requester) -> None:
    async with ServerGateway(requester, 1, 1) as gateway:
        await gateway.get_server_time()
        gateway.get_server_time_sync()
        raise KeyError("boom")


def test_owned_client_closed_when_the_body_of_with_raises() -> None:
    requester, sync_transport, _ = tracked_requester()
    with pytest.raises(KeyError):
        _use_then_fail(requester)
    assert len(sync_transport.requests) == 1
    assert sync_transport.closed == 1


async def test_owned_clients_closed_when_the_body_of_async_with_raises() -> None:
    requester, sync_transport, async_transport = tracked_requester()
    with pytest.raises(KeyError):
        await _use_then_fail_async(requester)
    assert len(async_transport.requests) == 1
    assert async_transport.closed == 1
    assert sync_transport.closed == 1


async def test_close_without_any_call_is_harmless() -> None:
    requester, sync_transport, async_transport = tracked_requester()
    gateway = ServerGateway(requester, 1, 1)
    await gateway.close()
    gateway.close_sync()
    assert (sync_transport.closed, async_transport.closed) == (0, 0)


async def test_a_closed_gateway_opens_a_new_client_when_used_again() -> None:
    requester, _, async_transport = tracked_requester()
    gateway = ServerGateway(requester, 1, 1)
    await gateway.get_server_time()
    await gateway.close()
    await gateway.get_server_time()
    await gateway.close()
    assert len(async_transport.requests) == 2
    assert async_transport.closed == 2


# -- caller-owned clients ------------------------------------------------------------------


def test_a_caller_owned_sync_client_is_used_and_never_closed() -> None:
    requester, owned_transport, _ = tracked_requester()
    mine = Tracking()
    client = httpx.Client(transport=mine, headers={"X-Caller": "yes"})
    try:
        with ServerGateway(requester, 1, 1) as gateway:
            gateway.set_session(client)
            gateway.get_server_time_sync()
            gateway.without_retries().get_server_time_sync()
            gateway.close_sync()
            assert not client.is_closed
        assert not client.is_closed
        assert mine.closed == 0
        assert len(mine.requests) == 2
        assert all(request.headers["X-Caller"] == "yes" for request in mine.requests)
        assert all(r.headers["Content-Type"] == "application/json" for r in mine.requests)
        assert owned_transport.requests == []
    finally:
        client.close()


async def test_a_caller_owned_async_client_is_used_and_never_closed() -> None:
    requester, _, owned_transport = tracked_requester()
    mine = Tracking()
    client = httpx.AsyncClient(transport=mine, headers={"X-Caller": "yes"})
    try:
        async with ServerGateway(requester, 1, 1) as gateway:
            gateway.set_session(client)
            await gateway.get_server_time()
            await gateway.without_retries().get_server_time()
            await gateway.close()
            assert not client.is_closed
        assert not client.is_closed
        assert mine.closed == 0
        assert len(mine.requests) == 2
        assert all(request.headers["X-Caller"] == "yes" for request in mine.requests)
        assert owned_transport.requests == []
    finally:
        await client.aclose()


def test_set_session_replacing_the_owned_sync_client_closes_it() -> None:
    requester, owned, _ = tracked_requester()
    mine = Tracking()
    with httpx.Client(transport=mine) as client:
        gateway = ServerGateway(requester, 1, 1)
        gateway.get_server_time_sync()
        gateway.set_session(client)
        gateway.get_server_time_sync()
        gateway.close_sync()
        assert owned.closed == 1
        assert (len(owned.requests), len(mine.requests)) == (1, 1)
        assert not client.is_closed


async def test_set_session_replacing_the_owned_async_client_closes_it() -> None:
    requester, _, owned = tracked_requester()
    mine = Tracking()
    async with httpx.AsyncClient(transport=mine) as client:
        gateway = ServerGateway(requester, 1, 1)
        await gateway.get_server_time()
        gateway.set_session(client)
        await gateway.get_server_time()
        await gateway.close()
        # The gateway's own client is closed; the caller's stays open.
        assert owned.closed == 1
        assert (len(owned.requests), len(mine.requests)) == (1, 1)
        assert not client.is_closed


@pytest.mark.parametrize(
    "wrong",
    [None, object(), "http://jobmon.test", httpx.MockTransport(lambda r: httpx.Response(200))],
    ids=["None", "object", "str", "transport"],
)
def test_set_session_refuses_other_types(wrong: Any) -> None:
    requester, _, _ = tracked_requester()
    gateway = ServerGateway(requester, 1, 1)
    with pytest.raises(InvalidRequestError) as refused:
        gateway.set_session(wrong)
    assert isinstance(refused.value, ValueError)
    # The gateway still works with its own client.
    gateway.get_server_time_sync()
    gateway.close_sync()


# -- paging through tasks ------------------------------------------------------------------


def _page(httpx_mock: HTTPXMock, after: int, chunk_size: int, *ids: int) -> None:
    httpx_mock.add_response(
        url=f"{BASE}/workflow/get_tasks/7",
        match_params={
            "max_task_id": str(after),
            "chunk_size": str(chunk_size),
            "client_jobmon_version": CLIENT_JOBMON_VERSION,
        },
        json={"tasks": {str(task_id): ROW for task_id in ids}},
    )


@pytest.fixture
def gateway(make_requester: Callable[..., Requester]) -> ServerGateway:
    return ServerGateway(make_requester(route_prefix="/api/v3"), 7, 8)


async def test_iter_tasks_pages_by_int_ids(gateway: ServerGateway, httpx_mock: HTTPXMock) -> None:
    # As strings "99" > "500": paging on string keys would ask for 99 again.
    _page(httpx_mock, 0, 2, 99, 500)
    _page(httpx_mock, 500, 2, 1000, 1001)
    _page(httpx_mock, 1001, 2)
    try:
        chunks = [chunk async for chunk in gateway.iter_tasks(chunk_size=2)]
    finally:
        await gateway.close()
    assert [list(chunk) for chunk in chunks] == [[99, 500], [1000, 1001]]
    assert chunks[0][99].status == "Q"
    assert len(httpx_mock.get_requests()) == 3


def test_iter_tasks_sync_pages_by_int_ids(gateway: ServerGateway, httpx_mock: HTTPXMock) -> None:
    _page(httpx_mock, 0, 3, 9, 10, 99)
    _page(httpx_mock, 99, 3, 100)
    _page(httpx_mock, 100, 3)
    with gateway:
        chunks = list(gateway.iter_tasks_sync(chunk_size=3))
    assert [list(chunk) for chunk in chunks] == [[9, 10, 99], [100]]
    assert len(httpx_mock.get_requests()) == 3


async def test_iter_task_rows_pages_as_iter_tasks_does(
    gateway: ServerGateway, httpx_mock: HTTPXMock
) -> None:
    for _ in range(2):  # async, then sync
        _page(httpx_mock, 0, 2, 99, 500)
        _page(httpx_mock, 500, 2, 1000)
        _page(httpx_mock, 1000, 2)
    try:
        chunks = [chunk async for chunk in gateway.iter_task_rows(chunk_size=2)]
        assert list(gateway.iter_task_rows_sync(chunk_size=2)) == chunks
    finally:
        await gateway.close()
    assert [list(chunk) for chunk in chunks] == [[99, 500], [1000]]
    row = chunks[0][99]
    assert type(row) is TaskRow
    assert row == TaskRow.from_metadata(TaskMetadata.model_validate(ROW))
    assert len(httpx_mock.get_requests()) == 6


async def test_iter_tasks_of_an_empty_workflow(
    gateway: ServerGateway, httpx_mock: HTTPXMock
) -> None:
    _page(httpx_mock, 0, 500)
    _page(httpx_mock, 0, 500)
    try:
        assert [chunk async for chunk in gateway.iter_tasks()] == []
        assert list(gateway.iter_tasks_sync()) == []
    finally:
        await gateway.close()


@pytest.mark.parametrize("second", [(5,), (3, 4), (2, 5)], ids=["same", "lower", "not-past"])
async def test_iter_tasks_stops_when_the_server_does_not_progress(
    gateway: ServerGateway, httpx_mock: HTTPXMock, second: tuple[int, ...]
) -> None:
    _page(httpx_mock, 0, 2, 4, 5)
    _page(httpx_mock, 5, 2, *second)
    seen: list[list[int]] = []

    async def collect() -> None:
        async for chunk in gateway.iter_tasks(chunk_size=2):
            seen.append(list(chunk))

    try:
        with pytest.raises(InvalidResponseError) as raised:
            await collect()
    finally:
        await gateway.close()
    assert seen == [[4, 5]]
    assert raised.value.route == "/workflow/get_tasks/7"
    assert len(httpx_mock.get_requests()) == 2


def test_iter_tasks_sync_stops_when_the_server_does_not_progress(
    gateway: ServerGateway, httpx_mock: HTTPXMock
) -> None:
    _page(httpx_mock, 0, 2, 4, 5)
    _page(httpx_mock, 5, 2, 5)
    with gateway, pytest.raises(InvalidResponseError):
        list(gateway.iter_tasks_sync(chunk_size=2))
    assert len(httpx_mock.get_requests()) == 2


async def test_iter_task_rows_stops_when_the_server_does_not_progress(
    gateway: ServerGateway, httpx_mock: HTTPXMock
) -> None:
    for _ in range(2):  # async, then sync
        _page(httpx_mock, 0, 2, 4, 5)
        _page(httpx_mock, 5, 2, 5)
    try:
        with pytest.raises(InvalidResponseError) as raised:
            _ = [chunk async for chunk in gateway.iter_task_rows(chunk_size=2)]
        with pytest.raises(InvalidResponseError):
            list(gateway.iter_task_rows_sync(chunk_size=2))
    finally:
        await gateway.close()
    assert raised.value.route == "/workflow/get_tasks/7"
    assert len(httpx_mock.get_requests()) == 4


# -- log correlation -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_every_call_carries_the_structlog_context(
    make_requester: Callable[..., Requester], httpx_mock: HTTPXMock, mode: str
) -> None:
    httpx_mock.add_response(json=TIME, is_reusable=True)
    gateway = ServerGateway(make_requester(), workflow_id=12, workflow_run_id=34)
    try:
        if mode == "sync":
            gateway.get_server_time_sync()
            gateway.without_retries().get_server_time_sync()
        else:
            await gateway.get_server_time()
            await gateway.without_retries().get_server_time()
    finally:
        await gateway.close()
    requests = httpx_mock.get_requests()
    assert len(requests) == 2
    for request in requests:
        context = json.loads(request.headers["X-Server-Structlog-Context"])
        assert context["workflow_id"] == 12
        assert context["workflow_run_id"] == 34


def test_gateway_remembers_its_ids() -> None:
    requester, _, _ = tracked_requester()
    gateway = ServerGateway(requester, workflow_id=12, workflow_run_id=34)
    assert (gateway.workflow_id, gateway.workflow_run_id) == (12, 34)
    assert "12" in repr(gateway)
    assert "34" in repr(gateway)


def test_a_closed_borrowed_client_is_an_error_not_a_silent_swap() -> None:
    requester, sync_transport, _ = tracked_requester()
    borrowed = httpx.Client(transport=sync_transport)
    gateway = ServerGateway(requester, 1, 1)
    gateway.set_session(borrowed)
    borrowed.close()
    with pytest.raises(InvalidRequestError) as refused:
        gateway.get_server_time_sync()
    assert "set_session" in str(refused.value)
    assert sync_transport.requests == []


async def test_a_closed_borrowed_async_client_is_an_error_not_a_silent_swap() -> None:
    requester, _, async_transport = tracked_requester()
    borrowed = httpx.AsyncClient(transport=async_transport)
    gateway = ServerGateway(requester, 1, 1)
    gateway.set_session(borrowed)
    await borrowed.aclose()
    with pytest.raises(InvalidRequestError) as refused:
        await gateway.get_server_time()
    assert "set_session" in str(refused.value)
    assert async_transport.requests == []


# -- fields a newer server adds ------------------------------------------------------------

ADDED = {"added_in_4_0": {"reason": ["kept", 1]}, "note": None}
"""Fields a newer server might add to an answer; the SDK must keep them."""

NEWER_ANSWERS: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("log_heartbeat", ("R", 30.0), {"status": "R"}),
    ("update_status", ("D",), {"status": "D"}),
    ("terminate_task_instances", (), {"workflow_run_id": 8, "num_terminated": 2}),
    ("get_task_status_updates", (), {"tasks_by_status": {"Q": [1], "Z": [2]}, **TIME}),
    ("queue_task_batch", (3, [1, 2], 4, 5), {"tasks_by_status": {"Q": [1, 2]}}),
    ("get_downstream_tasks", ([1], 9), {"downstream_tasks": {"1": [4, [2]]}}),
]


@pytest.mark.parametrize(
    ("call", "args", "answer"), NEWER_ANSWERS, ids=[row[0] for row in NEWER_ANSWERS]
)
async def test_fields_a_newer_server_adds_are_kept_async(
    gateway: ServerGateway,
    httpx_mock: HTTPXMock,
    call: str,
    args: tuple[Any, ...],
    answer: dict[str, Any],
) -> None:
    httpx_mock.add_response(json={**answer, **ADDED})
    try:
        result = await getattr(gateway, call)(*args)
    finally:
        await gateway.close()
    assert result.model_extra == ADDED
    assert result.model_dump(exclude=set(ADDED)).keys() == answer.keys()


@pytest.mark.parametrize(
    ("call", "args", "answer"), NEWER_ANSWERS, ids=[row[0] for row in NEWER_ANSWERS]
)
def test_fields_a_newer_server_adds_are_kept_sync(
    gateway: ServerGateway,
    httpx_mock: HTTPXMock,
    call: str,
    args: tuple[Any, ...],
    answer: dict[str, Any],
) -> None:
    httpx_mock.add_response(json={**answer, **ADDED})
    with gateway:
        result = getattr(gateway, f"{call}_sync")(*args)
    assert result.model_extra == ADDED
    assert result.model_dump(exclude=set(ADDED)).keys() == answer.keys()


def test_answers_of_todays_servers_have_no_extra_fields(
    gateway: ServerGateway, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(json={"status": "R"})
    with gateway:
        assert gateway.log_heartbeat_sync("R", 30.0).model_extra == {}
