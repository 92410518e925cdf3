"""The aiohttp exchange: the gateway's own session per event loop, and a lent session.

Real sockets on 127.0.0.1 (the fault server); every check goes through the
public API (``ServerGateway``, ``Requester``, ``set_session``).
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import json
import warnings
from typing import Any

import aiohttp
import pytest

from fault_server import Action, FaultServer
from jobmon_gateway import (
    InvalidRequestError,
    Requester,
    RetryBudgetExhaustedError,
    ServerError,
    ServerGateway,
)

HEARTBEAT = {"status": "R"}


def requester(url: str, **options: Any) -> Requester:
    settings: dict[str, Any] = {
        "route_prefix": "/api/v3",
        "request_timeout": 2.0,
        "retries_attempts": 3,
        "wait_initial": 0,
        "wait_jitter": 0,
        "wait_max": 0,
        **options,
    }
    return Requester(url, **settings)


def test_a_lent_session_is_sent_on_and_never_closed() -> None:
    with FaultServer(default=Action.respond(200, HEARTBEAT)) as srv:

        async def run() -> None:
            async with aiohttp.ClientSession(headers={"X-Mine": "yes"}) as mine:
                gateway = ServerGateway(requester(srv.url), 1, 1)
                gateway.set_session(mine)
                async with gateway:
                    assert (await gateway.log_heartbeat("R", 30.0)).status == "R"
                assert not mine.closed
                await gateway.close()
                assert not mine.closed
                # Still the caller's, still working.
                async with mine.get(f"{srv.url}/api/v3/time") as answer:
                    assert answer.status == 200

        asyncio.run(run())
        # The session's own headers went with the gateway's request.
        assert srv.requests[0].headers["x-mine"] == "yes"
        assert srv.requests[0].headers["content-type"] == "application/json"


def test_a_closed_lent_session_is_refused_not_replaced() -> None:
    with FaultServer(default=Action.respond(200, HEARTBEAT)) as srv:

        async def run() -> None:
            mine = aiohttp.ClientSession()
            gateway = ServerGateway(requester(srv.url), 1, 1)
            gateway.set_session(mine)
            await mine.close()
            with pytest.raises(InvalidRequestError, match="closed"):
                await gateway.log_heartbeat("R", 30.0)

        asyncio.run(run())
        assert srv.requests == []


def test_the_gateways_own_session_closes_with_its_event_loop() -> None:
    with FaultServer(default=Action.respond(200, HEARTBEAT)) as srv:
        gateway = ServerGateway(requester(srv.url), 1, 1)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            for _ in range(5):
                # No close(): asyncio.run shutting its loop down closes the session.
                assert asyncio.run(gateway.log_heartbeat("R", 30.0)).status == "R"
            gc.collect()
        assert srv.wait_for_idle()
        assert srv.open_connections == 0
        assert srv.connections_accepted == 5


def test_the_gateways_own_session_decodes_gzip_itself_and_keeps_the_size_limit() -> None:
    body = gzip.compress(json.dumps({"status": "R", "pad": "x" * 5000}).encode())
    with FaultServer(
        Action.respond(200, body, headers={"Content-Encoding": "gzip"}),
        Action.respond(200, body, headers={"Content-Encoding": "gzip"}),
    ) as srv:

        async def run() -> None:
            async with ServerGateway(requester(srv.url), 1, 1) as gateway:
                assert (await gateway.log_heartbeat("R", 30.0)).status == "R"
            small = requester(srv.url, max_response_bytes=1000)
            async with ServerGateway(small, 1, 1) as gateway:
                with pytest.raises(Exception, match="max_response_bytes=1000") as info:
                    await gateway.log_heartbeat("R", 30.0)
                assert not info.value.retryable  # type: ignore[attr-defined]

        asyncio.run(run())


def test_attempts_bound_the_requests_exactly_on_the_own_session() -> None:
    # aiohttp's hidden resend of idempotent requests is off: each attempt is one request.
    with FaultServer(default=Action.respond(500, {"error": "x"})) as srv:

        async def run() -> None:
            async with ServerGateway(requester(srv.url, retries_attempts=3), 1, 1) as gateway:
                with pytest.raises(RetryBudgetExhaustedError) as info:
                    await gateway.update_status("R")
                assert info.value.attempts == 3

        asyncio.run(run())
        assert len(srv.requests) == 3


@pytest.mark.parametrize("lent", [False, True], ids=["own", "lent"])
def test_a_reset_after_a_500_is_resent_at_once_on_both_kinds_of_session(lent: bool) -> None:
    with FaultServer(
        Action.respond_then_close_unread(500), default=Action.respond(200, HEARTBEAT)
    ) as srv:

        async def run() -> None:
            gateway = ServerGateway(requester(srv.url), 1, 1).without_retries()
            session = aiohttp.ClientSession() if lent else None
            if session is not None:
                gateway.set_session(session)
            with pytest.raises(ServerError):
                await gateway.log_heartbeat("R", 30.0)
            assert (await gateway.log_heartbeat("R", 30.0)).status == "R"
            await gateway.close()
            if session is not None:
                await session.close()

        asyncio.run(run())
        assert len(srv.requests) == 2
        assert srv.unread_requests == 1
