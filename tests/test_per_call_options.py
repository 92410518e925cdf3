"""``gateway.with_options(...)``: a view whose calls use other timeouts and retries.

The view shares the gateway's connections; the gateway's own settings stay
as they were. Sync and async; the connection count on a real socket on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import httpx
import pytest

from hostile_server import HostileConnection, HostileServer
from jobmon_gateway import (
    ConfigurationError,
    Requester,
    RequestTimeoutError,
    RetryBudgetExhaustedError,
    ServerError,
    ServerGateway,
)
from tls_servers import time_answer

Mode = Literal["sync", "async"]
MODES: list[Mode] = ["sync", "async"]


class Counting(httpx.MockTransport):
    """Answers 503 to everything and counts the requests and their timeouts."""

    def __init__(self) -> None:
        super().__init__(self.answer)
        self.timeouts: list[float] = []

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.timeouts.append(request.extensions["timeout"]["read"])
        return httpx.Response(503)


def counted_gateway(**options: Any) -> tuple[ServerGateway, Counting]:
    transport = Counting()
    requester = Requester(
        "http://127.0.0.1:1",
        transport=transport,
        async_transport=transport,
        retries_attempts=4,
        wait_initial=0,
        wait_jitter=0,
        wait_max=0,
        **options,
    )
    return ServerGateway(requester, 1, 1), transport


def time_call(mode: Mode, gateway: ServerGateway) -> Any:
    if mode == "sync":
        return gateway.get_server_time_sync()
    return asyncio.run(gateway.get_server_time())


@pytest.mark.parametrize("mode", MODES)
def test_the_views_calls_use_its_retries_and_the_gateways_its_own(mode: Mode) -> None:
    gateway, transport = counted_gateway()
    view = gateway.with_options(retries_attempts=2)
    with pytest.raises(ServerError) as caught:
        time_call(mode, view)
    assert caught.value.attempts == 2
    assert len(transport.timeouts) == 2
    with pytest.raises(ServerError) as caught:
        time_call(mode, gateway)
    assert caught.value.attempts == 4
    assert len(transport.timeouts) == 6
    assert gateway.requester.retries_attempts == 4
    assert view.requester.retries_attempts == 2


@pytest.mark.parametrize("mode", MODES)
def test_the_views_request_timeout_bounds_each_request(mode: Mode) -> None:
    gateway, transport = counted_gateway(request_timeout=20)
    with pytest.raises(ServerError):
        time_call(mode, gateway.with_options(request_timeout=0.5, retries_attempts=1))
    with pytest.raises(ServerError):
        time_call(mode, gateway.without_retries())
    assert len(transport.timeouts) == 2
    assert 0 < transport.timeouts[0] <= 0.5
    assert 0.5 < transport.timeouts[1] <= 20
    assert gateway.requester.request_timeout == 20


@pytest.mark.parametrize("mode", MODES)
def test_a_view_times_out_on_a_silent_server(mode: Mode) -> None:
    def silent(conn: HostileConnection) -> None:
        conn.read_request()
        conn.stopped.wait(10)  # never answers; ends when the test does

    with HostileServer(silent) as srv:
        gateway = ServerGateway(Requester(srv.url, request_timeout=20), 1, 1)
        view = gateway.with_options(request_timeout=0.2, retries_attempts=1)
        with pytest.raises(RequestTimeoutError) as caught:
            time_call(mode, view)
    assert "no complete answer within request_timeout=0.2s" in str(caught.value)


@pytest.mark.parametrize("mode", MODES)
def test_retries_timeout_zero_sends_once(mode: Mode) -> None:
    gateway, transport = counted_gateway()
    with pytest.raises(ServerError) as caught:
        time_call(mode, gateway.with_options(retries_timeout=0))
    assert isinstance(caught.value, RetryBudgetExhaustedError)
    assert len(transport.timeouts) == 1


@pytest.mark.parametrize("mode", MODES)
def test_views_compose_with_without_retries(mode: Mode) -> None:
    gateway, transport = counted_gateway()
    for view in (
        gateway.without_retries().with_options(request_timeout=5),
        gateway.with_options(request_timeout=5).without_retries(),
    ):
        with pytest.raises(ServerError) as caught:
            time_call(mode, view)
        assert type(caught.value) is ServerError
    assert len(transport.timeouts) == 2


def test_the_view_shares_the_gateways_connections() -> None:
    def keep_alive(conn: HostileConnection) -> None:
        while conn.read_request() is not None:
            if not conn.send(time_answer()):
                return

    with HostileServer(keep_alive) as srv:
        gateway = ServerGateway(Requester(srv.url), 1, 1)
        view = gateway.with_options(request_timeout=5, retries_attempts=2)
        with gateway:
            gateway.get_server_time_sync()
            view.get_server_time_sync()
            gateway.get_server_time_sync()

        async def calls() -> None:
            await gateway.get_server_time()
            await view.get_server_time()
            await gateway.get_server_time()
            await gateway.close()

        asyncio.run(calls())
        # One connection for the sync calls, one for the async ones.
        assert srv.connections == 2


@pytest.mark.parametrize(
    "options",
    [{"request_timeout": -1}, {"retries_attempts": 0}, {"retries_timeout": float("nan")}],
    ids=repr,
)
def test_a_malformed_option_is_refused_at_once(options: dict[str, Any]) -> None:
    gateway, _ = counted_gateway()
    with pytest.raises(ConfigurationError):
        gateway.with_options(**options)
