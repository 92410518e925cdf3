"""The httpx clients a requester makes, each carrying the exchange it was made with.

``Requester.new_client()`` / ``new_async_client()`` promise httpx clients;
the gateway sends on their exchange directly, and anyone else using them
(``client.get(...)``) goes through a thin transport over the same exchange,
so the deadline, the size limit and the connection rules hold either way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from ._answers import Answer, Attempt
from ._exchange import Outgoing
from ._reader import Deadline
from .routes import Call

if TYPE_CHECKING:
    from .transport import AsyncExchange, Requester, SyncExchange

__all__ = ["owned_async_client", "owned_client"]

# The answer is decoded already; httpx must not try again.
_DROPPED = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def _outgoing_of(request: httpx.Request) -> Outgoing:
    target = request.url.raw_path.decode("ascii")
    headers = {
        name: value
        for name, value in request.headers.items()
        if name.lower() not in ("host", "content-length", "transfer-encoding")
    }
    body = request.content or None
    # A caller's own request: only a method that is safe to repeat is resent
    # after a dropped connection.
    repeat_safe = request.method in ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")
    return Outgoing(request.method, str(request.url), target, headers, body, repeat_safe)


def _deadline_of(request: httpx.Request, default: float) -> Deadline:
    timeouts: dict[str, Any] = request.extensions.get("timeout", {})
    read = timeouts.get("read")
    return Deadline(float(read) if isinstance(read, int | float) else default)


def _attempt_of(request: httpx.Request) -> Attempt:
    call: Call[bytes] = Call(request.method, request.url.path, bytes)  # type: ignore[arg-type]
    return Attempt(call, str(request.url.copy_with(query=None)), 1)


def _response(answer: Answer, request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        answer.status,
        headers=[pair for pair in answer.headers if pair[0].lower() not in _DROPPED],
        content=answer.body,
        request=request,
    )


class _ExchangeTransport(httpx.BaseTransport):
    def __init__(self, exchange: SyncExchange, timeout: float) -> None:
        self.exchange = exchange
        self._timeout = timeout

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        answer = self.exchange.send(
            _outgoing_of(request), _deadline_of(request, self._timeout), _attempt_of(request)
        )
        return _response(answer, request)

    def close(self) -> None:
        self.exchange.close()


class _ExchangeAsyncTransport(httpx.AsyncBaseTransport):
    def __init__(self, exchange: AsyncExchange, timeout: float) -> None:
        self.exchange = exchange
        self._timeout = timeout

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        answer = await self.exchange.send(
            _outgoing_of(request), _deadline_of(request, self._timeout), _attempt_of(request)
        )
        return _response(answer, request)

    async def aclose(self) -> None:
        await self.exchange.aclose()


class _OwnedClient(httpx.Client):
    """A sync client a requester made; the gateway sends on ``jobmon_exchange`` directly."""

    jobmon_exchange: SyncExchange


class _OwnedAsyncClient(httpx.AsyncClient):
    """An async client a requester made; the gateway sends on ``jobmon_exchange`` directly."""

    jobmon_exchange: AsyncExchange


def owned_client(requester: Requester, exchange: SyncExchange) -> httpx.Client:
    """An ``httpx.Client`` over ``exchange``."""
    timeout = requester.request_timeout
    client = _OwnedClient(transport=_ExchangeTransport(exchange, timeout), timeout=timeout)
    client.jobmon_exchange = exchange
    return client


def owned_async_client(requester: Requester, exchange: AsyncExchange) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` over ``exchange``."""
    timeout = requester.request_timeout
    client = _OwnedAsyncClient(
        transport=_ExchangeAsyncTransport(exchange, timeout), timeout=timeout
    )
    client.jobmon_exchange = exchange
    return client
