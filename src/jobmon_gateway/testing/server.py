"""The in-memory fake Jobmon server and its httpx transports.

:class:`FakeJobmonServer` is a :class:`~jobmon_gateway.testing.state.JobmonDatabase`
(seeding, rules, progress) that also answers HTTP: plug
:meth:`FakeJobmonServer.transport` or :meth:`FakeJobmonServer.async_transport`
into an ``httpx.Client`` / ``httpx.AsyncClient`` (or take a ready-wired SDK
``Requester`` from :meth:`FakeJobmonServer.requester`) and it serves the
workflow-run API of a Jobmon 3.6 server, or with ``server_version="3.2.2"``
of a 3.2.2 one, byte for byte where recordings exist.
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
from typing import TYPE_CHECKING, Any

import httpx

from ._loopback import loopback_address, serve_loopback
from .routes import GATEWAY_CALLS, Answer, answer_request, error_envelope, json_answer
from .routes_3_2_2 import answer_request_3_2_2, flask_error
from .state import JobmonDatabase

if TYPE_CHECKING:
    from jobmon_gateway.transport import Requester

__all__ = [
    "SERVER_VERSIONS",
    "FakeJobmonAsyncTransport",
    "FakeJobmonServer",
    "FakeJobmonTransport",
    "RecordedRequest",
]

SERVER_VERSIONS = ("3.6", "3.2.2")
"""The Jobmon server versions the fake can speak as."""

_DEFAULT_ROUTE_PREFIX = {"3.6": "/api/v3", "3.2.2": ""}


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received, as it arrived.

    Attributes:
        method: HTTP method.
        url_path: The full path, route prefix included.
        route: The path below the route prefix; None if outside it.
        name: The server's name of the route it was routed to
            (``"log_heartbeat"``, ``"set_status_for_triaging"``, ``"time"``, ...);
            None for an unknown route, a wrong method, a route this server
            version lacks, a request refused before routing, or an injected fault.
        query: Query parameters (the last value of a repeated one).
        headers: Request headers, names in lower case.
        body: The raw body.
        call: The name of the ``ServerGateway`` call that sends this route
            (``"log_heartbeat"``, ``"request_triage"``, ``"get_server_time"``, ...);
            None whenever ``name`` is.
    """

    method: str
    url_path: str
    route: str | None
    name: str | None
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    call: str | None = None

    def json(self) -> Any:
        """Return the body parsed as JSON, None for an empty body."""
        return json.loads(self.body) if self.body else None


@dataclass
class _Fault:
    answer: Answer
    error: type[httpx.TransportError] | None
    remaining: int
    route: str | None


_DEADLOCK = (
    "sqlalchemy.exc.OperationalError",
    "Deadlock found when trying to get lock; try restarting transaction",
)
_INJECTED = ("jobmon.server.web.server_side_exception.ServerError", "injected server error")


def _default_fault_answer(status: int, server_version: str) -> Answer:
    if status in (423, 500):
        exception_type, message = _DEADLOCK if status == 423 else _INJECTED
        if server_version == "3.2.2":
            return flask_error(f"<class '{exception_type}'>", message, status)
        return error_envelope(exception_type, message, status)
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
    other paths answer 404 ``{"detail": "Not Found"}`` (a 3.2.2 fake: a
    plain-text 404 quoting the URL). Requests are recorded in :attr:`requests`.
    Seeding, lookups and :meth:`advance` come from
    :class:`~jobmon_gateway.testing.state.JobmonDatabase`.
    """

    service_url = "http://127.0.0.1:1"
    """The service URL for clients that use the fake's transports, which ignore it.

    A loopback address on port 1, where nothing listens: a client that was
    given this URL but not the fake's transport fails at once with
    "connection refused" on 127.0.0.1, and nothing goes to the network (an IP
    address needs no DNS lookup). Use :meth:`serve` for a URL that answers.
    """

    def __init__(
        self,
        *,
        server_version: str = "3.6",
        route_prefix: str | None = None,
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
            server_version: Which server's wire behaviour to speak:
                ``"3.6"`` (FastAPI) or ``"3.2.2"`` (Flask: routes at ``/``,
                ``null`` from triage and terminate, downstream ids always as
                JSON strings, no array concurrency route, a 500 for an unknown
                workflow's limit, plain-text 404s, no 422, ``application/json``
                errors, never gzip, ``Connection: close`` on every answer, and
                every repeat of queue_task_batch adding task instances).
            route_prefix: Where the API is mounted; default the version's own:
                ``"/api/v3"`` for 3.6, ``""`` for 3.2.2.
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
                client accepts gzip, as the 3.6 server does; None never gzips.
                A 3.2.2 fake never gzips: it must be None or left as it is.
            drop_connection_after_500: After any 500, fail the next request
                with ``httpx.ReadError`` ("connection reset by peer"), as
                uvicorn's silently closed keep-alive connection does.

        Raises:
            ValueError: an unknown ``server_version``, a ``gzip_min_size`` for
                3.2.2, or a setting out of range.
        """
        if server_version not in SERVER_VERSIONS:
            known = ", ".join(SERVER_VERSIONS)
            raise ValueError(f"server_version must be one of {known}, got {server_version!r}")
        if server_version == "3.2.2" and gzip_min_size not in (None, 1000):
            raise ValueError("a 3.2.2 server never compresses its answers: leave gzip_min_size")
        super().__init__(
            clock=clock,
            failure_rate=failure_rate,
            seed=seed,
            step_seconds=step_seconds,
            auto_queue=auto_queue,
            advance_on_heartbeat=advance_on_heartbeat,
        )
        self.server_version = server_version
        if route_prefix is None:
            route_prefix = _DEFAULT_ROUTE_PREFIX[server_version]
        self.route_prefix = "/" + route_prefix.strip("/") if route_prefix.strip("/") else ""
        if advance_every is not None and advance_every < 1:
            raise ValueError(f"advance_every must be at least 1, got {advance_every}")
        self.advance_every = advance_every
        self.gzip_min_size = None if server_version == "3.2.2" else gzip_min_size
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
        """The requests routed to one route, oldest first.

        ``name`` is a ``ServerGateway`` call name (``"get_server_time"``,
        ``"request_triage"``, ``"get_workflow_concurrency"``, ...) or the
        server's route name (``"time"``, ``"set_status_for_triaging"``,
        ``"get_max_concurrently_running"``, ...); most are the same. Only
        requests the fake routed count: not injected faults, wrong methods, or
        requests to a route this server version lacks (on a 3.2.2 fake,
        ``get_array_concurrency`` never matches: find those in
        :attr:`requests` by ``url_path``).

        Raises:
            ValueError: ``name`` is neither a gateway call name nor a route name.
        """
        if name in _CALL_NAMES:
            attribute = "call"
        elif name in GATEWAY_CALLS:
            attribute = "name"
        else:
            raise ValueError(
                f"unknown route or gateway call name {name!r}; gateway calls:"
                f" {', '.join(sorted(_CALL_NAMES))}; routes: {', '.join(sorted(GATEWAY_CALLS))}"
            )
        with self._lock:
            return [request for request in self._requests if getattr(request, attribute) == name]

    def requester(self, **options: Any) -> Requester:
        """Return a ``jobmon_gateway.Requester`` wired to this fake, for sync and async calls.

        Both ``transport`` and ``async_transport`` are this fake's, the route
        prefix is the fake's, and retries do not wait (``wait_initial``,
        ``wait_max`` and ``wait_jitter`` are 0), so a test of a retried fault
        runs at once. ``options`` are passed on to ``Requester`` and win over
        these (e.g. ``retries_attempts=1``); ``service_url`` may be given too.

        Example::

            requester = jobmon_server.requester(retries_attempts=2)
            with ServerGateway(requester, workflow_id=1, workflow_run_id=1) as gateway:
                gateway.log_heartbeat_sync("R", 30.0)
        """
        # Imported here: the fake itself never needs the client it tests.
        from jobmon_gateway.transport import Requester

        settings: dict[str, Any] = {
            "route_prefix": self.route_prefix,
            "transport": self.transport(),
            "async_transport": self.async_transport(),
            "wait_initial": 0,
            "wait_max": 0,
            "wait_jitter": 0,
            **options,
        }
        service_url = settings.pop("service_url", self.service_url)
        return Requester(service_url, **settings)

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
            answer = _default_fault_answer(status, self.server_version)
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
            call = None if name is None else GATEWAY_CALLS[name]
            self._requests.append(
                RecordedRequest(method, url_path, route_path, name, query, headers, body, call)
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
            if self.server_version == "3.2.2":
                name, answer = answer_request_3_2_2(
                    self,
                    method,
                    str(request.url),
                    url_path,
                    route_path,
                    query,
                    headers.get("content-type"),
                    body,
                )
            else:
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
        if self.server_version == "3.2.2":
            # The 3.2.2 server (Werkzeug) closes the connection after every
            # answer; serve() does too when it sees this header.
            headers["connection"] = "close"
        return httpx.Response(answer.status, headers=headers, content=content, request=request)


_CALL_NAMES = frozenset(GATEWAY_CALLS.values())


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
