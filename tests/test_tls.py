"""TLS on real loopback sockets: ``verify=``, ``SSL_CERT_FILE``, untrusted and stalled servers.

The server is `tls_servers.TlsTimeServer` with a ``trustme`` certificate for
127.0.0.1 (or `tls_servers.StalledServer`, which never answers the
handshake). Each case runs sync and async.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pytest
import trustme

from jobmon_gateway import (
    GatewayError,
    Requester,
    RequestTimeoutError,
    ServerGateway,
    TransportError,
)
from tls_servers import SERVER_TIME, StalledServer, TlsTimeServer

Mode = Literal["sync", "async"]
MODES: list[Mode] = ["sync", "async"]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CA bundle inherited from the environment of the run (nor proxies: conftest.py)."""
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[TlsTimeServer]:
    with TlsTimeServer(ca) as server:
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


def server_time(mode: Mode, req: Requester, *, retry: bool = True) -> datetime:
    gateway = ServerGateway(req, 1, 1)
    view = gateway if retry else gateway.without_retries()
    if mode == "sync":
        with gateway:
            return view.get_server_time_sync()

    async def run() -> datetime:
        async with gateway:
            return await view.get_server_time()

    return asyncio.run(run())


def failure(mode: Mode, req: Requester, *, retry: bool = True) -> tuple[GatewayError, float]:
    started = time.monotonic()
    try:
        server_time(mode, req, retry=retry)
    except GatewayError as exc:
        return exc, time.monotonic() - started
    raise AssertionError("the call should have failed")


def assert_untrusted(error: GatewayError, server: TlsTimeServer) -> None:
    """A certificate nobody trusts: a TransportError at once, never retried."""
    assert isinstance(error, TransportError), repr(error)
    assert not isinstance(error, RequestTimeoutError), repr(error)
    assert error.attempts == 1
    assert error.retryable is False
    assert server.connections == 1
    assert server.handshakes == 0
    assert server.requests == []


# ---------------------------------------------------------------------------
# verify=


@pytest.mark.parametrize("mode", MODES)
def test_verify_takes_a_ca_bundle_path(
    mode: Mode, ca_bundle: str, tls_server: TlsTimeServer
) -> None:
    assert server_time(mode, requester(tls_server.url, verify=ca_bundle)) == SERVER_TIME
    assert tls_server.handshakes == 1


@pytest.mark.parametrize("mode", MODES)
def test_verify_takes_an_ssl_context(mode: Mode, ca: trustme.CA, tls_server: TlsTimeServer) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    assert server_time(mode, requester(tls_server.url, verify=context)) == SERVER_TIME
    assert tls_server.handshakes == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_tls_connection_is_kept_alive_across_calls(
    mode: Mode, ca_bundle: str, tls_server: TlsTimeServer
) -> None:
    gateway = ServerGateway(requester(tls_server.url, verify=ca_bundle), 1, 1)
    if mode == "sync":
        with gateway:
            answers = [gateway.get_server_time_sync() for _ in range(3)]
    else:

        async def run() -> list[datetime]:
            async with gateway:
                return [await gateway.get_server_time() for _ in range(3)]

        answers = asyncio.run(run())
    assert answers == [SERVER_TIME] * 3
    assert tls_server.connections == 1
    assert tls_server.handshakes == 1


@pytest.mark.parametrize("mode", MODES)
def test_ssl_cert_dir_is_honoured_by_default(
    mode: Mode,
    ca: trustme.CA,
    tls_server: TlsTimeServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A CA directory as OpenSSL reads one: each certificate under its hash name.
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to name the certificate by its hash")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    name = _subject_hash(tmp_path / "ca.pem")
    (tmp_path / f"{name}.0").write_bytes((tmp_path / "ca.pem").read_bytes())
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    assert server_time(mode, requester(tls_server.url)) == SERVER_TIME


def _subject_hash(pem: Path) -> str:
    done = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(pem)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout.strip()


# ---------------------------------------------------------------------------
# verify=True: the default CAs, or SSL_CERT_FILE when the environment is trusted.


@pytest.mark.parametrize("mode", MODES)
def test_ssl_cert_file_is_honoured_by_default(
    mode: Mode, ca_bundle: str, tls_server: TlsTimeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", ca_bundle)
    assert server_time(mode, requester(tls_server.url)) == SERVER_TIME
    assert tls_server.handshakes == 1


@pytest.mark.parametrize("mode", MODES)
def test_ssl_cert_file_is_ignored_with_trust_env_false(
    mode: Mode, ca_bundle: str, tls_server: TlsTimeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", ca_bundle)
    error, _ = failure(mode, requester(tls_server.url, trust_env=False, retries_attempts=3))
    assert_untrusted(error, tls_server)


@pytest.mark.parametrize("mode", MODES)
def test_an_untrusted_certificate_fails_at_once(mode: Mode, tls_server: TlsTimeServer) -> None:
    error, elapsed = failure(mode, requester(tls_server.url, retries_attempts=3))
    assert_untrusted(error, tls_server)
    assert elapsed < 2.0


# ---------------------------------------------------------------------------
# A handshake that never ends is bounded by request_timeout.


@pytest.mark.parametrize("mode", MODES)
def test_a_stalled_handshake_times_out(mode: Mode) -> None:
    with StalledServer() as stalled:
        req = requester(stalled.url, request_timeout=0.5, retries_attempts=3)
        error, elapsed = failure(mode, req, retry=False)
        assert isinstance(error, RequestTimeoutError), repr(error)
        assert error.attempts == 1
        assert elapsed < 2.0  # a hang detector, not a benchmark
        assert stalled.connections == 1  # the TCP connect succeeded: the handshake stalled
