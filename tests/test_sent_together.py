"""Async requests started in one turn of the event loop after its first are written together.

On loopback a write that wakes a sleeping server charges the wake-up to the writer; calls
gathered at once (a driver's concurrent status updates, the benchmark's 50 concurrent
heartbeats) each paid it when each call wrote as soon as it was ready. Real sockets on
127.0.0.1; every server stops by itself.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import httpx

from hostile_server import HostileConnection, HostileServer, http_response
from jobmon_gateway import GatewayError, Requester, ServerGateway

CALLS = 8
HEARTBEAT_R = b'{"status": "R"}'


def test_gathered_calls_after_the_first_reach_the_server_once_every_one_is_ready() -> None:
    ready: list[int] = []  # one entry per request, appended by a request hook
    seen_ready: list[int] = []  # for each request the server read: how many were ready then
    lock = threading.Lock()

    def serve(conn: HostileConnection) -> None:
        while conn.read_request() is not None:
            with lock:
                seen_ready.append(len(ready))
            if not conn.send(http_response(HEARTBEAT_R)):
                return

    def hook(request: httpx.Request) -> None:
        ready.append(1)

    async def run(url: str) -> None:
        requester = Requester(
            url,
            route_prefix="/api/v3",
            request_timeout=5.0,
            retries_attempts=1,
            trust_env=False,
            event_hooks={"request": [hook]},
        )
        async with ServerGateway(requester, 1, 1) as gateway:
            # Open CALLS connections first: then no call waits for a connect, and every
            # call of the next batch gets ready within one turn of the loop.
            await asyncio.gather(*(gateway.log_heartbeat("R", 30.0) for _ in range(CALLS)))
            with lock:
                ready.clear()
                seen_ready.clear()
            answers = await asyncio.gather(
                *(gateway.log_heartbeat("R", 30.0) for _ in range(CALLS))
            )
            assert [answer.status for answer in answers] == ["R"] * CALLS

    with HostileServer(serve) as srv:
        asyncio.run(run(srv.url))
        assert srv.connections == CALLS
    # The batch's first request left at once; not one byte of the others before the last
    # request of the batch was ready.
    first, *others = sorted(seen_ready)
    assert 1 <= first <= CALLS
    assert others == [CALLS] * (CALLS - 1)


def test_a_request_still_queued_when_its_deadline_passed_is_never_written() -> None:
    # A coroutine that blocks the loop (synchronous work) in the turn the calls start
    # in holds the queued requests past their deadline: their callers are told the
    # call timed out, so the server must never see those requests.
    arrived: list[bytes] = []
    lock = threading.Lock()

    def serve(conn: HostileConnection) -> None:
        while (request := conn.read_request()) is not None:
            with lock:
                arrived.append(request)
            if not conn.send(http_response(HEARTBEAT_R)):
                return

    async def run(url: str) -> Sequence[object]:
        requester = Requester(
            url, route_prefix="/api/v3", request_timeout=0.5, retries_attempts=1, trust_env=False
        )
        async with ServerGateway(requester, 1, 1) as gateway:
            await asyncio.gather(*(gateway.log_heartbeat("R", 30.0) for _ in range(3)))
            with lock:
                arrived.clear()

            async def block_the_loop() -> None:
                # Blocking the loop is what this test is about.
                time.sleep(1.0)  # noqa: ASYNC251 - past every deadline of the batch

            outcomes = await asyncio.gather(
                *(gateway.log_heartbeat("R", 30.0) for _ in range(3)),
                block_the_loop(),
                return_exceptions=True,
            )
            return outcomes[:3]

    with HostileServer(serve) as srv:
        outcomes = asyncio.run(run(srv.url))
    # Only the batch's first request left (at once, before the loop was blocked); the
    # server has read every request sent before the connections closed.
    assert len(arrived) == 1
    assert sum(isinstance(outcome, GatewayError) for outcome in outcomes) >= 2
