"""One HTTP/1.1 conversation on one connection, without I/O: what both pools share.

The sync pool (:mod:`._pool`, sockets) and the async pool
(:mod:`._async_pool`, an asyncio protocol) move bytes; everything about the
bytes is decided here, once, so the same answer gets the same verdict in
both worlds. h11 is imported directly because this is where the SDK speaks
HTTP/1.1 itself: it is the parser httpx's own pool (httpcore) uses, so an
answer is read by the same rules whichever transport carries it.

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

import h11
import httpcore

if TYPE_CHECKING:
    from ._routing import Route, Routing

__all__ = [
    "HEAD_LIMIT",
    "BrokenAnswer",
    "Conversation",
    "Origin",
    "PartialAnswer",
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

_SEEN_LIMIT = 4 * HEAD_LIMIT  # heads kept for the checks below: 1xx ones and the answer's
_LISTED_LENGTH = re.compile(rb"\ncontent-length[ \t]*:[^\r\n]*,", re.IGNORECASE)


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
) -> tuple[Origin, float, Any, Route, bytes, list[tuple[bytes, bytes]]]:
    """What a pool needs of ``request``: origin, deadline, trace, route, target and headers."""
    origin = origin_of(request.url)
    route = routing.route(*origin)
    target, headers = outgoing(request.url, request.headers, route)
    return (
        origin,
        deadline_of(request.extensions),
        request.extensions.get("trace"),
        route,
        target,
        headers,
    )


def response_of(head: h11.Response, content: Any) -> httpcore.Response:
    """The httpcore response for ``head``, its body streamed from ``content``."""
    return httpcore.Response(
        status=head.status_code,
        headers=list(head.headers),
        content=content,
        extensions={"http_version": b"HTTP/1.1", "reason_phrase": head.reason},
    )


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
    return talk, talk.request(b"CONNECT", route.tunnel, headers, None)


def check_tunnel(talk: Conversation, head: h11.Response, *, more_bytes: bool) -> None:
    """Raise unless the proxy opened the tunnel, and sent nothing past its answer.

    A proxy's 5xx is its own trouble, retried like a failed connect (the
    request never reached the server); a 4xx (407: credentials) is not.
    """
    status = head.status_code
    if status >= 500:
        raise httpcore.ConnectError(f"the proxy could not open the tunnel ({status})")
    if not 200 <= status < 300:
        raise httpcore.ProxyError(f"the proxy refused the tunnel ({status})")
    if talk.state.trailing_data[0] or more_bytes:
        raise httpcore.ProxyError("the proxy sent bytes before the tunnel opened")


_EVENTS: dict[tuple[bytes, bytes, tuple[tuple[bytes, bytes], ...]], h11.Request] = {}
_EVENTS_KEPT = 256
_CHECKED: set[tuple[bytes, bytes]] = set()
_CHECKED_KEPT = 1024
# Stricter than h11's own rules (a token; printable ASCII without leading or
# trailing space): a header passing these passes h11's checks too.
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(rb"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


def _request_event(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> h11.Request:
    # h11 checks every header of a request with regular expressions when the
    # event is made (a third of a small call's cost); a driver sends the same
    # request again and again (every heartbeat of a run is the same), and h11's
    # events are immutable: each distinct one is made, and checked, once.
    key = (method, target, tuple(headers))
    event = _EVENTS.get(key)
    if event is not None:
        return event
    fresh = _unchecked(headers)
    if fresh < 0:
        event = h11.Request(method=method, target=target, headers=headers)
    else:
        # Every header was checked before, or just now by stricter rules than
        # h11's: h11 is told so (its own parser's path), and checks the rest.
        # A request id changes one header on every call (see _request_id):
        # only that one is checked per call, and such events are not kept.
        event = h11.Request(method=method, target=target, headers=headers, _parsed=True)
    if fresh <= 0:
        if len(_EVENTS) >= _EVENTS_KEPT:
            _EVENTS.clear()
        _EVENTS[key] = event
    return event


def _unchecked(headers: list[tuple[bytes, bytes]]) -> int:
    """How many headers were checked just now (strict rules, remembered per pair); -1: one
    failed them, and h11 must check them all."""
    checked = _CHECKED
    fresh = 0
    for pair in headers:
        if pair not in checked:
            name, value = pair
            if not (_HEADER_NAME.fullmatch(name) and _HEADER_VALUE.fullmatch(value)):
                return -1
            if len(checked) >= _CHECKED_KEPT:
                checked.clear()
            checked.add(pair)
            fresh += 1
    return fresh


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
        marked = BrokenAnswer(f"the answer broke off ({exc})")
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


class Conversation:
    """The h11 state of one connection, one request and answer at a time.

    ``answered`` turns true with the first byte the server sends for the
    current request: a failure before it, on a reused connection, means the
    server dropped the connection without reading the request.
    """

    __slots__ = ("answered", "consumed", "fed", "head_seen", "state", "unsent")

    def __init__(self) -> None:
        self.state = h11.Connection(h11.CLIENT, max_incomplete_event_size=HEAD_LIMIT)
        self.answered = False
        self.head_seen = b""
        # Bytes fed for the current answer, and how many of them heads used.
        self.fed = 0
        self.consumed = 0
        # The request could not be sent whole (the server may still answer).
        self.unsent = False

    def request(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes | None,
    ) -> bytes:
        """The bytes of a whole request (head and body), ready to send."""
        self.answered = False
        self.head_seen = b""
        self.fed = self.consumed = 0
        state = self.state
        try:
            data = state.send(_request_event(method, target, headers))
            if body:
                data += state.send(h11.Data(data=body))
            data += state.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            # h11's words quote the offending value, which may be a credential.
            raise httpcore.LocalProtocolError(
                "the request has an invalid header or target (value not shown)"
            ) from None
        return data or b""

    def feed(self, data: bytes) -> None:
        """Bytes the server sent (``b""``: it closed the connection)."""
        if data:
            self.answered = True
            self.fed += len(data)
            if len(self.head_seen) < _SEEN_LIMIT:
                self.head_seen += data[: _SEEN_LIMIT - len(self.head_seen)]
        self.state.receive_data(data)

    def _head_done(self) -> int:
        # h11 checks the size of a head it is still waiting for, not of one
        # that arrived whole in one read: measured here, so the verdict never
        # depends on how the bytes were cut. Returns where the head ended.
        start = self.consumed
        self.consumed = self.fed - len(self.state.trailing_data[0])
        if self.consumed - start > HEAD_LIMIT:
            raise httpcore.RemoteProtocolError(
                f"the server sent a head larger than {HEAD_LIMIT} bytes"
            )
        return self.consumed

    def head(self, deadline: float) -> h11.Response | None:
        """The answer's head once it is complete (``None``: more bytes are needed).

        Informational answers (1xx) are skipped, each one on the deadline:
        an endless stream of ``100 Continue`` ends when the deadline does.
        """
        while True:
            event = self._next()
            if event is h11.NEED_DATA:
                return None
            kind = type(event)
            if kind is h11.Response:
                assert isinstance(event, h11.Response)
                end = self._head_done()
                if _LISTED_LENGTH.search(self.head_seen, 0, end):
                    # h11 folds "Content-Length: 15, 15" into 15; other parsers
                    # refuse it. Refused here, so no reader can disagree.
                    raise httpcore.RemoteProtocolError("the server sent an invalid Content-Length")
                return event
            if kind is h11.InformationalResponse:
                assert isinstance(event, h11.InformationalResponse)
                if event.status_code == 101:
                    raise httpcore.RemoteProtocolError("the server sent status 101 as its answer")
                self._head_done()
                seconds_left(deadline)
                continue
            # ConnectionClosed where an answer should start.
            raise httpcore.RemoteProtocolError("the server closed the connection unanswered")

    def body(self) -> bytes | None:
        """The next piece of the body; ``b""`` at its end, ``None`` when more bytes are needed."""
        while True:
            event = self._next()
            if event is h11.NEED_DATA:
                return None
            kind = type(event)
            if kind is h11.Data:
                assert isinstance(event, h11.Data)
                data = bytes(event.data)
                if data:
                    return data
                continue
            if kind is h11.EndOfMessage:
                return b""
            raise httpcore.RemoteProtocolError("the connection closed before the answer's end")

    def reusable(self) -> bool:
        """Whether the connection may carry another request, and get it ready if so.

        Only when the answer ended exactly where its framing said: bytes past
        it would be read as the next request's answer (a smuggled response).
        """
        state = self.state
        if (
            not self.unsent
            and state.our_state is h11.DONE
            and state.their_state is h11.DONE
            and not state.trailing_data[0]
        ):
            state.start_next_cycle()
            return True
        return False

    def _next(self) -> object:
        try:
            return self.state.next_event()
        except h11.RemoteProtocolError as exc:
            raise httpcore.RemoteProtocolError(str(exc)) from None
