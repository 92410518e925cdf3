"""A real HTTP/1.1 server on a loopback address that answers through a dispatch function.

:meth:`FakeJobmonServer.serve <jobmon_gateway.testing.FakeJobmonServer.serve>`
uses it so that code which cannot take an httpx transport (a subprocess, the
command line, another HTTP client) can talk to the fake over a real socket.
Each request read off the wire becomes an ``httpx.Request``; the
``httpx.Response`` the dispatch function returns is written back byte for
byte (status, headers, body still gzip-compressed if it was); an answer
with ``Connection: close`` ends its connection.

Only loopback addresses are accepted: the fake has no authentication and
must never be reachable from another machine.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, cast

import httpx

__all__ = ["Dispatch", "LoopbackAddress", "loopback_address", "serve_loopback"]

logger = logging.getLogger("jobmon_gateway.testing")

Dispatch = Callable[[httpx.Request], httpx.Response]
"""Answers one request whose body has been read (``FakeJobmonServer.dispatch``)."""

# How often serve_forever looks at its shutdown flag: stopping waits up to this long.
_POLL_INTERVAL = 0.02
# How long stopping waits for each connection's thread after closing its socket.
_JOIN_TIMEOUT = 5.0
# Headers about the framing of *this* connection: the fake's response does not
# carry them, and the ones we write are computed from the bytes we send.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
# Statuses that never carry a body (RFC 9110 §6.4.1).
_NO_BODY_STATUSES = frozenset({204, 304})


class LoopbackAddress:
    """A validated loopback address to bind: the IP, its socket family, and its URL form."""

    def __init__(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        """Wrap ``ip``, which must be a loopback address."""
        self.ip = ip
        self.family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET

    @property
    def host(self) -> str:
        """The address as ``bind()`` wants it."""
        return str(self.ip)

    def url(self, port: int) -> str:
        """The ``http://`` URL of ``port`` on this address (IPv6 in brackets)."""
        host = f"[{self.ip}]" if self.ip.version == 6 else str(self.ip)
        return f"http://{host}:{port}"


def loopback_address(host: str) -> LoopbackAddress:
    """Check that ``host`` is a loopback address and return it.

    ``"localhost"`` means ``127.0.0.1``; other names are refused rather than
    resolved, since what a name resolves to can change between the check and
    the bind.

    Raises:
        ValueError: ``host`` is not a loopback IP address (nor ``"localhost"``).
    """
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, got {type(host).__name__}")
    text = "127.0.0.1" if host.strip().lower() == "localhost" else host.strip().strip("[]")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(
            f"host must be a loopback IP address such as 127.0.0.1 or ::1, got {host!r}"
        ) from None
    if not ip.is_loopback:
        raise ValueError(
            f"refusing to serve the fake Jobmon server on {host!r}: not a loopback address"
            " (the fake has no authentication; use 127.0.0.1 or ::1)"
        )
    return LoopbackAddress(ip)


class _LoopbackHTTPServer(ThreadingHTTPServer):
    """One thread per connection; remembers open connections so stopping can end them."""

    daemon_threads = True
    # We join the connection threads ourselves, with a timeout, in stop().
    block_on_close = False
    # socketserver's default backlog of 5 drops the SYNs of a burst of
    # concurrent connects (an async client's pool), and each dropped one is
    # retried only after a second.
    request_queue_size = 128

    def __init__(self, address: LoopbackAddress, port: int, dispatch: Dispatch) -> None:
        # TCPServer.__init__ makes the socket from address_family, so set it first.
        self.address_family = address.family
        self.dispatch = dispatch
        self.base_url = ""
        self._open: dict[socket.socket, threading.Thread] = {}
        self._open_lock = threading.Lock()
        super().__init__((address.host, port), _Handler)
        self.base_url = address.url(self.server_address[1])

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup
        # that can take seconds in a sandbox; the name is never used here.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"fake-jobmon-connection-{client_address[1]}",
            daemon=True,
        )
        with self._open_lock:
            self._open[request] = thread
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.pop(request, None)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to sys.stderr, which a test's captured
        # stderr (or CliRunner's) would then contain; a client that went away
        # mid-answer is routine here.
        logger.debug(
            "fake Jobmon server: error on a connection from %s", client_address, exc_info=True
        )

    def stop(self) -> None:
        """Stop accepting, end every open connection, join their threads, close."""
        self.shutdown()
        with self._open_lock:
            open_connections = list(self._open.items())
        for connection, _thread in open_connections:
            # Wakes a handler blocked reading the next keep-alive request: it
            # reads EOF and returns.
            # OSError: its handler closed it meanwhile.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for _connection, thread in open_connections:
            thread.join(_JOIN_TIMEOUT)
        self.server_close()


class _BadRequestBodyError(Exception):
    """The request's body framing could not be read."""


class _Handler(BaseHTTPRequestHandler):
    """Turns one HTTP/1.1 request into an ``httpx.Request`` and writes back the answer."""

    # HTTP/1.1 keeps connections open between requests (as uvicorn does);
    # every answer carries Content-Length so the client knows where it ends.
    protocol_version = "HTTP/1.1"
    # Head and body go out in two writes; with Nagle on, the body would wait
    # for the client's delayed ACK of the head: ~40 ms on every request.
    disable_nagle_algorithm = True
    server_version = "FakeJobmonServer"

    def _fake_server(self) -> _LoopbackHTTPServer:
        return cast(_LoopbackHTTPServer, self.server)

    def version_string(self) -> str:
        """The ``Server`` header: the fake's name, without the Python version."""
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        # Keep the access log off stderr (see handle_error above).
        logger.debug("fake Jobmon server: " + format, *args)

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except _BadRequestBodyError as exc:
            self.send_error(400, str(exc))
            self.close_connection = True
            return
        request = self._to_httpx(body)
        try:
            response = self._fake_server().dispatch(request)
        except httpx.TransportError:
            # An injected connection fault (or the reset after a 500 with
            # drop_connection_after_500): the wire form of those is a
            # connection that ends without an answer.
            self.close_connection = True
            return
        except Exception as exc:  # a bug in the fake: answer it, do not hang the client
            logger.exception("fake Jobmon server failed on %s %s", self.command, self.path)
            self._write(
                500,
                [("content-type", "text/plain; charset=utf-8")],
                f"fake Jobmon server error: {exc!r}".encode(),
            )
            self.close_connection = True
            return
        if response.headers.get("connection", "").lower() == "close":
            # The fake asks for it (as a 3.2.2 server closes after every answer).
            self.close_connection = True
        self._write(response.status_code, _answer_headers(response), _raw_body(response))

    # Every method goes to the fake, which answers 405 or 404 as the server does.
    # BaseHTTPRequestHandler looks these names up as "do_" + the method.
    do_GET = _serve  # noqa: N815
    do_POST = _serve  # noqa: N815
    do_PUT = _serve  # noqa: N815
    do_DELETE = _serve  # noqa: N815
    do_PATCH = _serve  # noqa: N815
    do_OPTIONS = _serve  # noqa: N815
    do_HEAD = _serve  # noqa: N815

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            raise _BadRequestBodyError(f"bad Content-Length {length_text!r}") from None
        if length < 0:
            raise _BadRequestBodyError(f"bad Content-Length {length_text!r}")
        body = self.rfile.read(length)
        if len(body) != length:
            raise _BadRequestBodyError("the connection ended inside the body")
        return body

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size_line = self.rfile.readline(65537)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadRequestBodyError(f"bad chunk size line {size_line!r}") from None
            if size == 0:
                break
            chunk = self.rfile.read(size)
            if len(chunk) != size or self.rfile.readline(65537) not in (b"\r\n", b"\n"):
                raise _BadRequestBodyError("bad chunk framing")
            chunks.append(chunk)
        # Trailer fields, if any, up to the empty line that ends the message.
        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
            pass
        return b"".join(chunks)

    def _to_httpx(self, body: bytes) -> httpx.Request:
        target = self.path
        if target.startswith(("http://", "https://")):
            url = target  # absolute form, as a proxy-minded client sends it
        else:
            url = self._fake_server().base_url + (target if target.startswith("/") else "/")
        # The body is handed over whole, so the chunked framing it came in is gone.
        headers = [
            (name, value)
            for name, value in self.headers.items()
            if name.lower() != "transfer-encoding"
        ]
        return httpx.Request(self.command, url, headers=headers, content=body)

    def _write(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        has_body = status >= 200 and status not in _NO_BODY_STATUSES
        if has_body:
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if has_body and self.command != "HEAD":
            self.wfile.write(body)


def _answer_headers(response: httpx.Response) -> list[tuple[str, str]]:
    return [
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower() not in _FRAMING_HEADERS
    ]


def _raw_body(response: httpx.Response) -> bytes:
    # The fake's responses are built from bytes; iterating that stream gives
    # them as built, still gzip-compressed when content-encoding says so
    # (response.content would be the decoded body).
    stream = response.stream
    if isinstance(stream, httpx.ByteStream):
        return b"".join(stream)
    body = response.read()
    if "content-encoding" in response.headers:
        raise RuntimeError(
            "the fake answered a streamed, encoded body; cannot send it as it was encoded"
        )
    return body


@contextlib.contextmanager
def serve_loopback(address: LoopbackAddress, port: int, dispatch: Dispatch) -> Iterator[str]:
    """Serve ``dispatch`` on ``address``:``port`` in a daemon thread; yield the base URL.

    On exit the server stops accepting, open keep-alive connections are
    closed, and the server's threads are joined.
    """
    server = _LoopbackHTTPServer(address, port, dispatch)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": _POLL_INTERVAL},
        name=f"fake-jobmon-server-{server.base_url}",
        daemon=True,
    )
    thread.start()
    try:
        yield server.base_url
    finally:
        server.stop()
        thread.join(_JOIN_TIMEOUT)
