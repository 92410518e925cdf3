"""The exchanges: one request out, one complete answer back, on one kind of client.

Each client a gateway sends on gets one exchange, chosen when the client is
made or lent, never per call:

* :class:`SocketExchange`: the gateway's own sync connections (h11 on plain
  sockets), where every read is bounded by the attempt's deadline and a
  connection is reused only when its answer ended exactly at its last byte.
* :class:`HttpxExchange` / :class:`AsyncHttpxExchange`: a lent
  ``httpx.Client`` / ``httpx.AsyncClient``, or an httpx transport given to
  the requester (a test's mock, pytest-httpx).
* :class:`AiohttpExchange`: the gateway's own aiohttp session (one per event
  loop, closed with its loop) or a lent ``aiohttp.ClientSession``.

All of them feed the same reader (:mod:`._reader`), raise only GatewayErrors
(through :func:`._answers.error_from`), and resend once, at once and
uncounted, a request whose reused connection failed before any byte of an
answer arrived (the server never answered it: uvicorn resets a kept-alive
connection after every 500).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import re
import select
import socket
import ssl
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import h11

from ._answers import Answer, Attempt, error_from
from ._reader import BodyReader, Deadline, Fault, check_head
from ._settings import ConnectionSettings
from .errors import GatewayError, InvalidRequestError

if TYPE_CHECKING:
    import aiohttp
    import httpx

__all__ = [
    "AiohttpExchange",
    "AsyncHttpxExchange",
    "HttpxExchange",
    "Outgoing",
    "SocketExchange",
]

_READ_SIZE = 65536
_HEAD_SEEN = 16384  # h11 refuses a longer head anyway
_LISTED_LENGTH = re.compile(rb"\ncontent-length[ \t]*:[^\r\n]*,", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One call's request, built once and resent as is on every retry."""

    method: str
    url: str
    target: str
    headers: Mapping[str, str]
    body: bytes | None
    repeat_safe: bool


class _StaleConnectionError(Exception):
    """A reused connection failed before any byte of an answer: the server never answered."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause

    def error(self, attempt: Attempt) -> GatewayError:
        """The failure as the call's error, when it is not resent."""
        return error_from(self.cause, attempt, answered=False)


def _sent_once_more(roundtrip: Callable[[], Answer], out: Outgoing, attempt: Attempt) -> Answer:
    """``roundtrip()``, and once more at once if a dropped reused connection ate the request.

    Only a repeat-safe request is sent again; the second try is not an
    attempt of its own (the server never answered the first).
    """
    try:
        return roundtrip()
    except _StaleConnectionError as stale:
        if not out.repeat_safe:
            raise stale.error(attempt) from stale.cause
    try:
        return roundtrip()
    except _StaleConnectionError as stale:
        raise stale.error(attempt) from stale.cause


async def _sent_once_more_async(
    roundtrip: Callable[[], Awaitable[Answer]], out: Outgoing, attempt: Attempt
) -> Answer:
    """Async form of :func:`_sent_once_more`."""
    try:
        return await roundtrip()
    except _StaleConnectionError as stale:
        if not out.repeat_safe:
            raise stale.error(attempt) from stale.cause
    try:
        return await roundtrip()
    except _StaleConnectionError as stale:
        raise stale.error(attempt) from stale.cause


def _closed_client(kind: str) -> InvalidRequestError:
    # Quietly swapping in a client of our own would drop the caller's
    # settings (auth, proxies, limits); the library would raise a bare
    # RuntimeError. Say what happened instead.
    return InvalidRequestError(
        f"the {kind} given to set_session() has been closed; hand in an open one"
    )


# -- our own sync connections ---------------------------------------------------


class _Connection:
    __slots__ = ("idle_since", "sock", "state")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.state = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0


def _dead(sock: socket.socket) -> bool:
    # An idle connection has nothing to say: readable means the server
    # closed or reset it, or sent bytes nobody asked for.
    try:
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class SocketExchange:
    """The gateway's own pooled sync connections: h11 over sockets, every read on a deadline."""

    def __init__(self, settings: ConnectionSettings, tls: ssl.SSLContext | None) -> None:
        host = settings.host
        self._address = (host.strip("[]"), settings.port)
        default = 443 if settings.scheme == "https" else 80
        self._host_header = host if settings.port == default else f"{host}:{settings.port}"
        self._tls = tls if settings.scheme == "https" else None
        self._limit = settings.max_response_bytes
        self._expiry = settings.keepalive_expiry
        self._max_idle = settings.max_keepalive_connections
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._last_headers: tuple[Mapping[str, str], list[tuple[bytes, bytes]]] | None = None
        self.closed = False

    def send(self, out: Outgoing, deadline: Deadline, attempt: Attempt) -> Answer:
        """Send ``out`` and return the complete answer; raises only GatewayErrors."""
        conn = self._pooled()
        if conn is not None:
            try:
                return self._roundtrip(conn, out, deadline, attempt, reused=True)
            except _StaleConnectionError as stale:
                if not out.repeat_safe:
                    raise stale.error(attempt) from stale.cause
        # A fresh connection: a failure on it is the attempt's own, never stale.
        return self._roundtrip(
            self._connect(deadline, attempt), out, deadline, attempt, reused=False
        )

    def _pooled(self) -> _Connection | None:
        now = time.monotonic()
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if now - conn.idle_since < self._expiry and not _dead(conn.sock):
                    return conn
                _close_quietly(conn.sock)
        return None

    def _release(self, conn: _Connection) -> None:
        with self._lock:
            if not self.closed and len(self._idle) < self._max_idle:
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
                return
        _close_quietly(conn.sock)

    def _connect(self, deadline: Deadline, attempt: Attempt) -> _Connection:
        sock: socket.socket | None = None
        try:
            sock = socket.create_connection(self._address, timeout=deadline.remaining())
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                sock.settimeout(deadline.remaining())
                sock = self._tls.wrap_socket(sock, server_hostname=self._address[0])
            return _Connection(sock)
        except Exception as exc:
            if sock is not None:
                _close_quietly(sock)
            raise error_from(exc, attempt, answered=False, connecting=True) from exc

    def _roundtrip(
        self,
        conn: _Connection,
        out: Outgoing,
        deadline: Deadline,
        attempt: Attempt,
        *,
        reused: bool,
    ) -> Answer:
        state, sock = conn.state, conn.sock
        answered = False
        try:
            data = state.send(self._request(out))
            if out.body is not None:
                data += state.send(h11.Data(data=out.body))
            data += state.send(h11.EndOfMessage())
            sock.settimeout(deadline.remaining())
            sock.sendall(data)
            received = b""
            while True:
                event = state.next_event()
                if event is h11.NEED_DATA:
                    sock.settimeout(deadline.remaining())
                    chunk = sock.recv(_READ_SIZE)
                    answered = answered or bool(chunk)
                    if len(received) < _HEAD_SEEN:
                        received += chunk
                    state.receive_data(chunk)
                elif type(event) is h11.Response:
                    break
                elif type(event) is h11.InformationalResponse:
                    if event.status_code == 101:
                        raise Fault("protocol", "the server sent status 101 as its answer")
                    deadline.check()  # an endless stream of 100 Continue ends here
                else:
                    # A clean close where an answer should be: the server
                    # dropped the connection (a stale one, if it was reused).
                    raise ConnectionAbortedError("the server closed the connection unanswered")
            status = event.status_code
            if _LISTED_LENGTH.search(received):
                # h11 folds "Content-Length: 15, 15" into 15; aiohttp refuses it.
                # Refused here too, so the same bytes get the same verdict.
                raise Fault("protocol", "the server sent an invalid Content-Length")
            head = [
                (name.decode("latin-1"), value.decode("latin-1")) for name, value in event.headers
            ]
            encoding, length = check_head(status, head)
            reader = BodyReader(encoding, self._limit, length)
            while True:
                event = state.next_event()
                if event is h11.NEED_DATA:
                    sock.settimeout(deadline.remaining())
                    state.receive_data(sock.recv(_READ_SIZE))
                elif type(event) is h11.Data:
                    reader.feed(event.data)
                    deadline.check()
                elif type(event) is h11.EndOfMessage:
                    break
                else:
                    raise Fault("protocol", "the connection closed before the answer's end")
            body = reader.finish()
        except (Fault, GatewayError, h11.ProtocolError, OSError, ValueError, MemoryError) as exc:
            _close_quietly(sock)
            if reused and not answered and _stale_kind(exc):
                raise _StaleConnectionError(exc) from exc
            raise error_from(exc, attempt, answered=answered) from exc
        except BaseException:
            # Cancelled or interrupted mid-answer: the connection is in an unknown state.
            _close_quietly(sock)
            raise
        if (
            state.our_state is h11.DONE
            and state.their_state is h11.DONE
            and not state.trailing_data[0]
        ):
            # Reused only when the answer ended exactly where its framing said:
            # bytes past it would be read as the next call's answer.
            state.start_next_cycle()
            self._release(conn)
        else:
            _close_quietly(sock)
        return Answer.of(status, head, body)

    def _request(self, out: Outgoing) -> h11.Request:
        headers = self._encoded(out.headers)
        if out.body is not None:
            headers = [*headers, (b"content-length", b"%d" % len(out.body))]
        if _PRE_PARSED:
            # The settings validated every header once; h11 would check them
            # again with two regular expressions each, on every call.
            return h11.Request(
                method=out.method.encode("ascii"),
                target=out.target.encode("ascii"),
                headers=_h11_headers(headers),
                _parsed=True,
            )
        return h11.Request(method=out.method, target=out.target, headers=headers)

    def _encoded(self, headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
        # A gateway passes the same headers object on every call: encode once.
        cached = self._last_headers
        if cached is not None and cached[0] is headers:
            return cached[1]
        encoded = [(b"host", self._host_header.encode("ascii"))] + [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
        ]
        self._last_headers = (headers, encoded)
        return encoded

    def close(self) -> None:
        """Close every idle connection; ones in use close when their answer is read."""
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            _close_quietly(conn.sock)


def _h11_headers(pairs: list[tuple[bytes, bytes]]) -> Any:
    # h11's Headers takes (raw name, lower-cased name, value) triples.
    return _H11_HEADERS([(name, name.lower(), value) for name, value in pairs])


def _pre_parsed_supported() -> bool:
    # A private fast path of h11's own reader; used only when this h11 has it.
    try:
        h11.Request(
            method=b"GET", target=b"/", headers=_h11_headers([(b"host", b"x")]), _parsed=True
        )
    except Exception:
        return False
    return True


_H11_HEADERS: Any = getattr(getattr(h11, "_headers", None), "Headers", None)
_PRE_PARSED = _H11_HEADERS is not None and _pre_parsed_supported()


def _close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


# -- httpx clients and transports --------------------------------------------------


class _TraceConnects:
    """Tells from httpcore's trace events whether a request went on a reused connection."""

    __slots__ = ("connected", "events")

    def __init__(self) -> None:
        self.events = 0
        self.connected = False

    def __call__(self, name: str, info: Mapping[str, Any]) -> None:
        self.events += 1
        if name.startswith("connection.connect_tcp"):
            self.connected = True

    async def async_trace(self, name: str, info: Mapping[str, Any]) -> None:
        self(name, info)

    @property
    def reused(self) -> bool:
        # No events at all: a mock transport, which has no connections.
        return self.events > 0 and not self.connected


def _httpx_timeout(deadline: Deadline) -> dict[str, float]:
    left = deadline.remaining()
    return {"connect": left, "read": left, "write": left, "pool": left}


def _httpx_request(
    client: httpx.Client | httpx.AsyncClient | None,
    out: Outgoing,
    deadline: Deadline,
    trace: Callable[..., Any],
) -> httpx.Request:
    # A lent client builds it (its own headers, auth and cookies apply); for a
    # bare transport it is built here. Our deadline and trace go on either.
    import httpx

    extensions = {"timeout": _httpx_timeout(deadline), "trace": trace}
    if client is None:
        return httpx.Request(
            out.method, out.url, headers=out.headers, content=out.body, extensions=extensions
        )
    request = client.build_request(out.method, out.url, content=out.body, headers=out.headers)
    request.extensions.update(extensions)
    return request


def _reader_of(
    response: httpx.Response, limit: int
) -> tuple[list[tuple[str, str]], BodyReader | None]:
    """The answer's checked head, and the reader for its raw body (``None``: read already)."""
    head = response.headers.multi_items()
    encoding, length = check_head(response.status_code, head)
    if hasattr(response, "_content"):
        return head, None
    return head, BodyReader(encoding, limit, length)


def _already_read(response: httpx.Response, limit: int) -> bytes:
    # A mock handed back a response it had read (and decoded) already.
    reader = BodyReader(None, limit)
    reader.feed(response.content)
    return reader.finish()


class HttpxExchange:
    """Sends on a lent ``httpx.Client``, or straight to an httpx transport given to us."""

    def __init__(
        self,
        limit: int,
        *,
        client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._client = client
        self._transport = transport
        self._limit = limit

    def send(self, out: Outgoing, deadline: Deadline, attempt: Attempt) -> Answer:
        """Send ``out`` and return the complete answer; raises only GatewayErrors."""
        return _sent_once_more(lambda: self._roundtrip(out, deadline, attempt), out, attempt)

    def _roundtrip(self, out: Outgoing, deadline: Deadline, attempt: Attempt) -> Answer:
        import httpx

        client = self._client
        if client is not None and client.is_closed:
            raise _closed_client("httpx.Client")
        trace = _TraceConnects()
        answered = False
        try:
            request = _httpx_request(client, out, deadline, trace)
            if client is not None:
                response = client.send(request, stream=True)
            else:
                assert self._transport is not None
                response = self._transport.handle_request(request)
            answered = True
            try:
                head, reader = _reader_of(response, self._limit)
                if reader is not None:
                    for chunk in response.iter_raw():
                        reader.feed(chunk)
                        deadline.check()
                    body = reader.finish()
                else:
                    body = _already_read(response, self._limit)
            finally:
                leftover = _connection_with_leftover(response)
                response.close()
                if leftover is not None:
                    leftover.close()
        except httpx.HTTPStatusError as exc:
            # The client raises on error statuses itself (a hook): keep the status.
            return _answer_of_status_error(exc.response)
        except Exception as exc:
            if trace.reused and not answered and _stale_kind(exc):
                raise _StaleConnectionError(exc) from exc
            raise error_from(exc, attempt, answered=answered) from exc
        return Answer.of(response.status_code, head, body)

    def close(self) -> None:
        """Close the transport given to the requester; a lent client stays open."""
        if self._transport is not None:
            self._transport.close()


class AsyncHttpxExchange:
    """Sends on a lent ``httpx.AsyncClient``, or straight to an async httpx transport."""

    def __init__(
        self,
        limit: int,
        *,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = client
        self._transport = transport
        self._limit = limit

    async def send(self, out: Outgoing, deadline: Deadline, attempt: Attempt) -> Answer:
        """Send ``out`` and return the complete answer; raises only GatewayErrors."""
        return await _sent_once_more_async(
            lambda: self._bounded(out, deadline, attempt), out, attempt
        )

    async def _bounded(self, out: Outgoing, deadline: Deadline, attempt: Attempt) -> Answer:
        # httpx bounds each read, not the whole answer: an endless stream of
        # 100 Continue or a trickled head would outlast any per-read timeout.
        try:
            return await asyncio.wait_for(
                self._roundtrip(out, deadline, attempt), deadline.remaining()
            )
        except Fault as exc:
            raise error_from(exc, attempt, answered=False) from None
        except asyncio.TimeoutError:
            raise error_from(deadline.overdue(), attempt, answered=True) from None

    async def _roundtrip(self, out: Outgoing, deadline: Deadline, attempt: Attempt) -> Answer:
        import httpx

        client = self._client
        if client is not None and client.is_closed:
            raise _closed_client("httpx.AsyncClient")
        trace = _TraceConnects()
        answered = False
        try:
            request = _httpx_request(client, out, deadline, trace.async_trace)
            if client is not None:
                response = await client.send(request, stream=True)
            else:
                assert self._transport is not None
                response = await self._transport.handle_async_request(request)
            answered = True
            try:
                head, reader = _reader_of(response, self._limit)
                if reader is not None:
                    async for chunk in response.aiter_raw():
                        reader.feed(chunk)
                        deadline.check()
                    body = reader.finish()
                else:
                    body = _already_read(response, self._limit)
            finally:
                leftover = _connection_with_leftover(response)
                await response.aclose()
                if leftover is not None:
                    await leftover.aclose()
        except httpx.HTTPStatusError as exc:
            # The client raises on error statuses itself (a hook): keep the status.
            return _answer_of_status_error(exc.response)
        except Exception as exc:
            if trace.reused and not answered and _stale_kind(exc):
                raise _StaleConnectionError(exc) from exc
            raise error_from(exc, attempt, answered=answered) from exc
        return Answer.of(response.status_code, head, body)

    async def aclose(self) -> None:
        """Close the transport given to the requester; a lent client stays open."""
        if self._transport is not None:
            await self._transport.aclose()


def _connection_with_leftover(response: httpx.Response) -> Any:
    """httpcore's connection of ``response`` if bytes past the answer's end sit in it.

    httpx would reuse it and read those bytes as the next call's answer (a
    smuggled response); the caller closes it instead. Private attributes,
    looked up defensively: with another transport there is nothing to find.
    """
    stream: Any = response.stream
    for _ in range(6):
        state = getattr(stream, "_h11_state", None)
        if state is not None:
            trailing = getattr(state, "trailing_data", (b"", False))
            return stream if trailing[0] else None
        stream = next(
            (
                getattr(stream, name)
                for name in ("_stream", "_httpcore_stream", "_connection")
                if getattr(stream, name, None) is not None
            ),
            None,
        )
        if stream is None:
            return None
    return None


def _answer_of_status_error(response: httpx.Response) -> Answer:
    return Answer.of(response.status_code, response.headers.multi_items(), b"")


def _stale_kind(exc: BaseException) -> bool:
    # The failures a connection the server already dropped produces.
    if isinstance(exc, ConnectionError | BrokenPipeError):
        return True
    name = type(exc).__name__
    return name in (
        "RemoteProtocolError",
        "ReadError",
        "WriteError",
        "ServerDisconnectedError",
        "ClientOSError",
        "ClientConnectionResetError",
    )


# -- aiohttp sessions -------------------------------------------------------------

_REUSED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "jobmon_gateway_reused", default=False
)
_CONNECTOR_CLASS: type[Any] | None = None


def _connector_class() -> type[Any]:
    # Made on first use so that importing the SDK never imports aiohttp.
    global _CONNECTOR_CLASS
    if _CONNECTOR_CLASS is None:
        import aiohttp

        class _ReuseTellingConnector(aiohttp.TCPConnector):
            """Records, for the running task, whether the connection came from the pool."""

            async def _get(self, key: Any, traces: Any) -> Any:
                conn = await super()._get(key, traces)
                _REUSED.set(conn is not None)
                return conn

        _CONNECTOR_CLASS = _ReuseTellingConnector
    return _CONNECTOR_CLASS


async def _close_with_loop(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    # Kept suspended for the life of its event loop: the loop closes every
    # such generator when it shuts down (asyncio.run does), and that closes
    # the session on the loop it belongs to.
    try:
        yield
    finally:
        if not session.closed:
            await session.close()


class _LoopSession:
    __slots__ = ("guard", "loop", "session")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        session: aiohttp.ClientSession,
        guard: AsyncGenerator[None, None],
    ) -> None:
        self.loop = loop
        self.session = session
        self.guard = guard


class AiohttpExchange:
    """Sends on aiohttp: the gateway's own session per event loop, or a lent one."""

    def __init__(
        self,
        settings: ConnectionSettings,
        tls: ssl.SSLContext | bool,
        *,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._settings = settings
        self._tls = tls
        self._limit = settings.max_response_bytes
        self._lent = session
        self._by_loop: dict[asyncio.AbstractEventLoop, _LoopSession] = {}
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        """Whether no session of ours is open (a lent one is never ours to close)."""
        return not self._by_loop

    async def session(self) -> aiohttp.ClientSession:
        """The session for the running loop: the lent one, or ours (made on first use)."""
        if self._lent is not None:
            if self._lent.closed:
                raise _closed_client("aiohttp.ClientSession")
            return self._lent
        loop = asyncio.get_running_loop()
        record = self._by_loop.get(loop)
        if record is not None and not record.session.closed:
            return record.session
        return await self._open(loop)

    async def _open(self, loop: asyncio.AbstractEventLoop) -> aiohttp.ClientSession:
        import aiohttp

        self._abandon_where(lambda loop: loop.is_closed())
        settings = self._settings
        connector = _connector_class()(
            limit=settings.max_connections,
            keepalive_timeout=settings.keepalive_expiry,
            ssl=self._tls,
        )
        # We decompress (with the size limit) and send every header ourselves.
        session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
            # The sync exchange keeps no cookies either: the same requests both ways.
            cookie_jar=aiohttp.DummyCookieJar(),
            # The sync exchange's parser (h11) allows a 16 KiB head.
            max_line_size=16384,
            max_field_size=16384,
        )
        # aiohttp would quietly resend an idempotent request once on a dropped
        # reused connection; we do that ourselves, for every repeat-safe call.
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        guard = _close_with_loop(session)
        await guard.__anext__()
        with self._lock:
            self._by_loop[loop] = _LoopSession(loop, session, guard)
        return session

    def _abandon_where(self, gone: Callable[[asyncio.AbstractEventLoop], bool]) -> None:
        with self._lock:
            records = [record for loop, record in self._by_loop.items() if gone(loop)]
            for record in records:
                del self._by_loop[record.loop]
        for record in records:
            _abandon(record)

    async def send(self, out: Outgoing, deadline: Deadline, attempt: Attempt) -> Answer:
        """Send ``out`` and return the complete answer; raises only GatewayErrors."""
        session = await self.session()
        return await _sent_once_more_async(
            lambda: self._roundtrip(session, out, deadline, attempt), out, attempt
        )

    async def _roundtrip(
        self, session: aiohttp.ClientSession, out: Outgoing, deadline: Deadline, attempt: Attempt
    ) -> Answer:
        import aiohttp

        if self._lent is not None:
            # Not our connector: guess reuse from its idle pool for this host.
            reused = _pooled_for(session, self._settings)
        else:
            _REUSED.set(False)
            reused = False
        answered = False
        try:
            left = deadline.remaining()
            timeout = aiohttp.ClientTimeout(total=left, sock_connect=left)
            async with session.request(
                out.method,
                out.url,
                headers=out.headers,
                data=out.body,
                allow_redirects=False,
                timeout=timeout,
                auto_decompress=False,
                raise_for_status=False,  # a lent session's own setting must not hide the status
            ) as response:
                answered = True
                try:
                    status = response.status
                    head = list(response.headers.items())
                    encoding, length = check_head(status, head)
                    reader = BodyReader(encoding, self._limit, length)
                    content = response.content
                    while chunk := await content.readany():
                        reader.feed(chunk)
                        deadline.check()
                    body = reader.finish()
                except BaseException:
                    response.close()  # never reuse a connection read short
                    raise
        except Exception as exc:
            if not answered and (reused or _REUSED.get()) and _stale_kind(exc):
                raise _StaleConnectionError(exc) from exc
            raise error_from(exc, attempt, answered=answered) from exc
        return Answer.of(status, head, body)

    async def aclose(self) -> None:
        """Close our sessions (on this loop by awaiting, on closed loops by force)."""
        if self._lent is not None:
            return
        with self._lock:
            records, self._by_loop = list(self._by_loop.values()), {}
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for record in records:
            if record.loop is running:
                await record.guard.aclose()  # its finally closes the session
            elif record.loop.is_closed() or not record.loop.is_running():
                _abandon(record)
            else:
                # Still running in another thread: let it close there.
                future = asyncio.run_coroutine_threadsafe(record.guard.aclose(), record.loop)
                if running is not None:
                    await asyncio.wrap_future(future)

    def close_abandoned(self) -> None:
        """Close, without a loop, what sessions of closed or idle loops still hold."""
        if self._lent is None:
            self._abandon_where(lambda loop: loop.is_closed() or not loop.is_running())


def _pooled_for(session: aiohttp.ClientSession, settings: ConnectionSettings) -> bool:
    # Whether the lent session holds an idle connection to our server (the
    # next request would go on it); any other host's idle pool says nothing.
    conns = getattr(session.connector, "_conns", None) or {}
    host = settings.host.strip("[]")
    return any(
        getattr(key, "host", None) == host and getattr(key, "port", None) == settings.port
        for key in conns
    )


def _abandon(record: _LoopSession) -> None:
    """Close a session whose loop is not running, without awaiting on another loop."""
    session, loop = record.session, record.loop
    if session.closed:
        return
    if not loop.is_closed():
        # Open but idle (run_until_complete between calls): run it once more
        # to close the session properly, on its own loop.
        try:
            loop.run_until_complete(record.guard.aclose())
            return
        except RuntimeError:
            pass  # another loop runs in this thread: abort below
    connector = session.connector
    protocols: list[Any] = []
    if connector is not None:
        for pooled in list(getattr(connector, "_conns", {}).values()):
            protocols.extend(proto for proto, _ in pooled)
        protocols.extend(getattr(connector, "_acquired", ()))
    for proto in protocols:
        transport = getattr(proto, "transport", None)
        if not loop.is_closed() and transport is not None:
            # The loop still owns the descriptor: let it unregister and close it.
            transport.abort()
            continue
        # The loop is gone (its selector with it): close the socket itself.
        sock = getattr(transport, "_sock", None)
        if isinstance(sock, socket.socket):
            _close_quietly(sock)
    # Mark both closed without touching the loop again (and without their
    # "Unclosed" warnings, which would now be false).
    if connector is not None:
        connector._closed = True
        getattr(connector, "_conns", {}).clear()
        getattr(connector, "_acquired", set()).clear()
    session._connector = None
