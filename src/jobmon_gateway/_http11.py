"""One HTTP/1.1 conversation on one connection, without I/O: what both pools share.

The sync pool (:mod:`._pool`, sockets) and the async pool
(:mod:`._async_pool`, an asyncio protocol) move bytes; everything about the
bytes is decided here, once, so the same answer gets the same verdict in
both worlds. The SDK writes and reads HTTP/1.1 itself rather than through
h11 (httpcore's parser): h11's event machinery was about a fifth of a small
call's CPU, and a client that sends the same few requests and reads small
JSON answers needs a narrow, strict reader, not a general one. It accepts
what h11 accepts from a server, except what can be read two ways (see
:class:`Conversation`).

Failures are raised as httpcore's exception classes: the pools sit behind
``httpx.HTTPTransport.handle_request``, which maps those (and only those)
to httpx's own.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import httpcore
import httpx

if TYPE_CHECKING:
    from ._routing import Route, Routing

__all__ = [
    "HEAD_LIMIT",
    "BrokenAnswer",
    "Conversation",
    "Head",
    "Origin",
    "PartialAnswer",
    "PoolAnswer",
    "authority",
    "broken",
    "check_tunnel",
    "deadline_of",
    "origin_of",
    "outgoing",
    "overdue_error",
    "prepared",
    "response_of",
    "seconds_left",
    "tunnel_request",
]

HEAD_LIMIT: Final = 16384
"""Most bytes of an answer's head (status line and headers)."""


Origin = tuple[bytes, bytes, int]


def deadline_of(extensions: Mapping[str, Any]) -> float:
    """The request's deadline, a ``time.monotonic()`` value.

    The gateway's sender puts its own (``jobmon_gateway.deadline``); for any
    other request the longest of httpx's finite timeouts bounds the whole
    request (none: 11 days, the longest any setting may name).
    """
    given = extensions.get("jobmon_gateway.deadline")
    if isinstance(given, int | float) and math.isfinite(given):
        return float(given)
    timeouts = extensions.get("timeout")
    values = [
        float(value)
        for value in (timeouts.values() if isinstance(timeouts, Mapping) else ())
        if isinstance(value, int | float) and math.isfinite(value) and value >= 0
    ]
    return time.monotonic() + min(max(values) if values else 1e6, 1e6)


def origin_of(url: httpcore.URL) -> Origin:
    """Scheme, host and port of ``url`` (the port filled in)."""
    return (url.scheme, url.host, url.port or (443 if url.scheme == b"https" else 80))


def prepared(
    request: httpcore.Request, routing: Routing
) -> tuple[Origin, float, Any, Route, RequestHead]:
    """What a pool needs of ``request``: origin, deadline, trace, route and its checked head."""
    origin = origin_of(request.url)
    route = routing.route(*origin)
    target, headers = outgoing(request.url, request.headers, route)
    return (
        origin,
        deadline_of(request.extensions),
        request.extensions.get("trace"),
        route,
        # Checked before any connection is made, and kept for the send.
        _request_head(request.method, target, headers),
    )


WHOLE_BODY = "jobmon_gateway.whole_body"
"""A response extension: the raw body, when all of it came with the head.

The sender reads it there rather than through httpx's stream wrappers (a
few generators and context managers a call); the body streams as well, for
anyone else holding the response.
"""


class PoolAnswer:
    """A pool's answer, as httpx's transports read it: ``status``, ``headers``, ``stream``,
    ``extensions`` (what they take from an ``httpcore.Response``, and all of it).

    An ``httpcore.Response`` would check every header line again (the head was
    checked as it was read) and test the stream against typing's ABCs: about
    4 µs a call. The stream iterates sync and async, as httpcore's does.
    """

    __slots__ = ("extensions", "headers", "status", "stream")

    def __init__(
        self, status: int, headers: list[tuple[bytes, bytes]], stream: Any, extensions: Any
    ) -> None:
        self.status = status
        self.headers = headers
        self.stream = stream
        self.extensions = extensions


def response_of(head: Head, content: Any) -> PoolAnswer:
    """The pool's answer for ``head``, its body ``content`` (bytes, or a stream)."""
    extensions: dict[str, Any] = {"http_version": b"HTTP/1.1", "reason_phrase": head.reason}
    if isinstance(content, bytes):
        extensions[WHOLE_BODY] = content
        content = httpx.ByteStream(content)  # iterates sync and async
    return PoolAnswer(head.status_code, head.headers, content, extensions)


def authority(host: bytes, port: int) -> bytes:
    """``host:port``, an IPv6 address in brackets."""
    return b"[%s]:%d" % (host, port) if b":" in host else b"%s:%d" % (host, port)


def outgoing(
    url: httpcore.URL, headers: list[tuple[bytes, bytes]], route: Route
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The request target and headers on ``route``: absolute-form through an HTTP proxy."""
    if not route.absolute:
        return url.target, headers
    target = b"%s://%s%s" % (url.scheme, authority(url.host, origin_of(url)[2]), url.target)
    if route.proxy is not None and route.proxy.authorization is not None:
        headers = [*headers, (b"Proxy-Authorization", route.proxy.authorization)]
    return target, headers


def tunnel_request(route: Route) -> tuple[Conversation, bytes]:
    """The ``CONNECT`` request asking ``route``'s proxy for a tunnel, and its conversation."""
    assert route.tunnel is not None
    headers = [(b"Host", route.tunnel)]
    if route.proxy is not None and route.proxy.authorization is not None:
        headers.append((b"Proxy-Authorization", route.proxy.authorization))
    talk = Conversation()
    return talk, talk.request(b"CONNECT", _request_head(b"CONNECT", route.tunnel, headers), None)


def check_tunnel(talk: Conversation, head: Head, *, more_bytes: bool) -> None:
    """Raise unless the proxy opened the tunnel, and sent nothing past its answer.

    A proxy's 5xx is its own trouble, retried like a failed connect (the
    request never reached the server); a 4xx (407: credentials) is not.
    """
    status = head.status_code
    if status >= 500:
        raise httpcore.ConnectError(f"the proxy could not open the tunnel ({status})")
    if not 200 <= status < 300:
        raise httpcore.ProxyError(f"the proxy refused the tunnel ({status})")
    if talk.leftover or more_bytes:
        raise httpcore.ProxyError("the proxy sent bytes before the tunnel opened")


class PartialAnswer(Exception):  # noqa: N818 - a marker, never raised on its own
    """Marks a pool's failure that came after the server had started to answer.

    httpx re-raises a pool's failure as its own class, chained to the
    original: the sender finds this marker there.
    """


class BrokenAnswer(httpcore.RemoteProtocolError, PartialAnswer):
    """The connection failed after some of the answer's head had arrived."""


def broken(exc: BaseException, talk: Conversation) -> BaseException:
    """What a pool raises for ``exc`` in the head phase: marked if the server had answered."""
    if talk.answered and isinstance(exc, httpcore.NetworkError | httpcore.RemoteProtocolError):
        marked = BrokenAnswer(str(exc) or type(exc).__name__)
        marked.__cause__ = exc
        return marked
    return exc


def seconds_left(deadline: float) -> float:
    """Seconds left until ``deadline`` (a ``time.monotonic()`` value); raises when none are."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise overdue_error()
    return left


def overdue_error() -> httpcore.ReadTimeout:
    """The failure of a request whose deadline passed (mapped to a timeout by the sender)."""
    return httpcore.ReadTimeout("the request's deadline passed")


# -- the request ------------------------------------------------------------------

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_VALUE = rb"[\t\x20-\x7e\x80-\xff]*"
# A request as RFC 9112 writes it: every name a token, no control character
# (CR, LF, NUL...) in the method, target or any value. Each part is checked
# on its own: nothing a caller passes can split a header or a line.
_REQUEST_LINE = re.compile(_TOKEN + rb" [\x21-\x7e\x80-\xff]+")
_NAME = re.compile(_TOKEN)
_FIELD_VALUE = re.compile(_VALUE)

RequestHead = tuple[bytes, int | None, bool]  # head bytes, Content-Length, chunked
# Each header pair, checked, as its line and what it says of the framing
# (-1: nothing; -2: chunked; else the Content-Length). A driver sends the same
# few headers again and again; one of them (the request id) changes on every
# call, so pairs are kept rather than whole heads.
_LINES: dict[tuple[bytes, bytes], tuple[bytes, int]] = {}
_LINES_KEPT = 1024
_TARGETS: set[bytes] = set()


def _header_line(name: bytes, value: bytes) -> tuple[bytes, int]:
    if not _NAME.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
        raise _invalid_request()
    lowered = name.lower()
    framing = -1
    if lowered == b"content-length":
        # int() of thousands of digits raises ValueError: at most 18.
        if not value.isdigit() or len(value) > 18:
            raise _invalid_request()
        framing = int(value)
    elif lowered == b"transfer-encoding":
        if value.strip().lower() != b"chunked":
            raise _invalid_request()
        framing = -2
    return b"%s: %s\r\n" % (name, value), framing


def _request_head(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> RequestHead:
    request_line = b"%s %s" % (method, target)
    if request_line not in _TARGETS:
        if not _REQUEST_LINE.fullmatch(request_line):
            raise _invalid_request()
        if len(_TARGETS) >= _LINES_KEPT:
            _TARGETS.clear()
        _TARGETS.add(request_line)
    length: int | None = None
    chunked = False
    lines = [request_line, b" HTTP/1.1\r\n"]
    for pair in headers:
        found = _LINES.get(pair)
        if found is None:
            found = _header_line(*pair)
            if len(_LINES) >= _LINES_KEPT:
                _LINES.clear()
            _LINES[pair] = found
        line, framing = found
        if framing == -2:
            chunked = True
        elif framing >= 0:
            if length is not None and framing != length:
                raise _invalid_request()
            length = framing
        lines.append(line)
    lines.append(b"\r\n")
    if chunked and length is not None:
        raise _invalid_request()
    return b"".join(lines), length, chunked


def _invalid_request() -> httpcore.LocalProtocolError:
    # Never quote the value: it may be a credential.
    return httpcore.LocalProtocolError(
        "the request has an invalid header or target (value not shown)"
    )


# -- the answer -------------------------------------------------------------------

_HEAD_END = re.compile(rb"\n\r?\n")
_STATUS_LINE = re.compile(rb"HTTP/1\.([0-9]) ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?\r?")
_FIELDS = re.compile(rb"(?:" + _TOKEN + rb":" + _VALUE + rb"\r?\n)*")
_FIELD = re.compile(rb"(" + _TOKEN + rb"):(" + _VALUE + rb")\r?\n")
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[\t\x20-\x7e\x80-\xff]*)?")
_CHUNK_LINE_LIMIT = 1024

# How an answer's body is framed (RFC 9112 section 6.3).
_NONE, _LENGTH, _CHUNKED, _CLOSE = 0, 1, 2, 3
# Where a chunked body is: at a chunk's size line, in its data, at the CRLF
# after its data, or in the trailer section after the last chunk.
_SIZE, _DATA, _DATA_END, _TRAILERS = 0, 1, 2, 3


class Head:
    """An answer's head: status, reason and headers (names lowercased)."""

    __slots__ = ("headers", "reason", "status_code")

    def __init__(self, status_code: int, reason: bytes, headers: list[tuple[bytes, bytes]]):
        self.status_code = status_code
        self.reason = reason
        self.headers = headers


def _protocol_error(message: str) -> httpcore.RemoteProtocolError:
    return httpcore.RemoteProtocolError(message)


class Conversation:
    """One connection's HTTP/1.1 client side, one request and answer at a time, without I/O.

    The pools move bytes; what the bytes mean is decided here, so the same
    answer gets the same verdict sync and async, however it is cut into
    reads. Strict where laxness lets an answer be read two ways: a head's
    size is measured in bytes, every header line is checked (no folded
    lines, no space before the colon), ``Content-Length`` must be digits
    (a listed ``15, 15`` is refused), and the connection is reused only when
    the answer ended exactly at its framing.

    ``answered`` turns true with the first byte the server sends for the
    current request: a failure before it, on a reused connection, means the
    server dropped the connection without reading the request.
    """

    __slots__ = (
        "_buf",
        "_chunk_state",
        "_done",
        "_eof",
        "_framing",
        "_keep_alive",
        "_left",
        "_method",
        "_pos",
        "_scanned",
        "answered",
        "unsent",
    )

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._method = b""
        self._reset()

    def _reset(self) -> None:
        self.answered = False
        # The request could not be sent whole (the server may still answer).
        self.unsent = False
        self._scanned = 0
        self._framing = _NONE
        self._left = 0
        self._chunk_state = _SIZE
        self._keep_alive = False
        self._done = False

    def request(self, method: bytes, checked: RequestHead, body: bytes | None) -> bytes:
        """The bytes of a whole request (its head checked by ``prepared``, and body), to send."""
        self._reset()
        self._method = method
        head, length, chunked = checked
        size = len(body) if body else 0
        if chunked:
            return head + (b"%x\r\n%s\r\n0\r\n\r\n" % (size, body) if body else b"0\r\n\r\n")
        if length is None:
            if not body:
                return head
            # No framing header given: the body's length is its framing.
            return head[:-2] + b"Content-Length: %d\r\n\r\n" % size + body
        if length != size:
            raise httpcore.LocalProtocolError("the request's Content-Length differs from its body")
        return head + body if body else head

    def feed(self, data: bytes) -> None:
        """Bytes the server sent (``b""``: it closed the connection)."""
        if not data:
            self._eof = True
            return
        self.answered = True
        if self._pos >= len(self._buf):
            self._buf = data
            self._scanned = 0
        else:
            self._buf = self._buf[self._pos :] + data
            self._scanned -= self._pos
        self._pos = 0

    @property
    def leftover(self) -> bool:
        """Whether bytes past the current answer's head or end are waiting."""
        return self._pos < len(self._buf)

    def head(self, deadline: float) -> Head | None:
        """The answer's head once it is complete (``None``: more bytes are needed).

        Informational answers (1xx) are skipped, each one on the deadline:
        an endless stream of ``100 Continue`` ends when the deadline does.
        """
        while True:
            buf, pos = self._buf, self._pos
            found = _HEAD_END.search(buf, max(pos, self._scanned - 2), pos + HEAD_LIMIT + 1)
            if found is None:
                if len(buf) - pos > HEAD_LIMIT:
                    raise _protocol_error(f"the server sent a head larger than {HEAD_LIMIT} bytes")
                if self._eof:
                    if pos == len(buf) and not self.answered:
                        raise _protocol_error("the server closed the connection unanswered")
                    raise _protocol_error("the connection closed before the answer's head ended")
                self._scanned = len(buf)
                return None
            end = found.end()
            self._pos = end
            self._scanned = end
            if end - pos > HEAD_LIMIT:
                raise _protocol_error(f"the server sent a head larger than {HEAD_LIMIT} bytes")
            head = self._parse_head(buf, pos, found.start() + 1)
            if head.status_code >= 200:
                self._frame(head)
                return head
            if head.status_code == 101:
                raise _protocol_error("the server sent status 101 as its answer")
            seconds_left(deadline)

    def _parse_head(self, buf: bytes, start: int, end: int) -> Head:
        # buf[start:end] is the status line and the header lines, each
        # ending in LF (CRLF or a bare LF, as h11 and httpcore accept).
        line_end = buf.index(b"\n", start, end)
        status = _STATUS_LINE.fullmatch(buf, start, line_end)
        if status is None:
            raise _protocol_error("the server sent an invalid status line")
        if not _FIELDS.fullmatch(buf, line_end + 1, end):
            raise _protocol_error("the server sent an invalid header line")
        headers = [
            (name.lower(), value.strip(b" \t"))
            for name, value in _FIELD.findall(buf, line_end + 1, end)
        ]
        code = int(status[2])
        if code < 100:
            raise _protocol_error("the server sent an invalid status line")
        self._keep_alive = status[1] != b"0"  # HTTP/1.0: one answer per connection
        return Head(code, status[3] or b"", headers)

    def _frame(self, head: Head) -> None:
        status = head.status_code
        length: int | None = None
        chunked = False
        for name, value in head.headers:
            if name == b"content-length":
                if (
                    not value.isdigit()
                    or len(value) > 18
                    or (length is not None and int(value) != length)
                ):
                    raise _protocol_error("the server sent an invalid Content-Length")
                length = int(value)
            elif name == b"transfer-encoding":
                if chunked or value.lower() != b"chunked":
                    raise _protocol_error("the server sent a Transfer-Encoding other than chunked")
                chunked = True
            elif name == b"connection" and b"close" in (
                part.strip() for part in value.lower().split(b",")
            ):
                self._keep_alive = False
        if (
            self._method == b"HEAD"
            or status in (204, 304)
            or (self._method == b"CONNECT" and status < 300)
        ):
            self._framing = _NONE
            self._done = True
        elif chunked and length is not None:
            # Two framings: a reader that picks the other one reads another
            # answer out of the same bytes (a smuggling vector).
            raise _protocol_error("the server sent both Content-Length and Transfer-Encoding")
        elif chunked:
            self._framing = _CHUNKED
            self._chunk_state = _SIZE
        elif length is not None:
            self._framing = _LENGTH
            self._left = length
            self._done = length == 0
        else:
            # Neither: the body runs until the server closes the connection.
            self._framing = _CLOSE
            self._keep_alive = False

    def whole_body(self) -> bytes | None:
        """The whole body if all of it has arrived with the head (most small answers), else
        ``None``, having taken nothing: the body then streams through :meth:`body`."""
        if self._done:
            return b""
        if self._framing != _LENGTH or len(self._buf) - self._pos < self._left:
            return None
        return self.body()

    def body(self) -> bytes | None:
        """The next piece of the body; ``b""`` at its end, ``None`` when more bytes are needed."""
        if self._done:
            return b""
        framing = self._framing
        buf, pos = self._buf, self._pos
        have = len(buf) - pos
        if framing == _LENGTH:
            if not have:
                self._need()
                return None
            take = min(have, self._left)
            piece = buf if pos == 0 and take == len(buf) else buf[pos : pos + take]
            self._pos = pos + take
            self._left -= take
            self._done = self._left == 0
            return piece
        if framing == _CLOSE:
            if not have:
                if self._eof:
                    self._done = True
                    return b""
                return None
            self._pos = len(buf)
            return buf if pos == 0 else buf[pos:]
        return self._chunk()

    def _need(self) -> None:
        # More bytes are needed: an error if none will come.
        if self._eof:
            raise _protocol_error("the connection closed before the answer's end")

    def _chunk(self) -> bytes | None:
        while True:
            buf, pos = self._buf, self._pos
            state = self._chunk_state
            if state == _DATA:
                have = len(buf) - pos
                if not have:
                    self._need()
                    return None
                take = min(have, self._left)
                self._pos = pos + take
                self._left -= take
                if not self._left:
                    self._chunk_state = _DATA_END
                return buf[pos : pos + take]
            if state == _DATA_END:
                # Exactly CRLF after a chunk's data, nothing else.
                if len(buf) - pos < 2:
                    if buf[pos:] not in (b"", b"\r"):
                        raise _protocol_error("the server sent a chunk longer than its size")
                    self._need()
                    return None
                if buf[pos : pos + 2] != b"\r\n":
                    raise _protocol_error("the server sent a chunk longer than its size")
                self._pos = pos + 2
                self._chunk_state = _SIZE
                continue
            line_end = buf.find(b"\n", pos)
            pending = (len(buf) if line_end < 0 else line_end) - pos
            # The limits count a line without its CRLF (a size line) or with
            # it (the trailers), and are applied to a line still arriving by
            # the least it can come to: the verdict never depends on the cuts.
            if state == _SIZE and pending > _CHUNK_LINE_LIMIT + 1:
                raise _protocol_error("the server sent an overlong chunk line")
            if line_end < 0:
                if (
                    state == _TRAILERS
                    and pending
                    and buf[pos:] != b"\r"
                    and self._left + pending + 1 > HEAD_LIMIT
                ):
                    raise _protocol_error("the server sent invalid or overlong trailers")
                self._need()
                return None
            line = buf[pos:line_end]
            if not line.endswith(b"\r"):
                raise _protocol_error("the server sent a chunk line without CRLF")
            line = line[:-1]
            self._pos = line_end + 1
            if state == _SIZE:
                size = _CHUNK_LINE.fullmatch(line)
                if size is None:
                    raise _protocol_error("the server sent an invalid chunk size")
                self._left = int(size[1], 16)
                # In the trailers, _left counts their bytes.
                self._chunk_state = _DATA if self._left else _TRAILERS
            elif not line:  # the empty line that ends the trailers
                self._done = True
                return b""
            else:
                self._left += len(line) + 2
                if self._left > HEAD_LIMIT or not _FIELDS.fullmatch(line + b"\n"):
                    raise _protocol_error("the server sent invalid or overlong trailers")

    def reusable(self) -> bool:
        """Whether the connection may carry another request, and get it ready if so.

        Only when the answer ended exactly where its framing said: bytes past
        it would be read as the next request's answer (a smuggled response).
        """
        if (
            self._done
            and self._keep_alive
            and not self.unsent
            and not self._eof
            and self._pos >= len(self._buf)
        ):
            self._buf = b""
            self._pos = 0
            return True
        return False
