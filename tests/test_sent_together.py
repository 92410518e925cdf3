"""Async requests started in one turn of the event loop after its first are written together.

On loopback a write that wakes a sleeping server charges the wake-up to the writer; calls
gathered at once (a driver's concurrent status updates, the benchmark's 50 concurrent
heartbeats) each paid it when each call wrote as soon as it was ready. Real sockets on
127.0.0.1; every server stops by itself.
"""

from __future__ import annotations

import asyncio
import threading

import httpx

from hostile_server import HostileConnection, HostileServer, http_response
from jobmon_gateway import Requester, ServerGateway

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
