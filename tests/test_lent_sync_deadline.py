"""``request_timeout`` bounds a call on a lent ``httpx.Client``, on a fresh or a reused connection.

A caller's client (``gateway.set_session(httpx.Client())``) has httpx's own
timeouts, which only bound each read: a server that trickles a byte every
0.2 s never trips them. The SDK's deadline must still end the call by
``request_timeout``, as it does on the SDK's own clients, also when the
trickling answer comes on a keep-alive connection that answered a first
call normally (the hard case: the connection is already past connect and
TLS, in the client's pool).

Each trickler runs against: a lent ``httpx.Client``, the SDK's own sync
client, the SDK's own async client and a lent ``httpx.AsyncClient``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Literal

import httpx
import pytest

from hostile_server import HostileConnection, HostileServer
from jobmon_gateway import GatewayError, Requester, RequestTimeoutError, ServerGateway
from tls_servers import SERVER_TIME, time_answer

Client = Literal["lent-sync", "own-sync", "own-async", "lent-async"]
CLIENTS: list[Client] = ["lent-sync", "own-sync", "own-async", "lent-async"]
Behaviour = Callable[[HostileConnection], None]
REQUEST_TIMEOUT = 1.0
BOUND = 3.0  # a hang detector: the deadline plus generous slack for a loaded machine
SERVER_LIFETIME = 8.0  # a call the deadline failed to end is cut off here, failing the test
PAUSE = 0.2


def trickled_body(conn: HostileConnection) -> None:
    """A head, then one byte of a body that never ends, every 0.2 s."""
    if conn.read_request() is None:
        return
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n"
    if not conn.send(head):
        return
    while conn.send(b" ", pause=PAUSE):
        pass


def trickled_head(conn: HostileConnection) -> None:
    """A head that never ends, one byte every 0.2 s."""
    if conn.read_request() is None:
        return
    for byte in b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-padding: ":
        if not conn.send(bytes([byte]), pause=PAUSE):
            return
    while conn.send(b"a", pause=PAUSE):
        pass


def endless_continue(conn: HostileConnection) -> None:
    """``100 Continue``, again and again, and never a final answer."""
    if conn.read_request() is None:
        return
    while conn.send(b"HTTP/1.1 100 Continue\r\n\r\n", pause=0.05):
        pass


def after_one_answer(trickle: Behaviour) -> Behaviour:
    """Answer the first request normally (keep-alive), then trickle on the same connection."""

    def behaviour(conn: HostileConnection) -> None:
        if conn.read_request() is None or not conn.send(time_answer()):
            return
        trickle(conn)

    return behaviour


@pytest.fixture(autouse=True)
def no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lent clients are plain ``httpx.Client()``: keep an inherited proxy out of their way."""
    for base in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(base, raising=False)
        monkeypatch.delenv(base.upper(), raising=False)


def requester(url: str, **options: Any) -> Requester:
    settings: dict[str, Any] = {
        "route_prefix": "/api/v3",
        "request_timeout": REQUEST_TIMEOUT,
        "retries_attempts": 3,
        "wait_initial": 0,
        "wait_jitter": 0,
        "wait_max": 0,
        **options,
    }
    return Requester(url, **settings)


def trickled_call(client: Client, url: str, *, reused: bool) -> tuple[GatewayError | None, float]:
    """With ``reused``, one normal call first; then a call without retries, timed.

    Returns the error of the timed call (``None`` if it succeeded) and its duration.
    """
    gateway = ServerGateway(requester(url), 1, 1)
    once = gateway.without_retries()
    if client in ("lent-sync", "own-sync"):
        lent = httpx.Client() if client == "lent-sync" else None
        try:
            if lent is not None:
                gateway.set_session(lent)
            with gateway:
                if reused:
                    assert gateway.get_server_time_sync() == SERVER_TIME
                started = time.monotonic()
                try:
                    once.get_server_time_sync()
                except GatewayError as exc:
                    return exc, time.monotonic() - started
                return None, time.monotonic() - started
        finally:
            if lent is not None:
                lent.close()

    async def run() -> tuple[GatewayError | None, float]:
        lent = httpx.AsyncClient() if client == "lent-async" else None
        try:
            if lent is not None:
                gateway.set_session(lent)
            async with gateway:
                if reused:
                    assert await gateway.get_server_time() == SERVER_TIME
                started = time.monotonic()
                try:
                    await once.get_server_time()
                except GatewayError as exc:
                    return exc, time.monotonic() - started
                return None, time.monotonic() - started
        finally:
            if lent is not None:
                await lent.aclose()

    return asyncio.run(run())


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("connection", ["fresh", "reused"])
@pytest.mark.parametrize(
    "trickle",
    [trickled_body, trickled_head, endless_continue],
    ids=["trickled-body", "trickled-head", "endless-100-continue"],
)
def test_a_trickling_answer_ends_by_request_timeout(
    client: Client, connection: str, trickle: Behaviour
) -> None:
    reused = connection == "reused"
    behaviour = after_one_answer(trickle) if reused else trickle
    with HostileServer(behaviour, max_lifetime=SERVER_LIFETIME) as srv:
        error, elapsed = trickled_call(client, srv.url, reused=reused)
        if error is None:
            where = (
                f"the second call went over a new connection ({srv.connections} in all),"
                " so the trickle on the reused one was never met"
                if reused
                else "it got an answer"
            )
            raise AssertionError(f"the trickled call should have failed; {where}")
        assert isinstance(error, RequestTimeoutError), repr(error)
        assert error.attempts == 1
        assert elapsed < BOUND, f"the call took {elapsed:.2f} s"
        # Both calls went over one connection: the trickle came on the reused one.
        assert srv.connections == 1
