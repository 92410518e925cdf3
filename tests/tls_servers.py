"""TLS test servers on 127.0.0.1: one that answers Jobmon's time route, one that never shakes hands.

`TlsTimeServer` serves HTTPS with a certificate for the IP address 127.0.0.1
issued by a ``trustme`` CA: ``GET <anything>/time`` is answered like a Jobmon
server answers ``get_server_time`` (``{"time":"2024-01-01 00:00:00"}``), with
keep-alive; anything else gets a 404. `StalledServer` accepts TCP
connections and never sends a byte (a TLS handshake that never ends).

Both are bounded like the other test servers: they stop by themselves after
``max_lifetime`` seconds, every wait ends when they stop, and leaving the
``with`` block closes every socket and joins every thread.

    ca = trustme.CA()
    with TlsTimeServer(ca) as srv:
        ...  # Requester(srv.url, route_prefix="/api/v3", verify=ca_bundle_path)
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

import trustme

__all__ = ["HOST", "SERVER_TIME", "StalledServer", "TlsRequest", "TlsTimeServer", "time_answer"]

HOST = "127.0.0.1"
SERVER_TIME = datetime(2024, 1, 1)
"""What ``get_server_time`` returns from these servers."""
_TIME_BODY = b'{"time":"2024-01-01 00:00:00"}'
_POLL = 0.05


def time_answer(*, close: bool = False) -> bytes:
    """A Jobmon server's answer to ``GET /api/v3/time``, as bytes."""
    connection = b"connection: close\r\n" if close else b""
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        + connection
        + b"content-length: %d\r\n\r\n" % len(_TIME_BODY)
        + _TIME_BODY
    )


_NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 22\r\n\r\n"
    b'{"detail":"Not Found"}'
)


@dataclass(frozen=True)
class TlsRequest:
    """One request read inside a TLS connection.

    Attributes:
        request_line: ``GET /api/v3/time?client_jobmon_version=3.6.0 HTTP/1.1``.
        headers: The request's headers, names in lower case.
        client_port: The port of the TCP connection it came on (through a
            proxy: the proxy's upstream connection).
    """

    request_line: str
    headers: Mapping[str, str]
    client_port: int


class _Listener:
    """Accepts on 127.0.0.1 and hands each socket to ``serve`` in a thread of its own."""

    def __init__(self, max_lifetime: float) -> None:
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._listener = socket.create_server((HOST, 0))
        self._deadline = time.monotonic() + max_lifetime
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self.connections = 0
        """TCP connections accepted."""
        self.accepted = threading.Event()
        """Set once the first connection is accepted."""
        self.errors: list[str] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        """``https://127.0.0.1:<port>``."""
        return f"https://{HOST}:{self._listener.getsockname()[1]}"

    def _start(self) -> None:
        self._accepter.start()

    def _stop(self, exc_type: type[BaseException] | None) -> None:
        self._stopped.set()
        self._accepter.join(5)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self._listener.close()
        if exc_type is None and self.errors:
            raise AssertionError(f"{type(self).__name__} errors: {self.errors}")

    def _accept(self) -> None:
        while not self._stopped.is_set() and time.monotonic() < self._deadline:
            try:
                readable, _, _ = select.select([self._listener], [], [], _POLL)
                if not readable:
                    continue
                sock, _ = self._listener.accept()
            except OSError:
                break
            thread = threading.Thread(target=self._run, args=(sock,), daemon=True)
            with self._lock:
                self.connections += 1
                self._threads.append(thread)
                self._sockets.append(sock)
            self.accepted.set()
            thread.start()
        self._stopped.set()

    def _run(self, sock: socket.socket) -> None:
        try:
            self.serve(sock)
        except Exception as exc:  # a broken server must fail the test, not hang it
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            with contextlib.suppress(OSError):
                sock.close()

    def serve(self, sock: socket.socket) -> None:
        raise NotImplementedError

    def _wait(self, sock: socket.socket, *, write: bool = False) -> bool:
        """Wait until ``sock`` is readable (or writable); ``False`` once stopped."""
        while not self._stopped.is_set() and time.monotonic() < self._deadline:
            readable, writable, _ = select.select(
                [] if write else [sock], [sock] if write else [], [], _POLL
            )
            if readable or writable:
                return True
        return False


class TlsTimeServer(_Listener):
    """HTTPS on 127.0.0.1 answering ``GET .../time``; see the module's docstring.

    Args:
        ca: The CA that issues the server's certificate (for ``127.0.0.1``).
        max_lifetime: Seconds after which the server stops by itself.
    """

    def __init__(self, ca: trustme.CA, *, max_lifetime: float = 30.0) -> None:
        super().__init__(max_lifetime)
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(HOST).configure_cert(self._context)
        self._requests: list[TlsRequest] = []
        self.handshakes = 0
        """TLS handshakes completed."""
        self.failed_handshakes = 0
        """TLS handshakes the client broke off (e.g. it did not trust the certificate)."""

    @property
    def requests(self) -> list[TlsRequest]:
        """Every request read so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def __enter__(self) -> TlsTimeServer:
        self._start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop(exc_type)

    def serve(self, sock: socket.socket) -> None:
        port = int(sock.getpeername()[1])
        sock.setblocking(False)
        tls = self._context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self._lock:
            self._sockets.append(tls)
        try:
            self._answer(tls, port)
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    def _answer(self, tls: ssl.SSLSocket, port: int) -> None:
        if not self._handshake(tls):
            return
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                data = self._recv(tls)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            # The time route has no body; a request that has one is not ours to answer.
            if int(headers.get("content-length", "0")):
                self.errors.append(f"a request with a body: {lines[0]!r}")
                return
            with self._lock:
                self._requests.append(TlsRequest(lines[0], headers, port))
            method, _, rest = lines[0].partition(" ")
            path = rest.partition(" ")[0].partition("?")[0]
            answer = time_answer() if method == "GET" and path.endswith("/time") else _NOT_FOUND
            if not self._send(tls, answer):
                return

    def _handshake(self, tls: ssl.SSLSocket) -> bool:
        while True:
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                if not self._wait(tls):
                    return False
            except ssl.SSLWantWriteError:
                if not self._wait(tls, write=True):
                    return False
            except (ssl.SSLError, OSError):
                with self._lock:
                    self.failed_handshakes += 1
                return False
            else:
                with self._lock:
                    self.handshakes += 1
                return True

    def _recv(self, tls: ssl.SSLSocket) -> bytes:
        while True:
            try:
                return tls.recv(65536)
            except ssl.SSLWantReadError:
                if not self._wait(tls):
                    return b""
            except (ssl.SSLError, OSError):
                return b""

    def _send(self, tls: ssl.SSLSocket, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            try:
                view = view[tls.send(view) :]
            except ssl.SSLWantWriteError:
                if not self._wait(tls, write=True):
                    return False
            except ssl.SSLWantReadError:
                if not self._wait(tls):
                    return False
            except (ssl.SSLError, OSError):
                return False
        return True


class StalledServer(_Listener):
    """Accepts TCP connections on 127.0.0.1 and never sends a byte.

    Its :attr:`url` is ``https://``: a client's TLS handshake waits forever.
    """

    def __init__(self, *, max_lifetime: float = 30.0) -> None:
        super().__init__(max_lifetime)

    def __enter__(self) -> StalledServer:
        self._start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop(exc_type)

    def serve(self, sock: socket.socket) -> None:
        # Read (and drop) the ClientHello, answer nothing, until the client or the server ends.
        sock.setblocking(False)
        while self._wait(sock):
            try:
                if not sock.recv(65536):
                    return
            except BlockingIOError:
                continue
            except OSError:
                return
