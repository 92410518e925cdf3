"""Requester: the settings of a connection, and the sending of calls, sync and async.

:class:`Requester` holds frozen settings (:mod:`._settings`) and does no I/O
itself. :meth:`Requester.send` and :meth:`Requester.send_async` hand a call
to the client's exchange (:mod:`._exchange`) under one retry course
(:mod:`._retry`), and turn the answer into a result (:mod:`._answers`);
they differ in nothing but ``await``.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from ._answers import Answer, Attempt, result_of
from ._exchange import (
    AiohttpExchange,
    AsyncHttpxExchange,
    HttpxExchange,
    Outgoing,
    SocketExchange,
)
from ._reader import Deadline
from ._retry import RetryCourse
from ._settings import DEFAULTS, ConnectionSettings, RetryPolicy, build_settings
from ._version import __version__
from .config import HttpSettings
from .errors import ConfigurationError, InvalidRequestError
from .routes import Call

if TYPE_CHECKING:
    import aiohttp
    import httpx

__all__ = ["CLIENT_JOBMON_VERSION", "Requester"]

T = TypeVar("T")

logger = logging.getLogger("jobmon_gateway")

CLIENT_JOBMON_VERSION: str = DEFAULTS["client_jobmon_version"]
"""The Jobmon version we announce in ``client_jobmon_version``.

The server picks wire formats by it: above 3.4.23 it sends downstream node
ids as JSON lists instead of JSON-encoded strings. This is the protocol we
speak, not this package's own version.
"""

_JSON = json.JSONEncoder(separators=(",", ":"))

SyncExchange = SocketExchange | HttpxExchange
AsyncExchange = AiohttpExchange | AsyncHttpxExchange


def _httpx_patched() -> tuple[bool, bool]:
    # A mocking library (pytest-httpx) patches httpx's own transports; then
    # the gateway must send through them for the mock to see its requests.
    # Nobody can have patched httpx without importing it: no import here.
    httpx = sys.modules.get("httpx")
    if httpx is None:
        return False, False
    sync = getattr(httpx.HTTPTransport.handle_request, "__module__", "httpx._transports.default")
    async_ = getattr(
        httpx.AsyncHTTPTransport.handle_async_request, "__module__", "httpx._transports.default"
    )
    return not sync.startswith("httpx"), not async_.startswith("httpx")


class Requester:
    """Connection settings and the sending of :class:`~jobmon_gateway.routes.Call` objects.

    One ``Requester`` can serve any number of gateways; it holds no
    connections itself. The base URL is ``service_url + route_prefix``.
    Its settings are frozen: :meth:`with_options` makes a changed copy.

    Args:
        service_url: Scheme, host and port, e.g. ``"http://jobmon.example.org:5000"``;
            it may carry a path (Jobmon's own configuration puts the route
            prefix there). A user name or password in it is refused: pass
            credentials as ``headers={"Authorization": ...}``.
        route_prefix: Where the API is mounted: ``"/api/v3"`` for servers 3.4+,
            ``""`` (the default here) for 3.2. :meth:`from_env` defaults to
            ``"/api/v3"`` like the reference client.
        request_timeout: Seconds allowed for one request, from sending to the
            last byte of the answer (a trickling answer is cut off too).
        retries_attempts: Most requests sent for one call, the first included.
        retries_timeout: Most seconds one call may spend across its retries;
            a wait that would overrun it is not started. ``0`` is Jobmon's
            reading: one attempt, then :class:`~jobmon_gateway.RetryBudgetExhaustedError`.
        wait_initial: First backoff wait in seconds.
        wait_max: Longest backoff wait in seconds.
        wait_jitter: Up to this many random seconds are added to each wait.
        wait_exp_base: Growth factor of the backoff.
        retry_after_max: Longest ``Retry-After`` honoured, in seconds.
        max_response_bytes: Most bytes of an answer's body, after
            decompression (default 128 MiB); a bigger one raises
            :class:`~jobmon_gateway.ResponseTooLargeError` and is not read further.
        verify: TLS verification: ``True`` (default, system CAs), a path to a
            CA bundle, or an :class:`ssl.SSLContext`. ``False`` turns it off
            and logs a warning each time a client is made.
        headers: Extra headers for every request (e.g. ``Authorization``);
            they never appear in errors or logs.
        client_jobmon_version: The Jobmon version announced to the server.
        transport: An httpx transport for the sync clients this requester
            makes (e.g. :class:`jobmon_gateway.testing.FakeJobmonServer`'s).
        async_transport: The async counterpart of ``transport``.
        limits: Connection-pool limits (``httpx.Limits``); idle connections
            are never kept longer than 4 s (below uvicorn's 5 s keep-alive).
        repeat_safe_queueing: Whether ``queue_task_batch`` may be resent
            after it may have reached the server. ``None`` (default): yes
            under a route prefix (3.4+ servers create no second task instance
            on a repeat), no at ``""`` (3.2 adds one per repeat).

    Raises:
        ConfigurationError: a setting is malformed.

    Example::

        requester = Requester("http://127.0.0.1:5000", route_prefix="/api/v3")
        async with ServerGateway(requester, workflow_id=1, workflow_run_id=1) as gateway:
            print(await gateway.get_server_time())
    """

    def __init__(
        self,
        service_url: str,
        *,
        route_prefix: str = DEFAULTS["route_prefix"],
        request_timeout: float = DEFAULTS["request_timeout"],
        retries_attempts: int = DEFAULTS["retries_attempts"],
        retries_timeout: float = DEFAULTS["retries_timeout"],
        wait_initial: float = DEFAULTS["wait_initial"],
        wait_max: float = DEFAULTS["wait_max"],
        wait_jitter: float = DEFAULTS["wait_jitter"],
        wait_exp_base: float = DEFAULTS["wait_exp_base"],
        retry_after_max: float = DEFAULTS["retry_after_max"],
        max_response_bytes: int = DEFAULTS["max_response_bytes"],
        verify: bool | str | ssl.SSLContext = DEFAULTS["verify"],
        headers: Mapping[str, str] | None = DEFAULTS["headers"],
        client_jobmon_version: str = DEFAULTS["client_jobmon_version"],
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        limits: httpx.Limits | None = None,
        repeat_safe_queueing: bool | None = None,
    ) -> None:
        options: dict[str, Any] = {
            "route_prefix": route_prefix,
            "request_timeout": request_timeout,
            "retries_attempts": retries_attempts,
            "retries_timeout": retries_timeout,
            "wait_initial": wait_initial,
            "wait_max": wait_max,
            "wait_jitter": wait_jitter,
            "wait_exp_base": wait_exp_base,
            "retry_after_max": retry_after_max,
            "max_response_bytes": max_response_bytes,
            "verify": verify,
            "headers": None if headers is None else dict(headers),
            "client_jobmon_version": client_jobmon_version,
            "transport": transport,
            "async_transport": async_transport,
            "limits": limits,
            "repeat_safe_queueing": repeat_safe_queueing,
        }
        self._connection, self._policy = build_settings(service_url, options)
        self._options = options
        self._service_url_given = service_url
        self._transport = transport
        self._async_transport = async_transport
        self._ssl_context: ssl.SSLContext | None = None
        prefix = self._connection.target_prefix
        self._version_query = urlencode({"client_jobmon_version": client_jobmon_version})
        self._base_url = self._connection.base_url
        self._target_prefix = prefix
        self._last_merge: tuple[Mapping[str, str], dict[str, str]] | None = None
        # Built once: every request carries them, GET included (3.2 answers a
        # GET without Content-Type with a 500).
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            # The server gzips answers of 1000+ bytes (task maps) when asked.
            "Accept-Encoding": "gzip, deflate",
            "User-Agent": f"jobmon-gateway/{__version__}",
            **dict(self._connection.headers),
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Requester:
        """Make a requester from ``JOBMON__HTTP__*`` and the ``JOBMON__CONFIG_FILE`` YAML.

        Environment variables win over the YAML file's ``http:`` section;
        keyword ``overrides`` win over both and take any ``__init__`` option.

        Raises:
            ConfigurationError: ``JOBMON__HTTP__SERVICE_URL`` is not set anywhere,
                or a value is malformed.
        """
        environ = dict(os.environ if environ is None else environ)
        if overrides.get("service_url"):
            # An explicit URL is enough: the environment need not name one.
            environ["JOBMON__HTTP__SERVICE_URL"] = str(overrides["service_url"])
        settings = HttpSettings.from_env(environ)
        options: dict[str, Any] = {
            "route_prefix": settings.route_prefix,
            "request_timeout": settings.request_timeout,
            "retries_attempts": settings.retries_attempts,
            "retries_timeout": settings.retries_timeout,
            "max_response_bytes": settings.max_response_bytes,
        }
        options.update(overrides)
        service_url = options.pop("service_url", settings.service_url)
        return cls(service_url, **options)

    @classmethod
    def from_jobmon(cls, requester: object, **overrides: Any) -> Requester:
        """Make a requester with the settings of a Jobmon ``jobmon.core.requester.Requester``.

        Duck-typed (Jobmon is never imported): it reads ``service_url`` (which
        holds the route prefix, e.g. ``http://host:5000/api/v3``),
        ``request_timeout``, ``retries_attempts`` and ``retries_timeout``.
        ``retries_timeout=0`` keeps Jobmon's meaning: one attempt.

        Raises:
            ConfigurationError: a setting is missing or malformed.
        """
        if isinstance(requester, Requester):
            return requester.with_options(**overrides) if overrides else requester
        options: dict[str, Any] = {"route_prefix": ""}
        for name in ("request_timeout", "retries_attempts", "retries_timeout"):
            value = getattr(requester, name, None)
            if value is not None:
                options[name] = value
        service_url = getattr(requester, "service_url", None)
        if service_url is None:
            raise ConfigurationError(
                f"{type(requester).__name__} has no service_url: not a Jobmon requester"
            )
        options.update(overrides)
        return cls(options.pop("service_url", service_url), **options)

    def with_options(self, **changes: Any) -> Requester:
        """Return a copy of this requester with some ``__init__`` options changed.

        Example: ``requester.with_options(retries_attempts=1, request_timeout=5)``.
        """
        options = {**self._options, **changes}
        service_url = options.pop("service_url", self._service_url_given)
        return Requester(service_url, **options)

    # -- the settings, read-only ---------------------------------------------------

    @property
    def connection(self) -> ConnectionSettings:
        """The frozen connection settings."""
        return self._connection

    @property
    def retry_policy(self) -> RetryPolicy:
        """The frozen retry policy."""
        return self._policy

    @property
    def service_url(self) -> str:
        """Scheme, host and port (and the service URL's own path, if any)."""
        return self._connection.service_url

    @property
    def route_prefix(self) -> str:
        """Where the API is mounted (``""`` or e.g. ``"/api/v3"``)."""
        return self._connection.route_prefix

    @property
    def base_url(self) -> str:
        """``service_url + route_prefix``: every route is appended to it."""
        return self._base_url

    @property
    def request_timeout(self) -> float:
        """Seconds for one request, to the last byte of the answer."""
        return self._connection.request_timeout

    @property
    def max_response_bytes(self) -> int:
        """Most bytes of an answer's body after decompression."""
        return self._connection.max_response_bytes

    @property
    def retries_attempts(self) -> int:
        """Most requests sent for one call, the first included."""
        return self._policy.attempts

    @property
    def retries_timeout(self) -> float:
        """Most seconds one call may spend across its retries (0: one attempt)."""
        return self._policy.timeout

    @property
    def wait_initial(self) -> float:
        """First backoff wait, seconds."""
        return self._policy.wait_initial

    @property
    def wait_max(self) -> float:
        """Longest backoff wait, seconds."""
        return self._policy.wait_max

    @property
    def wait_jitter(self) -> float:
        """Most random seconds added to a wait."""
        return self._policy.wait_jitter

    @property
    def wait_exp_base(self) -> float:
        """Growth factor of the backoff."""
        return self._policy.wait_exp_base

    @property
    def retry_after_max(self) -> float:
        """Longest ``Retry-After`` honoured, seconds."""
        return self._policy.retry_after_max

    @property
    def client_jobmon_version(self) -> str:
        """The Jobmon version announced to the server."""
        return self._connection.client_jobmon_version

    def __repr__(self) -> str:
        return (
            f"Requester({self._base_url!r}, request_timeout={self.request_timeout:g},"
            f" retries_attempts={self.retries_attempts},"
            f" retries_timeout={self.retries_timeout:g})"
        )

    # -- clients and their exchanges ----------------------------------------------------

    def _tls(self) -> ssl.SSLContext | bool:
        # Plain http needs none; decided here once for every kind of client.
        if self._connection.scheme != "https":
            return True
        verify = self._connection.verify
        if verify is False:
            logger.warning("TLS verification is OFF for %s (verify=False)", self.service_url)
            return False
        if self._ssl_context is None:
            # Loading the CA bundle takes ~30 ms: once per requester, not per client.
            if isinstance(verify, ssl.SSLContext):
                self._ssl_context = verify
            elif isinstance(verify, str):
                try:
                    self._ssl_context = ssl.create_default_context(cafile=verify)
                except (OSError, ssl.SSLError) as exc:
                    raise ConfigurationError(
                        f"verify={verify!r} is not a readable CA bundle ({type(exc).__name__})"
                    ) from None
            else:
                import certifi

                self._ssl_context = ssl.create_default_context(cafile=certifi.where())
        return self._ssl_context

    def _tls_context(self) -> ssl.SSLContext | None:
        tls = self._tls()
        if tls is False:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        return tls if isinstance(tls, ssl.SSLContext) else None

    def new_exchange(self) -> SyncExchange:
        """The exchange of a sync client this requester makes (see :mod:`._exchange`)."""
        limit = self._connection.max_response_bytes
        if self._transport is not None:
            return HttpxExchange(limit, transport=self._transport)
        if _httpx_patched()[0]:
            import httpx

            return HttpxExchange(limit, transport=httpx.HTTPTransport(verify=self._tls()))
        return SocketExchange(self._connection, self._tls_context())

    def new_async_exchange(self) -> AsyncExchange:
        """The exchange of an async client this requester makes."""
        limit = self._connection.max_response_bytes
        if self._async_transport is not None:
            return AsyncHttpxExchange(limit, transport=self._async_transport)
        if _httpx_patched()[1]:
            import httpx

            return AsyncHttpxExchange(limit, transport=httpx.AsyncHTTPTransport(verify=self._tls()))
        return AiohttpExchange(self._connection, self._tls())

    def lend_exchange(self, client: object) -> SyncExchange | AsyncExchange:
        """The exchange for a caller's client: ``httpx.Client``, ``httpx.AsyncClient``
        or ``aiohttp.ClientSession`` (never closed by the SDK).

        Raises:
            InvalidRequestError: ``client`` is none of those.
        """
        owned = getattr(client, "jobmon_exchange", None)
        if owned is not None:
            if getattr(client, "is_closed", False):
                # A client this requester made and someone closed: refuse, as for a lent one.
                raise InvalidRequestError(
                    f"this {type(client).__name__} has been closed; make a new one"
                )
            return owned  # type: ignore[no-any-return]
        limit = self._connection.max_response_bytes
        # Looked up, not imported: a client of a library nobody imported
        # cannot be one of its clients, and importing aiohttp costs 0.4 s.
        httpx_module = sys.modules.get("httpx")
        if httpx_module is not None:
            if isinstance(client, httpx_module.Client):
                return HttpxExchange(limit, client=client)
            if isinstance(client, httpx_module.AsyncClient):
                return AsyncHttpxExchange(limit, client=client)
        aiohttp_module = sys.modules.get("aiohttp")
        if aiohttp_module is not None and isinstance(client, aiohttp_module.ClientSession):
            return AiohttpExchange(self._connection, True, session=client)
        raise InvalidRequestError(
            "set_session takes an httpx.AsyncClient, an httpx.Client or an"
            f" aiohttp.ClientSession, got {type(client).__name__}"
        )

    def new_client(self) -> httpx.Client:
        """Make a pooled sync ``httpx.Client`` with these settings; the caller closes it.

        Requests this requester sends on it go straight to its exchange (our
        own deadline-bound connections), skipping httpx's per-request
        bookkeeping (cookies, auth, hooks): configure a client of your own and
        hand it to ``set_session`` for those.
        """
        from ._httpx_clients import owned_client

        return owned_client(self, self.new_exchange())

    def new_async_client(self) -> httpx.AsyncClient:
        """Make a pooled ``httpx.AsyncClient`` with these settings; the caller closes it.

        Unless ``async_transport`` was given it sends through aiohttp. As with
        :meth:`new_client`, this requester's requests go straight to the exchange.
        """
        from ._httpx_clients import owned_async_client

        return owned_async_client(self, self.new_async_exchange())

    # -- everything but the I/O ----------------------------------------------

    def _outgoing(self, call: Call[Any], headers: Mapping[str, str] | None) -> Outgoing:
        query = (
            f"{urlencode(call.query)}&{self._version_query}" if call.query else self._version_query
        )
        return Outgoing(
            call.method,
            f"{self._base_url}{call.route}?{query}",
            f"{self._target_prefix}{call.route}?{query}",
            self._merged_headers(headers) if headers else self._headers,
            None if call.method == "GET" else _JSON.encode(call.body or {}).encode(),
            call.repeat_safe or self._connection.repeat_safe_queueing,
        )

    def _merged_headers(self, headers: Mapping[str, str]) -> Mapping[str, str]:
        # A gateway passes the same headers object on every call: merge once.
        # The cache holds that object, so an identity match can't be a reused id.
        cached = self._last_merge
        if cached is not None and cached[0] is headers:
            return cached[1]
        merged = {**self._headers, **headers}
        self._last_merge = (headers, merged)
        return merged

    def build_request(
        self,
        client: httpx.Client | httpx.AsyncClient,
        call: Call[Any],
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Request:
        """Build the ``httpx.Request`` for ``call``: URL, query, headers and JSON body."""
        out = self._outgoing(call, headers)
        return client.build_request(
            out.method, out.url, content=out.body, headers=out.headers, timeout=self.request_timeout
        )

    def _course(self, call: Call[Any], out: Outgoing, retry: bool) -> RetryCourse:
        return RetryCourse(
            self._policy,
            call,
            self._base_url + call.route,  # what errors name: the URL without its query
            retry=retry,
            request_timeout=self._connection.request_timeout,
            repeat_safe=out.repeat_safe,
        )

    # -- the I/O ---------------------------------------------------------------

    def send(
        self,
        call: Call[T],
        client: httpx.Client | SyncExchange,
        *,
        retry: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> T:
        """Send ``call`` on ``client`` and return its decoded result, retrying as configured.

        Args:
            call: What to send and how to decode the answer.
            client: The sync client to send on (it is not closed).
            retry: ``False`` sends exactly once.
            headers: Extra headers for this request.

        Raises:
            GatewayError: the call failed; see the error tree.
        """
        exchange = client if isinstance(client, SocketExchange | HttpxExchange) else None
        if exchange is None:
            lent = self.lend_exchange(client)
            if not isinstance(lent, SocketExchange | HttpxExchange):
                raise InvalidRequestError("send() needs a sync client; use send_async()")
            exchange = lent
        out = self._outgoing(call, headers)

        def attempt(at: Attempt, deadline: Deadline) -> T:
            answer: Answer = exchange.send(out, deadline, at)
            return result_of(at, answer)  # type: ignore[no-any-return]

        return self._course(call, out, retry).run(attempt)

    async def send_async(
        self,
        call: Call[T],
        client: httpx.AsyncClient | aiohttp.ClientSession | AsyncExchange,
        *,
        retry: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> T:
        """Async form of :meth:`send`; cancelling it stops the retries at once."""
        exchange = client if isinstance(client, AiohttpExchange | AsyncHttpxExchange) else None
        if exchange is None:
            lent = self.lend_exchange(client)
            if not isinstance(lent, AiohttpExchange | AsyncHttpxExchange):
                raise InvalidRequestError("send_async() needs an async client; use send()")
            exchange = lent
        out = self._outgoing(call, headers)

        async def attempt(at: Attempt, deadline: Deadline) -> T:
            answer = await exchange.send(out, deadline, at)
            return result_of(at, answer)  # type: ignore[no-any-return]

        return await self._course(call, out, retry).run_async(attempt)
