"""The SDK's own httpx transports: httpx's ``handle_request`` over a deadline-bound pool.

:class:`GatewayTransport` and :class:`AsyncGatewayTransport` are
``httpx.HTTPTransport`` and ``httpx.AsyncHTTPTransport`` whose connection
pool is the SDK's (:mod:`._pool`, :mod:`._async_pool`). They keep httpx's
own ``handle_request``/``handle_async_request``, so whatever patches or
wraps those (pytest-httpx, OpenTelemetry's httpx instrumentation) sees
every request, and httpx maps every failure to its own exception classes.
(respx patches httpx's clients or httpcore's pools, neither of which the
gateway's own calls go through: give a respx router as the requester's
transports instead.) Use them in a client of your own for the SDK's
guarantees on any request::

    client = httpx.Client(transport=GatewayTransport(), timeout=20)

What the pool guarantees: the longest of the request's httpx timeouts (or
the gateway's ``request_timeout``) bounds the whole request, from the pool
slot to the last byte of the answer; an answer is read by strict HTTP/1.1 rules, and
its connection reused only when the answer ended exactly at its framing.

The one private name of httpx the SDK uses is ``_pool``, the attribute
through which ``HTTPTransport.handle_request`` sends: it is set here, and a
test (``tests/test_transports.py``) fails if httpx stops sending through it
(httpx is pinned below 0.29). For lent clients only, the guard against a
smuggled answer looks inside httpcore's connection (``_sender._leftover``;
httpcore pinned below 1.1, the lent-client smuggling test in
``tests/test_hostile.py`` fails if it stops finding it).
"""

from __future__ import annotations

import os
import ssl
import threading
from typing import TypeVar

import httpx

from ._async_pool import AsyncPool
from ._pool import SyncPool
from ._routing import Routing, parse_proxy
from ._settings import pool_limits
from .errors import ConfigurationError

__all__ = ["AsyncGatewayTransport", "GatewayTransport", "TlsSettings", "tls_context"]


def tls_context(verify: bool | str | ssl.SSLContext, *, trust_env: bool) -> ssl.SSLContext:
    """The TLS context for ``verify``, as httpx would make it.

    ``True`` honours ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when ``trust_env``
    (else certifi's bundle); a string is a CA bundle file or directory;
    ``False`` turns verification off.

    Raises:
        ConfigurationError: a CA bundle that cannot be read.
    """
    if isinstance(verify, ssl.SSLContext):
        return verify
    if isinstance(verify, str):
        try:
            if os.path.isdir(verify):
                return ssl.create_default_context(capath=verify)
            return ssl.create_default_context(cafile=verify)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"verify={verify!r} is not a readable CA bundle ({type(exc).__name__})"
            ) from None
    try:
        return httpx.create_ssl_context(verify=verify, trust_env=trust_env)
    except (OSError, ssl.SSLError) as exc:
        # SSL_CERT_FILE naming a file that is not there, or not a bundle.
        raise ConfigurationError(
            f"the CA bundle named by SSL_CERT_FILE/SSL_CERT_DIR cannot be read"
            f" ({type(exc).__name__})"
        ) from None


class TlsSettings:
    """A TLS context made on first use (loading a CA bundle takes ~25 ms) and then shared."""

    def __init__(self, verify: bool | str | ssl.SSLContext, *, trust_env: bool) -> None:
        self._verify = verify
        self._trust_env = trust_env
        self._context: ssl.SSLContext | None = None
        self._lock = threading.Lock()

    def context(self) -> ssl.SSLContext:
        """The context (made now if needed).

        Raises:
            ConfigurationError: the CA bundle cannot be read.
        """
        context = self._context
        if context is None:
            with self._lock:
                if self._context is None:
                    self._context = tls_context(self._verify, trust_env=self._trust_env)
                context = self._context
        return context


_Pool = TypeVar("_Pool", SyncPool, AsyncPool)


def _pool_of(
    kind: type[_Pool],
    verify: bool | str | ssl.SSLContext | TlsSettings,
    proxy: str | None,
    trust_env: bool,
    limits: httpx.Limits | None,
) -> _Pool:
    tls = verify if isinstance(verify, TlsSettings) else TlsSettings(verify, trust_env=trust_env)
    routing = Routing(
        None if proxy is None else parse_proxy(proxy, source="proxy"), trust_env=trust_env
    )
    most, idle, expiry = pool_limits(limits)
    return kind(
        routing, tls.context, max_connections=most, max_keepalive=idle, keepalive_expiry=expiry
    )


class GatewayTransport(httpx.HTTPTransport):
    """An ``httpx.HTTPTransport`` that sends on the SDK's deadline-bound keep-alive pool.

    Args:
        verify: ``True`` (certifi, or ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when
            ``trust_env``), ``False``, a CA bundle path, or an ``ssl.SSLContext``.
        proxy: An ``http://[user:password@]host:port`` proxy for every
            request (``CONNECT`` tunnels for https). ``None``: the
            environment's ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``/``NO_PROXY``
            when ``trust_env``.
        trust_env: Whether the environment's proxies and CA bundle apply.
        limits: Pool limits; idle connections are kept at most 4 s.

    Raises:
        ConfigurationError: a malformed proxy URL or an unreadable CA bundle.
    """

    def __init__(
        self,
        *,
        verify: bool | str | ssl.SSLContext | TlsSettings = True,
        proxy: str | None = None,
        trust_env: bool = True,
        limits: httpx.Limits | None = None,
    ) -> None:
        # httpx's own pool is made and never used: verify=False spares it
        # loading a CA bundle. Requests go to the SDK's pool, set here.
        super().__init__(verify=False, trust_env=False)
        self._pool = _pool_of(SyncPool, verify, proxy, trust_env, limits)  # type: ignore[assignment]

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return bool(getattr(self._pool, "closed", False))


class AsyncGatewayTransport(httpx.AsyncHTTPTransport):
    """An ``httpx.AsyncHTTPTransport`` on the SDK's deadline-bound pool (per event loop).

    Takes the same arguments as :class:`GatewayTransport`. Connections
    opened on an event loop are closed when that loop shuts down
    (``asyncio.run`` does so), or by :meth:`aclose`.
    """

    def __init__(
        self,
        *,
        verify: bool | str | ssl.SSLContext | TlsSettings = True,
        proxy: str | None = None,
        trust_env: bool = True,
        limits: httpx.Limits | None = None,
    ) -> None:
        # httpx's own pool is made and never used: verify=False spares it
        # loading a CA bundle. Requests go to the SDK's pool, set here.
        super().__init__(verify=False, trust_env=False)
        self._pool = _pool_of(AsyncPool, verify, proxy, trust_env, limits)  # type: ignore[assignment]

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return bool(getattr(self._pool, "closed", False))

    def close_abandoned(self) -> None:
        """Close, without awaiting, connections of event loops that are not running."""
        pool = self._pool
        if isinstance(pool, AsyncPool):
            pool.close_abandoned()
