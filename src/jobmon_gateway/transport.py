"""Requester: the settings of a connection, and the sending of calls, sync and async.

:class:`Requester` holds frozen settings (:mod:`._settings`) and does no I/O
itself. :meth:`Requester.send` and :meth:`Requester.send_async` hand a call
to a sender (:mod:`._sender`: httpx's transport API, on the SDK's own
transports or a caller's httpx client) under one retry course
(:mod:`._retry`), and turn the answer into a result (:mod:`._answers`);
they differ in nothing but ``await``.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx

from ._answers import Answer, Attempt, result_of
from ._reader import Deadline
from ._request_id import new_request_id
from ._retry import RetryCourse
from ._sender import AsyncSender, Hooks, Outgoing, Sender
from ._settings import DEFAULTS, ConnectionSettings, RetryPolicy, build_settings, header_pairs
from ._version import __version__
from .config import HttpSettings
from .errors import ConfigurationError, InvalidRequestError
from .routes import Call
from .transports import AsyncGatewayTransport, GatewayTransport, TlsSettings

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

CONTEXT_HEADER = "X-Server-Structlog-Context"
"""The header whose JSON object the 3.6 server binds, key by key, into its log context."""
_CONTEXT_NAME = CONTEXT_HEADER.encode("ascii")
_FRAMING = frozenset({b"host", b"content-length", b"transfer-encoding"})
REQUEST_ID_KEY = "client_request_id"
"""The key of a call's request id in :data:`CONTEXT_HEADER`.

Not ``request_id``: the server binds a ``request_id`` of its own (one per
HTTP request), which ours would overwrite; ours is one per call, retries
included.
"""

EventHook = Callable[[Any], object]
"""An event hook: called with an ``httpx.Request`` or an ``httpx.Response``."""


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
        route_prefix: Where the API is mounted: ``"/api/v3"`` (the default)
            for servers 3.4+, ``""`` for 3.2. A 404 for a route the server
            lacks says so and names the full URL.
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
        verify: TLS verification: ``True`` (default: certifi's CA bundle, or
            the one ``SSL_CERT_FILE``/``SSL_CERT_DIR`` names), a path to a CA
            bundle, or an :class:`ssl.SSLContext`. ``False`` turns it off and
            logs a warning each time a client is made.
        proxy: An ``http://[user:password@]host:port`` proxy for every
            request (https goes through a ``CONNECT`` tunnel). ``None``
            (default): the environment's ``HTTP_PROXY``, ``HTTPS_PROXY``,
            ``ALL_PROXY`` and ``NO_PROXY``, as httpx reads them.
        trust_env: Whether the environment's proxies and CA bundle apply
            (default ``True``, as in httpx).
        event_hooks: ``{"request": [...], "response": [...]}``, as httpx's:
            each request hook is called with every ``httpx.Request`` sent
            (every retry and resend too), each response hook with every
            ``httpx.Response``, its body already read by the SDK's reader
            (within ``max_response_bytes``). A hook that raises fails the
            call, not retried. In async calls a hook may return an
            awaitable, which is awaited.
        headers: Extra headers for every request (e.g. ``Authorization``);
            they never appear in errors or logs. Every call also sends its
            request id as ``client_request_id`` in the JSON object of
            ``X-Server-Structlog-Context`` (added to one given here).
        client_jobmon_version: The Jobmon version announced to the server.
        transport: An httpx transport the sync calls are sent on instead of
            the SDK's own (e.g. :class:`jobmon_gateway.testing.FakeJobmonServer`'s).
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
        proxy: str | None = DEFAULTS["proxy"],
        trust_env: bool = DEFAULTS["trust_env"],
        event_hooks: Mapping[str, Sequence[EventHook]] | None = DEFAULTS["event_hooks"],
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
            "proxy": proxy,
            "trust_env": trust_env,
            "event_hooks": event_hooks,
        }
        self._connection, self._policy = build_settings(service_url, options)
        self._options = options
        self._service_url_given = service_url
        self._transport = transport
        self._async_transport = async_transport
        connection = self._connection
        self._tls = TlsSettings(connection.verify, trust_env=connection.trust_env)
        self._hooks = Hooks(
            request=tuple(connection.event_hooks.get("request", ())),
            response=tuple(connection.event_hooks.get("response", ())),
        )
        self._version_query = urlencode({"client_jobmon_version": client_jobmon_version})
        self._base_url = connection.base_url
        self._last_merge: tuple[Mapping[str, str], _BaseHeaders] | None = None
        # Built once: every request carries them, GET included (3.2 answers a
        # GET without Content-Type with a 500).
        self._base = _BaseHeaders.of(
            {
                "Content-Type": "application/json",
                "Accept": "application/json",
                # The server gzips answers of 1000+ bytes (task maps) when asked.
                "Accept-Encoding": "gzip, deflate",
                "User-Agent": f"jobmon-gateway/{__version__}",
                **dict(self._connection.headers),
            }
        )

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
        if settings.proxy is not None:
            options["proxy"] = settings.proxy
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

    # -- transports, clients and senders ----------------------------------------

    def _warn_if_unverified(self) -> None:
        if self._connection.scheme == "https" and self._connection.verify is False:
            logger.warning("TLS verification is OFF for %s (verify=False)", self.service_url)

    def new_transport(self) -> httpx.BaseTransport:
        """A sync httpx transport with these settings: the given ``transport``, or the SDK's own.

        The SDK's own is a :class:`~jobmon_gateway.transports.GatewayTransport`:
        this requester's proxy, TLS and pool limits, every request bounded to
        its last byte. The caller closes it.
        """
        if self._transport is not None:
            return self._transport
        self._warn_if_unverified()
        connection = self._connection
        return GatewayTransport(
            verify=self._tls,
            proxy=connection.proxy,
            trust_env=connection.trust_env,
            limits=self._limits(),
        )

    def _limits(self) -> httpx.Limits:
        connection = self._connection
        return httpx.Limits(
            max_connections=connection.max_connections,
            max_keepalive_connections=connection.max_keepalive_connections,
            keepalive_expiry=connection.keepalive_expiry,
        )

    def new_async_transport(self) -> httpx.AsyncBaseTransport:
        """The async counterpart of :meth:`new_transport`."""
        if self._async_transport is not None:
            return self._async_transport
        self._warn_if_unverified()
        connection = self._connection
        return AsyncGatewayTransport(
            verify=self._tls,
            proxy=connection.proxy,
            trust_env=connection.trust_env,
            limits=self._limits(),
        )

    def new_sender(self) -> Sender:
        """The sender of a gateway's sync calls (on :meth:`new_transport`; closed with it)."""
        return Sender(
            self.new_transport(),
            self._connection.max_response_bytes,
            self._hooks,
            bounded=self._transport is None,
            owned=True,
        )

    def new_async_sender(self) -> AsyncSender:
        """The sender of a gateway's async calls (on :meth:`new_async_transport`)."""
        return AsyncSender(
            self.new_async_transport(),
            self._connection.max_response_bytes,
            self._hooks,
            bounded=self._async_transport is None,
            owned=True,
        )

    def lend(self, client: object) -> Sender | AsyncSender:
        """A sender on a caller's ``httpx.Client`` or ``httpx.AsyncClient`` (never closed here).

        The client's own settings apply (auth, headers, cookies, event hooks,
        proxies); the deadline, the size limit and the retries stay this
        requester's.

        Raises:
            InvalidRequestError: ``client`` is neither.
        """
        limit = self._connection.max_response_bytes
        if isinstance(client, httpx.Client):
            return Sender(client, limit, self._hooks, bounded=False, owned=False)
        if isinstance(client, httpx.AsyncClient):
            return AsyncSender(client, limit, self._hooks, bounded=False, owned=False)
        raise InvalidRequestError(
            "set_session takes an httpx.Client or an httpx.AsyncClient, got"
            f" {type(client).__name__}"
        )

    def new_client(self) -> httpx.Client:
        """Make a pooled sync ``httpx.Client`` with these settings; the caller closes it.

        Its transport is :meth:`new_transport`'s, so every request sent on it
        (``client.get(...)`` too) keeps the deadline, proxy and TLS rules;
        httpx's timeout is ``request_timeout``, for the whole request.
        """
        return httpx.Client(
            transport=self.new_transport(),
            timeout=self.request_timeout,
        )

    def new_async_client(self) -> httpx.AsyncClient:
        """Make a pooled ``httpx.AsyncClient`` with these settings; the caller closes it."""
        return httpx.AsyncClient(
            transport=self.new_async_transport(),
            timeout=self.request_timeout,
        )

    # -- everything but the I/O ----------------------------------------------

    def _outgoing(
        self, call: Call[Any], headers: Mapping[str, str] | None, request_id: str
    ) -> Outgoing:
        query = (
            f"{urlencode(call.query)}&{self._version_query}" if call.query else self._version_query
        )
        base = self._merged_headers(headers) if headers else self._base
        lines = base.lines
        if base.context is not None:
            # The one header that differs per call: the rest were checked and
            # encoded once; this costs one line's encoding.
            value = f'{base.context}{request_id}"}}'
            lines = (*lines, (_CONTEXT_NAME, value.encode("ascii")))
        return Outgoing(
            call.method,
            f"{self._base_url}{call.route}?{query}",
            lines,
            None if call.method == "GET" else _JSON.encode(call.body or {}).encode(),
            call.repeat_safe or self._connection.repeat_safe_queueing,
            base.framed,
        )

    def _merged_headers(self, headers: Mapping[str, str]) -> _BaseHeaders:
        # A gateway passes the same headers object on every call: merge once.
        # The cache holds that object, so an identity match can't be a reused id.
        cached = self._last_merge
        if cached is not None and cached[0] is headers:
            return cached[1]
        try:
            # Checked as the settings' headers are: a line break in a value
            # would otherwise reach the wire, or a parser's error message.
            checked = dict(header_pairs(headers))
        except ConfigurationError as exc:
            raise InvalidRequestError(exc.message) from None
        base = self._base
        given = {**base.plain, **checked}
        if base.context is not None and not any(
            name.lower() == CONTEXT_HEADER.lower() for name in checked
        ):
            # The settings' own context still applies.
            merged = _BaseHeaders.made(given, base.context)
        else:
            merged = _BaseHeaders.of(given)
        self._last_merge = (headers, merged)
        return merged

    def build_request(
        self,
        client: httpx.Client | httpx.AsyncClient,
        call: Call[Any],
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Request:
        """Build the ``httpx.Request`` for ``call``: URL, query, headers and JSON body."""
        out = self._outgoing(call, headers, new_request_id())
        return client.build_request(
            out.method, out.url, content=out.body, headers=out.headers, timeout=self.request_timeout
        )

    def _course(self, call: Call[Any], out: Outgoing, retry: bool, request_id: str) -> RetryCourse:
        return RetryCourse(
            self._policy,
            call,
            self._base_url + call.route,  # what errors name: the URL without its query
            retry=retry,
            request_timeout=self._connection.request_timeout,
            repeat_safe=out.repeat_safe,
            request_id=request_id,
        )

    # -- the I/O ---------------------------------------------------------------

    def send(
        self,
        call: Call[T],
        client: httpx.Client | Sender,
        *,
        retry: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> T:
        """Send ``call`` on ``client`` and return its decoded result, retrying as configured.

        The call gets a new request id, sent on every attempt as
        ``client_request_id`` in ``X-Server-Structlog-Context`` and carried
        by its error as ``request_id``.

        Args:
            call: What to send and how to decode the answer.
            client: The sync ``httpx.Client`` to send on (it is not closed).
            retry: ``False`` sends exactly once.
            headers: Extra headers for this request.

        Raises:
            GatewayError: the call failed; see the error tree.
        """
        sender = client if isinstance(client, Sender) else self.lend(client)
        if not isinstance(sender, Sender):
            raise InvalidRequestError("send() needs a sync client; use send_async()")
        request_id = new_request_id()
        out = self._outgoing(call, headers, request_id)

        def attempt(at: Attempt, deadline: Deadline) -> T:
            answer: Answer = sender.send(out, deadline, at)
            return result_of(at, answer)  # type: ignore[no-any-return]

        return self._course(call, out, retry, request_id).run(attempt)

    async def send_async(
        self,
        call: Call[T],
        client: httpx.AsyncClient | AsyncSender,
        *,
        retry: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> T:
        """Async form of :meth:`send`; cancelling it stops the retries at once."""
        sender = client if isinstance(client, AsyncSender) else self.lend(client)
        if not isinstance(sender, AsyncSender):
            raise InvalidRequestError("send_async() needs an async client; use send()")
        request_id = new_request_id()
        out = self._outgoing(call, headers, request_id)

        async def attempt(at: Attempt, deadline: Deadline) -> T:
            answer = await sender.send(out, deadline, at)
            return result_of(at, answer)  # type: ignore[no-any-return]

        return await self._course(call, out, retry, request_id).run_async(attempt)


@dataclass(frozen=True, slots=True)
class _BaseHeaders:
    """A call's headers but for its request id: as given, and encoded for httpx once.

    ``context`` is the start of the log context's JSON text (a call's header
    is that, its request id and ``"}``); ``None``: the given
    ``CONTEXT_HEADER`` is not a JSON object, and ``plain`` is sent as it is.
    ``lines`` are ``plain`` encoded as httpx encodes them (ASCII: every value
    was checked printable), in their order.
    """

    plain: dict[str, str]
    context: str | None
    lines: tuple[tuple[bytes, bytes], ...]
    framed: bool  # a line names Host, Content-Length or Transfer-Encoding

    @classmethod
    def made(cls, plain: dict[str, str], context: str | None) -> _BaseHeaders:
        """``plain`` and ``context``, with ``plain`` encoded once."""
        lines = tuple(httpx.Headers(plain).raw)
        framed = any(name.lower() in _FRAMING for name, _ in lines)
        return cls(plain, context, lines, framed)

    @classmethod
    def of(cls, headers: dict[str, str]) -> _BaseHeaders:
        """Split ``headers`` into the rest and the log context (any spelling of its name)."""
        context: dict[str, Any] = {}
        rest: dict[str, str] = {}
        for name, value in headers.items():
            if name.lower() != CONTEXT_HEADER.lower():
                rest[name] = value
                continue
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                # The server could not read an id in it either: sent as given.
                return cls.made(headers, None)
            context = parsed
        context.pop(REQUEST_ID_KEY, None)  # the call's own id is the one the error names
        # ASCII JSON of a parsed object: printable, so still a valid header value.
        text = json.dumps(context)
        start = f"{text[:-1]}, " if context else "{"
        return cls.made(rest, f'{start}"{REQUEST_ID_KEY}": "')
