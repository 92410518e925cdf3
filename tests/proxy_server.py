"""A forward HTTP proxy on 127.0.0.1 for the test-suite: absolute-form requests and CONNECT.

`ProxyServer` listens on a real socket on 127.0.0.1 (never any other
address) and serves each accepted connection in its own thread:

- a request in absolute form (``GET http://127.0.0.1:5000/api/v3/time HTTP/1.1``)
  is forwarded in origin form to its target, over one upstream connection
  per client connection (keep-alive both ways), and the answer is relayed;
- ``CONNECT 127.0.0.1:8443 HTTP/1.1`` is answered ``200 Connection established``
  and bytes are relayed both ways until either side closes (or, with
  ``refuse_connect=407``, refused with that status and closed).

Only 127.0.0.1 targets are reached; any other host is answered 403 and never
resolved. Every request head the proxy reads is recorded in
:attr:`ProxyServer.requests`. Everything is bounded: the server stops itself
after ``max_lifetime`` seconds, every wait ends when it stops, and on leaving
the ``with`` block every socket is closed and every thread joined.

    with ProxyServer() as proxy:
        ...  # Requester(url, proxy=proxy.url)
        assert proxy.requests[0].method == "GET"
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit

__all__ = ["HOST", "ProxiedRequest", "ProxyServer"]

HOST = "127.0.0.1"
_POLL = 0.05
_IDLE = 5.0  # seconds a connection may sit idle between requests
_HOP_BY_HOP = frozenset({"proxy-authorization", "proxy-connection", "keep-alive"})
_REASONS = {403: "Forbidden", 407: "Proxy Authentication Required", 502: "Bad Gateway"}


@dataclass(frozen=True)
class ProxiedRequest:
    """One request head the proxy read from a client.

    Attributes:
        method: ``"GET"``, ``"CONNECT"``, ...
        target: As sent: ``http://127.0.0.1:5000/...`` (absolute form) or
            ``127.0.0.1:8443`` (authority form, for CONNECT).
        version: ``"HTTP/1.1"``.
        headers: The request's headers, names in lower case.
        client_port: The client's port of the connection it came on.
    """

    method: str
    target: str
    version: str
    headers: Mapping[str, str]
    client_port: int

    @property
    def request_line(self) -> str:
        """``METHOD target VERSION``, as it came."""
        return f"{self.method} {self.target} {self.version}"


class _Peer:
    """A socket with a read buffer; every wait polls the server's stop event."""

    def __init__(self, sock: socket.socket, stopped: threading.Event) -> None:
        self.sock = sock
        self.stopped = stopped
        self.buffer = b""
        sock.settimeout(5.0)  # bounds sendall; reads wait in select first

    def fill(self, deadline: float) -> bool:
        """Read more bytes into the buffer; ``False`` on EOF, error, stop or deadline."""
        while not self.stopped.is_set() and time.monotonic() < deadline:
            try:
                readable, _, _ = select.select([self.sock], [], [], _POLL)
                if not readable:
                    continue
                data = self.sock.recv(65536)
            except (OSError, ValueError):
                return False
            if not data:
                return False
            self.buffer += data
            return True
        return False

    def read_head(self, timeout: float = _IDLE) -> bytes | None:
        """The next message head (without the blank line), or ``None``."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > 65536 or not self.fill(deadline):
                return None
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        return head

    def read_exactly(self, size: int, timeout: float = _IDLE) -> bytes | None:
        deadline = time.monotonic() + timeout
        while len(self.buffer) < size:
            if not self.fill(deadline):
                return None
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _parse_head(head: bytes) -> tuple[str, str, str, list[tuple[str, str]]] | None:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return None
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            return None
        headers.append((name.strip(), value.strip()))
    return parts[0], parts[1], parts[2], headers


def _content_length(headers: list[tuple[str, str]]) -> int | None:
    for name, value in headers:
        if name.lower() == "content-length":
            return int(value)
    return None


def _wants_close(headers: list[tuple[str, str]]) -> bool:
    return any(name.lower() == "connection" and "close" in value.lower() for name, value in headers)


def _status_answer(status: int, *, extra: str = "") -> bytes:
    reason = _REASONS.get(status, "Refused")
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n{extra}\r\n"
    ).encode("latin-1")


class ProxyServer:
    """A forward proxy on 127.0.0.1; see the module's docstring.

    Args:
        refuse_connect: Answer every CONNECT with this status (e.g. 407) and
            close, instead of opening the tunnel.
        max_lifetime: Seconds after which the server stops by itself.
    """

    def __init__(self, *, refuse_connect: int | None = None, max_lifetime: float = 30.0) -> None:
        self.refuse_connect = refuse_connect
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._listener = socket.create_server((HOST, 0))
        self._deadline = time.monotonic() + max_lifetime
        self._threads: list[threading.Thread] = []
        self._open: list[_Peer] = []
        self._requests: list[ProxiedRequest] = []
        self.connections = 0
        """Client connections accepted."""
        self.tunnels = 0
        """CONNECT tunnels opened (answered 200)."""
        self.errors: list[str] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{HOST}:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        """``http://user:password@127.0.0.1:<port>``."""
        return f"http://{user}:{password}@{HOST}:{self.port}"

    @property
    def requests(self) -> list[ProxiedRequest]:
        """Every request head read so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def __enter__(self) -> ProxyServer:
        self._accepter.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopped.set()
        self._accepter.join(5)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)
        with self._lock:
            peers = list(self._open)
        for peer in peers:
            peer.close()
        self._listener.close()
        if exc_type is None and self.errors:
            raise AssertionError(f"proxy server errors: {self.errors}")

    # -- serving ----------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopped.is_set() and time.monotonic() < self._deadline:
            try:
                readable, _, _ = select.select([self._listener], [], [], _POLL)
                if not readable:
                    continue
                sock, _ = self._listener.accept()
            except OSError:
                break
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            with self._lock:
                self.connections += 1
                self._threads.append(thread)
            thread.start()
        self._stopped.set()

    def _peer(self, sock: socket.socket) -> _Peer:
        peer = _Peer(sock, self._stopped)
        with self._lock:
            self._open.append(peer)
        return peer

    def _serve(self, sock: socket.socket) -> None:
        client = self._peer(sock)
        upstream: _Peer | None = None
        upstream_at: tuple[str, int] | None = None
        try:
            client_port = int(sock.getpeername()[1])
            while True:
                head = client.read_head()
                if head is None:
                    return
                parsed = _parse_head(head)
                if parsed is None:
                    client.send(_status_answer(400))
                    return
                method, target, version, headers = parsed
                with self._lock:
                    self._requests.append(
                        ProxiedRequest(
                            method,
                            target,
                            version,
                            {name.lower(): value for name, value in headers},
                            client_port,
                        )
                    )
                if method == "CONNECT":
                    self._tunnel(client, target)
                    return
                split = urlsplit(target)
                if split.scheme != "http" or split.hostname is None:
                    client.send(_status_answer(400))
                    return
                if split.hostname != HOST:
                    client.send(_status_answer(403))
                    return
                address = (HOST, split.port or 80)
                body = client.read_exactly(_content_length(headers) or 0)
                if body is None:
                    return
                if upstream is None or upstream_at != address:
                    if upstream is not None:
                        upstream.close()
                    upstream = self._peer(socket.create_connection(address, timeout=5.0))
                    upstream_at = address
                origin_form = split.path or "/"
                if split.query:
                    origin_form += "?" + split.query
                forwarded = [f"{method} {origin_form} {version}"] + [
                    f"{name}: {value}" for name, value in headers if name.lower() not in _HOP_BY_HOP
                ]
                if not upstream.send(("\r\n".join(forwarded) + "\r\n\r\n").encode() + body):
                    return
                if not self._relay_answer(upstream, client, method) or _wants_close(headers):
                    return
        except Exception as exc:  # a broken proxy must fail the test, not hang it
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            client.close()
            if upstream is not None:
                upstream.close()

    def _relay_answer(self, upstream: _Peer, client: _Peer, method: str) -> bool:
        """Relay one answer (interim ones too); ``False`` when the connection must end."""
        while True:
            head = upstream.read_head()
            if head is None:
                return False
            parsed = _parse_head(head)
            if parsed is None:
                return False
            _, status_text, _, headers = parsed
            status = int(status_text)
            if 100 <= status < 200:
                if not client.send(head + b"\r\n\r\n"):
                    return False
                continue
            has_body = method != "HEAD" and status not in (204, 304)
            length = _content_length(headers) if has_body else 0
            if length is None:
                # Only Content-Length framing is relayed; the test servers send nothing else.
                self.errors.append(f"an answer without content-length: {head[:200]!r}")
                return False
            body = upstream.read_exactly(length)
            if body is None:
                return False
            return client.send(head + b"\r\n\r\n" + body) and not _wants_close(headers)

    def _tunnel(self, client: _Peer, target: str) -> None:
        host, _, port_text = target.rpartition(":")
        if host != HOST or not port_text.isdigit():
            client.send(_status_answer(403))
            return
        if self.refuse_connect is not None:
            extra = (
                'proxy-authenticate: Basic realm="test"\r\n' if self.refuse_connect == 407 else ""
            )
            client.send(_status_answer(self.refuse_connect, extra=extra))
            return
        try:
            upstream = self._peer(socket.create_connection((HOST, int(port_text)), timeout=5.0))
        except OSError:
            client.send(_status_answer(502))
            return
        try:
            if not client.send(b"HTTP/1.1 200 Connection established\r\n\r\n"):
                return
            with self._lock:
                self.tunnels += 1
            if client.buffer and not upstream.send(client.buffer):
                return
            client.buffer = b""
            self._pump(client, upstream)
        finally:
            upstream.close()

    def _pump(self, one: _Peer, other: _Peer) -> None:
        """Relay bytes both ways until either side closes (or the server stops)."""
        partner = {one.sock: other, other.sock: one}
        while not self._stopped.is_set() and time.monotonic() < self._deadline:
            try:
                readable, _, _ = select.select(list(partner), [], [], _POLL)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data or not partner[sock].send(data):
                        return
            except (OSError, ValueError):
                return
