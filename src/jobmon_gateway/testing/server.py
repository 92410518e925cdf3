"""The in-memory fake Jobmon server and its httpx transports.

:class:`FakeJobmonServer` is a :class:`~jobmon_gateway.testing.state.JobmonDatabase`
(seeding, rules, progress) that also answers HTTP: plug
:meth:`FakeJobmonServer.transport` or :meth:`FakeJobmonServer.async_transport`
into an ``httpx.Client`` / ``httpx.AsyncClient`` and it serves the workflow-run
API of a Jobmon 3.6 server, byte for byte where recordings exist.
:meth:`FakeJobmonServer.serve` puts the same fake on a real loopback socket
for clients that cannot take a transport (a command line, a subprocess).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import Any

import httpx

from ._loopback import loopback_address, serve_loopback
from .routes import Answer, answer_request, error_envelope, json_answer
from .state import JobmonDatabase

__all__ = [
    "FakeJobmonAsyncTransport",
    "FakeJobmonServer",
    "FakeJobmonTransport",
    "RecordedRequest",
]


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received, as it arrived.

    Attributes:
        method: HTTP method.
        url_path: The full path, route prefix included.
        route: The path below the route prefix; None if outside it.
        name: The route's gateway call name (``"log_heartbeat"``, ...); None
            for an unknown route, a wrong method or an injected fault.
        query: Query parameters (the last value of a repeated one).
        headers: Request headers, names in lower case.
        body: The raw body.
    """

    method: str
    url_path: str
    route: str | None
    name: str | None
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """Return the body parsed as JSON, None for an empty body."""
        return json.loads(self.body) if self.body else None


@dataclass
class _Fault:
    answer: Answer
    error: type[httpx.TransportError] | None
    remaining: int
    route: str | None


def _default_fault_answer(status: int) -> Answer:
    if status == 423:
        return error_envelope(
            "sqlalchemy.exc.OperationalError",
            "Deadlock found when trying to get lock; try restarting transaction",
            423,
        )
    if status == 500:
        return error_envelope(
            "jobmon.server.web.server_side_exception.ServerError", "injected server error", 500
        )
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    if status >= 500:
        # What a proxy in front of the server sends: HTML, not JSON.
        page = (
            f"<html><head><title>{status} {phrase}</title></head>"
            f"<body><center><h1>{status} {phrase}</h1></center></body></html>"
        )
        return Answer(status, page.encode(), "text/html")
    return json_answer(status, {"detail": phrase})


class FakeJobmonServer(JobmonDatabase):
    """An in-memory Jobmon server for tests: seed rows, plug in a transport, send requests.

    Example::

        server = FakeJobmonServer()
        server.add_workflow(max_concurrently_running=2)
        server.add_dag(3, chain=True, status="G")
        run = server.add_workflow_run(status="R")
        client = httpx.Client(transport=server.transport(), base_url=server.base_url)
        client.post("/workflow/1/task_status_updates", json={})

    Every route of the workflow-run API is served below ``route_prefix``;
    other paths answer 404 ``{"detail": "Not Found"}``. Requests are recorded
    in :attr:`requests`. Seeding, lookups and :meth:`advance` come from
    :class:`~jobmon_gateway.testing.state.JobmonDatabase`.
    """

    service_url = "http://jobmon.test"
    """A host name for clients to use; the transports ignore the host."""

    def __init__(
        self,
        *,
        route_prefix: str = "/api/v3",
        clock: Callable[[], datetime] | None = None,
        failure_rate: float = 0.0,
        seed: int = 0,
        step_seconds: float = 1.0,
        auto_queue: bool = False,
        advance_every: int | None = None,
        advance_on_heartbeat: bool = False,
        gzip_min_size: int | None = 1000,
        drop_connection_after_500: bool = False,
    ) -> None:
        """Create an empty server.

        Args:
            route_prefix: Where the API is mounted: ``"/api/v3"`` (servers
                3.4+) or ``""`` (3.2).
            clock: Returns the server's "now"; default a
                :class:`~jobmon_gateway.testing.state.FakeClock` at the
                current wall time.
            failure_rate: Chance (0..1) that a running task fails on an
                :meth:`advance` step.
            seed: Seed of the random generator behind ``failure_rate``.
            step_seconds: How far each :meth:`advance` step moves a FakeClock.
            auto_queue: Let :meth:`advance` queue tasks whose upstream tasks
                are done, as a Jobmon swarm would.
            advance_every: Run one :meth:`advance` step before answering every
                N-th request (injected faults do not count).
            advance_on_heartbeat: Run one :meth:`advance` step before
                answering each log_heartbeat.
            gzip_min_size: Gzip answers of at least this many bytes when the
                client accepts gzip, as the server does; None never gzips.
            drop_connection_after_500: After any 500, fail the next request
                with ``httpx.ReadError`` ("connection reset by peer"), as
                uvicorn's silently closed keep-alive connection does.
        """
        super().__init__(
            clock=clock,
            failure_rate=failure_rate,
            seed=seed,
            step_seconds=step_seconds,
            auto_queue=auto_queue,
            advance_on_heartbeat=advance_on_heartbeat,
        )
        self.route_prefix = "/" + route_prefix.strip("/") if route_prefix.strip("/") else ""
        if advance_every is not None and advance_every < 1:
            raise ValueError(f"advance_every must be at least 1, got {advance_every}")
        self.advance_every = advance_every
        self.gzip_min_size = gzip_min_size
        self.drop_connection_after_500 = drop_connection_after_500
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._routed = 0
        self._connection_dropped = False

    @property
    def base_url(self) -> str:
        """``service_url`` plus ``route_prefix``: the base URL for a client."""
        return self.service_url + self.route_prefix

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, name: str) -> list[RecordedRequest]:
        """The requests routed to the gateway call ``name`` (e.g. ``"log_heartbeat"``)."""
        with self._lock:
            return [request for request in self._requests if request.name == name]

    def inject_fault(
        self,
        status: int = 503,
        *,
        times: int = 1,
        route: str | None = None,
        body: str | bytes | None = None,
        content_type: str | None = None,
        error: type[httpx.TransportError] | None = None,
    ) -> None:
        """Make the next ``times`` matching requests fail instead of being served.

        Faults are used up oldest first, each by requests whose path contains
        ``route`` (any request when None). A faulted request changes nothing.

        Args:
            status: HTTP status to answer. Defaults to a realistic body: the
                error envelope for 423 (deadlock) and 500, a proxy's HTML page
                for other 5xx, ``{"detail": ...}`` otherwise.
            times: How many requests fail.
            route: Only requests whose path contains this text.
            body: Answer these bytes (str is UTF-8 encoded) instead.
            content_type: Content type for ``body``; default ``application/json``.
            error: Raise this httpx transport error (e.g. ``httpx.ConnectError``,
                ``httpx.ReadTimeout``) instead of answering.
        """
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}")
        if body is None:
            answer = _default_fault_answer(status)
        else:
            content = body.encode() if isinstance(body, str) else body
            answer = Answer(status, content, content_type or "application/json")
        with self._lock:
            self._faults.append(_Fault(answer, error, times, route))

    def clear_faults(self) -> None:
        """Drop every fault not used up yet."""
        with self._lock:
            self._faults.clear()

    def dispatch(self, request: httpx.Request) -> httpx.Response:
        """Serve one request whose body has been read; both transports call this.

        Raises:
            httpx.TransportError: an injected ``error`` fault, or the reset
                that follows a 500 with ``drop_connection_after_500``.
        """
        with self._lock:
            return self._dispatch(request)

    def transport(self) -> FakeJobmonTransport:
        """Return a new sync transport for ``httpx.Client(transport=...)``."""
        return FakeJobmonTransport(self)

    def async_transport(self) -> FakeJobmonAsyncTransport:
        """Return a new async transport for ``httpx.AsyncClient(transport=...)``."""
        return FakeJobmonAsyncTransport(self)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> AbstractContextManager[str]:
        """Serve this fake over real HTTP/1.1 on a loopback address while the context lasts.

        A stdlib ``ThreadingHTTPServer`` runs in a daemon thread (one more
        thread per connection, keep-alive on). Each request becomes an
        ``httpx.Request`` answered by :meth:`dispatch`: status, headers and
        body go out as built (gzip-compressed answers stay compressed), with a
        ``Content-Length``. An injected transport fault (``inject_fault(error=...)``)
        or the reset after a 500 with ``drop_connection_after_500`` closes the
        connection without an answer, which is what a client sees of the real
        thing. The context yields the service URL, e.g.
        ``"http://127.0.0.1:54321"`` (the route prefix is not included); on
        exit the server stops, open connections are closed and the threads are
        joined. Several ``serve()`` contexts may share one fake.

        Example::

            server = FakeJobmonServer()
            run = server.add_workflow_run(status="R")
            with server.serve() as url:
                requester = Requester(url, route_prefix=server.route_prefix)
                with ServerGateway(requester, run.workflow_id, run.workflow_run_id) as gateway:
                    gateway.log_heartbeat_sync("R", 30.0)

        Args:
            host: A loopback IP address (``"127.0.0.1"``, ``"::1"``, ...) or
                ``"localhost"`` (served on ``127.0.0.1``).
            port: TCP port; 0 picks a free one.

        Raises:
            ValueError: ``host`` is not a loopback address (the fake has no
                authentication, so it is never exposed beyond this machine),
                or ``port`` is out of range.
            OSError: (on entering) the port cannot be bound.
        """
        address = loopback_address(host)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int within 0..65535, got {port!r}")
        return serve_loopback(address, port, self.dispatch)

    # -- internals ------------------------------------------------------------

    def _route_path(self, url_path: str) -> str | None:
        if not self.route_prefix:
            return url_path
        if url_path == self.route_prefix:
            return "/"
        if url_path.startswith(self.route_prefix + "/"):
            return url_path[len(self.route_prefix) :]
        return None

    def _take_fault(self, url_path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.route is None or fault.route in url_path:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _dispatch(self, request: httpx.Request) -> httpx.Response:
        method = request.method.upper()
        url_path = request.url.path
        route_path = self._route_path(url_path)
        query = dict(request.url.params.multi_items())
        headers = {name.lower(): value for name, value in request.headers.items()}
        body = request.content

        def record(name: str | None) -> None:
            self._requests.append(
                RecordedRequest(method, url_path, route_path, name, query, headers, body)
            )

        if self._connection_dropped:
            self._connection_dropped = False
            record(None)
            raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)
        fault = self._take_fault(url_path)
        if fault is not None:
            record(None)
            if fault.error is not None:
                raise fault.error("injected fault", request=request)
            answer = fault.answer
        else:
            self._routed += 1
            if self.advance_every is not None and self._routed % self.advance_every == 0:
                self.advance()
            name, answer = answer_request(self, method, url_path, route_path, query, body)
            record(name)
        if answer.status == 500 and self.drop_connection_after_500:
            self._connection_dropped = True
        return self._response(answer, request)

    def _response(self, answer: Answer, request: httpx.Request) -> httpx.Response:
        content = answer.content
        headers = {"content-type": answer.content_type}
        accepts_gzip = "gzip" in request.headers.get("accept-encoding", "").lower()
        if self.gzip_min_size is not None and accepts_gzip and len(content) >= self.gzip_min_size:
            content = gzip.compress(content)
            headers["content-encoding"] = "gzip"
            headers["vary"] = "Accept-Encoding"
        return httpx.Response(answer.status, headers=headers, content=content, request=request)


class FakeJobmonTransport(httpx.BaseTransport):
    """Sync httpx transport that hands every request to a :class:`FakeJobmonServer`."""

    def __init__(self, server: FakeJobmonServer) -> None:
        """Serve requests from ``server``."""
        self.server = server

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Read the request body and let the server answer."""
        request.read()
        return self.server.dispatch(request)


class FakeJobmonAsyncTransport(httpx.AsyncBaseTransport):
    """Async httpx transport that hands every request to a :class:`FakeJobmonServer`."""

    def __init__(self, server: FakeJobmonServer) -> None:
        """Serve requests from ``server``."""
        self.server = server

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Read the request body and let the server answer.

        The answer is computed inline: it is quick and in-memory, and staying
        on the event loop keeps the fake deterministic.
        """
        await request.aread()
        return self.server.dispatch(request)
