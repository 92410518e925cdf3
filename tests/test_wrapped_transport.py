"""A transport that wraps the SDK's own answers with a stream of its own: its stream is the answer.

The SDK's pools hand a body that came with its head to the sender whole (a
response extension, past httpx's stream wrappers). A wrapper that decodes or
replaces the body, keeping the inner response's extensions as httpx's own
transports pass them on, must still be read through its stream. Real sockets
on 127.0.0.1, sync and async.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from datetime import datetime
from typing import Literal

import httpx
import pytest

from hostile_server import HostileConnection, HostileServer, http_response
from jobmon_gateway import AsyncGatewayTransport, GatewayTransport, Requester, ServerGateway

Mode = Literal["sync", "async"]
SERVER_TIME = b'{"time": "2026-11-28 17:56:34"}'
INJECTED = b'{"time": "1999-01-01 00:00:00"}'


def gzipped_answers(conn: HostileConnection) -> None:
    # The whole answer in one write: the pool hands its body over whole.
    while conn.read_request() is not None:
        data = http_response(gzip.compress(SERVER_TIME), headers=(("content-encoding", "gzip"),))
        if not conn.send(data):
            return


def _decoded(inner: httpx.Response, raw: bytes, *, replace: bool) -> httpx.Response:
    kept = [
        (name, value)
        for name, value in inner.headers.raw
        if name.lower() not in (b"content-encoding", b"content-length")
    ]
    body = INJECTED if replace else gzip.decompress(raw)
    return httpx.Response(
        inner.status_code, headers=kept, stream=httpx.ByteStream(body), extensions=inner.extensions
    )


class Wrapper(httpx.BaseTransport):
    """Reads the inner answer and hands on a decoded (or replaced) body."""

    def __init__(self, inner: httpx.BaseTransport, *, replace: bool) -> None:
        self.inner = inner
        self.replace = replace

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        inner = self.inner.handle_request(request)
        raw = b"".join(inner.iter_raw())  # as sent: read() would decode it
        inner.close()
        return _decoded(inner, raw, replace=self.replace)

    def close(self) -> None:
        self.inner.close()


class AsyncWrapper(httpx.AsyncBaseTransport):
    """The async twin of :class:`Wrapper`."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, replace: bool) -> None:
        self.inner = inner
        self.replace = replace

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        inner = await self.inner.handle_async_request(request)
        raw = b"".join([part async for part in inner.aiter_raw()])
        await inner.aclose()
        return _decoded(inner, raw, replace=self.replace)

    async def aclose(self) -> None:
        await self.inner.aclose()


def server_time(mode: Mode, url: str, *, replace: bool) -> datetime:
    requester = Requester(
        url,
        transport=Wrapper(GatewayTransport(), replace=replace),
        async_transport=AsyncWrapper(AsyncGatewayTransport(), replace=replace),
        retries_attempts=1,
    )
    gateway = ServerGateway(requester, 1, 7)
    if mode == "sync":
        with gateway:
            return gateway.get_server_time_sync()

    async def call() -> datetime:
        async with gateway:
            return await gateway.get_server_time()

    return asyncio.run(call())


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    ("replace", "expected"),
    [(False, SERVER_TIME), (True, INJECTED)],
    ids=["decoded-by-the-wrapper", "replaced-by-the-wrapper"],
)
def test_the_wrappers_stream_is_the_answer(mode: Mode, replace: bool, expected: bytes) -> None:
    with HostileServer(gzipped_answers) as srv:
        got = server_time(mode, srv.url, replace=replace)
    assert got == datetime.fromisoformat(json.loads(expected)["time"])
