"""A fault-injecting HTTP/1.1 server for the test-suite.

`FaultServer` listens on a real socket on 127.0.0.1 (never any other address)
and answers each incoming request with the next `Action` of its script (FIFO);
once the script is used up, `FaultServer.default` answers. Actions describe
byte-level behaviour that a normal HTTP server cannot be asked for: resets,
truncated bodies, silent keep-alive drops, trickled bodies, hangs.

    with FaultServer() as srv:
        srv.script(Action.respond_then_reset(500), Action.respond(200, {"status": "R"}))
        ...  # point the client at srv.url
        assert srv.connections_accepted == 2

The server is bounded so that a buggy test can neither hang nor loop forever:
it stops itself after `max_lifetime` seconds, after `max_requests` requests or
`max_connections` connections, and every wait it does is interruptible by
`stop()`. Such overruns, malformed requests and internal errors are collected
in `FaultServer.errors` and raised as `FaultServerError` when the `with` block
exits normally.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import math
import selectors
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal, TypeAlias
from urllib.parse import parse_qs, urlsplit

if sys.platform != "win32":
    import fcntl
    import termios

__all__ = [
    "ERROR_ENVELOPE_500",
    "HOST",
    "Action",
    "After",
    "FaultServer",
    "FaultServerError",
    "RecordedRequest",
    "http_date",
    "refusing_url",
    "unused_port_url",
]

HOST = "127.0.0.1"
"""The only address this module ever binds."""

After: TypeAlias = Literal[
    "keep-alive", "close", "reset", "close-on-next", "reset-on-next", "close-unread", "hang"
]
"""What happens to the connection once an action has sent its bytes.

- ``keep-alive``: keep serving requests (unless the client sent ``Connection: close``
  or the action's headers carry ``Connection: close``).
- ``close``: close at once with a FIN, announcing nothing.
- ``reset``: wait until the sent bytes have left the send buffer, then RST.
- ``close-on-next`` / ``reset-on-next``: keep the connection open and idle; when
  the client sends its next request on it, read that request (recorded in
  `FaultServer.dropped_requests`, no action consumed) and then FIN / RST without
  answering. This is what a client of a uvicorn server sees after a 500.
- ``close-unread``: keep the connection open and idle; when the client's next
  request arrives, close the socket with that request still unread in it, so
  the kernel answers with a RST. This is exactly what the real 3.6 server
  (uvicorn) does after a 500 (see ../shared/PROTOCOL.md); the request is
  counted in `FaultServer.unread_requests`.
- ``hang``: keep the connection open, send nothing more, until the client
  leaves or the server stops.
"""

Body: TypeAlias = bytes | str | Mapping[str, Any] | list[Any]
"""A response body: raw bytes, text (UTF-8), or a value to encode as compact JSON."""

HeadersArg: TypeAlias = Mapping[str, str] | Sequence[tuple[str, str]]
"""Extra response headers: a mapping, or pairs when a name must repeat."""

ERROR_ENVELOPE_500 = (
    b'{"error":{"type":"<class \'sqlalchemy.exc.NoResultFound\'>",'
    b'"exception_message":"No row was found when one was required","status_code":"500"}}'
)
"""The body a Jobmon 3.6 server sends with a 500 (content type application/custom+json)."""

_POLL = 0.25  # upper bound on any single wait, so a lost wake-up costs at most this
_MAX_HEAD = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024
_SEND_SLICE = 256 * 1024


class FaultServerError(AssertionError):
    """The fault server saw something a test did not intend (overrun, bad request, bug)."""


class _GoneError(Exception):
    """The connection ended (EOF, error, idle timeout or server stop) while reading."""


class _BadRequestError(Exception):
    """The client sent bytes that are not a valid HTTP/1.x request."""


def _encode_body(body: Body) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def _header_pairs(headers: HeadersArg | None) -> tuple[tuple[str, str], ...]:
    if headers is None:
        return ()
    if isinstance(headers, Mapping):
        return tuple((str(k), str(v)) for k, v in headers.items())
    return tuple((str(k), str(v)) for k, v in headers)


def http_date(when: datetime | None = None) -> str:
    """Format `when` (default: now; naive means UTC) as an HTTP-date (RFC 9110 IMF-fixdate)."""
    if when is None:
        when = datetime.now(timezone.utc)
    elif when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return email.utils.format_datetime(when.astimezone(timezone.utc), usegmt=True)


def _format_retry_after(value: float | datetime | str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return http_date(value)
    if isinstance(value, float) and not value.is_integer():
        # Not valid per RFC 9110, but lets a test probe a lenient parser.
        return repr(value)
    return str(int(value))


@dataclass(frozen=True)
class Action:
    """How the server answers one request; build these with the classmethods.

    The server first waits `pre_delay` seconds, then (if `send_response`) sends
    the status line and headers followed by the body (only its first
    `body_limit` bytes when set; in `chunk_size` pieces `interval` seconds apart
    when set), or `raw_bytes` verbatim instead of all that. Finally `after`
    decides the connection's fate. A ``Content-Length`` for the whole body, a
    ``Date`` and a ``Server`` header are added unless `headers` names them.
    """

    label: str = "respond"
    status: int = 200
    body: bytes = b"{}"
    content_type: str | None = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    send_response: bool = True
    body_limit: int | None = None
    raw_bytes: bytes | None = None
    pre_delay: float = 0.0
    chunk_size: int | None = None
    interval: float = 0.0
    after: After = "keep-alive"

    @classmethod
    def respond(
        cls,
        status: int = 200,
        body: Body = b"{}",
        *,
        content_type: str | None = "application/json",
        headers: HeadersArg | None = None,
        retry_after: float | datetime | str | None = None,
    ) -> Action:
        """A complete response with Content-Length; the connection stays open.

        `retry_after` adds a ``Retry-After`` header: a number gives the
        delay-seconds form, a datetime the HTTP-date form, a string is sent verbatim.
        """
        pairs = _header_pairs(headers)
        if retry_after is not None:
            pairs += (("Retry-After", _format_retry_after(retry_after)),)
        return cls(
            label=f"respond {status}",
            status=status,
            body=_encode_body(body),
            content_type=content_type,
            headers=pairs,
        )

    @classmethod
    def respond_then_close(
        cls,
        status: int = 500,
        body: Body = ERROR_ENVELOPE_500,
        *,
        content_type: str | None = "application/custom+json",
        headers: HeadersArg | None = None,
        on_next_request: bool = True,
    ) -> Action:
        """Answer, then drop the connection with a FIN, without a ``Connection: close`` header.

        With `on_next_request` (the default) the server waits for the client's
        next request on this connection and closes without answering it, so the
        client reliably fails on it. Otherwise it closes at once, and a client
        that checks idle connections before reuse (httpx does) usually notices
        and quietly opens a new one.
        """
        return replace(
            cls.respond(status, body, content_type=content_type, headers=headers),
            label=f"respond {status} then close",
            after="close-on-next" if on_next_request else "close",
        )

    @classmethod
    def respond_then_reset(
        cls,
        status: int = 500,
        body: Body = ERROR_ENVELOPE_500,
        *,
        content_type: str | None = "application/custom+json",
        headers: HeadersArg | None = None,
        on_next_request: bool = True,
    ) -> Action:
        """As `respond_then_close`, but the connection is dropped with a RST (SO_LINGER 0).

        This is what uvicorn does to a kept-alive connection after a 500: the
        client's next request on it gets "connection reset by peer".
        """
        return replace(
            cls.respond(status, body, content_type=content_type, headers=headers),
            label=f"respond {status} then reset",
            after="reset-on-next" if on_next_request else "reset",
        )

    @classmethod
    def respond_then_close_unread(
        cls,
        status: int = 500,
        body: Body = ERROR_ENVELOPE_500,
        *,
        content_type: str | None = "application/custom+json",
    ) -> Action:
        """Answer, then close the kept-alive connection with the next request unread (a RST).

        The real Jobmon 3.6 server after every 500, byte for byte as the kernel sends it.
        """
        return replace(
            cls.respond(status, body, content_type=content_type),
            label=f"respond {status} then close with the next request unread",
            after="close-unread",
        )

    @classmethod
    def reset_before_response(cls) -> Action:
        """Read the request, then RST the connection without sending a byte."""
        return cls(label="reset before response", send_response=False, after="reset")

    @classmethod
    def close_before_response(cls) -> Action:
        """Read the request, then close the connection (FIN) without sending a byte."""
        return cls(label="close before response", send_response=False, after="close")

    @classmethod
    def reset_mid_body(
        cls, status: int = 200, body: Body | None = None, *, sent: int | None = None
    ) -> Action:
        """Send headers for the full body, only `sent` bytes of it (default: half), then RST."""
        data = _encode_body(body) if body is not None else _filler_json(200)
        return cls(
            label="reset mid body",
            status=status,
            body=data,
            body_limit=len(data) // 2 if sent is None else sent,
            after="reset",
        )

    @classmethod
    def close_mid_body(
        cls, status: int = 200, body: Body | None = None, *, sent: int | None = None
    ) -> Action:
        """Send headers for the full body, only `sent` bytes of it (default: half), then FIN."""
        return replace(
            cls.reset_mid_body(status, body, sent=sent), label="close mid body", after="close"
        )

    @classmethod
    def stall_mid_body(
        cls, status: int = 200, body: Body | None = None, *, sent: int | None = None
    ) -> Action:
        """Send headers and `sent` bytes of the body (default: half), then go silent."""
        return replace(
            cls.reset_mid_body(status, body, sent=sent), label="stall mid body", after="hang"
        )

    @classmethod
    def truncated_json(cls, status: int = 200, body: bytes = b'{"status": "R') -> Action:
        """A complete, well-framed HTTP message whose JSON body is cut short."""
        return replace(cls.respond(status, body), label="truncated json")

    @classmethod
    def html_error_page(cls, status: int = 502) -> Action:
        """A proxy-style HTML error page (``text/html``), as nginx sends for 502/503/504."""
        title = f"{status} {_reason(status)}"
        page = (
            f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
            f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
            "</body>\r\n</html>\r\n"
        )
        return replace(
            cls.respond(status, page, content_type="text/html"), label=f"html error page {status}"
        )

    @classmethod
    def delay(cls, seconds: float, then: Action | None = None) -> Action:
        """Wait `seconds` (interruptibly) before performing `then` (default: 200 ``{}``)."""
        inner = then if then is not None else cls.respond()
        return replace(
            inner, label=f"delay {seconds}s then {inner.label}", pre_delay=inner.pre_delay + seconds
        )

    @classmethod
    def trickle(
        cls,
        body: Body = b'{"status": "R"}',
        *,
        chunk_size: int = 1,
        interval: float = 0.05,
        status: int = 200,
        content_type: str | None = "application/json",
    ) -> Action:
        """Send headers at once, then the body `chunk_size` bytes at a time, `interval` s apart."""
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        return replace(
            cls.respond(status, body, content_type=content_type),
            label=f"trickle {chunk_size}B/{interval}s",
            chunk_size=chunk_size,
            interval=interval,
        )

    @classmethod
    def large_body(cls, n_bytes: int, status: int = 200) -> Action:
        """A 200 whose body is a valid JSON object of exactly `n_bytes` bytes (at least 10)."""
        return replace(cls.respond(status, _filler_json(n_bytes)), label=f"large body {n_bytes}B")

    @classmethod
    def hang(cls) -> Action:
        """Read the request and never answer, until the client leaves or the server stops."""
        return cls(label="hang", send_response=False, after="hang")

    @classmethod
    def raw(cls, data: bytes, *, after: After = "close") -> Action:
        """Send `data` verbatim as the whole response (for malformed responses), then `after`."""
        return cls(label="raw", raw_bytes=data, after=after)


def _filler_json(n_bytes: int) -> bytes:
    prefix, suffix = b'{"pad":"', b'"}'
    if n_bytes < len(prefix) + len(suffix):
        raise ValueError(f"a JSON filler body needs at least {len(prefix) + len(suffix)} bytes")
    return prefix + b"x" * (n_bytes - len(prefix) - len(suffix)) + suffix


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _render(action: Action, method: str) -> tuple[bytes, bytes]:
    """Return (head, body to send) for `action` answering a request with `method`."""
    body = action.body
    bodiless = action.status < 200 or action.status in (204, 304)
    given = {name.lower() for name, _ in action.headers}
    defaults: list[tuple[str, str]] = [("date", http_date()), ("server", "fault-server")]
    if action.content_type is not None:
        defaults.append(("content-type", action.content_type))
    if not bodiless:
        defaults.append(("content-length", str(len(body))))
    lines = [f"HTTP/1.1 {action.status} {_reason(action.status)}"]
    lines += [f"{name}: {value}" for name, value in defaults if name not in given]
    lines += [f"{name}: {value}" for name, value in action.headers]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if bodiless or method == "HEAD":
        return head, b""
    if action.body_limit is not None:
        body = body[: max(0, action.body_limit)]
    return head, body


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server read it off the wire."""

    method: str
    path: str
    """The request target as sent: path plus query string."""
    headers: dict[str, str]
    """Header names lower-cased; repeated headers joined with ", "."""
    body: bytes
    """The body, de-chunked if it was sent chunked."""
    http_version: str
    connection: int
    """Index (from 0, in accept order) of the connection the request came on."""
    index_on_connection: int
    """0 for the first request on its connection, 1 for the next, ..."""
    received_at: float
    """`time.monotonic()` when the request had been read completely."""
    action: Action | None
    """The action that answered it; None for a request dropped by an ``*-on-next`` fate."""

    @property
    def route(self) -> str:
        """The path without the query string."""
        return urlsplit(self.path).path

    @property
    def query(self) -> dict[str, list[str]]:
        """The query string parsed into lists of values (blank values kept)."""
        return parse_qs(urlsplit(self.path).query, keep_blank_values=True)

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


class _Conn:
    """One accepted server-side connection: a non-blocking socket plus a read buffer.

    Every wait selects on the socket and on the server's wake-up socket, which
    becomes (and stays) readable when the server stops, so no wait outlives it.
    """

    def __init__(self, server: FaultServer, sock: socket.socket, index: int) -> None:
        self.server = server
        self.sock = sock
        self.index = index
        self.buf = bytearray()
        self.served = 0
        self._closed = False
        self._close_lock = threading.Lock()
        self._sel = selectors.DefaultSelector()
        self._sel.register(server._wake_r, selectors.EVENT_READ, "wake")
        self._sel.register(sock, selectors.EVENT_READ, "sock")

    def _wait(self, events: int, timeout: float | None) -> Literal["ready", "stop", "timeout"]:
        self._sel.modify(self.sock, events, "sock")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.server._stopping.is_set():
                return "stop"
            step = _POLL if deadline is None else min(_POLL, max(0.0, deadline - time.monotonic()))
            ready = self._sel.select(step)
            if any(key.data == "wake" for key, _ in ready):
                return "stop"
            if ready:
                return "ready"
            if deadline is not None and time.monotonic() >= deadline:
                return "timeout"

    def fill(self, timeout: float | None = None) -> None:
        """Append at least one received byte to `buf`, or raise `_GoneError`."""
        while True:
            if self._wait(selectors.EVENT_READ, timeout) != "ready":
                raise _GoneError
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise _GoneError from exc
            if not data:
                raise _GoneError
            self.buf += data
            return

    def wait_readable(self) -> bool:
        """Wait until the client sends more, without reading it; False if it left or we stop."""
        if self.buf:
            return True
        if self._wait(selectors.EVENT_READ, None) != "ready":
            return False
        try:
            return bool(self.sock.recv(1, socket.MSG_PEEK))
        except OSError:
            return False

    def need(self, n: int) -> None:
        """Receive until `buf` holds at least `n` bytes, or raise `_GoneError`."""
        while len(self.buf) < n:
            self.fill()

    def read_line(self, limit: int = _MAX_HEAD) -> bytes:
        """Remove and return one CRLF-terminated line (without the CRLF) from the stream."""
        while (end := self.buf.find(b"\r\n")) < 0:
            if len(self.buf) > limit:
                raise _BadRequestError("line too long")
            self.fill()
        line = bytes(self.buf[:end])
        del self.buf[: end + 2]
        return line

    def send_all(self, data: bytes) -> bool:
        """Send all of `data`; False if the client went away or the server stopped."""
        view = memoryview(data)
        while view:
            if self._wait(selectors.EVENT_WRITE, None) != "ready":
                return False
            try:
                sent = self.sock.send(view[:_SEND_SLICE])
            except BlockingIOError:
                continue
            except OSError:
                return False
            view = view[sent:]
        return True

    def pause(self, seconds: float) -> bool:
        """Sleep `seconds` (inf: forever); False early if the client left or the server stopped."""
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            state = self._wait(selectors.EVENT_READ, None if math.isinf(remaining) else remaining)
            if state == "timeout":
                return True
            if state == "stop":
                return False
            try:
                peeked = self.sock.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                continue
            except OSError:
                return False
            if not peeked:
                return False
            # The client sent more (a pipelined request): readability no longer
            # tells us anything, so just sleep on the stop event.
            rest = deadline - time.monotonic()
            return not self.server._stopping.wait(None if math.isinf(rest) else max(0.0, rest))

    def wait_sent(self, timeout: float = 1.0) -> None:
        """Wait until the kernel has delivered everything sent (Linux), so a RST cannot eat it."""
        deadline = time.monotonic() + timeout
        if sys.platform == "win32":
            self.server._stopping.wait(0.02)
            return
        while time.monotonic() < deadline:
            try:
                raw = fcntl.ioctl(self.sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
            except OSError:
                # No SIOCOUTQ on this platform: give the loopback a moment instead.
                self.server._stopping.wait(0.02)
                return
            if struct.unpack("i", raw)[0] == 0 or self.server._stopping.wait(0.002):
                return

    def close(self, *, reset: bool = False) -> None:
        """Close the connection: FIN, or RST when `reset` (SO_LINGER on, 0 s). Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            if reset:
                with contextlib.suppress(OSError):
                    self.sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
            self._sel.close()
            self.sock.close()
        finally:
            self.server._connection_closed()


@dataclass
class _Parsed:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes
    received_at: float

    @property
    def wants_close(self) -> bool:
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" not in tokens
        return "close" in tokens


class FaultServer:
    """A scripted HTTP/1.1 server on 127.0.0.1 that injects transport faults.

    Each request takes the next action of the script (`script()`), or
    `default` when the script is empty. Connections are served one thread each;
    `stop()` (called by the context manager) closes the listener and every
    connection and joins all threads.

    Args:
        actions: initial script.
        default: the action once the script is exhausted (default: 200 ``{}``).
        max_lifetime: seconds after `start()` at which the server stops itself.
        max_requests: requests after which the server stops itself.
        max_connections: accepted connections after which the server stops itself.
        keepalive_timeout: close a connection idle this long between requests
            (None: keep idle connections until the client closes or the server stops).
        raise_on_error: make the context manager raise `FaultServerError` if
            `errors` is not empty on a normal exit.
    """

    def __init__(
        self,
        *actions: Action,
        default: Action | None = None,
        max_lifetime: float = 60.0,
        max_requests: int = 500,
        max_connections: int = 200,
        keepalive_timeout: float | None = None,
        raise_on_error: bool = True,
    ) -> None:
        self.default: Action = default if default is not None else Action.respond()
        self.max_lifetime = max_lifetime
        self.max_requests = max_requests
        self.max_connections = max_connections
        self.keepalive_timeout = keepalive_timeout
        self.raise_on_error = raise_on_error
        self._script: deque[Action] = deque(actions)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._requests: list[RecordedRequest] = []
        self._dropped: list[RecordedRequest] = []
        self._unread = 0
        self._errors: list[str] = []
        self._accepted = 0
        self._open = 0
        self._served = 0
        self._conns: list[_Conn] = []
        self._threads: list[threading.Thread] = []
        self._port: int | None = None
        self._deadline = math.inf
        self._accept_thread: threading.Thread | None = None
        self._stopped = False
        self._listening = True
        self._listen_done = threading.Event()
        self._listen_lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._placeholder: socket.socket | None = None
        # Created by start(), so that a server never started holds no sockets.
        self._wake_r: socket.socket
        self._wake_w: socket.socket
        self._ctl_r: socket.socket
        self._ctl_w: socket.socket

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> FaultServer:
        """Bind 127.0.0.1 on a free port, start serving in a background thread, return self."""
        if self._accept_thread is not None:
            raise RuntimeError("FaultServer already started")
        if self._stopped:
            raise RuntimeError("FaultServer cannot be restarted")
        self._wake_r, self._wake_w = socket.socketpair()
        self._ctl_r, self._ctl_w = socket.socketpair()
        for sock in (self._wake_r, self._wake_w, self._ctl_r, self._ctl_w):
            sock.setblocking(False)
        self._listener = self._new_listener(0)
        self._port = self._listener.getsockname()[1]
        self._deadline = time.monotonic() + self.max_lifetime
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"fault-server-{self._port}", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: close the listener and all connections, join all threads. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._accept_thread is None:
            return
        self._signal_stop()
        deadline = time.monotonic() + timeout
        self._accept_thread.join(timeout)
        with self._lock:
            threads, conns = list(self._threads), list(self._conns)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                self._error(f"{thread.name} did not finish within {timeout}s of stop()")
        for conn in conns:
            conn.close()
        for sock in (self._listener, self._placeholder):
            if sock is not None:
                sock.close()
        for sock in (self._wake_r, self._wake_w, self._ctl_r, self._ctl_w):
            sock.close()

    def __enter__(self) -> FaultServer:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server; raise `FaultServerError` for recorded errors unless already raising."""
        self.stop()
        if exc_type is None and self.raise_on_error:
            self.raise_errors()

    def raise_errors(self) -> None:
        """Raise `FaultServerError` if the server recorded any error."""
        errors = self.errors
        if errors:
            raise FaultServerError("fault server: " + "; ".join(errors))

    # -- script and observation --------------------------------------------

    def script(self, *actions: Action) -> None:
        """Append `actions` to the script; each incoming request consumes the first one left."""
        with self._lock:
            self._script.extend(actions)

    @property
    def pending(self) -> int:
        """How many scripted actions have not been used yet."""
        with self._lock:
            return len(self._script)

    @property
    def url(self) -> str:
        """Base URL of the server, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{HOST}:{self.port}"

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._port is None:
            raise RuntimeError("FaultServer not started")
        return self._port

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot of the requests answered by an action, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def dropped_requests(self) -> list[RecordedRequest]:
        """Snapshot of requests read and deliberately left unanswered by an ``*-on-next`` fate."""
        with self._lock:
            return list(self._dropped)

    @property
    def unread_requests(self) -> int:
        """How many requests a ``close-unread`` fate left unread in a socket it closed."""
        with self._lock:
            return self._unread

    @property
    def connections_accepted(self) -> int:
        """How many connections the server has accepted so far."""
        with self._lock:
            return self._accepted

    @property
    def open_connections(self) -> int:
        """How many accepted connections the server has not closed yet."""
        with self._lock:
            return self._open

    @property
    def errors(self) -> list[str]:
        """Snapshot of problems seen: cap overruns, malformed requests, internal errors."""
        with self._lock:
            return list(self._errors)

    def wait_for_requests(self, count: int, timeout: float = 2.0) -> bool:
        """Wait until at least `count` requests were answered or dropped; False on timeout."""
        with self._changed:
            return self._changed.wait_for(
                lambda: len(self._requests) + len(self._dropped) >= count, timeout
            )

    def wait_for_idle(self, timeout: float = 2.0) -> bool:
        """Wait until no connection is open on the server side; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._open == 0, timeout)

    # -- refusing connections ----------------------------------------------

    def stop_listening(self) -> None:
        """Close the listener so new connections are refused; the port stays reserved.

        Open connections are not touched. `resume_listening()` undoes it.
        """
        self._set_listening(False)

    def resume_listening(self) -> None:
        """Listen again on the same port after `stop_listening()`."""
        self._set_listening(True)

    def _set_listening(self, on: bool) -> None:
        if self._accept_thread is None or self._stopping.is_set():
            raise RuntimeError("FaultServer is not running")
        with self._listen_lock:
            self._listen_done.clear()
            self._listening = on
            self._ctl_w.send(b"x")
            if not self._listen_done.wait(5.0) or (self._listener is not None) != on:
                raise FaultServerError(f"could not switch listening {'on' if on else 'off'}")

    def _new_listener(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # Needed to re-bind the port while accepted connections still use it.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, port))
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def _switch_listener(self, sel: selectors.BaseSelector) -> None:
        if not self._listening and self._listener is not None:
            sel.unregister(self._listener)
            self._listener.close()
            self._listener = None
            # A bound, non-listening socket makes connects fail with ECONNREFUSED
            # and keeps anyone else (even a client's ephemeral port) off the port.
            placeholder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                placeholder.bind((HOST, self.port))
            except OSError:
                placeholder.close()
                raise
            self._placeholder = placeholder
        elif self._listening and self._listener is None:
            if self._placeholder is not None:
                self._placeholder.close()
                self._placeholder = None
            self._listener = self._new_listener(self.port)
            sel.register(self._listener, selectors.EVENT_READ, "listen")

    # -- internals -----------------------------------------------------------

    def _signal_stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        # The byte is never read: the wake socket stays readable for every waiter.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _error(self, message: str) -> None:
        with self._changed:
            self._errors.append(message)
            self._changed.notify_all()

    def _connection_closed(self) -> None:
        with self._changed:
            self._open -= 1
            self._changed.notify_all()

    def _accept_loop(self) -> None:
        sel = selectors.DefaultSelector()
        try:
            assert self._listener is not None
            sel.register(self._listener, selectors.EVENT_READ, "listen")
            sel.register(self._wake_r, selectors.EVENT_READ, "wake")
            sel.register(self._ctl_r, selectors.EVENT_READ, "ctl")
            while not self._stopping.is_set():
                remaining = self._deadline - time.monotonic()
                if remaining <= 0:
                    self._error(f"max_lifetime of {self.max_lifetime}s exceeded; server stopped")
                    self._signal_stop()
                    break
                for key, _ in sel.select(min(remaining, _POLL)):
                    if key.data == "ctl":
                        with contextlib.suppress(BlockingIOError):
                            self._ctl_r.recv(64)
                        try:
                            self._switch_listener(sel)
                        finally:
                            self._listen_done.set()
                    elif key.data == "listen" and self._listener is not None:
                        self._accept_pending()
        except Exception as exc:
            self._error(f"accept loop crashed: {exc!r}")
            self._signal_stop()
        finally:
            sel.close()
            if self._listener is not None:
                self._listener.close()

    def _accept_pending(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            # Without it, Nagle plus the client's delayed ACK stalls small writes ~40 ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                index = self._accepted
                self._accepted += 1
                self._open += 1
            conn = _Conn(self, sock, index)
            if index >= self.max_connections:
                conn.close(reset=True)
                self._error(f"max_connections ({self.max_connections}) exceeded; server stopped")
                self._signal_stop()
                return
            thread = threading.Thread(
                target=self._serve, args=(conn,), name=f"fault-server-conn-{index}", daemon=True
            )
            with self._lock:
                self._conns.append(conn)
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: _Conn) -> None:
        try:
            while True:
                request = self._read_request(conn, idle_timeout=self.keepalive_timeout)
                if request is None:
                    return
                action = self._admit(conn, request)
                if action is None or not self._perform(conn, request, action):
                    return
        except Exception as exc:
            self._error(f"connection {conn.index} crashed: {exc!r}")
        finally:
            conn.close()

    def _read_request(self, conn: _Conn, idle_timeout: float | None) -> _Parsed | None:
        """Read one request; None when the connection is over (and then it is closed)."""
        try:
            return self._parse_request(conn, idle_timeout)
        except _GoneError:
            conn.close()
            return None
        except _BadRequestError as exc:
            self._error(f"connection {conn.index}: malformed request: {exc}")
            conn.send_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            conn.close()
            return None

    def _parse_request(self, conn: _Conn, idle_timeout: float | None) -> _Parsed:
        while True:
            # RFC 9112 section 2.2: ignore empty lines before a request line.
            while conn.buf.startswith(b"\r\n"):
                del conn.buf[:2]
            end = conn.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(conn.buf) > _MAX_HEAD:
                raise _BadRequestError("request head too large")
            conn.fill(idle_timeout if not conn.buf else None)
        head = bytes(conn.buf[:end]).decode("latin-1")
        del conn.buf[: end + 4]
        request_line, *header_lines = head.split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or parts[2] not in ("HTTP/1.0", "HTTP/1.1") or not parts[1]:
            raise _BadRequestError(f"bad request line {request_line!r}")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _BadRequestError(f"bad header line {line!r}")
            key, value = name.lower(), value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if "transfer-encoding" in headers:
            if headers["transfer-encoding"].lower() != "chunked":
                raise _BadRequestError(
                    f"unsupported transfer-encoding {headers['transfer-encoding']!r}"
                )
            body = self._read_chunked(conn)
        elif "content-length" in headers:
            declared = headers["content-length"]
            if not declared.isdigit() or int(declared) > _MAX_BODY:
                raise _BadRequestError(f"bad content-length {declared!r}")
            length = int(declared)
            conn.need(length)
            body = bytes(conn.buf[:length])
            del conn.buf[:length]
        else:
            body = b""
        return _Parsed(method, target, version, headers, body, time.monotonic())

    def _read_chunked(self, conn: _Conn) -> bytes:
        body = bytearray()
        while True:
            size_field = conn.read_line().split(b";", 1)[0].strip()
            try:
                size = int(size_field, 16)
            except ValueError:
                raise _BadRequestError(f"bad chunk size {size_field!r}") from None
            if size == 0:
                while conn.read_line():  # trailer fields, up to the empty line
                    pass
                return bytes(body)
            if len(body) + size > _MAX_BODY:
                raise _BadRequestError("chunked body too large")
            conn.need(size + 2)
            if conn.buf[size : size + 2] != b"\r\n":
                raise _BadRequestError("chunk not followed by CRLF")
            body += conn.buf[:size]
            del conn.buf[: size + 2]

    def _record(self, conn: _Conn, request: _Parsed, action: Action | None) -> RecordedRequest:
        record = RecordedRequest(
            method=request.method,
            path=request.target,
            headers=request.headers,
            body=request.body,
            http_version=request.version,
            connection=conn.index,
            index_on_connection=conn.served,
            received_at=request.received_at,
            action=action,
        )
        conn.served += 1
        return record

    def _admit(self, conn: _Conn, request: _Parsed) -> Action | None:
        """Record `request` and pick its action; None (after a RST) once over the request cap."""
        with self._changed:
            over = self._served >= self.max_requests
            if not over:
                self._served += 1
                action = self._script.popleft() if self._script else self.default
                self._requests.append(self._record(conn, request, action))
                self._changed.notify_all()
        if over:
            self._error(f"max_requests ({self.max_requests}) exceeded; server stopped")
            self._signal_stop()
            conn.close(reset=True)
            return None
        return action

    def _perform(self, conn: _Conn, request: _Parsed, action: Action) -> bool:
        """Carry out `action`; True if the connection stays open for another request."""
        if action.pre_delay > 0 and not conn.pause(action.pre_delay):
            conn.close()
            return False
        if action.send_response:
            if action.raw_bytes is not None:
                head, body = action.raw_bytes, b""
            else:
                head, body = _render(action, request.method)
            if action.chunk_size is None:
                sent = conn.send_all(head + body)
            else:
                sent = conn.send_all(head) and self._send_body(conn, body, action)
            if not sent:
                conn.close()
                return False
        fate = action.after
        if fate == "keep-alive":
            announced_close = any(
                name.lower() == "connection" and "close" in value.lower()
                for name, value in action.headers
            )
            if request.wants_close or announced_close:
                conn.close()
                return False
            return True
        if fate in ("close-on-next", "reset-on-next"):
            following = self._read_request(conn, idle_timeout=None)
            if following is None:
                return False
            with self._changed:
                self._dropped.append(self._record(conn, following, None))
                self._changed.notify_all()
        elif fate == "close-unread":
            if conn.wait_readable():
                with self._changed:
                    self._unread += 1
                    self._changed.notify_all()
        elif fate == "hang":
            conn.pause(math.inf)
        if fate in ("reset", "reset-on-next"):
            conn.wait_sent()
            conn.close(reset=True)
        else:
            conn.close()
        return False

    @staticmethod
    def _send_body(conn: _Conn, body: bytes, action: Action) -> bool:
        assert action.chunk_size is not None
        for offset in range(0, len(body), action.chunk_size):
            if offset and action.interval > 0 and not conn.pause(action.interval):
                return False
            if not conn.send_all(body[offset : offset + action.chunk_size]):
                return False
        return True


def unused_port_url() -> str:
    """Return ``http://127.0.0.1:<port>`` for a port nothing listens on (connects are refused).

    The port is free again once this returns, so in theory something else may
    take it; `refusing_url()` keeps it reserved instead.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return f"http://{HOST}:{port}"


@contextlib.contextmanager
def refusing_url() -> Iterator[str]:
    """Yield a URL on 127.0.0.1 whose port is bound but not listening, so connects are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        yield f"http://{HOST}:{sock.getsockname()[1]}"
