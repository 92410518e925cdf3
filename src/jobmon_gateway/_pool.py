"""The sync connection pool behind :class:`~jobmon_gateway.transports.GatewayTransport`.

It has the interface of httpcore's pool (``handle_request`` taking and
answering httpcore objects, raising httpcore's exceptions), so httpx's own
``HTTPTransport.handle_request`` sends through it unchanged. What it adds:
every socket operation waits at most until the request's deadline (connect,
TLS handshake, proxy tunnel, pool slot, send, each read, each 1xx), and a
connection is reused only when its answer ended exactly at its framing and
the idle socket has nothing to say.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import select
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import httpcore

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
from ._routing import Route, Routing, UnresolvedHost

__all__ = ["SyncPool", "forks", "numeric_address", "remember_for_fork", "silent"]

_READ_SIZE = 65536


class _Connection:
    __slots__ = ("generation", "idle_since", "origin", "sock", "talk")

    def __init__(self, sock: socket.socket, origin: Origin, generation: int):
        self.sock = sock
        self.origin = origin
        self.talk = Conversation()
        self.idle_since = 0.0
        self.generation = generation

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def silent(sock: socket.socket) -> bool:
    """Whether an idle connection's socket has nothing to say (no bytes, no close)."""
    # An idle connection has nothing to say: readable means the server closed
    # or reset it, or sent bytes nobody asked for. poll, not select: select
    # fails on descriptors past 1024, which a busy process has.
    try:
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return False
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN | select.POLLPRI)
            return not poller.poll(0)
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _connected_socket(address: tuple[str, int], deadline: float) -> socket.socket:
    """A socket connected to ``address``, looked up and connected on the deadline."""
    host, port = address
    failure: OSError = OSError(f"no address for {host}")
    for family, kind, proto, _, where in _resolved(host, port, deadline):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(seconds_left(deadline))
            sock.connect(where)
        except OSError as exc:
            sock.close()
            if isinstance(exc, TimeoutError):
                raise
            failure = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise failure


def numeric_address(host: str, port: int) -> list[Any] | None:
    """``getaddrinfo``'s answer for an IP address given as text; ``None`` for a name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]


def _resolved(host: str, port: int, deadline: float) -> list[Any]:
    numeric = numeric_address(host, port)
    if numeric is not None:
        return numeric
    # getaddrinfo has no timeout of its own: it runs in a thread of its own,
    # waited for until the deadline (a slow resolver cannot hold the call).
    found: list[Any] = []
    failed: list[OSError] = []
    done = threading.Event()

    def look_up() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            failed.append(exc)
        finally:
            done.set()

    threading.Thread(target=look_up, name="jobmon-gateway-lookup", daemon=True).start()
    if not done.wait(seconds_left(deadline)):
        raise overdue_error()
    if failed:
        raise UnresolvedHost(host) from failed[0]
    return found


class _Forgetful(Protocol):
    def forget_after_fork(self) -> None: ...


_POOLS: weakref.WeakSet[_Forgetful] = weakref.WeakSet()


def remember_for_fork(pool: _Forgetful) -> None:
    """Have ``pool`` forget its connections in a child process after ``os.fork()``."""
    _POOLS.add(pool)


_forks = 0


def forks() -> int:
    """How many forks this process has come from (0 in the first process)."""
    return _forks


def _forget_in_child() -> None:
    global _forks
    _forks += 1
    for pool in list(_POOLS):
        pool.forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


class SyncPool:
    """Keep-alive connections over sockets, called by httpx as it calls httpcore's pool."""

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
        self._max_keepalive = max_keepalive
        self._expiry = keepalive_expiry
        self._max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._generation = 0
        self.closed = False
        remember_for_fork(self)

    # -- httpcore's interface ---------------------------------------------------

    def handle_request(self, request: httpcore.Request) -> PoolAnswer:
        """Send ``request`` and answer as soon as the head is in; the body streams."""
        origin, deadline, trace, route, checked = prepared(request, self._routing)
        body = b"".join(request.stream)  # type: ignore[arg-type]
        slots = self._slots
        if not slots.acquire(timeout=seconds_left(deadline)):
            raise httpcore.PoolTimeout("no free connection before the deadline")
        try:
            conn = self._pooled(origin)
            if conn is None:
                conn = self._connect(route, origin, deadline, trace)
        except BaseException:
            if slots is self._slots:
                slots.release()
            raise
        talk = conn.talk
        try:
            if trace is not None:
                # As httpcore does on every request: with no connect event
                # before it, the sender knows the connection was reused.
                trace("http11.send_request_headers.started", {"request": request})
            data = talk.request(request.method, checked, body)
            try:
                _send(conn.sock, data, deadline)
            except httpcore.WriteError:
                # The server may have answered already (a 413 to a big body)
                # and closed: read that answer, as httpx does; if there is
                # none, the read fails with the connection's own error.
                talk.unsent = True
            while (head := talk.head(deadline)) is None:
                talk.feed(_recv(conn.sock, deadline))
            whole = talk.whole_body()
        except BaseException as exc:
            self._discard(conn)
            marked = broken(exc, talk)
            if marked is exc:
                raise
            raise marked from exc
        if whole is None:
            return response_of(head, _Body(self, conn, deadline))
        # All of it came with the head: the connection is done with at once.
        if talk.reusable():
            self.release(conn)
        else:
            self._discard(conn)
        return response_of(head, whole)

    def close(self) -> None:
        """Close every idle connection; ones in use close when their answer is read."""
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> SyncPool:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    # -- connections ------------------------------------------------------------

    def _pooled(self, origin: Origin) -> _Connection | None:
        now = time.monotonic()
        with self._lock:
            for index in range(len(self._idle) - 1, -1, -1):
                conn = self._idle[index]
                if conn.origin != origin:
                    continue
                del self._idle[index]
                if now - conn.idle_since < self._expiry and silent(conn.sock):
                    return conn
                conn.close()
        return None

    def _connect(self, route: Route, origin: Origin, deadline: float, trace: Any) -> _Connection:
        if trace is not None:
            trace("connection.connect_tcp.started", {"host": route.address[0]})
        sock: socket.socket | None = None
        try:
            sock = _connected_socket(route.address, deadline)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if route.tunnel is not None:
                _open_tunnel(sock, route, deadline)
            if route.tls:
                context = self._tls()
                sock.settimeout(seconds_left(deadline))
                sock = context.wrap_socket(sock, server_hostname=route.server_hostname)
            conn = _Connection(sock, origin, self._generation)
            if trace is not None:
                trace("connection.connect_tcp.complete", {"return_value": None})
        except BaseException as exc:
            if sock is not None:
                sock.close()
            if isinstance(exc, httpcore.ReadTimeout | TimeoutError):
                raise httpcore.ConnectTimeout("could not connect before the deadline") from exc
            if isinstance(exc, OSError):
                raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
            raise
        return conn

    def release(self, conn: _Connection) -> None:
        """Take back a connection whose answer was read to its end."""
        with self._lock:
            keep = (
                not self.closed
                and conn.generation == self._generation
                and len(self._idle) < self._max_keepalive
            )
            if keep:
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
        if not keep:
            conn.close()
        self._free_slot(conn)

    def _discard(self, conn: _Connection) -> None:
        conn.close()
        self._free_slot(conn)

    def _free_slot(self, conn: _Connection) -> None:
        if conn.generation == self._generation:
            self._slots.release()

    def forget_after_fork(self) -> None:
        """In a forked child: never touch the parent's connections (their bytes would mix)."""
        idle, self._idle = self._idle, []
        self._generation += 1
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self._max_connections)
        for conn in idle:
            # Closing the child's copy of a descriptor leaves the parent's open.
            conn.close()


class _Body:
    """The answer's body as httpcore streams it: read on the deadline, then released."""

    __slots__ = ("_conn", "_deadline", "_done", "_pool")

    def __init__(self, pool: SyncPool, conn: _Connection, deadline: float) -> None:
        self._pool = pool
        self._conn = conn
        self._deadline = deadline
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        conn, deadline = self._conn, self._deadline
        talk = conn.talk
        try:
            while True:
                piece = talk.body()
                if piece is None:
                    talk.feed(_recv(conn.sock, deadline))
                elif piece:
                    yield piece
                else:
                    break
        except BaseException:
            self.close()
            raise
        if not self._done:
            self._done = True
            if talk.reusable():
                self._pool.release(conn)
            else:
                self._pool._discard(conn)

    def close(self) -> None:
        """Give the connection back; one read short of its end is closed, never reused."""
        if not self._done:
            self._done = True
            self._pool._discard(self._conn)


def _send(sock: socket.socket, data: bytes, deadline: float) -> None:
    try:
        sock.settimeout(seconds_left(deadline))
        sock.sendall(data)
    except TimeoutError:
        raise overdue_error() from None
    except OSError as exc:
        raise httpcore.WriteError(str(exc) or type(exc).__name__) from exc


def _recv(sock: socket.socket, deadline: float) -> bytes:
    try:
        sock.settimeout(seconds_left(deadline))
        return sock.recv(_READ_SIZE)
    except TimeoutError:
        raise overdue_error() from None
    except OSError as exc:
        raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc


def _open_tunnel(sock: socket.socket, route: Route, deadline: float) -> None:
    """Ask the proxy for a ``CONNECT`` tunnel to the server (see ``check_tunnel``)."""
    talk, data = tunnel_request(route)
    _send(sock, data, deadline)
    while (head := talk.head(deadline)) is None:
        talk.feed(_recv(sock, deadline))
    check_tunnel(talk, head, more_bytes=False)
