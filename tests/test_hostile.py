"""Hostile and broken servers on real loopback sockets: every promise of a public call holds.

For each behaviour, sync and async: only a GatewayError escapes, of the same
class with the same ``attempts`` in both worlds; the call ends by its deadline
(small values here; a bound, not a benchmark); memory stays bounded where
size is the point; ``str(error)`` stays short and on one line.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import logging
import threading
import time
import tracemalloc
import zlib
from typing import Any, Literal

import pytest

from hostile_server import HostileConnection, HostileServer, http_response
from jobmon_gateway import (
    ConfigurationError,
    GatewayError,
    InvalidResponseError,
    Requester,
    RequestTimeoutError,
    ResponseTooLargeError,
    RetryBudgetExhaustedError,
    ServerGateway,
    TransportError,
)

Mode = Literal["sync", "async"]
MODES: list[Mode] = ["sync", "async"]
HEARTBEAT_R = b'{"status": "R"}'
SLACK = 2.0  # seconds a bounded call may overrun its deadline on a loaded machine


def requester(url: str, **options: Any) -> Requester:
    settings: dict[str, Any] = {
        "route_prefix": "/api/v3",
        "request_timeout": 0.5,
        "retries_attempts": 1,
        "wait_initial": 0,
        "wait_jitter": 0,
        "wait_max": 0,
        **options,
    }
    return Requester(url, **settings)


def heartbeat(mode: Mode, req: Requester) -> Any:
    gateway = ServerGateway(req, 1, 1)
    if mode == "sync":
        with gateway:
            return gateway.log_heartbeat_sync("R", 30.0)

    async def run() -> Any:
        async with gateway:
            return await gateway.log_heartbeat("R", 30.0)

    return asyncio.run(run())


def failure(mode: Mode, req: Requester) -> tuple[GatewayError, float]:
    started = time.monotonic()
    try:
        heartbeat(mode, req)
    except GatewayError as exc:
        return exc, time.monotonic() - started
    raise AssertionError("the call should have failed")


def answer_with(data: bytes) -> Any:
    def behaviour(conn: HostileConnection) -> None:
        if conn.read_request() is not None:
            conn.send(data)

    return behaviour


def both(data_or_behaviour: Any, **options: Any) -> list[tuple[GatewayError, float]]:
    """The failure of the same hostile answer, sync then async."""
    behaviour = (
        answer_with(data_or_behaviour)
        if isinstance(data_or_behaviour, bytes)
        else data_or_behaviour
    )
    results = []
    for mode in MODES:
        with HostileServer(behaviour) as srv:
            results.append(failure(mode, requester(srv.url, **options)))
    return results


def same_verdict(results: list[tuple[GatewayError, float]], kind: type[GatewayError]) -> None:
    (sync, _), (async_, _) = results
    assert type(sync) is type(async_), (repr(sync), repr(async_))
    # A retryable failure on the last attempt comes wrapped in the spent budget.
    inner = [
        error.last_error
        if isinstance(error, RetryBudgetExhaustedError) and kind is not RetryBudgetExhaustedError
        else error
        for error, _ in results
    ]
    assert type(inner[0]) is type(inner[1]), (repr(inner[0]), repr(inner[1]))
    assert isinstance(inner[0], kind), repr(sync)
    assert sync.attempts == async_.attempts
    for error, _ in results:
        text = str(error)
        assert len(text) < 1_500
        assert "\n" not in text
        assert "\x1b" not in text


# ---------------------------------------------------------------------------
# Time: a deadline to the last byte, whatever the server trickles.


def endless_continue(conn: HostileConnection) -> None:
    if conn.read_request() is None:
        return
    while conn.send(b"HTTP/1.1 100 Continue\r\n\r\n", pause=0.01):
        pass


def trickled_head(conn: HostileConnection) -> None:
    if conn.read_request() is None:
        return
    for byte in http_response(HEARTBEAT_R) * 100:
        if not conn.send(bytes([byte]), pause=0.05):
            return


def empty_deflate_blocks(conn: HostileConnection) -> None:
    if conn.read_request() is None:
        return
    head = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n"
    compressor = zlib.compressobj(wbits=zlib.MAX_WBITS | 16)
    first = compressor.compress(b"") + compressor.flush(zlib.Z_SYNC_FLUSH)
    if not conn.send(head + b"%x\r\n%s\r\n" % (len(first), first)):
        return
    # An empty stored block (not final), after the sync flush left the stream
    # byte-aligned: it decodes to nothing, forever.
    block = b"\x00\x00\x00\xff\xff"
    while conn.send(b"%x\r\n%s\r\n" % (len(block), block), pause=0.01):
        pass


def trickled_body(conn: HostileConnection) -> None:
    if conn.read_request() is None:
        return
    if not conn.send(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n"):
        return
    while conn.send(b" ", pause=0.02):
        pass


@pytest.mark.parametrize(
    "behaviour",
    [endless_continue, trickled_head, empty_deflate_blocks, trickled_body],
    ids=["endless-100-continue", "trickled-head", "empty-deflate-blocks", "trickled-body"],
)
def test_a_trickling_server_cannot_hold_a_call_past_its_deadline(behaviour: Any) -> None:
    results = both(behaviour, request_timeout=0.5)
    same_verdict(results, RequestTimeoutError)
    for _, elapsed in results:
        assert elapsed < 0.5 + SLACK


def test_retries_timeout_bounds_the_whole_call_with_retries() -> None:
    results = both(trickled_head, request_timeout=0.4, retries_attempts=50, retries_timeout=1.0)
    same_verdict(results, RetryBudgetExhaustedError)
    for error, elapsed in results:
        assert isinstance(error, RetryBudgetExhaustedError)
        assert isinstance(error.last_error, RequestTimeoutError)
        assert elapsed < 1.0 + SLACK


# ---------------------------------------------------------------------------
# Memory: the decompressed body is bounded, and the read stops at the bound.


def _bomb(n_bytes: int, wbits: int) -> bytes:
    compressor = zlib.compressobj(1, zlib.DEFLATED, wbits)
    zeros = b"\0" * (1 << 20)
    parts = [compressor.compress(zeros) for _ in range(n_bytes >> 20)]
    return b"".join(parts) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "wbits"),
    [("gzip", zlib.MAX_WBITS | 16), ("deflate", zlib.MAX_WBITS), ("deflate", -zlib.MAX_WBITS)],
    ids=["gzip", "deflate", "raw-deflate"],
)
def test_a_compression_bomb_stops_at_max_response_bytes(encoding: str, wbits: int) -> None:
    bomb = _bomb(256 << 20, wbits)  # 256 MiB of zeros in about 1 MiB
    data = http_response(bomb, headers=(("content-encoding", encoding),))
    tracemalloc.start()
    try:
        results = both(data, max_response_bytes=4 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    same_verdict(results, ResponseTooLargeError)
    assert all("max_response_bytes" in str(error) for error, _ in results)
    assert not any(error.retryable for error, _ in results)
    assert peak < 64 << 20  # the bomb's 256 MiB were never held


def endless_chunked(conn: HostileConnection) -> None:
    if conn.read_request() is None:
        return
    if not conn.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"):
        return
    chunk = b"x" * 65536
    while conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk)):
        pass


def test_an_endless_plain_body_stops_at_max_response_bytes() -> None:
    same_verdict(both(endless_chunked, max_response_bytes=1 << 20), ResponseTooLargeError)


def test_a_small_answer_that_came_whole_with_its_head_is_still_bounded() -> None:
    # 64 KiB of JSON in a few hundred bytes, head and body in one write: the
    # pools hand such a body over whole, past httpx's stream; the reader still
    # decodes it, and stops at the limit.
    packed = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    body = packed.compress(b'{"time": "' + b"9" * 65536 + b'"}') + packed.flush()
    data = http_response(body, headers=(("content-encoding", "gzip"),))
    assert len(data) < 1024
    results = both(data, max_response_bytes=4096)
    same_verdict(results, ResponseTooLargeError)
    assert all("max_response_bytes" in str(error) for error, _ in results)


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 2147483648\r\n\r\n"
    results = both(head + b"{", max_response_bytes=1 << 20)
    same_verdict(results, ResponseTooLargeError)


# ---------------------------------------------------------------------------
# CPU: nothing the server sends costs more than linear time.


def test_a_deeply_nested_error_body_gives_the_sdks_error() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    same_verdict(both(http_response(deep, status=500)), RetryBudgetExhaustedError)
    same_verdict(both(http_response(b'{"status": ' + deep + b"}")), InvalidResponseError)


def test_colliding_task_id_keys_are_refused_quickly() -> None:
    # Ints equal modulo 2**61 - 1 share a hash; ids above 2**63 - 1 are refused.
    keys = {str(k * (2**61 - 1)): [1, None] for k in range(1, 20_000)}
    body = json.dumps({"downstream_tasks": keys}).encode()

    def downstream(mode: Mode, req: Requester) -> Any:
        gateway = ServerGateway(req, 1, 1)
        if mode == "sync":
            with gateway:
                return gateway.get_downstream_tasks_sync([1], 1)
        return asyncio.run(gateway.get_downstream_tasks([1], 1))

    for mode in MODES:
        with HostileServer(answer_with(http_response(body))) as srv:
            started = time.monotonic()
            with pytest.raises(InvalidResponseError) as info:
                downstream(mode, requester(srv.url, request_timeout=5))
            assert time.monotonic() - started < 5
            assert len(str(info.value)) < 1_500


@pytest.mark.parametrize(
    "literal",
    [
        "{" + ", ".join(str(k * (2**61 - 1)) for k in range(1, 30_000)) + "}",
        "[" + "1, " * 3_000_000 + "]",
        "[" * 50_000 + "]" * 50_000,
    ],
    ids=["colliding-set", "10MB-list", "deep"],
)
@pytest.mark.parametrize("page", ["get_tasks", "get_task_rows"])
def test_hostile_python_literals_in_a_task_row_are_refused_quickly(literal: str, page: str) -> None:
    row = [1, "G", 3, literal, "[]", "{}", "c", "q", 10]
    body = json.dumps({"tasks": {"1": row}}).encode()
    for mode in MODES:
        with HostileServer(answer_with(http_response(body))) as srv:
            req = requester(srv.url, request_timeout=5)
            gateway = ServerGateway(req, 1, 1)
            started = time.monotonic()
            fetch: Any = (
                getattr(gateway, f"{page}_sync")
                if mode == "sync"
                else functools.partial(asyncio.run, getattr(gateway, page)())
            )
            with pytest.raises(InvalidResponseError) as info:
                fetch()
            assert time.monotonic() - started < 5
            assert len(str(info.value)) < 1_500


# ---------------------------------------------------------------------------
# Messages: short, one line, nothing forged.


def test_a_huge_invalid_answer_gives_a_short_error() -> None:
    body = json.dumps({"status": ["x" * 1000] * 5000}).encode()
    same_verdict(both(http_response(body)), InvalidResponseError)


def test_control_characters_in_a_server_message_are_escaped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="jobmon_gateway")
    envelope = {"error": {"exception_message": "boom\nINFO forged line\x1b[2J", "type": "x"}}
    data = http_response(json.dumps(envelope).encode(), status=500)
    results = both(data, retries_attempts=2)
    same_verdict(results, RetryBudgetExhaustedError)
    for error, _ in results:
        assert error.server_message is not None
        assert "\\n" in error.server_message
        assert "\\x1b" in error.server_message
    for record in caplog.records:
        message = record.getMessage()
        assert "\n" not in message
        assert "\x1b" not in message


# ---------------------------------------------------------------------------
# Framing: the same bytes give the same verdict, sync and async.


@pytest.mark.parametrize(
    "data",
    [
        http_response(b"\x1f\x8b\x08garbage", headers=(("content-encoding", "gzip"),)),
        http_response(gzip.compress(HEARTBEAT_R)[:-6], headers=(("content-encoding", "gzip"),)),
        http_response(b"whatever", headers=(("content-encoding", "br"),)),
        http_response(b"whatever", headers=(("content-encoding", "zstd"),)),
        b"HTTP/1.1 200 OK\r\ncontent-length: 15\r\ntransfer-encoding: chunked\r\n\r\n"
        b"f\r\n" + HEARTBEAT_R + b"\r\n0\r\n\r\n",
        b"HTTP/1.1 099 Odd\r\ncontent-length: 15\r\n\r\n" + HEARTBEAT_R,
        b"HTTP/1.1 204 No Content\r\ncontent-length: 15\r\n\r\n" + HEARTBEAT_R,
        b"HTTP/1.1 200 OK\r\ncontent-length: 15\r\ncontent-length: 16\r\n\r\n" + HEARTBEAT_R,
    ],
    ids=[
        "corrupt-gzip",
        "truncated-gzip",
        "br",
        "zstd",
        "length-and-chunked",
        "status-099",
        "204-with-body",
        "two-lengths",
    ],
)
def test_bad_framing_gets_the_same_verdict_sync_and_async(data: bytes) -> None:
    same_verdict(both(data), TransportError)


def test_bytes_past_an_answer_are_never_read_as_the_next_answer() -> None:
    smuggled = http_response(HEARTBEAT_R) + http_response(b'{"status": "H"}')

    def first(conn: HostileConnection) -> None:
        if conn.read_request() is not None:
            conn.send(smuggled)
        conn.read_request(timeout=1.0)  # never answered

    def honest(conn: HostileConnection) -> None:
        while conn.read_request() is not None:
            conn.send(http_response(b'{"status": "D"}'))

    for mode in MODES:
        with HostileServer(first, honest) as srv:
            gateway = ServerGateway(requester(srv.url, request_timeout=2), 1, 1)

            async def twice(gateway: ServerGateway = gateway) -> list[Any]:
                async with gateway:
                    return [await gateway.log_heartbeat("R", 30.0) for _ in range(2)]

            if mode == "sync":
                with gateway:
                    answers = [gateway.log_heartbeat_sync("R", 30.0) for _ in range(2)]
            else:
                answers = asyncio.run(twice())
            assert [a.status for a in answers] == ["R", "D"]


# ---------------------------------------------------------------------------
# The 3.6 server after a 500: it closes with the next request unread (a RST).


def reset_after_500(conn: HostileConnection) -> None:
    envelope = {"error": {"exception_message": "No row", "type": "x"}}
    if conn.read_request() is None:
        return
    conn.send(http_response(json.dumps(envelope).encode(), status=500))
    conn.wait_readable()  # the next request arrives; close with it unread: RST


def serve_ok(conn: HostileConnection) -> None:
    while conn.read_request() is not None:
        conn.send(http_response(HEARTBEAT_R))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("retries", ["retries_attempts=1", "without_retries"])
def test_the_call_after_a_500_succeeds_with_retries_off(mode: Mode, retries: str) -> None:
    with HostileServer(reset_after_500, serve_ok) as srv:
        req = requester(srv.url, request_timeout=2)
        gateway = ServerGateway(req, 1, 1)
        view = gateway.without_retries() if retries == "without_retries" else gateway

        async def run() -> Any:
            with pytest.raises(GatewayError) as failed:
                await view.log_heartbeat("R", 30.0)
            assert failed.value.status == 500
            answer = await view.log_heartbeat("R", 30.0)
            await gateway.close()
            return answer

        if mode == "sync":
            with pytest.raises(GatewayError) as failed:
                view.log_heartbeat_sync("R", 30.0)
            assert failed.value.status == 500
            answer = view.log_heartbeat_sync("R", 30.0)
            gateway.close_sync()
        else:
            answer = asyncio.run(run())
        assert answer.status == "R"
        assert srv.connections == 2


# ---------------------------------------------------------------------------
# Settings: refused before anything is sent, and never echoing a secret.


@pytest.mark.parametrize(
    ("service_url", "prefix"),
    [
        ("http://127.0.0.1:5000\r\nX-Evil: 1", "/api/v3"),
        ("http://127.0.0.1:5000", "/api/v3\r\nX-Evil: 1"),
        ("http://127.0.0.1:port", "/api/v3"),
        ("http://127.0.0.1:70000", "/api/v3"),
        ("http://127.0.0.1:5000", "/api/../v3"),
        ("http://127.0.0.1:5000", "/api v3"),
        ("http://127.0.0.1:5000", "/api?x=1"),
        ("http://127.0.0.1:5000", "/api#x"),
        ("http://", ""),
        ("ftp://127.0.0.1", ""),
    ],
)
def test_malformed_urls_are_refused_at_once(service_url: str, prefix: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Requester(service_url, route_prefix=prefix)
    assert "\n" not in str(info.value)


def test_a_password_in_the_service_url_is_refused_and_never_shown() -> None:
    with pytest.raises(ConfigurationError) as info:
        Requester("http://user:s3cret-pw@127.0.0.1:5000")
    assert "s3cret-pw" not in str(info.value)
    assert "s3cret-pw" not in repr(info.value)
    assert "user" in str(info.value)


@pytest.mark.parametrize(
    "service_url",
    ["http://127.0.0.1:5000/?token=s3cret-tk", "http://127.0.0.1:5000/api#s3cret-tk"],
)
def test_a_query_or_fragment_in_the_service_url_is_refused_and_never_shown(
    service_url: str,
) -> None:
    with pytest.raises(ConfigurationError) as info:
        Requester(service_url)
    assert "s3cret-tk" not in str(info.value)
    assert "s3cret-tk" not in repr(info.value)
    assert "query or fragment" in str(info.value)


def test_settings_are_read_only_and_with_options_keeps_changes() -> None:
    req = Requester("http://127.0.0.1:5000", request_timeout=3)
    with pytest.raises(AttributeError):
        req.request_timeout = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        req.retries_attempts = 0  # type: ignore[misc]
    changed = req.with_options(retries_attempts=2)
    assert changed.request_timeout == 3
    assert changed.retries_attempts == 2
    with pytest.raises(ConfigurationError):
        req.with_options(retries_attempts=0)
    with pytest.raises(ConfigurationError):
        req.with_options(max_response_bytes=0)


def test_retry_after_dates_past_any_calendar_do_not_escape() -> None:
    def absurd(conn: HostileConnection) -> None:
        while conn.read_request() is not None:
            conn.send(
                http_response(
                    b"{}", status=503, headers=(("retry-after", "Fri, 31 Dec 9999 99:99:99 +9999"),)
                )
            )

    same_verdict(both(absurd, retries_attempts=2), RetryBudgetExhaustedError)


# ---------------------------------------------------------------------------
# Ownership: loops and threads leave nothing open.


def test_a_gateway_used_from_successive_event_loops_leaves_no_session_open() -> None:
    psutil = pytest.importorskip("psutil")
    me = psutil.Process()
    with HostileServer(serve_ok) as srv:
        gateway = ServerGateway(requester(srv.url, request_timeout=2), 1, 1)
        for _ in range(10):
            assert asyncio.run(gateway.log_heartbeat("R", 30.0)).status == "R"
        port = int(srv.url.rsplit(":", 1)[1])
        asyncio.run(gateway.close())
        open_to_server = [c for c in me.net_connections("tcp") if c.raddr and c.raddr.port == port]
        assert open_to_server == []


def test_threads_share_one_sync_connection_pool_and_close_sync_closes_it() -> None:
    psutil = pytest.importorskip("psutil")
    me = psutil.Process()
    with HostileServer(serve_ok) as srv:
        req = requester(srv.url, request_timeout=2)
        gateway = ServerGateway(req, 1, 1)
        made: list[Any] = []
        original = req.new_transport

        def counting() -> Any:
            made.append(original())
            return made[-1]

        object.__setattr__(req, "new_transport", counting)
        start = threading.Barrier(8)
        answers: list[Any] = []

        def work() -> None:
            start.wait()
            answers.append(gateway.log_heartbeat_sync("R", 30.0))

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(answers) == 8
        assert len(made) == 1
        gateway.close_sync()
        port = int(srv.url.rsplit(":", 1)[1])
        assert [c for c in me.net_connections("tcp") if c.raddr and c.raddr.port == port] == []


# ---------------------------------------------------------------------------
# Found by a hostile read of the transport (each was a defect; each now holds).


def _smuggler(conn: HostileConnection) -> None:
    smuggled = http_response(HEARTBEAT_R) + http_response(b'{"status": "H"}')
    if conn.read_request() is not None:
        conn.send(smuggled)
    while conn.read_request(timeout=1.0) is not None:
        conn.send(http_response(b'{"status": "H"}'))


@pytest.mark.parametrize("mode", MODES)
def test_a_lent_httpx_client_never_reads_smuggled_bytes_as_the_next_answer(mode: Mode) -> None:
    import httpx

    with HostileServer(_smuggler, serve_ok) as srv:
        req = requester(srv.url, request_timeout=2)
        gateway = ServerGateway(req, 1, 1)
        if mode == "sync":
            with httpx.Client() as mine:
                gateway.set_session(mine)
                answers = [gateway.log_heartbeat_sync("R", 30.0).status for _ in range(2)]
        else:

            async def twice() -> list[Any]:
                async with httpx.AsyncClient() as mine:
                    gateway.set_session(mine)
                    return [(await gateway.log_heartbeat("R", 30.0)).status for _ in range(2)]

            answers = asyncio.run(twice())
        assert answers == ["R", "R"]
        assert srv.connections == 2


def test_a_lent_async_httpx_client_is_bounded_by_the_deadline() -> None:
    import httpx

    async def run() -> tuple[GatewayError, float]:
        async with httpx.AsyncClient() as mine:
            gateway = ServerGateway(requester(srv.url, request_timeout=0.5), 1, 1)
            gateway.set_session(mine)
            started = time.monotonic()
            try:
                await gateway.log_heartbeat("R", 30.0)
            except GatewayError as exc:
                return exc, time.monotonic() - started
        raise AssertionError("the call should have failed")

    with HostileServer(endless_continue) as srv:
        error, elapsed = asyncio.run(run())
    assert isinstance(error, RetryBudgetExhaustedError)
    assert isinstance(error.last_error, RequestTimeoutError)
    assert elapsed < 0.5 + SLACK


def test_close_sync_on_an_idle_event_loop_leaves_that_loop_working() -> None:
    with HostileServer(serve_ok) as srv:
        loop = asyncio.new_event_loop()
        try:
            gateway = ServerGateway(requester(srv.url, request_timeout=2), 1, 1)
            assert loop.run_until_complete(gateway.log_heartbeat("R", 30.0)).status == "R"
            gateway.close_sync()  # the loop is open but not running
            again = ServerGateway(requester(srv.url, request_timeout=2), 1, 1)
            assert loop.run_until_complete(again.log_heartbeat("R", 30.0)).status == "R"
            loop.run_until_complete(again.close())
        finally:
            loop.close()


def test_bytes_after_a_gzip_stream_are_refused_not_buffered() -> None:
    junk = gzip.compress(HEARTBEAT_R) + b"\0" * (4 << 20)
    results = both(http_response(junk, headers=(("content-encoding", "gzip"),)))
    same_verdict(results, TransportError)
    assert all("after its end" in str(error) for error, _ in results)


def _deflate_byte_by_byte(conn: HostileConnection) -> None:
    body = zlib.compress(HEARTBEAT_R)
    if conn.read_request() is None:
        return
    head = b"HTTP/1.1 200 OK\r\ncontent-encoding: deflate\r\ntransfer-encoding: chunked\r\n\r\n"
    conn.send(head)
    for byte in body:
        if not conn.send(b"1\r\n%s\r\n" % bytes([byte]), pause=0.002):
            return
    conn.send(b"0\r\n\r\n")
    conn.read_request(timeout=0.5)


@pytest.mark.parametrize("mode", MODES)
def test_a_deflate_body_split_into_single_bytes_is_read(mode: Mode) -> None:
    with HostileServer(_deflate_byte_by_byte) as srv:
        assert heartbeat(mode, requester(srv.url, request_timeout=5)).status == "R"


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 15, 15\r\n\r\n" + HEARTBEAT_R,
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\n\r\n",
    ],
    ids=["gzip-then-chunked", "listed-length", "101"],
)
def test_more_bad_framing_gets_the_same_verdict(data: bytes) -> None:
    same_verdict(both(data), TransportError)


def test_the_reason_phrase_is_the_standard_one_both_ways() -> None:
    results = both(http_response(b'{"error": "x"}', status=503))
    assert [error.message for error, _ in results] == [results[0][0].message] * 2
    assert all("Service Unavailable" in error.message for error, _ in results)


@pytest.mark.parametrize(
    "service_url",
    [
        "http://admin:s3cr#t@127.0.0.1:5000",
        "http://admin:s3cr?t@127.0.0.1:5000",
        "http://admin:s3cr/t@127.0.0.1:5000",
        "http://admin:s3cr[t@127.0.0.1:5000",
    ],
)
def test_a_password_holding_url_syntax_is_refused_and_never_shown(service_url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Requester(service_url)
    assert "s3cr" not in str(info.value)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Requester("http://[::1"),
        lambda: Requester("http://127.0.0.1", request_timeout=10**400),
        lambda: Requester("http://127.0.0.1", wait_exp_base=1e300),
        lambda: Requester("http://127.0.0.1", request_timeout=1e10),
        lambda: ServerGateway(Requester("http://127.0.0.1"), 10**5000, 1),
        lambda: ServerGateway(Requester("http://127.0.0.1"), 2**63, 1),
        lambda: ServerGateway(Requester("http://127.0.0.1"), 1, 1).log_heartbeat_sync("R", 10**400),
        lambda: ServerGateway(Requester("http://127.0.0.1"), 1, 1).get_tasks_sync(10**5000),
        lambda: ServerGateway(Requester("http://127.0.0.1"), 1, 1).get_downstream_tasks_sync(
            [10**5000], 1
        ),
    ],
)
def test_absurd_caller_input_gets_the_sdks_error_before_anything_is_sent(build: Any) -> None:
    with pytest.raises(GatewayError) as info:
        build()
    assert info.value.attempts == 0


def test_a_lent_async_client_that_raises_on_errors_keeps_the_status() -> None:
    import httpx

    def not_found(conn: HostileConnection) -> None:
        while conn.read_request() is not None:
            conn.send(http_response(b'{"error": "no such run"}', status=404))

    async def raise_for_status(response: httpx.Response) -> None:
        await response.aread()
        response.raise_for_status()

    async def run() -> GatewayError:
        hooks = {"response": [raise_for_status]}
        async with httpx.AsyncClient(event_hooks=hooks) as mine:
            gateway = ServerGateway(requester(srv.url, retries_attempts=3), 1, 1)
            gateway.set_session(mine)
            try:
                await gateway.log_heartbeat("R", 30.0)
            except GatewayError as exc:
                return exc
        raise AssertionError("the call should have failed")

    with HostileServer(not_found) as srv:
        error = asyncio.run(run())
    assert error.status == 404
    assert error.attempts == 1
    assert error.server_message == "no such run"


def test_an_aiohttp_session_is_refused_by_set_session() -> None:
    aiohttp = pytest.importorskip("aiohttp")
    from jobmon_gateway import InvalidRequestError

    async def lend() -> None:
        async with aiohttp.ClientSession() as session:
            gateway = ServerGateway(requester("http://127.0.0.1:9"), 1, 1)
            with pytest.raises(InvalidRequestError, match=r"httpx\.AsyncClient"):
                gateway.set_session(session)

    asyncio.run(lend())


def test_a_closed_client_made_by_the_requester_is_refused() -> None:
    from jobmon_gateway import InvalidRequestError, routes

    with HostileServer(serve_ok) as srv:
        req = requester(srv.url)
        client = req.new_client()
        client.close()
        with pytest.raises(InvalidRequestError, match="closed"):
            req.send(routes.get_server_time(), client)


def test_a_refused_call_says_its_request_never_reached_the_server() -> None:
    import socket as socket_module

    with socket_module.socket() as holder:
        holder.bind(("127.0.0.1", 0))  # bound, never listening: refused
        url = f"http://127.0.0.1:{holder.getsockname()[1]}"
        for mode in MODES:
            error, _ = failure(mode, requester(url, retries_attempts=2))
            assert isinstance(error, RetryBudgetExhaustedError)
            assert error.request_sent is False
            assert error.last_error.request_sent is False


def test_the_prefix_inside_a_jobmon_service_url_counts_as_a_versioned_server() -> None:
    class JobmonRequester:  # duck-typed like jobmon.core.requester.Requester
        service_url = "http://127.0.0.1:5000/api/v3"
        request_timeout = 5
        retries_attempts = 3
        retries_timeout = 0

    made = Requester.from_jobmon(JobmonRequester())
    assert made.base_url == "http://127.0.0.1:5000/api/v3"
    assert made.connection.repeat_safe_queueing is True
    assert Requester("http://127.0.0.1:5000").connection.repeat_safe_queueing is True
    bare = Requester("http://127.0.0.1:5000", route_prefix="")
    assert bare.connection.repeat_safe_queueing is False
