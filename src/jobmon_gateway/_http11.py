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

import re
import time
from typing import Final

import h11
import httpcore

__all__ = [
    "HEAD_LIMIT",
    "BrokenAnswer",
    "Conversation",
    "PartialAnswer",
    "broken",
    "expired",
    "finished_at",
]

HEAD_LIMIT: Final = 16384
"""Most bytes of an answer's head (status line and headers)."""

_LISTED_LENGTH = re.compile(rb"\ncontent-length[ \t]*:[^\r\n]*,", re.IGNORECASE)


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


def finished_at(deadline: float) -> float:
    """Seconds left until ``deadline`` (a ``time.monotonic()`` value); raises when none are."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired()
    return left


def expired() -> httpcore.ReadTimeout:
    """The failure of a request whose deadline passed (mapped to a timeout by the sender)."""
    return httpcore.ReadTimeout("the request's deadline passed")


class Conversation:
    """The h11 state of one connection, one request and answer at a time.

    ``answered`` turns true with the first byte the server sends for the
    current request: a failure before it, on a reused connection, means the
    server dropped the connection without reading the request.
    """

    __slots__ = ("answered", "head_seen", "state")

    def __init__(self) -> None:
        self.state = h11.Connection(h11.CLIENT, max_incomplete_event_size=HEAD_LIMIT)
        self.answered = False
        self.head_seen = b""

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
        state = self.state
        try:
            data = state.send(h11.Request(method=method, target=target, headers=headers))
            if body:
                data += state.send(h11.Data(data=body))
            data += state.send(h11.EndOfMessage())
        except h11.LocalProtocolError as exc:
            raise httpcore.LocalProtocolError(str(exc)) from None
        return data or b""

    def feed(self, data: bytes) -> None:
        """Bytes the server sent (``b""``: it closed the connection)."""
        if data:
            self.answered = True
            if len(self.head_seen) < HEAD_LIMIT:
                self.head_seen += data[: HEAD_LIMIT - len(self.head_seen)]
        self.state.receive_data(data)

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
                if _LISTED_LENGTH.search(self.head_seen):
                    # h11 folds "Content-Length: 15, 15" into 15; other parsers
                    # refuse it. Refused here, so no reader can disagree.
                    raise httpcore.RemoteProtocolError("the server sent an invalid Content-Length")
                return event
            if kind is h11.InformationalResponse:
                assert isinstance(event, h11.InformationalResponse)
                if event.status_code == 101:
                    raise httpcore.RemoteProtocolError("the server sent status 101 as its answer")
                finished_at(deadline)
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
            state.our_state is h11.DONE
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
