"""The async connection pool behind :class:`~jobmon_gateway.transports.AsyncGatewayTransport`.

The twin of :mod:`._pool` on asyncio: the same conversation
(:mod:`._http11`), the same deadline on every wait (a timer on the event
loop, not a task per read), the same reuse rules. Connections belong to the
event loop they were opened on; a pool keeps each loop's apart, and closes
them when that loop shuts down (``asyncio.run`` does so) or when the pool
is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import sys
import threading
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpcore
import httpx

from ._http11 import (
    Conversation,
    Origin,
    PoolAnswer,
    broken,
    check_tunnel,
    overdue_error,
    prepared,
    response_of,
    seconds_left,
    tunnel_request,
)
from ._pool import forks, numeric_address, remember_for_fork, silent
from ._routing import Route, Routing, UnresolvedHost

__all__ = ["AsyncPool"]

_BUFFER_HIGH = 1 << 20  # pause reading past 1 MiB not yet taken
_SENT_TOGETHER_BYTES = 1 << 16
"""Requests up to this size started in one turn of the loop after its first are written together.

A write on loopback that wakes a sleeping server charges the wake-up to the
writer: measured here, 50 concurrent calls each writing at once spent about
10 us more kernel time a call than the same requests written back to back
(as aiohttp's writer task does). Bigger requests are written at once, and
drained.
"""

_T = TypeVar("_T")

# Before 3.11.3 (gh-102780) asyncio.timeout gave a task that had been
# cancelled once (and carried on) CancelledError instead of TimeoutError.
_TIMEOUT_SCOPES = sys.version_info >= (3, 11, 3)


async def _within(awaitable: Awaitable[_T], seconds: float) -> _T:
    """``awaitable``'s result, or ``TimeoutError`` after ``seconds``.

    ``asyncio.timeout`` times the running task itself; ``wait_for`` (3.10,
    3.11) runs the awaitable in a task of its own, a few more turns of the
    loop for every connection made.
    """
    if sys.version_info >= (3, 11) and _TIMEOUT_SCOPES:  # the first test is mypy's
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)  # pragma: no cover - before 3.11.3


class _Stream(asyncio.Protocol):
    """A connection's bytes, waited for on a deadline."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.ended = False
        self.failure: BaseException | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.sock: socket.socket | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > _BUFFER_HIGH and not self.reading_paused and self.transport:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.ended = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.failure = exc
        self._wake()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, deadline: float) -> None:
        waiter = self.waiter = self.loop.create_future()
        timer = self.loop.call_later(seconds_left(deadline), _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None

    async def read(self, deadline: float) -> bytes:
        """The bytes received so far, waiting for some; ``b""`` once the server closed."""
        while not self.chunks:
            if self.ended:
                if self.failure is not None:
                    raise httpcore.ReadError(str(self.failure) or type(self.failure).__name__)
                return b""
            await self._wait(deadline)
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        self.buffered = 0
        if self.reading_paused and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()
        return data

    def writable(self) -> asyncio.Transport | None:
        """The transport, or ``None`` if nothing can be sent on it any more."""
        transport = self.transport
        if self.ended or transport is None or transport.is_closing():
            return None
        return transport

    def open_transport(self) -> asyncio.Transport:
        """The transport; ``httpcore.WriteError`` if nothing can be sent on it any more."""
        transport = self.writable()
        if transport is None:
            raise httpcore.WriteError("the connection is closed")
        return transport

    def send(self, data: bytes) -> bool:
        """Hand ``data`` to the transport; ``True`` if its buffer is full (then :meth:`drain`)."""
        self.open_transport().write(data)
        return self.writing_paused

    def send_queued(self, data: bytes, deadline: float) -> None:
        """Write ``data`` queued at the loop's last turn, unless it is too late for it.

        Too late: the connection closed since (the server hung up, or the
        caller gave up and the pool dropped it): a waiting reader sees the
        end; or the caller's deadline passed while that turn ran (a coroutine
        that blocked the loop): the caller's timer fires next, and the
        server must not do work its caller was told had timed out. A socket
        error while writing is the transport's to report: it closes and
        calls :meth:`connection_lost`, which wakes the reader.
        """
        transport = self.writable()
        if transport is not None and time.monotonic() < deadline:
            transport.write(data)

    async def drain(self, deadline: float) -> None:
        """Wait (on the deadline) while the socket's buffer is full."""
        while self.writing_paused:
            if self.ended:
                raise httpcore.WriteError("the connection closed while sending")
            await self._wait(deadline)

    async def write(self, data: bytes, deadline: float) -> None:
        """Send ``data``, waiting (on the deadline) while the socket's buffer is full."""
        if self.send(data):
            await self.drain(deadline)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(overdue_error())


class _Connection:
    __slots__ = ("generation", "idle_since", "origin", "stream", "talk")

    def __init__(self, stream: _Stream, origin: Origin, generation: int):
        self.stream = stream
        self.origin = origin
        self.talk = Conversation()
        self.idle_since = 0.0
        self.generation = generation

    def silent(self) -> bool:
        # Idle and still open, with nothing sent by the server since its last
        # answer: neither delivered by the loop nor waiting in the socket (the
        # loop may not have had a turn since the server spoke or closed).
        stream = self.stream
        return (
            not stream.ended
            and not stream.chunks
            and stream.transport is not None
            and (stream.sock is None or silent(stream.sock))
        )


class _LoopConnections:
    """One event loop's connections: the idle ones, the requests waiting for the loop's next turn
    to be written, and a guard that closes the idle ones with the loop."""

    __slots__ = ("__weakref__", "guard", "idle", "queued_at_fork", "slots", "unsent")

    def __init__(self, max_connections: int) -> None:
        self.idle: list[_Connection] = []
        self.slots = asyncio.Semaphore(max_connections)
        self.guard: AsyncGenerator[None, None] | None = None
        # None: nothing written in this turn of the loop yet.
        self.unsent: list[tuple[_Stream, bytes, float]] | None = None
        self.queued_at_fork = 0

    def send_soon(self, stream: _Stream, data: bytes, deadline: float) -> None:
        """Write ``data`` now if it is the first request of this turn of the loop.

        Any other request started in the same turn is written at the next
        one, together with the rest: a lone call's request leaves at once, a
        gathered batch wakes the server twice, not once a call.
        """
        transport = stream.open_transport()
        unsent = self.unsent
        if unsent is None:
            stream.loop.call_soon(self._send_unsent)
            self.unsent = []
            self.queued_at_fork = forks()
            transport.write(data)
        else:
            unsent.append((stream, data, deadline))

    def _send_unsent(self) -> None:
        unsent, self.unsent = self.unsent, None
        if self.queued_at_fork != forks():
            # A forked child running its parent's loop: the parent writes
            # these (whether or not its pool still lists this loop).
            return
        for stream, data, deadline in unsent or ():
            stream.send_queued(data, deadline)

    def close_idle(self, *, sockets_too: bool = False) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.stream.close()
            if sockets_too and conn.stream.sock is not None:
                # A loop that may never run again would never finish closing.
                conn.stream.sock.close()


async def _closed_with_loop(
    pool: weakref.ref[AsyncPool], record: _LoopConnections
) -> AsyncGenerator[None, None]:
    # Kept suspended for the life of its loop: a loop closes every such
    # generator when it shuts down (asyncio.run does), which closes the
    # loop's idle connections on the loop they belong to, and lets the pool
    # forget the loop (the generator holds its loop: kept, it would keep
    # every closed loop alive).
    try:
        yield
    finally:
        record.close_idle()
        record.guard = None
        owner = pool()
        if owner is not None:
            owner.forget(record)


_FORSAKEN: list[object] = []


class AsyncPool:
    """Keep-alive connections per event loop, called by httpx as it calls httpcore's pool."""

    def __init__(
        self,
        routing: Routing,
        tls: Callable[[], ssl.SSLContext],
        *,
        max_connections: int,
        max_keepalive: int,
        keepalive_expiry: float,
    ) -> None:
        self._routing = routing
        self._tls = tls
        self._max_connections = max_connections
        self._max_keepalive = max_keepalive
        self._expiry = keepalive_expiry
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopConnections] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        # The last loop's record, both held weakly: see _current().
        self._last: (
            tuple[weakref.ref[asyncio.AbstractEventLoop], weakref.ref[_LoopConnections]] | None
        ) = None
        self._generation = 0
        self.closed = False
        remember_for_fork(self)

    # -- httpcore's interface ---------------------------------------------------

    async def handle_async_request(self, request: httpcore.Request) -> PoolAnswer:
        """Send ``request`` and answer as soon as the head is in; the body streams."""
        origin, deadline, trace, route, checked = prepared(request, self._routing)
        given = request.stream
        if isinstance(given, httpx.ByteStream):
            # Bytes given as the content (every gateway call): no need to
            # iterate asynchronously.
            body = b"".join(given)
        else:
            body = b"".join([part async for part in given])  # type: ignore[union-attr]
        record = self._current()
        if record is None:
            record = await self._record()
        slots = record.slots
        if slots.locked():
            try:
                await _within(slots.acquire(), seconds_left(deadline))
            except asyncio.TimeoutError:
                raise httpcore.PoolTimeout("no free connection before the deadline") from None
        else:
            await slots.acquire()
        try:
            conn = self._pooled(record, origin)
            if conn is None:
                conn = await self._connect(route, origin, deadline, trace)
        except BaseException:
            slots.release()
            raise
        talk, stream = conn.talk, conn.stream
        try:
            if trace is not None:
                # As httpcore does on every request: with no connect event
                # before it, the sender knows the connection was reused.
                await trace("http11.send_request_headers.started", {"request": request})
            data = talk.request(request.method, checked, body)
            try:
                if len(data) <= _SENT_TOGETHER_BYTES:
                    record.send_soon(stream, data, deadline)
                elif stream.send(data):
                    await stream.drain(deadline)
            except httpcore.WriteError:
                # The server may have answered already and closed: read that
                # answer, as httpx does (the sync pool's rule).
                talk.unsent = True
            while (head := talk.head(deadline)) is None:
                talk.feed(await stream.read(deadline))
            whole = talk.whole_body()
        except BaseException as exc:
            self._discard(record, conn)
            marked = broken(exc, talk)
            if marked is exc:
                raise
            raise marked from exc
        if whole is None:
            return response_of(head, _Body(self, record, conn, deadline))
        # All of it came with the head: the connection is done with at once.
        if talk.reusable():
            self.release(record, conn)
        else:
            self._discard(record, conn)
        return response_of(head, whole)

    async def aclose(self) -> None:
        """Close the connections of this loop now, and of closed loops by force."""
        with self._lock:
            self.closed = True
            records = list(self._loops.items())
            self._loops = weakref.WeakKeyDictionary()
            self._last = None
        for loop, record in records:
            if loop.is_closed():
                _close_by_force(record)
            elif loop is _running_loop():
                record.close_idle()
                guard, record.guard = record.guard, None
                if guard is not None:
                    # Its job is done; closing it spares the loop a dangling generator.
                    await guard.aclose()
            elif not loop.is_running():
                # Stopped (and maybe never run again): close here and now.
                record.close_idle(sockets_too=True)
            else:
                # Another thread's loop: its transports are closed on that loop.
                loop.call_soon_threadsafe(record.close_idle)

    def close_abandoned(self, *, only_closed: bool = False) -> None:
        """Close, without awaiting, the connections of loops that are not running."""
        with self._lock:
            records = [
                (loop, record)
                for loop, record in self._loops.items()
                if loop.is_closed() or not (only_closed or loop.is_running())
            ]
            for loop, _ in records:
                del self._loops[loop]
            if records:
                self._last = None
        for loop, record in records:
            if loop.is_closed():
                _close_by_force(record)
            else:
                record.close_idle(sockets_too=True)

    async def __aenter__(self) -> AsyncPool:
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.aclose()

    # -- connections ------------------------------------------------------------

    def _current(self) -> _LoopConnections | None:
        # The record of the loop the last call ran on, if this call runs on
        # it too: most programs have one loop. Held weakly, as _loops holds
        # them: the pool keeps neither a loop nor a dead loop's connections.
        last = self._last
        if last is not None and last[0]() is asyncio.get_running_loop():
            return last[1]()
        return None

    async def _record(self) -> _LoopConnections:
        loop = asyncio.get_running_loop()
        record = self._loops.get(loop)
        if record is None:
            # A new loop: loops closed without shutting down (no
            # shutdown_asyncgens) are let go here, their sockets closed.
            self.close_abandoned(only_closed=True)
            record = _LoopConnections(self._max_connections)
            guard = _closed_with_loop(weakref.ref(self), record)
            await guard.__anext__()
            record.guard = guard
            with self._lock:
                self._loops[loop] = record
        self._last = (weakref.ref(loop), weakref.ref(record))
        return record

    def forget(self, record: _LoopConnections) -> None:
        """Drop ``record`` (its loop is shutting down)."""
        with self._lock:
            self._last = None
            for loop, kept in list(self._loops.items()):
                if kept is record:
                    del self._loops[loop]

    def _pooled(self, record: _LoopConnections, origin: Origin) -> _Connection | None:
        now = time.monotonic()
        idle = record.idle
        for index in range(len(idle) - 1, -1, -1):
            conn = idle[index]
            if conn.origin != origin:
                continue
            del idle[index]
            if now - conn.idle_since < self._expiry and conn.silent():
                return conn
            conn.stream.close()
        return None

    async def _connect(
        self, route: Route, origin: Origin, deadline: float, trace: Any
    ) -> _Connection:
        if trace is not None:
            await trace("connection.connect_tcp.started", {"host": route.address[0]})
        loop = asyncio.get_running_loop()
        stream: _Stream | None = None
        sock: socket.socket | None = None
        try:
            left = seconds_left(deadline)
            sock = await _within(_connected_socket(loop, route.address), left)
            tls_now = route.tls and route.tunnel is None
            context = self._tls() if route.tls else None
            left = seconds_left(deadline)
            _, made = await _within(
                loop.create_connection(
                    lambda: _Stream(loop),
                    sock=sock,
                    ssl=context if tls_now else None,
                    server_hostname=route.server_hostname if tls_now else None,
                    ssl_handshake_timeout=left if tls_now else None,
                ),
                left,
            )
            stream = made
            stream.sock = sock
            if route.tunnel is not None:
                await _open_tunnel(stream, route, deadline)
                if route.tls:
                    assert stream.transport is not None
                    assert context is not None
                    left = seconds_left(deadline)
                    tls = await _within(
                        loop.start_tls(
                            stream.transport,
                            stream,
                            context,
                            server_hostname=route.server_hostname,
                            ssl_handshake_timeout=left,
                        ),
                        left,
                    )
                    assert isinstance(tls, asyncio.Transport)
                    stream.transport = tls
        except BaseException as exc:
            if stream is not None:
                stream.close()
            elif sock is not None:
                sock.close()
            if isinstance(exc, asyncio.TimeoutError | httpcore.ReadTimeout):
                raise httpcore.ConnectTimeout("could not connect before the deadline") from exc
            if isinstance(exc, OSError):
                raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
            raise
        conn = _Connection(stream, origin, self._generation)
        if trace is not None:
            try:
                await trace("connection.connect_tcp.complete", {"return_value": None})
            except BaseException:
                stream.close()
                raise
        return conn

    def release(self, record: _LoopConnections, conn: _Connection) -> None:
        """Take back a connection whose answer was read to its end."""
        keep = (
            not self.closed
            and conn.generation == self._generation
            and len(record.idle) < self._max_keepalive
        )
        if keep:
            conn.idle_since = time.monotonic()
            record.idle.append(conn)
        else:
            conn.stream.close()
        record.slots.release()

    def _discard(self, record: _LoopConnections, conn: _Connection) -> None:
        conn.stream.close()
        record.slots.release()

    def forget_after_fork(self) -> None:
        """In a forked child: never touch the parent's connections (their bytes would mix)."""
        # The child lets go of its copies of the sockets (the parent's stay
        # open) without freeing their descriptor numbers: each is pointed at
        # /dev/null instead of closed. A loop the child goes on running shares
        # its epoll instance with the parent and still maps those numbers to
        # the parent's transports: a new socket given a freed number would
        # never be watched. The transports are kept, unused, rather than
        # closed, which would unregister the parent's sockets from that epoll.
        null = os.open(os.devnull, os.O_RDWR)
        try:
            for record in self._loops.values():
                for conn in record.idle:
                    sock = conn.stream.sock
                    if sock is not None and sock.fileno() >= 0:
                        with contextlib.suppress(OSError):
                            os.dup2(null, sock.fileno())
                _FORSAKEN.append(record.idle)
                record.idle = []
        finally:
            os.close(null)
        self._loops = weakref.WeakKeyDictionary()
        self._last = None
        self._lock = threading.Lock()
        self._generation += 1


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _close_by_force(record: _LoopConnections) -> None:
    # The loop is gone (and its selector with it): its transports can no
    # longer close themselves, so close the sockets the pool made.
    idle, record.idle = record.idle, []
    for conn in idle:
        sock = conn.stream.sock
        if sock is not None:
            sock.close()
    guard, record.guard = record.guard, None
    if guard is not None:
        # Finished here, without the loop: left to the garbage collector, it
        # would ask its closed loop to finish it, and fail.
        closing = guard.aclose()
        try:
            closing.send(None)
        except StopIteration:
            pass
        finally:
            closing.close()


async def _connected_socket(
    loop: asyncio.AbstractEventLoop, address: tuple[str, int]
) -> socket.socket:
    # The pool makes the socket itself so that it can close it even after
    # its event loop is gone. A numeric address is never looked up: the
    # lookup runs on the loop's executor, whose threads a forked child that
    # runs its parent's loop does not have.
    infos = numeric_address(*address)
    if infos is None:
        try:
            infos = await loop.getaddrinfo(address[0], address[1], type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise UnresolvedHost(address[0]) from exc
    failure: OSError = OSError(f"no address for {address[0]}")
    for family, kind, proto, _, where in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, where)
        except OSError as exc:
            sock.close()
            failure = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise failure


class _Body:
    """The answer's body as httpcore streams it: read on the deadline, then released."""

    __slots__ = ("_conn", "_deadline", "_done", "_pool", "_record")

    def __init__(
        self, pool: AsyncPool, record: _LoopConnections, conn: _Connection, deadline: float
    ) -> None:
        self._pool = pool
        self._record = record
        self._conn = conn
        self._deadline = deadline
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn, deadline = self._conn, self._deadline
        talk, stream = conn.talk, conn.stream
        try:
            while True:
                piece = talk.body()
                if piece is None:
                    talk.feed(await stream.read(deadline))
                elif piece:
                    yield piece
                else:
                    break
        except BaseException:
            await self.aclose()
            raise
        if not self._done:
            self._done = True
            if talk.reusable():
                self._pool.release(self._record, conn)
            else:
                self._pool._discard(self._record, conn)

    async def aclose(self) -> None:
        """Give the connection back; one read short of its end is closed, never reused."""
        if not self._done:
            self._done = True
            self._pool._discard(self._record, self._conn)


async def _open_tunnel(stream: _Stream, route: Route, deadline: float) -> None:
    """Ask the proxy for a ``CONNECT`` tunnel to the server (see ``check_tunnel``)."""
    talk, data = tunnel_request(route)
    await stream.write(data, deadline)
    while (head := talk.head(deadline)) is None:
        talk.feed(await stream.read(deadline))
    check_tunnel(talk, head, more_bytes=bool(stream.chunks))
