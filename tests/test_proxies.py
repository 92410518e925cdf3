"""Forward proxies: ``proxy=``, the proxy environment variables, ``JOBMON__HTTP__PROXY``.

Every request goes over real loopback sockets: the target is the fake Jobmon
server's ``serve()`` (plain HTTP) or a TLS server with a ``trustme``
certificate, and the proxy is `proxy_server.ProxyServer`, which records every
request head it reads. Each case runs sync and async.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pytest
import trustme

from jobmon_gateway import (
    CLIENT_JOBMON_VERSION,
    GatewayError,
    Requester,
    ServerGateway,
    TransportError,
)
from jobmon_gateway.testing import FakeJobmonServer
from proxy_server import ProxyServer
from tls_servers import SERVER_TIME, TlsTimeServer

Mode = Literal["sync", "async"]
MODES: list[Mode] = ["sync", "async"]
PROXY_VARIABLES = [
    name
    for base in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    for name in (base, base.upper())
]
USER = "jobmon-user"
PASSWORD = "pr0xy-s3cret-pw"  # a throwaway credential of the tests


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy, CA or Jobmon setting inherited from the environment of the run."""
    for name in [*PROXY_VARIABLES, "SSL_CERT_FILE", "SSL_CERT_DIR", "JOBMON__CONFIG_FILE"]:
        monkeypatch.delenv(name, raising=False)
    for name in ("SERVICE_URL", "ROUTE_PREFIX", "PROXY", "REQUEST_TIMEOUT", "RETRIES_ATTEMPTS"):
        monkeypatch.delenv(f"JOBMON__HTTP__{name}", raising=False)


@pytest.fixture
def fake_url(jobmon_server: FakeJobmonServer) -> Iterator[str]:
    """The fake Jobmon server over real HTTP on 127.0.0.1 (service URL, no prefix)."""
    with jobmon_server.serve() as url:
        yield url


@pytest.fixture
def proxy() -> Iterator[ProxyServer]:
    with ProxyServer() as server:
        yield server


def requester(url: str, **options: Any) -> Requester:
    settings: dict[str, Any] = {
        "route_prefix": "/api/v3",
        "request_timeout": 5,
        "retries_attempts": 1,
        "wait_initial": 0,
        "wait_jitter": 0,
        "wait_max": 0,
        **options,
    }
    return Requester(url, **settings)


def server_time(mode: Mode, req: Requester) -> datetime:
    gateway = ServerGateway(req, 1, 1)
    if mode == "sync":
        with gateway:
            return gateway.get_server_time_sync()

    async def run() -> datetime:
        async with gateway:
            return await gateway.get_server_time()

    return asyncio.run(run())


def failure(mode: Mode, req: Requester) -> tuple[GatewayError, float]:
    started = time.monotonic()
    try:
        server_time(mode, req)
    except GatewayError as exc:
        return exc, time.monotonic() - started
    raise AssertionError("the call should have failed")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def time_line(url: str) -> str:
    """The request line of get_server_time sent to a proxy in absolute form."""
    return f"GET {url}/api/v3/time?client_jobmon_version={CLIENT_JOBMON_VERSION} HTTP/1.1"


# ---------------------------------------------------------------------------
# The test proxy itself, with plain httpx: what the SDK's tests rely on.


def test_the_test_proxy_relays_plain_httpx(
    fake_url: str, ca: trustme.CA, proxy: ProxyServer
) -> None:
    import httpx

    context = ssl.create_default_context()
    ca.configure_trust(context)
    with (
        TlsTimeServer(ca) as tls,
        httpx.Client(proxy=proxy.url_with(USER, PASSWORD), verify=context, trust_env=False) as c,
    ):
        assert c.get(f"{fake_url}/api/v3/time").status_code == 200
        assert c.get(f"{tls.url}/api/v3/time").json() == {"time": "2024-01-01 00:00:00"}
    methods = [(r.method, r.headers.get("proxy-authorization")) for r in proxy.requests]
    assert methods == [("GET", basic(USER, PASSWORD)), ("CONNECT", basic(USER, PASSWORD))]
    assert proxy.tunnels == 1
    assert tls.handshakes == 1


# ---------------------------------------------------------------------------
# proxy=


@pytest.mark.parametrize("mode", MODES)
def test_an_http_target_goes_to_the_proxy_in_absolute_form(
    mode: Mode, fake_url: str, proxy: ProxyServer, jobmon_server: FakeJobmonServer
) -> None:
    assert isinstance(server_time(mode, requester(fake_url, proxy=proxy.url)), datetime)
    assert [r.request_line for r in proxy.requests] == [time_line(fake_url)]
    assert "proxy-authorization" not in proxy.requests[0].headers
    assert len(jobmon_server.requests_to("get_server_time")) == 1


@pytest.mark.parametrize("mode", MODES)
def test_user_info_in_the_proxy_url_becomes_proxy_authorization(
    mode: Mode, fake_url: str, proxy: ProxyServer, jobmon_server: FakeJobmonServer
) -> None:
    server_time(mode, requester(fake_url, proxy=proxy.url_with(USER, PASSWORD)))
    assert len(proxy.requests) == 1, "the proxy was not used"
    [seen] = proxy.requests
    assert seen.request_line == time_line(fake_url)
    assert seen.headers.get("proxy-authorization") == basic(USER, PASSWORD)
    # Nothing of the proxy's credentials in the request itself.
    [arrived] = jobmon_server.requests_to("get_server_time")
    assert "authorization" not in arrived.headers


@pytest.mark.parametrize("mode", MODES)
def test_an_https_target_is_tunnelled_with_connect(
    mode: Mode, ca: trustme.CA, ca_bundle: str, proxy: ProxyServer
) -> None:
    with TlsTimeServer(ca) as tls:
        req = requester(tls.url, proxy=proxy.url_with(USER, PASSWORD), verify=ca_bundle)
        assert server_time(mode, req) == SERVER_TIME
        authority = tls.url.removeprefix("https://")
        assert len(proxy.requests) == 1, "the proxy was not used"
        [connect] = proxy.requests
        assert connect.request_line == f"CONNECT {authority} HTTP/1.1"
        assert connect.headers.get("proxy-authorization") == basic(USER, PASSWORD)
        assert proxy.tunnels == 1
        # Inside the tunnel: the origin-form request, without the proxy's credentials.
        [inner] = tls.requests
        assert inner.request_line == (
            f"GET /api/v3/time?client_jobmon_version={CLIENT_JOBMON_VERSION} HTTP/1.1"
        )
        assert "proxy-authorization" not in inner.headers


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("status", [407, 403])
def test_a_refused_connect_fails_at_once_without_the_password(
    mode: Mode, status: int, ca: trustme.CA, ca_bundle: str
) -> None:
    with ProxyServer(refuse_connect=status) as proxy, TlsTimeServer(ca) as tls:
        req = requester(
            tls.url,
            proxy=proxy.url_with(USER, PASSWORD),
            verify=ca_bundle,
            retries_attempts=3,
        )
        error, elapsed = failure(mode, req)
        assert isinstance(error, TransportError), repr(error)
        assert error.attempts == 1
        assert proxy.connections == 1  # not retried
        assert tls.connections == 0
        assert elapsed < 2.0
        shown = f"{error} {error!r} {error.url} {error.__cause__!r}"
        assert PASSWORD not in shown
        assert basic(USER, PASSWORD).split()[1] not in shown


# ---------------------------------------------------------------------------
# The environment (trust_env=True, the default), as httpx reads it.


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"])
def test_a_proxy_variable_sends_an_http_target_through_the_proxy(
    mode: Mode,
    variable: str,
    fake_url: str,
    proxy: ProxyServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(variable, proxy.url)
    server_time(mode, requester(fake_url))
    assert [r.request_line for r in proxy.requests] == [time_line(fake_url)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy"])
def test_https_proxy_tunnels_an_https_target(
    mode: Mode,
    variable: str,
    ca: trustme.CA,
    ca_bundle: str,
    proxy: ProxyServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(variable, proxy.url)
    with TlsTimeServer(ca) as tls:
        assert server_time(mode, requester(tls.url, verify=ca_bundle)) == SERVER_TIME
        authority = tls.url.removeprefix("https://")
        assert [r.request_line for r in proxy.requests] == [f"CONNECT {authority} HTTP/1.1"]


@pytest.mark.parametrize("mode", MODES)
def test_https_proxy_leaves_an_http_target_direct(
    mode: Mode,
    fake_url: str,
    proxy: ProxyServer,
    jobmon_server: FakeJobmonServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    server_time(mode, requester(fake_url))
    assert proxy.requests == []
    assert len(jobmon_server.requests_to("get_server_time")) == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("no_proxy", "spelled"),
    [("NO_PROXY", "127.0.0.1"), ("no_proxy", "127.0.0.1"), ("NO_PROXY", "*")],
)
def test_no_proxy_sends_the_request_direct(
    mode: Mode,
    no_proxy: str,
    spelled: str,
    fake_url: str,
    proxy: ProxyServer,
    jobmon_server: FakeJobmonServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("ALL_PROXY", proxy.url)
    monkeypatch.setenv(no_proxy, spelled)
    server_time(mode, requester(fake_url))
    assert proxy.requests == []
    assert len(jobmon_server.requests_to("get_server_time")) == 1


@pytest.mark.parametrize("mode", MODES)
def test_trust_env_false_ignores_the_proxy_variables(
    mode: Mode,
    fake_url: str,
    proxy: ProxyServer,
    jobmon_server: FakeJobmonServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(variable, proxy.url)
    server_time(mode, requester(fake_url, trust_env=False))
    assert proxy.requests == []
    assert len(jobmon_server.requests_to("get_server_time")) == 1


# ---------------------------------------------------------------------------
# Requester.from_env(): JOBMON__HTTP__PROXY (and http.proxy in the YAML file).


@pytest.mark.parametrize("mode", MODES)
def test_from_env_reads_jobmon_http_proxy(
    mode: Mode, fake_url: str, proxy: ProxyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBMON__HTTP__SERVICE_URL", fake_url)
    monkeypatch.setenv("JOBMON__HTTP__PROXY", proxy.url_with(USER, PASSWORD))
    req = Requester.from_env(retries_attempts=1)
    assert isinstance(server_time(mode, req), datetime)
    assert len(proxy.requests) == 1, "JOBMON__HTTP__PROXY was not used"
    [seen] = proxy.requests
    assert seen.request_line == time_line(fake_url)
    assert seen.headers.get("proxy-authorization") == basic(USER, PASSWORD)


@pytest.mark.parametrize("mode", MODES)
def test_from_env_reads_the_proxy_from_the_config_file(
    mode: Mode,
    fake_url: str,
    proxy: ProxyServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "jobmon.yaml"
    config.write_text(f"http:\n  service_url: {fake_url}\n  proxy: {proxy.url}\n")
    monkeypatch.setenv("JOBMON__CONFIG_FILE", str(config))
    server_time(mode, Requester.from_env(retries_attempts=1))
    assert [r.request_line for r in proxy.requests] == [time_line(fake_url)]
