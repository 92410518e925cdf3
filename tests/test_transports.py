"""The SDK's httpx transports: what httpx must keep doing for them, and what they add.

``GatewayTransport`` sets the one private attribute of httpx the SDK uses,
``_pool``: the first test fails if httpx stops sending through it (and with
it every pytest-httpx interception would quietly stop). The rest checks the
httpx-level promises: event hooks see every request, retries included; a
mock's or a hook's own failure is never retried; nothing imports aiohttp.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from jobmon_gateway import (
    AsyncGatewayTransport,
    GatewayTransport,
    Requester,
    ServerGateway,
    TransportError,
)
from jobmon_gateway._pool import SyncPool
from jobmon_gateway.testing import FakeJobmonServer


@pytest.fixture
def served() -> Iterator[str]:
    server = FakeJobmonServer()
    with server.serve() as url:
        yield url


def test_httpx_sends_through_the_pool_the_sdk_sets(served: str) -> None:
    transport = GatewayTransport()
    pool = transport._pool
    assert isinstance(pool, SyncPool)
    seen: list[httpx.Request] = []
    original = pool.handle_request

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return original(request)

    pool.handle_request = spy
    with httpx.Client(transport=transport) as client:
        answer = client.get(f"{served}/api/v3/time", params={"client_jobmon_version": "3.6.0"})
    assert answer.status_code == 200
    assert len(seen) == 1


async def test_the_async_transport_is_httpxs_with_the_sdks_pool(served: str) -> None:
    transport = AsyncGatewayTransport()
    assert isinstance(transport, httpx.AsyncHTTPTransport)
    async with httpx.AsyncClient(transport=transport) as client:
        answer = await client.get(f"{served}/api/v3/time")
    assert answer.status_code == 200
    assert transport.closed


def test_event_hooks_see_every_request_retries_included() -> None:
    server = FakeJobmonServer()
    seen: list[str] = []
    answers: list[int] = []
    with server.serve() as url:
        server.inject_fault(503, times=2)
        requester = Requester(
            url,
            route_prefix="/api/v3",
            wait_initial=0,
            wait_jitter=0,
            event_hooks={
                "request": [lambda request: seen.append(request.url.path)],
                "response": [lambda response: answers.append(response.status_code)],
            },
        )
        with ServerGateway(requester, 1, 1) as gateway:
            gateway.get_server_time_sync()
    assert seen == ["/api/v3/time"] * 3
    assert answers == [503, 503, 200]


def test_async_event_hooks_may_be_coroutines(served: str) -> None:
    seen: list[str] = []

    async def record(request: httpx.Request) -> None:
        seen.append(request.method)

    requester = Requester(served, route_prefix="/api/v3", event_hooks={"request": [record]})

    async def call() -> None:
        async with ServerGateway(requester, 1, 1) as gateway:
            await gateway.get_server_time()

    asyncio.run(call())
    assert seen == ["GET"]


def test_a_hook_that_raises_fails_the_call_once_with_the_sdks_error(served: str) -> None:
    calls: list[int] = []

    def refuse(request: httpx.Request) -> None:
        calls.append(1)
        raise RuntimeError("not allowed here")

    requester = Requester(served, route_prefix="/api/v3", event_hooks={"request": [refuse]})
    with ServerGateway(requester, 1, 1) as gateway, pytest.raises(TransportError) as info:
        gateway.get_server_time_sync()
    assert calls == [1]
    assert info.value.attempts == 1
    assert "not allowed here" in str(info.value)


def test_no_call_imports_aiohttp(served: str) -> None:
    script = f"""
import asyncio, sys
from jobmon_gateway import Requester, ServerGateway
requester = Requester({served!r}, route_prefix="/api/v3")
with ServerGateway(requester, 1, 1) as gateway:
    gateway.get_server_time_sync()
async def call():
    async with ServerGateway(requester, 1, 1) as gateway:
        await gateway.get_server_time()
asyncio.run(call())
print("aiohttp" in sys.modules)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"


def test_opentelemetrys_httpx_instrumentation_sees_every_call(served: str) -> None:
    pytest.importorskip("opentelemetry.instrumentation.httpx")
    # In a process of its own: instrumenting patches httpx's transports for good.
    script = f"""
import asyncio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
spans = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(spans))
trace.set_tracer_provider(provider)
HTTPXClientInstrumentor().instrument()
from jobmon_gateway import Requester, ServerGateway
requester = Requester({served!r}, route_prefix="/api/v3")
with ServerGateway(requester, 1, 1) as gateway:
    gateway.get_server_time_sync()
async def call():
    async with ServerGateway(requester, 1, 1) as gateway:
        await gateway.get_server_time()
asyncio.run(call())
print(len(spans.get_finished_spans()))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "2"
