"""A hostile review of the SDK's own transports: one test per defect it found.

Each failed on the first version of the transports and passes since its fix.

Real sockets on 127.0.0.1 only; no name is ever looked up (a test that needs
a host name patches ``socket.getaddrinfo`` to answer 127.0.0.1 itself).
Every server stops by itself (``HostileServer``'s ``max_lifetime``); every
wait is bounded.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import socket
import threading
import time
import tracemalloc
import zlib
from typing import Any, Literal

import httpx
import pytest

from hostile_server import HostileConnection, HostileServer, http_response
from jobmon_gateway import (
    AsyncGatewayTransport,
    GatewayError,
    GatewayTransport,
    Requester,
    ServerGateway,
    TransportError,
)
from jobmon_gateway.routes import get_server_time

Mode = Literal["sync", "async"]
MODES: list[Mode] = ["sync", "async"]
HEARTBEAT_R = b'{"status": "R"}'
SLACK = 1.0
SECRET = "s3cr3t-t0ken"


def requester(url: str, **options: Any) -> Requester:
    settings: dict[str, Any] = {
        "route_prefix": "/api/v3",
        "request_timeout": 1.0,
        "retries_attempts": 1,
        "wait_initial": 0,
        "wait_jitter": 0,
        "wait_max": 0,
        "trust_env": False,
        **options,
    }
    return Requester(url, **settings)


def heartbeat(mode: Mode, gateway: ServerGateway) -> Any:
    if mode == "sync":
        with gateway:
            return gateway.log_heartbeat_sync("R", 30.0)

    async def run() -> Any:
        async with gateway:
            return await gateway.log_heartbeat("R", 30.0)

    return asyncio.run(run())


def outcome(mode: Mode, gateway: ServerGateway) -> str:
    try:
        return f"ok {heartbeat(mode, gateway).status}"
    except GatewayError as exc:
        inner = getattr(exc, "last_error", None) or exc
        return type(inner).__name__


def serve_ok(conn: HostileConnection) -> None:
    while conn.read_request() is not None:
        if not conn.send(http_response(HEARTBEAT_R)):
            return


def answer_once(data: bytes) -> Any:
    def behaviour(conn: HostileConnection) -> None:
        if conn.read_request() is not None:
            conn.send(data)
            conn.stopped.wait(0.3)

    return behaviour


# ---------------------------------------------------------------------------
# 1. Credentials: an illegal header value is echoed into the error.


@pytest.mark.parametrize("via", ["per-call-headers", "request-hook"])
def test_an_illegal_authorization_value_never_appears_in_the_error(via: str) -> None:
    with HostileServer(serve_ok) as srv:
        if via == "per-call-headers":
            req = requester(srv.url)
            headers: dict[str, str] | None = {"Authorization": f"Bearer {SECRET}\n"}
        else:

            def hook(request: httpx.Request) -> None:
                request.headers["Authorization"] = f"Bearer {SECRET}\r\n"

            req = requester(srv.url, event_hooks={"request": [hook]})
            headers = None
        sender = req.new_sender()
        try:
            with pytest.raises(GatewayError) as failed:
                req.send(get_server_time(), sender, headers=headers)
        finally:
            sender.close()
        assert SECRET not in str(failed.value)


# ---------------------------------------------------------------------------
# 2. Time: the sync connect is not bounded by the deadline.


def test_a_slow_resolver_cannot_hold_a_sync_call_past_its_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = socket.getaddrinfo
    never = threading.Event()

    def slow(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "jobmon.test":
            never.wait(3.0)  # a resolver that takes 3 s (simulated, nothing is looked up)
            return real("127.0.0.1", port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    with HostileServer(serve_ok) as srv:
        port = srv.url.rsplit(":", 1)[1]
        gateway = ServerGateway(requester(f"http://jobmon.test:{port}", request_timeout=0.5), 1, 1)
        started = time.monotonic()
        outcome("sync", gateway)
        assert time.monotonic() - started < 0.5 + SLACK


# ---------------------------------------------------------------------------
# 3. The head limit depends on how the bytes were cut (and is not a limit).


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 40000 + b"\r\ncontent-length: 15\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"x: y\r\n" * 20000 + b"content-length: 15\r\n\r\n",
    ],
    ids=["40k-one-header", "120k-many-headers"],
)
def test_a_head_over_the_head_limit_gets_the_same_refusal_sync_and_async(head: bytes) -> None:
    verdicts = []
    for mode in MODES:
        with HostileServer(answer_once(head + HEARTBEAT_R)) as srv:
            verdicts.append(outcome(mode, ServerGateway(requester(srv.url), 1, 1)))
    assert verdicts == ["TransportError", "TransportError"]


# ---------------------------------------------------------------------------
# 4. Body bytes read as header framing.


def test_body_bytes_never_count_as_a_listed_content_length() -> None:
    body = b"log\ncontent-length: 1, 2\n"
    data = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n" % len(body)
    with (
        HostileServer(answer_once(data + body)) as srv,
        httpx.Client(transport=GatewayTransport(trust_env=False), timeout=2) as client,
    ):
        assert client.get(srv.url).content == body


# ---------------------------------------------------------------------------
# 5. Memory: asyncio.run per call keeps every closed loop.


def test_asyncio_run_per_call_keeps_no_closed_event_loop() -> None:
    with HostileServer(serve_ok) as srv:
        gateway = ServerGateway(requester(srv.url), 1, 1)
        for _ in range(10):
            asyncio.run(gateway.log_heartbeat("R", 30.0))
        gc.collect()
        alive = [
            loop
            for loop in gc.get_objects()
            if isinstance(loop, asyncio.AbstractEventLoop) and loop.is_closed()
        ]
        gateway.close_sync()
        assert len(alive) <= 1, f"{len(alive)} closed event loops kept alive"


# ---------------------------------------------------------------------------
# 6. Memory: a response hook that reads the body (httpx's documented way).


def test_a_response_hook_reading_the_body_stays_within_max_response_bytes() -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    bomb = packer.compress(b"\0" * (64 << 20)) + packer.flush()
    head = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(bomb)

    def hook(response: httpx.Response) -> None:
        response.read()

    with HostileServer(answer_once(head + bomb)) as srv:
        req = requester(
            srv.url,
            request_timeout=10,
            max_response_bytes=1 << 20,
            event_hooks={"response": [hook]},
        )
        tracemalloc.start()
        try:
            outcome("sync", ServerGateway(req, 1, 1))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak >> 20} MiB for max_response_bytes=1 MiB"


# ---------------------------------------------------------------------------
# 8. Keep-alive silently off past 1024 descriptors (select.select).


def test_the_sync_pool_reuses_connections_past_1024_descriptors() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 1200:
        if hard != resource.RLIM_INFINITY and hard < 1200:
            pytest.skip("cannot open 1100 descriptors here")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        with HostileServer(serve_ok) as srv:
            with ServerGateway(requester(srv.url), 1, 1) as gateway:
                for _ in range(3):
                    gateway.log_heartbeat_sync("R", 30.0)
            assert srv.connections == 1
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ---------------------------------------------------------------------------
# 9. A proxy's 5xx to CONNECT is never retried (the docs say a proxy's 5xx is).


def test_a_proxys_502_to_connect_is_retried() -> None:
    def proxy(conn: HostileConnection) -> None:
        if conn.read_request() is not None:
            conn.send(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")

    with HostileServer(proxy) as srv:
        req = requester("https://127.0.0.1:9", retries_attempts=3, proxy=srv.url)
        outcome("sync", ServerGateway(req, 1, 1))
        assert srv.connections == 3


# ---------------------------------------------------------------------------
# 10. A trace callback that fails takes a pool slot for ever.


def test_a_failing_trace_leaves_the_pool_slot_free() -> None:
    def trace(name: str, info: Any) -> None:
        if name == "http11.send_request_headers.started":
            raise RuntimeError("tracer bug")

    transport = GatewayTransport(trust_env=False, limits=httpx.Limits(max_connections=1))
    with HostileServer(serve_ok) as srv, httpx.Client(transport=transport, timeout=1) as client:
        with pytest.raises(RuntimeError):
            client.get(srv.url, extensions={"trace": trace})
        assert client.get(srv.url).status_code == 200


# ---------------------------------------------------------------------------
# 11. aclose() from another loop leaves a stopped loop's connections open.


def test_close_from_another_loop_closes_a_stopped_loops_connection() -> None:
    closed = threading.Event()

    def watched(conn: HostileConnection) -> None:
        serve_ok(conn)
        if not conn.stopped.is_set():
            closed.set()  # the client closed the connection

    with HostileServer(watched) as srv:
        gateway = ServerGateway(requester(srv.url), 1, 1)
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(gateway.log_heartbeat("R", 30.0))
            asyncio.run(gateway.close())
            gateway.close_sync()
            assert closed.wait(3.0), "the idle connection of the stopped loop was never closed"
        finally:
            loop.close()


# ---------------------------------------------------------------------------
# 12. An early answer to a large body is lost (httpx reads it).


def test_an_early_answer_to_a_large_body_is_read_as_httpx_does() -> None:
    def early(conn: HostileConnection) -> None:
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in conn._buffer and conn._fill(deadline):
            pass
        conn.send(b"HTTP/1.1 413 Too Large\r\ncontent-length: 2\r\nconnection: close\r\n\r\nno")
        conn.stopped.wait(0.2)  # then close with the body unread (a RST)

    with (
        HostileServer(early) as srv,
        httpx.Client(transport=GatewayTransport(trust_env=False), timeout=2) as client,
    ):
        assert client.post(srv.url, content=b"x" * 8_000_000).status_code == 413


# ---------------------------------------------------------------------------
# 13. A non-finite httpx timeout: raw errors sync, another verdict async.


def test_an_infinite_httpx_timeout_gets_the_same_verdict_sync_and_async() -> None:
    with HostileServer(serve_ok) as srv:
        with httpx.Client(transport=GatewayTransport(trust_env=False), timeout=float("inf")) as c:
            try:
                sync = str(c.get(srv.url).status_code)
            except Exception as exc:
                sync = type(exc).__name__

        async def run() -> str:
            async with httpx.AsyncClient(
                transport=AsyncGatewayTransport(trust_env=False), timeout=float("inf")
            ) as client:
                return str((await client.get(srv.url)).status_code)

        assert sync == asyncio.run(run())


# ---------------------------------------------------------------------------
# 14. An IPv6 literal through a proxy loses its brackets.


def test_an_ipv6_target_keeps_its_brackets_through_a_proxy() -> None:
    lines: list[bytes] = []

    def proxy(conn: HostileConnection) -> None:
        request = conn.read_request()
        if request is not None:
            lines.append(request.split(b"\r\n", 1)[0])
            conn.send(b"HTTP/1.1 403 No\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")

    with (
        HostileServer(proxy) as srv,
        httpx.Client(
            transport=GatewayTransport(proxy=srv.url, trust_env=False), timeout=2
        ) as client,
        pytest.raises(httpx.HTTPError),
    ):
        client.get("https://[::1]:8443/x")  # nothing connects to ::1: the proxy answers
    assert lines == [b"CONNECT [::1]:8443 HTTP/1.1"]


# ---------------------------------------------------------------------------
# 15. An async hook's awaitable is awaited only when it is a coroutine.


def test_an_async_hooks_future_is_awaited() -> None:
    def hook(response: httpx.Response) -> Any:
        future = asyncio.get_running_loop().create_future()
        future.set_exception(RuntimeError("the hook failed"))
        return future

    with HostileServer(serve_ok) as srv:
        gateway = ServerGateway(requester(srv.url, event_hooks={"response": [hook]}), 1, 1)
        with pytest.raises(TransportError):
            heartbeat("async", gateway)


def test_a_task_that_carried_on_after_a_cancel_still_gets_a_gateway_error_on_a_pool_timeout() -> (
    None
):
    # A job that reports its final state after being cancelled (it caught
    # CancelledError and went on) times out waiting for the only pool slot:
    # that is the SDK's timeout, never a CancelledError (asyncio.timeout
    # before Python 3.11.3 confused the two).
    async def scenario() -> BaseException | None:
        release, arrived = asyncio.Event(), asyncio.Event()

        async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            arrived.set()  # the first call holds the only slot
            await release.wait()
            writer.write(http_response(b'{"time": "2026-11-28 17:56:34"}'))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(slow, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        requester = Requester(
            f"http://127.0.0.1:{port}",
            limits=httpx.Limits(max_connections=1),
            request_timeout=0.3,
            retries_attempts=1,
        )
        async with ServerGateway(requester, 1, 7) as gateway:
            holder = asyncio.create_task(gateway.with_options(request_timeout=10).get_server_time())
            waiting = asyncio.Event()

            async def final_report() -> BaseException | None:
                try:
                    waiting.set()
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    pass  # carries on, without uncancel()
                try:
                    await gateway.get_server_time()
                except BaseException as exc:  # the class is the point
                    return exc
                return None

            reporter = asyncio.create_task(final_report())
            await waiting.wait()
            await arrived.wait()
            reporter.cancel()
            found = await reporter
            release.set()
            await holder
        server.close()
        await server.wait_closed()
        return found

    found = asyncio.run(scenario())
    assert isinstance(found, GatewayError), repr(found)
    assert "timeout" in type(found).__name__.lower() or "deadline" in str(found), repr(found)
