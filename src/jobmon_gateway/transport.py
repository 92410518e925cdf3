"""The one transport: build a request, send it (sync or async), retry, decode.

:class:`Requester` holds the connection settings and everything that does no
I/O: URL joining, headers, timeouts, turning an answer into a result or an
error, and deciding what is retried. Only :meth:`Requester.send` and
:meth:`Requester.send_async` touch the network, and they differ in nothing
but ``await``.
"""

from __future__ import annotations

import email.utils
import gc
import json
import logging
import math
import os
import random
import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx
import stamina

from ._version import __version__
from .aiohttp_transport import AiohttpTransport
from .config import HttpSettings
from .errors import (
    BadRequestError,
    ConfigurationError,
    GatewayError,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    RequestTimeoutError,
    ResourceLockedError,
    RetryBudgetExhaustedError,
    ServerError,
    ServerStatusError,
    TransportError,
    UnprocessableEntityError,
)
from .models import ServerErrorBody
from .routes import Call

__all__ = ["CLIENT_JOBMON_VERSION", "Requester"]

T = TypeVar("T")

logger = logging.getLogger("jobmon_gateway")

CLIENT_JOBMON_VERSION = "3.6.0"
"""The Jobmon version we announce in ``client_jobmon_version``.

The server picks wire formats by it: above 3.4.23 it sends downstream node
ids as JSON lists instead of JSON-encoded strings. This is the protocol we
speak, not this package's own version.
"""

_JSON = json.JSONEncoder(separators=(",", ":"))

EXCERPT_LIMIT = 500
"""Most characters of a body kept in an error."""

_STATUS_ERRORS: dict[int, type[ServerStatusError]] = {
    400: BadRequestError,
    404: NotFoundError,
    422: UnprocessableEntityError,
    423: ResourceLockedError,
    429: RateLimitedError,
}

# A reused keep-alive connection the server dropped (uvicorn does after every
# 500) fails like this; it says nothing about the server's health.
_STALE_CONNECTION = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
# Failures that no retry can mend: they are about our request, not the network.
_NOT_RETRYABLE_TRANSPORT = (
    httpx.LocalProtocolError,
    httpx.UnsupportedProtocol,
    httpx.ProxyError,
    httpx.DecodingError,
    httpx.TooManyRedirects,
)


class _OverdueError(Exception):
    """The answer trickled in for longer than ``request_timeout``."""


_Headers = httpx.Headers | list[tuple[str, str]]


def _header(headers: _Headers, name: str) -> str | None:
    if isinstance(headers, httpx.Headers):
        found: str | None = headers.get(name)
        return found
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


@dataclass(frozen=True)
class _Outgoing:
    """One call's request, built once and resent as is on every retry."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None

    def request(self, timeout: httpx.Timeout) -> httpx.Request:
        return httpx.Request(
            self.method,
            self.url,
            headers=self.headers,
            content=self.body,
            extensions={"timeout": timeout.as_dict()},
        )


class _OwnedClient(httpx.Client):
    """A client this requester made; its requests go straight to the transport."""

    def __init__(self, transport: httpx.BaseTransport, **options: Any) -> None:
        super().__init__(transport=transport, **options)
        self.jobmon_transport = transport


class _OwnedAsyncClient(httpx.AsyncClient):
    """An async client this requester made; its requests go straight to the transport."""

    def __init__(self, transport: httpx.AsyncBaseTransport, **options: Any) -> None:
        super().__init__(transport=transport, **options)
        self.jobmon_transport = transport


class Requester:
    """Connection settings and the sending of :class:`~jobmon_gateway.routes.Call` objects.

    One ``Requester`` can serve any number of gateways; it holds no
    connections itself. The base URL is ``service_url + route_prefix``.

    Args:
        service_url: Scheme, host and port, e.g. ``"http://jobmon.example.org:5000"``.
        route_prefix: Where the API is mounted: ``"/api/v3"`` for servers 3.4+,
            ``""`` (the default here) for 3.2. :meth:`from_env` defaults to
            ``"/api/v3"`` like the reference client.
        request_timeout: Seconds allowed for one request, from sending to the
            last byte of the answer (a trickling answer is cut off too).
        retries_attempts: Most requests sent for one call, the first included.
        retries_timeout: Most seconds one call may spend across its retries;
            a wait that would overrun it is not started.
        wait_initial: First backoff wait in seconds.
        wait_max: Longest backoff wait in seconds.
        wait_jitter: Up to this many random seconds are added to each wait.
        wait_exp_base: Growth factor of the backoff.
        retry_after_max: Longest ``Retry-After`` honoured, in seconds.
        verify: TLS verification: ``True`` (default, system CAs), a path to a
            CA bundle, or an :class:`ssl.SSLContext`. ``False`` turns it off
            and logs a warning each time a client is made.
        headers: Extra headers for every request (e.g. ``Authorization``);
            they never appear in errors or logs.
        client_jobmon_version: The Jobmon version announced to the server.
        transport: An httpx transport for the clients this requester makes
            (e.g. :class:`jobmon_gateway.testing.FakeJobmonServer`'s). Each
            client closes it when it closes; httpx's and aiohttp's transports
            reopen on their next request, so one transport serves many gateways.
        async_transport: The async counterpart of ``transport``; without one,
            async clients send through :class:`~jobmon_gateway.AiohttpTransport`.
        limits: Connection-pool limits for the clients this requester makes.

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
        route_prefix: str = "",
        request_timeout: float = 20.0,
        retries_attempts: int = 10,
        retries_timeout: float = 300.0,
        wait_initial: float = 1.0,
        wait_max: float = 30.0,
        wait_jitter: float = 1.0,
        wait_exp_base: float = 2.0,
        retry_after_max: float = 60.0,
        verify: bool | str | ssl.SSLContext = True,
        headers: Mapping[str, str] | None = None,
        client_jobmon_version: str = CLIENT_JOBMON_VERSION,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        if not isinstance(service_url, str) or not service_url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"service_url must be an http:// or https:// URL, got {service_url!r}"
            )
        if not isinstance(route_prefix, str):
            raise ConfigurationError(f"route_prefix must be a str, got {route_prefix!r}")
        for name, value in (
            ("request_timeout", request_timeout),
            ("retries_timeout", retries_timeout),
            ("wait_exp_base", wait_exp_base),
        ):
            _require_number(name, value, positive=True)
        for name, value in (
            ("wait_initial", wait_initial),
            ("wait_max", wait_max),
            ("wait_jitter", wait_jitter),
            ("retry_after_max", retry_after_max),
        ):
            _require_number(name, value, positive=False)
        if isinstance(retries_attempts, bool) or not isinstance(retries_attempts, int):
            raise ConfigurationError(f"retries_attempts must be an int, got {retries_attempts!r}")
        if retries_attempts < 1:
            raise ConfigurationError(f"retries_attempts must be >= 1, got {retries_attempts}")
        for header, text in (headers or {}).items():
            _require_header(header, text)
        self._options: dict[str, Any] = {
            "route_prefix": route_prefix,
            "request_timeout": request_timeout,
            "retries_attempts": retries_attempts,
            "retries_timeout": retries_timeout,
            "wait_initial": wait_initial,
            "wait_max": wait_max,
            "wait_jitter": wait_jitter,
            "wait_exp_base": wait_exp_base,
            "retry_after_max": retry_after_max,
            "verify": verify,
            "headers": headers,
            "client_jobmon_version": client_jobmon_version,
            "transport": transport,
            "async_transport": async_transport,
            "limits": limits,
        }
        self.service_url = service_url.rstrip("/")
        prefix = route_prefix.strip("/")
        self.route_prefix = f"/{prefix}" if prefix else ""
        self.base_url = self.service_url + self.route_prefix
        self.request_timeout = float(request_timeout)
        self.retries_attempts = retries_attempts
        self.retries_timeout = float(retries_timeout)
        self.wait_initial = float(wait_initial)
        self.wait_max = float(wait_max)
        self.wait_jitter = float(wait_jitter)
        self.wait_exp_base = float(wait_exp_base)
        self.retry_after_max = float(retry_after_max)
        self.client_jobmon_version = client_jobmon_version
        self._verify = verify
        self._ssl_context: ssl.SSLContext | None = None
        self._transport = transport
        self._async_transport = async_transport
        self._limits = (
            limits
            if limits is not None
            else httpx.Limits(max_connections=100, max_keepalive_connections=20)
        )
        self._timeout = httpx.Timeout(self.request_timeout)
        self._version_query = urlencode({"client_jobmon_version": client_jobmon_version})
        self._last_merge: tuple[Mapping[str, str], dict[str, str]] | None = None
        # Built once: every request carries them, GET included (3.2 answers a
        # GET without Content-Type with a 500).
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            # The server gzips answers of 1000+ bytes (task maps) when asked.
            "Accept-Encoding": "gzip, deflate",
            "User-Agent": f"jobmon-gateway/{__version__}",
            **(headers or {}),
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
        }
        options.update(overrides)
        service_url = options.pop("service_url", settings.service_url)
        return cls(service_url, **options)

    def with_options(self, **changes: Any) -> Requester:
        """Return a copy of this requester with some ``__init__`` options changed.

        Example: ``requester.with_options(retries_attempts=1, request_timeout=5)``.
        """
        options = {**self._options, **changes}
        service_url = options.pop("service_url", self.service_url)
        return Requester(service_url, **options)

    def __repr__(self) -> str:
        return (
            f"Requester({self.base_url!r}, request_timeout={self.request_timeout},"
            f" retries_attempts={self.retries_attempts}, retries_timeout={self.retries_timeout})"
        )

    # -- clients --------------------------------------------------------------

    def _ssl_verify(self) -> bool | ssl.SSLContext:
        if self._verify is False:
            logger.warning("TLS verification is OFF for %s (verify=False)", self.service_url)
            return False
        if self._ssl_context is None:
            # Loading the CA bundle takes ~30 ms: once per requester, not per client.
            self._ssl_context = (
                self._verify
                if isinstance(self._verify, ssl.SSLContext)
                else ssl.create_default_context(cafile=self._verify)
                if isinstance(self._verify, str)
                else httpx.create_ssl_context()
            )
        return self._ssl_context

    def new_client(self) -> httpx.Client:
        """Make a pooled sync ``httpx.Client`` with these settings; the caller closes it.

        Requests this requester sends on it go straight to its transport,
        skipping the client's per-request bookkeeping (cookies, auth, hooks):
        configure a client of your own and hand it to ``set_session`` for those.
        """
        transport = self._transport or httpx.HTTPTransport(
            verify=self._ssl_verify(), limits=self._limits
        )
        return _OwnedClient(transport, timeout=self._timeout)

    def new_async_client(self) -> httpx.AsyncClient:
        """Make a pooled ``httpx.AsyncClient`` with these settings; the caller closes it.

        Unless ``async_transport`` was given it sends through
        :class:`~jobmon_gateway.AiohttpTransport`. As with :meth:`new_client`,
        this requester's requests go straight to the transport.
        """
        # Chosen by measurement: aiohttp's pool is several times cheaper per
        # call than httpx's own (see the Performance page).
        transport = self._async_transport or AiohttpTransport(
            verify=self._ssl_verify(), limits=self._limits
        )
        return _OwnedAsyncClient(transport, timeout=self._timeout)

    # -- everything but the I/O ----------------------------------------------

    def _outgoing(self, call: Call[Any], headers: Mapping[str, str] | None) -> _Outgoing:
        query = (
            f"{urlencode(call.query)}&{self._version_query}" if call.query else self._version_query
        )
        return _Outgoing(
            call.method,
            f"{self.base_url}{call.route}?{query}",
            self._merged_headers(headers) if headers else self._headers,
            None if call.method == "GET" else _JSON.encode(call.body or {}).encode(),
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
        return self._borrowed_request(client, self._outgoing(call, headers))

    def _answer(
        self, call: Call[T], status: int, reason: str, headers: _Headers, content: bytes
    ) -> T:
        if not 200 <= status < 300:
            raise self._status_error(call, status, reason, headers, content)
        try:
            return _decode(call, content)
        except GatewayError as exc:
            exc.method, exc.route, exc.status = call.method, call.route, status
            raise
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            # pydantic's ValidationError and json's errors are ValueErrors.
            raise InvalidResponseError(
                f"the answer does not fit {_result_name(call)}: {_first_line(exc)}",
                method=call.method,
                route=call.route,
                status=status,
                body_excerpt=_excerpt(content),
            ) from exc

    def _status_error(
        self, call: Call[Any], status: int, reason: str, headers: _Headers, content: bytes
    ) -> ServerStatusError:
        kind = _STATUS_ERRORS.get(status) or (ServerError if status >= 500 else ServerStatusError)
        said = ServerErrorBody.from_body(content)
        error = kind(
            f"HTTP {status} {reason}".rstrip(),
            method=call.method,
            route=call.route,
            status=status,
            server_message=said.message,
            server_error_type=said.error_type,
            body_excerpt=_excerpt(content),
        )
        error.retry_after = _retry_after(_header(headers, "retry-after"))
        return error

    def _transport_error(self, call: Call[Any], exc: Exception) -> TransportError:
        if isinstance(exc, httpx.TimeoutException | _OverdueError):
            error: TransportError = RequestTimeoutError(
                f"no answer within request_timeout={self.request_timeout:g}s"
                f" ({type(exc).__name__})",
                method=call.method,
                route=call.route,
            )
        else:
            error = TransportError(
                f"{type(exc).__name__}: {exc or 'connection failed'}",
                method=call.method,
                route=call.route,
            )
            if isinstance(exc, _NOT_RETRYABLE_TRANSPORT) or _certificate_refused(exc):
                # No retry mends our request, or a certificate we do not trust.
                error.retryable = False
        return error

    # -- the I/O ---------------------------------------------------------------

    def _exchange(self, client: httpx.Client, call: Call[T], out: _Outgoing) -> T:
        deadline = time.monotonic() + self.request_timeout
        try:
            if isinstance(client, _OwnedClient):
                response = client.jobmon_transport.handle_request(out.request(self._timeout))
            else:
                response = client.send(self._borrowed_request(client, out), stream=True)
            try:
                chunks = []
                # Read chunk by chunk: request_timeout bounds the whole answer,
                # not only each gap, so a trickling answer cannot hang us.
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        raise _OverdueError
            finally:
                response.close()
        except (httpx.HTTPError, _OverdueError) as exc:
            raise self._transport_error(call, exc) from exc
        return self._answer(
            call, response.status_code, response.reason_phrase, response.headers, b"".join(chunks)
        )

    async def _exchange_async(self, client: httpx.AsyncClient, call: Call[T], out: _Outgoing) -> T:
        # aiohttp's own total timeout bounds the hot path; the deadline is for the others.
        deadline = time.monotonic() + self.request_timeout
        try:
            if isinstance(client, _OwnedAsyncClient):
                transport = client.jobmon_transport
                if isinstance(transport, AiohttpTransport) and transport.sends_directly:
                    # The hot path: no httpx objects at all (see Performance).
                    status, reason, headers, content = await transport.exchange(
                        out.method,
                        out.url,
                        out.headers,
                        out.body,
                        connect_timeout=self.request_timeout,
                        read_timeout=self.request_timeout,
                    )
                    return self._answer(call, status, reason, headers, content)
                response = await transport.handle_async_request(out.request(self._timeout))
            else:
                response = await client.send(self._borrowed_request(client, out), stream=True)
            try:
                chunks = []
                async for chunk in response.aiter_bytes():
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        raise _OverdueError
            finally:
                await response.aclose()
        except (httpx.HTTPError, _OverdueError) as exc:
            raise self._transport_error(call, exc) from exc
        return self._answer(
            call, response.status_code, response.reason_phrase, response.headers, b"".join(chunks)
        )

    def _borrowed_request(
        self, client: httpx.Client | httpx.AsyncClient, out: _Outgoing
    ) -> httpx.Request:
        # A caller's client: let it merge its own headers, cookies and auth.
        return client.build_request(
            out.method, out.url, content=out.body, headers=out.headers, timeout=self._timeout
        )

    def send(
        self,
        call: Call[T],
        client: httpx.Client,
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
        out = self._outgoing(call, headers)
        course = _RetryCourse(self, call, retry)
        try:
            # The first attempt runs outside stamina: the happy path should
            # not pay for the retry machinery (a fifth of a loopback call).
            # Should it fail, stamina's loop starts by replaying that failure,
            # so stamina sleeps, counts and instruments every retry itself.
            course.sent = 1
            try:
                return self._exchange(client, call, out)
            except GatewayError as exc:
                if (wait := course.retry_on(exc)) is False:
                    raise
                course.first = (exc, wait)
            for attempt in course.attempts():
                with attempt:
                    course.replay_first_failure()
                    course.sent += 1
                    return self._exchange(client, call, out)
        except GatewayError as exc:
            final = course.final_error(exc)
            if final is exc:
                raise
            raise final from exc
        raise AssertionError("unreachable: stamina either returns or raises")

    async def send_async(
        self,
        call: Call[T],
        client: httpx.AsyncClient,
        *,
        retry: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> T:
        """Async form of :meth:`send`; cancelling it stops the retries at once."""
        out = self._outgoing(call, headers)
        course = _RetryCourse(self, call, retry)
        try:
            course.sent = 1
            try:
                return await self._exchange_async(client, call, out)
            except GatewayError as exc:
                if (wait := course.retry_on(exc)) is False:
                    raise
                course.first = (exc, wait)
            async for attempt in course.attempts():
                with attempt:
                    course.replay_first_failure()
                    course.sent += 1
                    return await self._exchange_async(client, call, out)
        except GatewayError as exc:
            final = course.final_error(exc)
            if final is exc:
                raise
            raise final from exc
        raise AssertionError("unreachable: stamina either returns or raises")


class _RetryCourse:
    """The retry decisions of one call: what to retry, how long to wait, when to stop."""

    def __init__(self, requester: Requester, call: Call[Any], retry: bool) -> None:
        self.requester = requester
        self.call = call
        self.retry = retry
        self.sent = 0
        self.started = time.monotonic()
        self.last_answer: GatewayError | None = None
        self.stale_retry_used = False
        # The first attempt's failure and the wait decided for it, until
        # stamina's loop replays it.
        self.first: tuple[GatewayError, float] | None = None
        self.replayed: Exception | None = None
        self.replayed_wait: float | None = None

    def replay_first_failure(self) -> None:
        """Raise the first attempt's failure once, as stamina's first attempt."""
        if self.first is not None:
            (failure, self.replayed_wait), self.first = self.first, None
            self.replayed = failure
            raise failure

    def attempts(self) -> Any:
        """Stamina's loop: the replayed first failure, then the retries."""
        requester = self.requester
        # Our hook decides every retry and its wait (so it can honour
        # Retry-After, the time budget and stale connections); stamina runs the
        # loop, sleeps (zero in its testing mode) and calls its instrumentation.
        return stamina.retry_context(
            on=self.retry_on,
            attempts=requester.retries_attempts,
            timeout=requester.retries_timeout,
            wait_initial=requester.wait_initial,
            wait_max=requester.wait_max,
            wait_jitter=requester.wait_jitter,
            wait_exp_base=requester.wait_exp_base,
        )

    def retry_on(self, exc: Exception) -> bool | float:
        if exc is self.replayed and self.replayed_wait is not None:
            # Decided (and logged) when it first happened.
            self.replayed = None
            return self.replayed_wait
        if not isinstance(exc, GatewayError):
            return False
        if exc.status is not None:
            self.last_answer = exc
        if not (self.retry and exc.retryable and stamina.is_active()):
            return False
        requester = self.requester
        if self.sent >= requester.retries_attempts:
            return False
        exc.attempts = self.sent
        wait = self.wait_for(exc)
        elapsed = time.monotonic() - self.started
        if elapsed + wait >= requester.retries_timeout:
            return False
        logger.warning(
            "retrying %s %s in %.2fs (attempt %d of %d failed: %s)",
            self.call.method,
            self.call.route,
            wait,
            self.sent,
            requester.retries_attempts,
            exc,
            extra={
                "jobmon_gateway.route": self.call.route,
                "jobmon_gateway.method": self.call.method,
                "jobmon_gateway.attempt": self.sent,
                "jobmon_gateway.wait": wait,
                "jobmon_gateway.cause": type(exc).__name__,
                "jobmon_gateway.status": exc.status,
            },
        )
        return wait

    def wait_for(self, exc: GatewayError) -> float:
        requester = self.requester
        if exc.retry_after is not None:
            return min(exc.retry_after, requester.retry_after_max)
        if isinstance(exc.__cause__, _STALE_CONNECTION) and not self.stale_retry_used:
            # Resend at once, once: the pool drops the dead connection and the
            # next request goes out on a fresh one.
            self.stale_retry_used = True
            return 0.0
        backoff = requester.wait_initial * requester.wait_exp_base ** (self.sent - 1)
        jitter = random.uniform(0, requester.wait_jitter) if requester.wait_jitter else 0.0  # noqa: S311
        return min(requester.wait_max, backoff + jitter)

    def final_error(self, exc: GatewayError) -> GatewayError:
        exc.attempts = self.sent
        if not (self.retry and exc.retryable) or not stamina.is_active():
            return exc
        elapsed = time.monotonic() - self.started
        answer = exc if exc.status is not None else (self.last_answer or exc)
        return RetryBudgetExhaustedError(
            f"gave up after {self.sent} attempt{'s' if self.sent != 1 else ''}"
            f" in {elapsed:.1f}s: {exc.message}",
            last_error=exc,
            answer=answer,
            attempts=self.sent,
        )


_QUIET_DECODE_BYTES = 16 * 1024


def _decode(call: Call[T], content: bytes) -> T:
    if len(content) < _QUIET_DECODE_BYTES or not gc.isenabled():
        return call.decode(content)
    # A big answer (a downstream map, a page of tasks) allocates hundreds of
    # thousands of containers at once; the cycle collector would scan them
    # again and again for nothing (measured: half the decode time of a
    # 100k-task downstream map). Decoding never awaits, so no other task
    # runs while the collector is paused.
    gc.disable()
    try:
        return call.decode(content)
    finally:
        gc.enable()


_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")


def _require_header(name: object, value: object) -> None:
    # Refused here, at once and without echoing the value (it is often a
    # token): sent, it would fail every call, differently in sync and async.
    if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
        raise ConfigurationError(f"header name {name!r} is not a valid HTTP header name")
    if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
        raise ConfigurationError(
            f"the value of header {name!r} must be printable ASCII without leading or"
            " trailing whitespace or line breaks (value not shown)"
        )


def _require_number(name: str, value: object, *, positive: bool) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (positive and value == 0)
    ):
        need = "a positive" if positive else "a non-negative"
        raise ConfigurationError(f"{name} must be {need} finite number, got {value!r}")


def _certificate_refused(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):  # the chain is short; the bound guards against cycles
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError) or (
            type(seen).__name__ == "ClientConnectorCertificateError"
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _excerpt(content: bytes) -> str:
    text = content[: EXCERPT_LIMIT * 4].decode("utf-8", errors="replace")
    return text if len(text) <= EXCERPT_LIMIT else text[:EXCERPT_LIMIT] + "…"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = text.splitlines()
    return " ".join(lines[:3]) if lines else type(exc).__name__


def _result_name(call: Call[Any]) -> str:
    owner = getattr(call.decode, "__self__", None)
    if isinstance(owner, type):
        return owner.__name__
    return f"the {call.route} answer"
