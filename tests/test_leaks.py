"""No leaked sockets or file descriptors, under faults, over many calls.

Thousands of calls go to a real :class:`fault_server.FaultServer` whose
script injects about 30 % faults (500s, resets, connections dropped after a
500, truncated JSON, bodies cut short). Throughout, the gateway holds a
bounded number of connections; once it is closed, the test process is back
to the file descriptors it had before. Owned clients are closed when the
``with`` / ``async with`` body raises; clients handed in with
``set_session`` are never closed by the gateway.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import ssl
from collections import Counter
from typing import Any

import httpx
import psutil
import pytest

from fault_server import ERROR_ENVELOPE_500, Action, FaultServer
from jobmon_gateway import (
    InvalidResponseError,
    Requester,
    RetryBudgetExhaustedError,
    ServerError,
    ServerGateway,
)

SERVER_TIME = "2026-11-28 17:56:34"
OK = Action.respond(200, {"time": SERVER_TIME})
FAULTS = [
    Action.respond(500, ERROR_ENVELOPE_500, content_type="application/custom+json"),
    Action.reset_before_response(),
    Action.close_before_response(),
    Action.respond_then_close(500),
    Action.respond_then_reset(500),
    Action.truncated_json(),
    Action.close_mid_body(),
    # Not reset_mid_body: the server waits for the client's delayed ACK before
    # its RST (~40 ms each), which would dominate the run's time.
]
FAULT_RATE = 0.3
FD_SLACK = 3
_TLS = ssl.create_default_context()


def faulty_script(actions: int, seed: int) -> list[Action]:
    rng = random.Random(seed)
    return [rng.choice(FAULTS) if rng.random() < FAULT_RATE else OK for _ in range(actions)]


def make_requester(url: str, **changes: Any) -> Requester:
    options: dict[str, Any] = {
        "verify": _TLS,
        "request_timeout": 2.0,
        "retries_attempts": 6,
        "retries_timeout": 10.0,
        # Tiny waits: the backoff's size is not under test here.
        "wait_initial": 0.0001,
        "wait_max": 0.0002,
        "wait_jitter": 0,
        **changes,
    }
    return Requester(url, **options)


def open_fds() -> int:
    gc.collect()
    count: int = psutil.Process().num_fds()
    return count


def connections_to(port: int) -> int:
    """Our process's TCP sockets connected to `port` (the client side of each connection)."""
    return sum(
        1
        for conn in psutil.Process().net_connections(kind="tcp")
        if conn.raddr and conn.raddr.port == port
    )


@pytest.fixture
def quiet(caplog: pytest.LogCaptureFixture) -> None:
    # Thousands of retry warnings would only slow the run down.
    caplog.set_level(logging.ERROR, logger="jobmon_gateway")
    caplog.set_level(logging.ERROR, logger="stamina")


def check_outcomes(srv: FaultServer, calls: int, outcomes: Counter[str]) -> None:
    assert sum(outcomes.values()) == calls
    # Truncated JSON is the only fault that is not retried: each one fails its call.
    truncated = sum(
        1 for r in srv.requests if r.action is not None and r.action.label == "truncated json"
    )
    assert outcomes["InvalidResponseError"] == truncated
    assert set(outcomes) <= {"ok", "InvalidResponseError", "RetryBudgetExhaustedError"}
    assert outcomes["ok"] >= 0.85 * calls
    assert srv.errors == []


@pytest.mark.timeout(120)
def test_10k_sync_calls_under_faults_leak_nothing(quiet: None) -> None:
    calls = 10_000
    baseline = open_fds()
    with FaultServer(
        *faulty_script(int(calls * 1.6), seed=10_000),
        default=OK,
        max_requests=calls * 3,
        max_connections=calls * 2,
        max_lifetime=110,
    ) as srv:
        outcomes: Counter[str] = Counter()
        most_connections = 0
        with ServerGateway(make_requester(srv.url), 1, 1) as gateway:
            for index in range(calls):
                try:
                    gateway.get_server_time_sync()
                    outcomes["ok"] += 1
                except (InvalidResponseError, RetryBudgetExhaustedError) as exc:
                    outcomes[type(exc).__name__] += 1
                if index % 500 == 0:
                    most_connections = max(most_connections, connections_to(srv.port))
        # Sequential calls need one pooled connection; a dead one is replaced, not kept.
        assert most_connections <= 2
        assert connections_to(srv.port) == 0
        assert srv.wait_for_idle(timeout=5.0)
        check_outcomes(srv, calls, outcomes)
        assert srv.connections_accepted > 1000  # the faults really dropped connections
    assert open_fds() <= baseline + FD_SLACK


@pytest.mark.timeout(120)
def test_2k_async_calls_under_faults_leak_nothing(quiet: None) -> None:
    calls = 2_000
    baseline = open_fds()
    with FaultServer(
        *faulty_script(int(calls * 1.6), seed=2_000),
        default=OK,
        max_requests=calls * 3,
        max_connections=calls * 2,
        max_lifetime=110,
    ) as srv:
        outcomes: Counter[str] = Counter()
        samples: list[int] = []

        async def run() -> None:
            async with ServerGateway(make_requester(srv.url), 1, 1) as gateway:
                for index in range(calls):
                    try:
                        await gateway.get_server_time()
                        outcomes["ok"] += 1
                    except (InvalidResponseError, RetryBudgetExhaustedError) as exc:
                        outcomes[type(exc).__name__] += 1
                    if index % 200 == 0:
                        samples.append(connections_to(srv.port))

        asyncio.run(run())
        assert max(samples) <= 2
        assert connections_to(srv.port) == 0
        assert srv.wait_for_idle(timeout=5.0)
        check_outcomes(srv, calls, outcomes)
    assert open_fds() <= baseline + FD_SLACK


def test_many_short_lived_gateways_leak_nothing() -> None:
    baseline = open_fds()
    with FaultServer(default=OK, max_requests=1000) as srv:
        requester = make_requester(srv.url)
        for _ in range(100):
            with ServerGateway(requester, 1, 1) as gateway:
                gateway.get_server_time_sync()

        async def run() -> None:
            for _ in range(100):
                async with ServerGateway(requester, 1, 1) as gateway:
                    await gateway.get_server_time()

        asyncio.run(run())
        assert connections_to(srv.port) == 0
    assert open_fds() <= baseline + FD_SLACK


# ---------------------------------------------------------------------------
# Owned clients are closed on the way out, even when the body raises.


class BoomError(Exception):
    """Raised inside a gateway's with-block."""


def spy_on_clients(requester: Requester, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record every transport (the connections of one client) the requester makes for a gateway."""
    made: list[Any] = []
    make_sync, make_async = requester.new_transport, requester.new_async_transport

    def new_transport() -> Any:
        transport = make_sync()
        made.append(transport)
        return transport

    def new_async_transport() -> Any:
        transport = make_async()
        made.append(transport)
        return transport

    monkeypatch.setattr(requester, "new_transport", new_transport)
    monkeypatch.setattr(requester, "new_async_transport", new_async_transport)
    return made


@pytest.mark.parametrize("raised", [BoomError, ServerError], ids=["caller-error", "sdk-error"])
def test_owned_sync_client_is_closed_when_the_body_raises(
    raised: type[Exception], monkeypatch: pytest.MonkeyPatch
) -> None:
    with FaultServer(OK, default=Action.respond(503, "down", content_type="text/plain")) as srv:
        requester = make_requester(srv.url, retries_attempts=1)
        made = spy_on_clients(requester, monkeypatch)

        def run() -> None:
            with ServerGateway(requester, 1, 1) as gateway:
                gateway.get_server_time_sync()
                assert connections_to(srv.port) == 1
                if raised is BoomError:
                    raise BoomError
                gateway.without_retries().get_server_time_sync()  # 503: ServerError

        with pytest.raises(raised):
            run()
        assert len(made) == 1
        assert made[0].closed
        assert connections_to(srv.port) == 0


@pytest.mark.parametrize("raised", [BoomError, ServerError], ids=["caller-error", "sdk-error"])
def test_owned_async_client_is_closed_when_the_body_raises(
    raised: type[Exception], monkeypatch: pytest.MonkeyPatch
) -> None:
    with FaultServer(OK, default=Action.respond(503, "down", content_type="text/plain")) as srv:
        requester = make_requester(srv.url, retries_attempts=1)
        made = spy_on_clients(requester, monkeypatch)

        async def run() -> None:
            async with ServerGateway(requester, 1, 1) as gateway:
                await gateway.get_server_time()
                assert connections_to(srv.port) == 1
                if raised is BoomError:
                    raise BoomError
                await gateway.without_retries().get_server_time()

        with pytest.raises(raised):
            asyncio.run(run())
        assert len(made) == 1
        assert made[0].closed
        assert connections_to(srv.port) == 0


# ---------------------------------------------------------------------------
# Borrowed clients are never closed by the gateway.


def test_borrowed_sync_client_is_never_closed() -> None:
    with FaultServer(default=OK) as srv, httpx.Client(verify=_TLS) as mine:
        requester = make_requester(srv.url)
        gateway = ServerGateway(requester, 1, 1)
        gateway.set_session(mine)

        def use_then_raise() -> None:
            with gateway:
                gateway.get_server_time_sync()
                raise BoomError

        with pytest.raises(BoomError):
            use_then_raise()
        assert not mine.is_closed
        with gateway:
            gateway.get_server_time_sync()
        gateway.close_sync()
        asyncio.run(gateway.close())
        assert not mine.is_closed
        # Still the caller's, still working, on the connection the gateway used.
        assert mine.get(f"{srv.url}/time").status_code == 200
        assert srv.connections_accepted == 1
        assert len(srv.requests) == 3


def test_borrowed_async_client_is_never_closed() -> None:
    with FaultServer(default=OK) as srv:

        async def run() -> None:
            async with httpx.AsyncClient(verify=_TLS) as mine:
                gateway = ServerGateway(make_requester(srv.url), 1, 1)
                gateway.set_session(mine)

                async def use_then_raise() -> None:
                    async with gateway:
                        await gateway.get_server_time()
                        raise BoomError

                with pytest.raises(BoomError):
                    await use_then_raise()
                assert not mine.is_closed
                async with gateway:
                    await gateway.get_server_time()
                await gateway.close()
                assert not mine.is_closed
                assert (await mine.get(f"{srv.url}/time")).status_code == 200

        asyncio.run(run())
        assert srv.connections_accepted == 1
        assert len(srv.requests) == 3


def test_set_session_closes_the_owned_client_it_replaces(monkeypatch: pytest.MonkeyPatch) -> None:
    with FaultServer(default=OK) as srv, httpx.Client(verify=_TLS) as mine:
        requester = make_requester(srv.url)
        made = spy_on_clients(requester, monkeypatch)
        with ServerGateway(requester, 1, 1) as gateway:
            gateway.get_server_time_sync()  # opens an owned client
            gateway.set_session(mine)
            assert made[0].closed
            gateway.get_server_time_sync()
        assert not mine.is_closed
        assert len(made) == 1
