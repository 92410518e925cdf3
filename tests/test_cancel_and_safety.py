"""Cancellation, TLS verification, secrets, error-size caps and retry logging.

* Cancelling an async call in the middle of its retries stops it at once: no
  request reaches the server afterwards, and the gateway serves the next call.
* ``https://`` is verified by default; ``verify="<CA bundle>"`` and an
  ``ssl.SSLContext`` are honoured; ``verify=False`` works and logs a warning.
  The certificates are made with the ``openssl`` command in a temporary folder
  and served by a small TLS server on 127.0.0.1.
* Header values (``Authorization``, ``Cookie``) never appear in an error's
  ``str()``/``repr()`` nor in any log record.
* The body excerpt kept in an error is capped (500 characters and "…").
* Every retry is logged on ``jobmon_gateway`` at WARNING with its route,
  attempt, wait and cause; a call that succeeds at once logs nothing above DEBUG.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import pytest

from fault_server import ERROR_ENVELOPE_500, Action, FaultServer
from jobmon_gateway import (
    GatewayError,
    InvalidResponseError,
    Requester,
    RetryBudgetExhaustedError,
    ServerError,
    ServerGateway,
    TransportError,
)

Mode = Literal["sync", "async"]
MODES: list[Mode] = ["sync", "async"]
SERVER_TIME = "2026-11-28 17:56:34"
OK = Action.respond(200, {"time": SERVER_TIME})
OK_HEARTBEAT = Action.respond(200, {"status": "R"})
_TLS = ssl.create_default_context()


def make_requester(url: str, **changes: Any) -> Requester:
    options: dict[str, Any] = {
        "verify": _TLS,
        "request_timeout": 1.0,
        "retries_attempts": 5,
        "retries_timeout": 5.0,
        "wait_initial": 0.01,
        "wait_max": 0.05,
        "wait_jitter": 0,
        "retry_after_max": 1.0,
        **changes,
    }
    return Requester(url, **options)


def call_once(mode: Mode, requester: Requester, *, retry: bool = True) -> Any:
    """get_server_time on a fresh gateway, sync or async; errors propagate."""
    if mode == "sync":
        with ServerGateway(requester, 1, 1) as gateway:
            return (gateway if retry else gateway.without_retries()).get_server_time_sync()

    async def run() -> Any:
        async with ServerGateway(requester, 1, 1) as gateway:
            return await (gateway if retry else gateway.without_retries()).get_server_time()

    return asyncio.run(run())


def heartbeat(mode: Mode, requester: Requester) -> Any:
    """log_heartbeat (a POST, sent exactly once per attempt by every transport)."""
    if mode == "sync":
        with ServerGateway(requester, 1, 1) as gateway:
            return gateway.log_heartbeat_sync("R", 30.0)

    async def run() -> Any:
        async with ServerGateway(requester, 1, 1) as gateway:
            return await gateway.log_heartbeat("R", 30.0)

    return asyncio.run(run())


# ---------------------------------------------------------------------------
# Cancellation.


async def until(condition: Any, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.005)


def test_cancelling_during_backoff_stops_at_once_and_the_gateway_stays_usable() -> None:
    backoff = 0.3
    with FaultServer(Action.respond(503, "busy", content_type="text/plain"), default=OK) as srv:
        requester = make_requester(srv.url, wait_initial=backoff, wait_max=backoff)

        async def run() -> None:
            async with ServerGateway(requester, 1, 1) as gateway:
                task = asyncio.create_task(gateway.get_server_time())
                await until(lambda: len(srv.requests) == 1)
                await asyncio.sleep(0.05)  # now in the 0.3 s backoff
                cancelled_at = time.monotonic()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert time.monotonic() - cancelled_at < 0.25
                # Past the moment the retry was due: nothing more was sent.
                await asyncio.sleep(backoff + 0.15)
                assert len(srv.requests) == 1
                assert srv.pending == 0
                # The same gateway serves the next call (the script's 200).
                assert (await gateway.get_server_time()).year == 2026
                assert len(srv.requests) == 2

        asyncio.run(run())


def test_cancelling_a_request_in_flight_stops_at_once_and_the_gateway_stays_usable() -> None:
    with FaultServer(Action.hang(), default=OK) as srv:
        requester = make_requester(srv.url, request_timeout=5.0)

        async def run() -> None:
            async with ServerGateway(requester, 1, 1) as gateway:
                task = asyncio.create_task(gateway.get_server_time())
                await until(lambda: len(srv.requests) == 1)
                cancelled_at = time.monotonic()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert time.monotonic() - cancelled_at < 0.25
                await asyncio.sleep(0.2)
                assert len(srv.requests) == 1
                assert (await gateway.get_server_time()).year == 2026
                assert len(srv.requests) == 2

        asyncio.run(run())
        # The hung connection was given up by the client, not left open.
        assert srv.wait_for_idle(timeout=2.0)


def test_wait_for_timeout_cancels_the_retries() -> None:
    with FaultServer(default=Action.respond(503, "busy", content_type="text/plain")) as srv:
        requester = make_requester(srv.url, wait_initial=0.2, wait_max=0.2, retries_attempts=10)

        async def run() -> None:
            async with ServerGateway(requester, 1, 1) as gateway:
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(gateway.get_server_time(), timeout=0.3)
                sent = len(srv.requests)
                assert 1 <= sent <= 2  # at 0 s and (unless the machine is slow) 0.2 s
                await asyncio.sleep(0.3)
                assert len(srv.requests) == sent

        asyncio.run(run())


# ---------------------------------------------------------------------------
# TLS.

needs_openssl = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="the openssl command makes the test certificates"
)


@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    wrong_name_cert: Path
    wrong_name_key: Path


def _openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=30)


def _make_ca(folder: Path, name: str) -> None:
    _openssl(
        folder, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
        "-subj", f"/CN=jobmon-gateway test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip


def _make_leaf(folder: Path, name: str, san: str, serial: int) -> None:
    (folder / f"{name}.cnf").write_text(
        f"subjectAltName={san}\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    _openssl(
        folder, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
    )  # fmt: skip
    _openssl(
        folder, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-set_serial", str(serial), "-out", f"{name}.pem", "-days", "2",
        "-extfile", f"{name}.cnf",
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    _make_ca(folder, "ca")
    _make_ca(folder, "other-ca")
    _make_leaf(folder, "server", "IP:127.0.0.1", 1001)
    _make_leaf(folder, "wrong-name", "DNS:jobmon.example.invalid", 1002)
    return Pki(
        ca=folder / "ca.pem",
        other_ca=folder / "other-ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        wrong_name_cert=folder / "wrong-name.pem",
        wrong_name_key=folder / "wrong-name.key",
    )


class _TimeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    served: list[str]

    def do_GET(self) -> None:
        self.served.append(self.path)
        body = json.dumps({"time": SERVER_TIME}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class TlsServer:
    url: str
    served: list[str]


@pytest.fixture
def tls_server(pki: Pki) -> Iterator[Any]:
    """A factory: tls_server(cert, key) serves /time over HTTPS on 127.0.0.1."""
    servers: list[ThreadingHTTPServer] = []
    threads: list[threading.Thread] = []

    def start(cert: Path, key: Path) -> TlsServer:
        served: list[str] = []
        handler = type("Handler", (_TimeHandler,), {"served": served})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        servers.append(httpd)
        threads.append(thread)
        return TlsServer(f"https://127.0.0.1:{httpd.server_address[1]}", served)

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()
    for thread in threads:
        thread.join(5)


@needs_openssl
@pytest.mark.parametrize("mode", MODES)
def test_https_is_verified_by_default(mode: Mode, pki: Pki, tls_server: Any) -> None:
    server = tls_server(pki.server_cert, pki.server_key)
    # No verify argument: the system CAs, which do not know our test CA.
    requester = Requester(server.url, request_timeout=2.0)
    with pytest.raises(TransportError) as info:
        call_once(mode, requester, retry=False)
    assert "certificate verify failed" in info.value.message.lower()
    assert server.served == []


@needs_openssl
@pytest.mark.parametrize("mode", MODES)
def test_an_untrusted_certificate_is_not_retried(mode: Mode, pki: Pki, tls_server: Any) -> None:
    # No retry can make an untrusted certificate trusted: fail at once.
    server = tls_server(pki.server_cert, pki.server_key)
    requester = Requester(
        server.url, request_timeout=2.0, retries_attempts=2, wait_initial=0.01, wait_jitter=0
    )
    with pytest.raises(TransportError) as info:
        call_once(mode, requester)
    assert not isinstance(info.value, RetryBudgetExhaustedError)
    assert info.value.attempts == 1
    assert "certificate verify failed" in info.value.message.lower()
    assert server.served == []


@needs_openssl
@pytest.mark.parametrize("mode", MODES)
def test_a_ca_bundle_path_is_honoured(mode: Mode, pki: Pki, tls_server: Any) -> None:
    server = tls_server(pki.server_cert, pki.server_key)
    requester = Requester(server.url, request_timeout=2.0, verify=str(pki.ca))
    assert call_once(mode, requester).year == 2026
    assert server.served == ["/api/v3/time?client_jobmon_version=3.6.0"]


@needs_openssl
@pytest.mark.parametrize("mode", MODES)
def test_an_ssl_context_is_honoured(mode: Mode, pki: Pki, tls_server: Any) -> None:
    server = tls_server(pki.server_cert, pki.server_key)
    context = ssl.create_default_context(cafile=str(pki.ca))
    assert call_once(mode, Requester(server.url, verify=context)).year == 2026


@needs_openssl
@pytest.mark.parametrize("mode", MODES)
def test_a_ca_bundle_of_another_ca_is_refused(mode: Mode, pki: Pki, tls_server: Any) -> None:
    server = tls_server(pki.server_cert, pki.server_key)
    requester = Requester(server.url, request_timeout=2.0, verify=str(pki.other_ca))
    with pytest.raises(TransportError) as info:
        call_once(mode, requester, retry=False)
    assert "certificate verify failed" in info.value.message.lower()
    assert server.served == []


@needs_openssl
@pytest.mark.parametrize("mode", MODES)
def test_the_host_name_is_checked(mode: Mode, pki: Pki, tls_server: Any) -> None:
    # Signed by the trusted CA, but for another name than 127.0.0.1.
    server = tls_server(pki.wrong_name_cert, pki.wrong_name_key)
    requester = Requester(server.url, request_timeout=2.0, verify=str(pki.ca))
    with pytest.raises(TransportError) as info:
        call_once(mode, requester, retry=False)
    assert "mismatch" in info.value.message.lower()
    assert server.served == []


@needs_openssl
@pytest.mark.parametrize("mode", MODES)
def test_verify_false_works_and_logs_a_warning(
    mode: Mode, pki: Pki, tls_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = tls_server(pki.server_cert, pki.server_key)
    caplog.set_level(logging.WARNING, logger="jobmon_gateway")
    assert call_once(mode, Requester(server.url, verify=False)).year == 2026
    warnings = [
        r for r in caplog.records if r.name == "jobmon_gateway" and r.levelno == logging.WARNING
    ]
    assert warnings
    assert all("verify=False" in r.getMessage() for r in warnings)
    assert server.url.removeprefix("https://") in warnings[0].getMessage()


# ---------------------------------------------------------------------------
# Secrets never leak into errors or logs.

TOKEN = "tok-9f8e7d6c5b4a-SECRET"
COOKIE = "session=cookie-1a2b3c4d-SECRET"
SECRETS = (TOKEN, COOKIE, "SECRET")


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__, getattr(current, "last_error", None)]


def _leaks(text: str) -> bool:
    return any(secret in text for secret in SECRETS)


@pytest.mark.parametrize("mode", MODES)
def test_header_values_never_appear_in_errors_or_log_records(
    mode: Mode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx's and aiohttp's included
    script = [
        Action.respond(500, ERROR_ENVELOPE_500, content_type="application/custom+json"),
        Action.respond_then_reset(500),
        Action.html_error_page(503),
        Action.delay(1.0),
        Action.respond(429, {"detail": "slow"}, retry_after=0.01),
        Action.truncated_json(),
    ]
    with FaultServer(*script) as srv:
        requester = make_requester(
            srv.url,
            headers={"Authorization": f"Bearer {TOKEN}", "Cookie": COOKIE},
            request_timeout=0.2,
            retries_attempts=10,
        )
        assert not _leaks(repr(requester))
        with pytest.raises(InvalidResponseError) as info:
            heartbeat(mode, requester)
        # The headers were really sent, on every request.
        assert all(
            r.headers["authorization"] == f"Bearer {TOKEN}" and r.headers["cookie"] == COOKIE
            for r in srv.requests + srv.dropped_requests
        )
        assert len(srv.requests) == len(script)
    for error in _chain(info.value):
        assert not _leaks(str(error)), repr(error)
        assert not _leaks(repr(error)), repr(error)
        if isinstance(error, GatewayError):
            assert not _leaks(" ".join(str(v) for v in vars(error).values()))
    retries = [r for r in caplog.records if r.name == "jobmon_gateway"]
    # The request the reset swallowed is resent at once, uncounted and unlogged
    # (the server never answered it); every other failure is one retry line.
    assert len(retries) == len(script) - 1
    for record in caplog.records:
        assert not _leaks(record.getMessage()), record.getMessage()
        assert not _leaks(" ".join(str(v) for v in vars(record).values())), record.name


@pytest.mark.parametrize("mode", MODES)
def test_header_values_never_appear_when_retries_run_out(mode: Mode) -> None:
    with FaultServer(default=Action.reset_before_response()) as srv:
        requester = make_requester(
            srv.url, headers={"Authorization": f"Bearer {TOKEN}"}, retries_attempts=2
        )
        with pytest.raises(RetryBudgetExhaustedError) as info:
            heartbeat(mode, requester)
        assert srv.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    for error in _chain(info.value):
        assert not _leaks(str(error))
        assert not _leaks(repr(error))


def _header_cases() -> list[Any]:
    newline = f"Bearer {TOKEN}\n"  # a token read from a file, newline and all
    accented = f"Bearer {TOKEN}é"
    return [
        pytest.param(mode, value, id=f"{name}-{mode}")
        for name, value in (("trailing-newline", newline), ("non-ascii", accented))
        for mode in MODES
    ]


@pytest.mark.parametrize(("mode", "value"), _header_cases())
def test_a_malformed_header_value_is_refused_without_echoing_it(mode: Mode, value: str) -> None:
    # Requester() refuses it with a ConfigurationError (a GatewayError) that
    # does not repeat the value, and nothing is sent.
    with FaultServer(default=OK) as srv:
        try:
            requester = make_requester(srv.url, headers={"Authorization": value})
            call_once(mode, requester, retry=False)
        except GatewayError as exc:
            error = exc
        else:
            pytest.fail("a malformed header value was sent")
        assert srv.requests == []
    assert not _leaks(str(error))
    assert not _leaks(repr(error))


# ---------------------------------------------------------------------------
# Error sizes.


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b"x" * 1_000_000),
        (502, ("<html><body>" + "é" * 300_000 + "</body></html>").encode()),
        (200, b'{"time": "' + b"9" * 2_000_000),
    ],
    ids=["500-plain-1MB", "502-html-multibyte", "200-invalid-2MB"],
)
def test_the_body_excerpt_is_capped(mode: Mode, status: int, body: bytes) -> None:
    answer = Action.respond(status, body, content_type="text/plain")
    with FaultServer(default=answer) as srv:
        requester = make_requester(srv.url, request_timeout=5.0)
        with pytest.raises(GatewayError) as info:
            call_once(mode, requester, retry=False)
        assert len(srv.requests) == 1
    error = info.value
    assert isinstance(error, InvalidResponseError if status == 200 else ServerError)
    assert error.body_excerpt is not None
    assert len(error.body_excerpt) == 501
    assert error.body_excerpt.endswith("…")
    assert body.decode().startswith(error.body_excerpt[:-1])
    assert len(str(error)) < 2_000
    assert len(repr(error)) < 2_000
    if error.server_message is not None:
        assert len(error.server_message) <= 500


@pytest.mark.parametrize("mode", MODES)
def test_a_huge_server_message_is_capped_in_errors_and_logs(
    mode: Mode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="jobmon_gateway")
    envelope = {"error": {"type": "<class 'Boom'>", "exception_message": "m" * 1_000_000}}
    with FaultServer(default=Action.respond(500, envelope)) as srv:
        requester = make_requester(srv.url, retries_attempts=2)
        with pytest.raises(RetryBudgetExhaustedError) as info:
            heartbeat(mode, requester)
    error = info.value
    assert error.body_excerpt is not None
    assert len(error.body_excerpt) == 501
    assert len(str(error)) < 2_000
    assert all(len(r.getMessage()) < 2_000 for r in caplog.records)


# ---------------------------------------------------------------------------
# Logging.


@pytest.mark.parametrize("mode", MODES)
def test_every_retry_is_logged_with_route_attempt_wait_and_cause(
    mode: Mode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="jobmon_gateway")
    script = [
        # First, on a fresh connection: a reset there is a counted failure
        # (on a reused one it would be resent at once, uncounted).
        Action.reset_before_response(),
        Action.respond(500, ERROR_ENVELOPE_500, content_type="application/custom+json"),
        Action.respond(429, {"detail": "slow"}, retry_after=0.03),
        Action.html_error_page(503),
        Action.delay(1.0),
    ]
    with FaultServer(*script, default=OK_HEARTBEAT) as srv:
        requester = make_requester(srv.url, request_timeout=0.2, retries_attempts=10)
        assert heartbeat(mode, requester).status == "R"
        assert len(srv.requests) == len(script) + 1
    records = [r for r in caplog.records if r.name == "jobmon_gateway"]
    assert [r.levelno for r in records] == [logging.WARNING] * len(script)

    route = "/workflow_run/1/log_heartbeat"
    fields = [
        (
            getattr(r, "jobmon_gateway.route"),
            getattr(r, "jobmon_gateway.method"),
            getattr(r, "jobmon_gateway.attempt"),
            getattr(r, "jobmon_gateway.cause"),
            getattr(r, "jobmon_gateway.status"),
        )
        for r in records
    ]
    assert fields == [
        (route, "POST", 1, "TransportError", None),
        (route, "POST", 2, "ServerError", 500),
        (route, "POST", 3, "RateLimitedError", 429),
        (route, "POST", 4, "ServerError", 503),
        (route, "POST", 5, "RequestTimeoutError", None),
    ]
    waits = [getattr(r, "jobmon_gateway.wait") for r in records]
    assert waits[0] == pytest.approx(0.01)  # wait_initial
    assert waits[1] == pytest.approx(0.02)  # doubled
    assert waits[2] == pytest.approx(0.03)  # the server's Retry-After
    assert all(0 <= wait <= 0.05 for wait in waits)  # wait_max
    for record, wait in zip(records, waits, strict=True):
        message = record.getMessage()
        assert route in message
        assert f"{wait:.2f}s" in message


@pytest.mark.parametrize("mode", MODES)
def test_a_call_that_succeeds_at_once_logs_nothing_above_debug(
    mode: Mode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with FaultServer(default=OK) as srv:
        assert call_once(mode, make_requester(srv.url)).year == 2026
    loud = [r for r in caplog.records if r.levelno > logging.DEBUG]
    assert loud == [], [(r.name, r.getMessage()) for r in loud]


@pytest.mark.parametrize("mode", MODES)
def test_a_call_that_fails_without_retrying_logs_no_warning(
    mode: Mode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="jobmon_gateway")
    with FaultServer(default=Action.respond(404, {"detail": "Not Found"})) as srv:
        with pytest.raises(GatewayError):
            call_once(mode, make_requester(srv.url))
        assert len(srv.requests) == 1
    assert [r for r in caplog.records if r.levelno > logging.DEBUG] == []
