"""A failed name lookup says "could not resolve host X"; only a resolver's hiccup is retried.

No test sends a DNS query: each patches ``socket.getaddrinfo`` (what the
SDK's pools, httpcore and asyncio all call) with a resolver of its own that
fails for the made-up names and answers 127.0.0.1 for nothing else.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from typing import Any, Literal

import httpx
import pytest

from jobmon_gateway import (
    GatewayError,
    Requester,
    RetryBudgetExhaustedError,
    ServerGateway,
    TransportError,
)
from jobmon_gateway.testing import FakeClock, FakeJobmonServer

Mode = Literal["sync", "async", "lent sync client", "lent async client"]
MODES: list[Mode] = ["sync", "async", "lent sync client", "lent async client"]
NOW = "2026-11-28 17:56:34"
HOST = "jobmon.test"


class Resolver:
    """Fails ``failures`` lookups with ``code``, then answers 127.0.0.1 (or fails forever)."""

    def __init__(self, code: int, failures: int | None = None) -> None:
        self.code = code
        self.failures = failures
        self.names: list[str] = []
        self.real = socket.getaddrinfo  # conftest's guard: numeric addresses only

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        self.names.append(name)
        if self.failures is None or len(self.names) <= self.failures:
            raise socket.gaierror(self.code, f"made-up failure {self.code}")
        return self.real("127.0.0.1", port, *args, **kwargs)


def install(monkeypatch: pytest.MonkeyPatch, resolver: Resolver) -> Resolver:
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    return resolver


def time_call(mode: Mode, requester: Requester) -> Any:
    gateway = ServerGateway(requester, 1, 1)
    if mode == "sync":
        with gateway:
            return gateway.get_server_time_sync()
    if mode == "lent sync client":
        with httpx.Client() as client:
            gateway.set_session(client)
            return gateway.get_server_time_sync()

    async def run() -> Any:
        if mode == "async":
            async with gateway:
                return await gateway.get_server_time()
        async with httpx.AsyncClient() as client:
            gateway.set_session(client)
            return await gateway.get_server_time()

    return asyncio.run(run())


def failure(mode: Mode, requester: Requester) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        time_call(mode, requester)
    return caught.value


def fast(url: str, **options: Any) -> Requester:
    settings: dict[str, Any] = {"wait_initial": 0, "wait_jitter": 0, "wait_max": 0, **options}
    return Requester(url, **settings)


@pytest.fixture
def port() -> Iterator[int]:
    """The port of a served 3.6 fake on 127.0.0.1 (reached through the made-up name)."""
    with FakeJobmonServer(clock=FakeClock(NOW)).serve() as url:
        yield int(url.rsplit(":", 1)[1])


@pytest.mark.parametrize("mode", MODES)
def test_an_unknown_host_is_named_and_not_retried(
    mode: Mode, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolver = install(monkeypatch, Resolver(socket.EAI_NONAME))
    error = failure(mode, fast(f"http://{HOST}:5000", retries_attempts=3))
    assert type(error) is TransportError  # not a spent budget: nothing was retried
    assert error.message == f"could not resolve host {HOST} (no such host is known)"
    assert "unknown error" not in str(error).lower()
    assert (error.attempts, error.request_sent, error.retryable) == (1, False, False)
    assert error.url == f"http://{HOST}:5000/api/v3/time"
    assert resolver.names == [HOST]


@pytest.mark.parametrize("mode", MODES)
def test_a_resolver_hiccup_is_retried(
    mode: Mode, port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolver = install(monkeypatch, Resolver(socket.EAI_AGAIN, failures=2))
    answer = time_call(mode, fast(f"http://{HOST}:{port}", retries_attempts=3))
    assert str(answer) == NOW
    assert resolver.names == [HOST] * 3


@pytest.mark.parametrize("mode", MODES)
def test_a_resolver_down_for_good_spends_the_budget(
    mode: Mode, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolver = install(monkeypatch, Resolver(socket.EAI_AGAIN))
    error = failure(mode, fast(f"http://{HOST}:5000", retries_attempts=3))
    assert isinstance(error, TransportError)
    assert isinstance(error, RetryBudgetExhaustedError)
    assert error.attempts == 3
    assert f"could not resolve host {HOST} (temporary failure in name resolution)" in str(error)
    assert len(resolver.names) == 3


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_proxys_name_is_the_one_named(mode: Mode, monkeypatch: pytest.MonkeyPatch) -> None:
    # Through a proxy, the SDK's pools look up the proxy, not the server.
    resolver = install(monkeypatch, Resolver(socket.EAI_NONAME))
    requester = fast("http://127.0.0.1:5000", proxy="http://proxy.test:3128")
    error = failure(mode, requester)
    assert error.message == "could not resolve host proxy.test (no such host is known)"
    assert resolver.names == ["proxy.test"]


def transport_failing_with(cause: BaseException) -> Callable[[httpx.Request], httpx.Response]:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno -2] Name or service not known") from cause

    return fail


@pytest.mark.skipif(socket.EAI_NONAME >= 0, reason="EAI_* codes are negative on Linux only")
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_resolver_code_in_a_plain_os_error_is_a_lookup_failure(mode: Mode) -> None:
    # What a transport may hand over: the EAI code in an OSError, whose text
    # is then "unknown error -2". The code decides; the words are the SDK's.
    fail = transport_failing_with(OSError(socket.EAI_NONAME, "Unknown error -2"))
    requester = fast(
        f"http://{HOST}",
        transport=httpx.MockTransport(fail),
        async_transport=httpx.MockTransport(fail),
    )
    error = failure(mode, requester)
    assert error.message == f"could not resolve host {HOST} (no such host is known)"
    assert error.retryable is False
