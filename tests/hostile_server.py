"""A hostile HTTP server on 127.0.0.1 for the test-suite: bombs, tricklers, bad framing.

Each accepted connection is handed to the next behaviour of the script (the
last one repeats): a function that reads requests and writes whatever bytes
it likes, for as long as it likes, until the test's ``with`` block ends.
Everything is bounded: the server stops itself after ``max_lifetime``
seconds, and every wait it does ends when it stops.

    def trickle(conn: HostileConnection) -> None:
        conn.read_request()
        for byte in b"HTTP/1.1 200 OK\\r\\n":
            conn.send(bytes([byte]), pause=0.05)

    with HostileServer(trickle) as srv:
        ...  # point the client at srv.url
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

__all__ = ["HostileConnection", "HostileServer", "http_response"]

HOST = "127.0.0.1"


def http_response(
    body: bytes, status: int = 200, *, headers: tuple[tuple[str, str], ...] = ()
) -> bytes:
    """A well-formed HTTP/1.1 answer with a Content-Length, as bytes."""
    lines = [f"HTTP/1.1 {status} X", f"content-length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if not any(name.lower() == "content-type" for name, _ in headers):
        lines.append("content-type: application/json")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class HostileConnection:
    """One accepted connection, as a behaviour sees it."""

    def __init__(self, sock: socket.socket, stopped: threading.Event) -> None:
        self.sock = sock
        self.stopped = stopped
        self._buffer = b""
        sock.settimeout(0.05)

    def _fill(self, deadline: float) -> bool:
        while not self.stopped.is_set() and time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return False
            if not data:
                return False
            self._buffer += data
            return True
        return False

    def read_request(self, timeout: float = 5.0) -> bytes | None:
        """Read one whole request (head and Content-Length body); ``None`` if none came."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self._buffer:
            if not self._fill(deadline):
                return None
        head, _, rest = self._buffer.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(rest) < length:
            self._buffer = head + b"\r\n\r\n" + rest
            if not self._fill(deadline):
                return None
            head, _, rest = self._buffer.partition(b"\r\n\r\n")
        self._buffer = rest[length:]
        return head + b"\r\n\r\n" + rest[:length]

    def wait_readable(self, timeout: float = 5.0) -> bool:
        """Wait until the client sends something (without reading it)."""
        deadline = time.monotonic() + timeout
        while not self.stopped.is_set() and time.monotonic() < deadline:
            try:
                return bool(self.sock.recv(1, socket.MSG_PEEK))
            except TimeoutError:
                continue
            except OSError:
                return False
        return False

    def send(self, data: bytes, *, pause: float = 0.0) -> bool:
        """Send ``data``, then wait ``pause`` seconds; ``False`` once the client is gone."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        if pause:
            return not self.stopped.wait(pause)
        return not self.stopped.is_set()

    def close(self) -> None:
        """Close the socket (a RST if the client's bytes sit unread in it)."""
        with contextlib.suppress(OSError):
            self.sock.close()


Behaviour = Callable[[HostileConnection], None]


class HostileServer:
    """Serves each connection with the next behaviour of its script (the last repeats)."""

    def __init__(self, *script: Behaviour, max_lifetime: float = 30.0) -> None:
        if not script:
            raise ValueError("a HostileServer needs at least one behaviour")
        self._script = list(script)
        self._stopped = threading.Event()
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.05)
        self._threads: list[threading.Thread] = []
        self._deadline = time.monotonic() + max_lifetime
        self.connections = 0
        self.errors: list[str] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{HOST}:{self._listener.getsockname()[1]}"

    def __enter__(self) -> HostileServer:
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
        for thread in self._threads:
            thread.join(5)
        self._listener.close()
        if exc_type is None and self.errors:
            raise AssertionError(f"hostile server errors: {self.errors}")

    def _accept(self) -> None:
        while not self._stopped.is_set() and time.monotonic() < self._deadline:
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            index = min(self.connections, len(self._script) - 1)
            self.connections += 1
            thread = threading.Thread(
                target=self._serve, args=(self._script[index], sock), daemon=True
            )
            self._threads.append(thread)
            thread.start()
        self._stopped.set()

    def _serve(self, behaviour: Behaviour, sock: socket.socket) -> None:
        conn = HostileConnection(sock, self._stopped)
        try:
            behaviour(conn)
        except Exception as exc:  # a broken behaviour must fail the test, not hang it
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()
