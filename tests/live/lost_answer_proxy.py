"""An HTTP/1.1 relay on 127.0.0.1 that lets a request reach the server but loses its answer.

``LostAnswerProxy(upstream_port, "/queue_task_batch")`` forwards every
request to the live server at ``127.0.0.1:upstream_port`` and relays its
answer, except for the first request (or first ``lose``) whose request line
contains the given text: that one the server receives and carries out, and
its answer is replaced by a connection reset. This is the case a retry must
be careful with: the client cannot tell whether the work was done.

    with LostAnswerProxy(server.port, "/queue_task_batch") as proxy:
        requester = server.requester(service_url=proxy.url)
        ...
    assert proxy.answers_lost == 1

Every socket wait is bounded (``timeout``) so a broken test cannot hang.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType

from typing_extensions import Self

HOST = "127.0.0.1"
_MAX_HEAD = 64 * 1024


class _ClosedError(Exception):
    """The peer closed the connection before a whole message arrived."""


class _Reader:
    """Reads whole HTTP/1.1 messages (head and Content-Length body) off one socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise _ClosedError
        self.buffer += chunk

    def message(self) -> tuple[bytes, bytes]:
        """The next message: its head (through the blank line) and its body as sent."""
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > _MAX_HEAD:
                raise _ClosedError
            self._fill()
        end = self.buffer.index(b"\r\n\r\n") + 4
        head, self.buffer = self.buffer[:end], self.buffer[end:]
        length = 0
        chunked = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            return head, self._chunks()
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return head, body

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        end = self.buffer.index(b"\r\n") + 2
        line, self.buffer = self.buffer[:end], self.buffer[end:]
        return line

    def _chunks(self) -> bytes:
        # Relayed as they came (sizes, data, the last empty chunk and its CRLF).
        body = b""
        while True:
            size_line = self._line()
            body += size_line
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                # No trailers are sent by these servers: the blank line ends it.
                body += self._line()
                return body
            while len(self.buffer) < size + 2:
                self._fill()
            body += self.buffer[: size + 2]
            self.buffer = self.buffer[size + 2 :]


def _reset(sock: socket.socket) -> None:
    # SO_LINGER with a zero timeout makes close() send a RST: the client sees
    # "connection reset by peer", as it would from a crashed proxy.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class LostAnswerProxy:
    """Relays to a live server; loses the answer to the first ``lose`` matching requests.

    Attributes:
        url: ``http://127.0.0.1:<port>`` to point a requester at.
        requests_relayed: Requests the server received through this relay.
        answers_lost: Answers replaced by a connection reset.
        errors: Unexpected failures inside the relay (a test should assert none).
    """

    def __init__(self, upstream_port: int, match: str, *, lose: int = 1, timeout: float = 10.0):
        self.upstream_port = upstream_port
        self.match = match.encode("ascii")
        self.lose = lose
        self.timeout = timeout
        self.requests_relayed = 0
        self.answers_lost = 0
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.2)
        self.url = f"http://{HOST}:{self._listener.getsockname()[1]}"
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []

    def __enter__(self) -> Self:
        accepter = threading.Thread(target=self._accept, name="lost-answer-accept", daemon=True)
        self._threads.append(accepter)
        accepter.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self._threads:
            thread.join(timeout=self.timeout)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(self.timeout)
            with self._lock:
                self._sockets.append(client)
            worker = threading.Thread(target=self._serve, args=(client,), daemon=True)
            with self._lock:
                self._threads.append(worker)
            worker.start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            reader = _Reader(client)
            while not self._stopping.is_set():
                try:
                    head, body = reader.message()
                except (_ClosedError, OSError):
                    return
                if upstream is None:
                    upstream = socket.create_connection((HOST, self.upstream_port), self.timeout)
                    with self._lock:
                        self._sockets.append(upstream)
                    answers = _Reader(upstream)
                upstream.sendall(head + body)
                answer_head, answer_body = answers.message()
                with self._lock:
                    self.requests_relayed += 1
                    request_line = head.split(b"\r\n", 1)[0]
                    lose = self.match in request_line and self.answers_lost < self.lose
                    if lose:
                        self.answers_lost += 1
                if lose:
                    _reset(client)
                    return
                client.sendall(answer_head + answer_body)
                if b"connection: close" in answer_head.lower():
                    # The server closes after each answer (3.2): so does the relay.
                    return
        except BaseException as exc:  # collected for the test to see
            if not self._stopping.is_set():
                self.errors.append(exc)
        finally:
            client.close()
            if upstream is not None:
                upstream.close()
