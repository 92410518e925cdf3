"""An httpx async transport that sends on one pooled aiohttp session.

For callers who want an ``httpx.AsyncClient`` over aiohttp. The gateway
itself does not use it: its own async calls go to an aiohttp session per
event loop (the SDK's own exchange), which bounds and decodes
every answer itself. Importing this module imports aiohttp;
``jobmon_gateway.AiohttpTransport`` loads it on first use.

Mocking libraries that patch ``httpx.AsyncHTTPTransport`` (pytest-httpx does)
keep working: while that method is patched, this transport defers to it.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Mapping
from typing import Any

import aiohttp
import httpx

__all__ = ["AiohttpTransport"]

_UNPATCHED_HANDLE = httpx.AsyncHTTPTransport.handle_async_request
# aiohttp decompresses; the httpx response must not try again.
_DROPPED_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


class AiohttpTransport(httpx.AsyncHTTPTransport):
    """Send httpx requests on a pooled :class:`aiohttp.ClientSession`.

    The session is made on first use, inside the running event loop, and
    made again if a later call runs on another loop. Timeouts come from the
    request (``httpx.Timeout``): ``connect`` for connecting and ``read`` for
    the whole answer, to its last byte.

    Args:
        verify: ``True`` (system CAs), ``False``, or an ``ssl.SSLContext``.
        limits: ``max_connections`` caps the pool; ``keepalive_expiry`` is
            how long an idle connection is kept.

    Example::

        client = httpx.AsyncClient(transport=AiohttpTransport())
    """

    def __init__(
        self,
        *,
        verify: bool | ssl.SSLContext = True,
        limits: httpx.Limits | None = None,
    ) -> None:
        limits = limits if limits is not None else httpx.Limits()
        # The parent's pool is only used while a mocking library patches it.
        super().__init__(verify=verify, limits=limits)
        self._verify = verify
        self._limits = limits
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _session_for_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections or 0,
                keepalive_timeout=self._limits.keepalive_expiry or 15.0,
                ssl=self._verify,
            )
            # The gateway sends User-Agent, Accept, Accept-Encoding and
            # Content-Type itself, so aiohttp adds none of its own.
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
            # aiohttp quietly resends an idempotent request once when a reused
            # connection drops; the gateway does that itself (immediately, once,
            # counted and logged), so switch aiohttp's off to keep
            # retries_attempts an exact bound on the requests sent.
            if hasattr(self._session, "_retry_connection"):
                self._session._retry_connection = False
            self._loop = loop
        return self._session

    @property
    def sends_directly(self) -> bool:
        """Whether :meth:`exchange` may be used (no mocking library patched httpx)."""
        return httpx.AsyncHTTPTransport.handle_async_request is _UNPATCHED_HANDLE

    async def exchange(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        *,
        connect_timeout: float | None,
        read_timeout: float | None,
        all_headers: bool = False,
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """Send one request without building httpx objects; return status, reason, headers, body.

        The gateway's hot path: it saves parsing the URL twice and the
        client's bookkeeping. The headers of a 2xx answer are left out unless
        ``all_headers``. Errors are raised as httpx's exception classes.
        """
        session = self._session_for_loop()
        timeout = _client_timeout(read_timeout, connect_timeout)
        try:
            async with session.request(
                method,
                url,
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=timeout,
            ) as answer:
                content = await answer.read()
                status = answer.status
                # The gateway reads headers of errors only (Retry-After).
                answer_headers: list[tuple[str, str]] = (
                    []
                    if all_headers is False and 200 <= status < 300
                    else [
                        (name, value)
                        for name, value in answer.headers.items()
                        if name.lower() not in _DROPPED_HEADERS
                    ]
                )
                return status, answer.reason or "", answer_headers, content
        except Exception as exc:
            raise _httpx_error(exc) from exc

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return the whole answer, its body already read."""
        if not self.sends_directly:
            return await httpx.AsyncHTTPTransport.handle_async_request(self, request)
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        content = await request.aread()
        try:
            status, reason, headers, body = await self.exchange(
                request.method,
                str(request.url),
                dict(request.headers.multi_items()),
                content,
                connect_timeout=timeouts.get("connect"),
                read_timeout=timeouts.get("read"),
                all_headers=True,
            )
        except httpx.TransportError as exc:
            exc.request = request
            raise
        return httpx.Response(
            status,
            headers=headers,
            content=body,
            request=request,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": reason.encode("ascii", "replace"),
            },
        )

    async def aclose(self) -> None:
        """Close the aiohttp session (and the unused parent pool)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
        await super().aclose()


@functools.lru_cache(maxsize=64)
def _client_timeout(total: float | None, connect: float | None) -> aiohttp.ClientTimeout:
    # A gateway uses one or two timeouts for all its calls: build each once.
    return aiohttp.ClientTimeout(total=total, sock_connect=connect)


def _httpx_error(exc: Exception) -> Exception:
    # Map onto httpx's classes so the gateway decides retries the same way
    # whichever transport sent the request. Most specific first.
    message = str(exc) or type(exc).__name__
    kind: type[httpx.TransportError]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        kind = httpx.ConnectTimeout
    elif isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        kind = httpx.ReadTimeout
    elif isinstance(exc, aiohttp.ClientConnectorError):
        kind = httpx.ConnectError
    elif isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        # The connection ended before the answer did.
        kind = httpx.RemoteProtocolError
    elif isinstance(exc, aiohttp.ClientResponseError):
        kind = httpx.RemoteProtocolError  # an answer aiohttp could not parse
    elif isinstance(exc, aiohttp.InvalidURL):
        kind = httpx.UnsupportedProtocol
    elif isinstance(exc, aiohttp.ClientOSError | aiohttp.ClientConnectionError | OSError):
        kind = httpx.ReadError
    elif isinstance(exc, aiohttp.ClientError):
        kind = httpx.NetworkError
    else:
        return exc
    return kind(message)
