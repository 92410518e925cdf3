"""pytest-httpx and respx against the gateway's own transports.

pytest-httpx runs as users run it: a pytest session of its own in a temporary
directory, a gateway with the default settings and no setup at all. It must
intercept the sync and the async calls, and a request it cannot match must
fail at once (not retried), with pytest-httpx's own words.

respx is tried in this process: ``respx.mock(using="httpx")`` on clients lent
to the gateway, and a router given as the requester's transports (respx's
mockers patch httpx's clients and httpcore's pools, neither of which the
gateway's own transports go through: docs/testing.md gives this recipe).

The service URL is a loopback port where nothing listens, so a request a mock
let through is refused at once: no DNS lookup, nothing sent off the machine.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import respx

from jobmon_gateway import (
    CLIENT_JOBMON_VERSION,
    Requester,
    ServerGateway,
    TransportError,
    WorkflowRunStatus,
)

PYTEST_INI = """[pytest]
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
"""

TIME = {"time": "2026-11-28 17:56:34"}


def unused_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# The module the separate session runs; SERVICE_URL is filled in.
PYTEST_HTTPX_MODULE = r"""
import re
import time

import pytest
from pytest_httpx import HTTPXMock

from jobmon_gateway import Requester, ServerGateway, TransportError, WorkflowRunStatus

SERVICE_URL = "@SERVICE_URL@"
BASE_URL = SERVICE_URL + "/api/v3"  # the default route prefix
QUERY = r"\?client_jobmon_version=3\.6\.0$"


def gateway() -> ServerGateway:
    # The default settings: 10 attempts, 300 s, the SDK's own transports.
    return ServerGateway(Requester(SERVICE_URL), workflow_id=12, workflow_run_id=34)


def test_sync_call(httpx_mock: HTTPXMock) -> None:
    route = re.escape(BASE_URL + "/workflow_run/34/log_heartbeat")
    httpx_mock.add_response(method="POST", url=re.compile(route + QUERY), json={"status": "R"})
    with gateway() as gw:
        assert gw.log_heartbeat_sync("R", 30.0).status is WorkflowRunStatus.RUNNING
    (sent,) = httpx_mock.get_requests()
    assert sent.headers["content-type"] == "application/json"


@pytest.mark.asyncio
async def test_async_call(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=BASE_URL + "/time", match_params={"client_jobmon_version": "3.6.0"}, json=@TIME@
    )
    async with gateway() as gw:
        assert str(await gw.get_server_time()) == "2026-11-28 17:56:34"
    assert len(httpx_mock.get_requests()) == 1


def check_unmatched(error: TransportError, elapsed: float, kind: str) -> None:
    print(f"unmatched {kind}: {elapsed:.3f}s: {error}")
    assert "No response can be found" in str(error)
    assert error.attempts == 1
    assert not error.retryable
    assert elapsed < 1.0


@pytest.mark.httpx_mock(assert_all_requests_were_expected=False)
def test_unmatched_sync(httpx_mock: HTTPXMock) -> None:
    started = time.monotonic()
    with gateway() as gw, pytest.raises(TransportError) as caught:
        gw.get_workflow_concurrency_sync()
    check_unmatched(caught.value, time.monotonic() - started, "sync")
    assert len(httpx_mock.get_requests()) == 1


@pytest.mark.asyncio
@pytest.mark.httpx_mock(assert_all_requests_were_expected=False)
async def test_unmatched_async(httpx_mock: HTTPXMock) -> None:
    started = time.monotonic()
    async with gateway() as gw:
        with pytest.raises(TransportError) as caught:
            await gw.get_workflow_concurrency()
    check_unmatched(caught.value, time.monotonic() - started, "async")
    assert len(httpx_mock.get_requests()) == 1
"""


def run_session(tmp_path: Path, module: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_mocked.py").write_text(module, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text(PYTEST_INI, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_pytest_httpx_intercepts_the_gateway_with_no_setup(tmp_path: Path) -> None:
    module = PYTEST_HTTPX_MODULE.replace("@SERVICE_URL@", f"http://127.0.0.1:{unused_port()}")
    result = run_session(tmp_path, module.replace("@TIME@", repr(TIME)))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    summary = result.stdout.strip().splitlines()[-1]
    found = re.fullmatch(r"4 passed in ([\d.]+)s", summary)
    assert found is not None, output
    # A hang detector: an unmatched request retried with backoff would take minutes.
    assert float(found.group(1)) < 5, output
    assert output.count("No response can be found for GET request on http://127.0.0.1:") == 2
    assert "?client_jobmon_version=3.6.0" in output


# -- respx ------------------------------------------------------------------------

# The recipe of docs/testing.md in a session of its own: a respx router as the
# requester's transports (sync, async, and a request no route matches).
RESPX_MODULE = r"""
import httpx
import pytest
import respx

from jobmon_gateway import Requester, ServerGateway, TransportError

SERVICE_URL = "@SERVICE_URL@"
router = respx.Router(assert_all_mocked=True)
router.get(path="/api/v3/time").respond(json=@TIME@)
requester = Requester(
    SERVICE_URL,
    route_prefix="/api/v3",
    transport=httpx.MockTransport(router.handler),
    async_transport=httpx.MockTransport(router.async_handler),
)


def test_sync_call() -> None:
    with ServerGateway(requester, 12, 34) as gw:
        assert str(gw.get_server_time_sync()) == "2026-11-28 17:56:34"


@pytest.mark.asyncio
async def test_async_call() -> None:
    async with ServerGateway(requester, 12, 34) as gw:
        assert str(await gw.get_server_time()) == "2026-11-28 17:56:34"


def test_unmatched() -> None:
    with ServerGateway(requester, 12, 34) as gw, pytest.raises(TransportError) as caught:
        gw.get_workflow_concurrency_sync()
    assert caught.value.attempts == 1
    assert "AllMockedAssertionError" in str(caught.value)
"""


def test_a_respx_router_as_transports_in_a_session_of_its_own(tmp_path: Path) -> None:
    module = RESPX_MODULE.replace("@SERVICE_URL@", f"http://127.0.0.1:{unused_port()}")
    result = run_session(tmp_path, module.replace("@TIME@", repr(TIME)))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.fullmatch(r"3 passed in [\d.]+s", result.stdout.strip().splitlines()[-1]), output


@pytest.fixture
def requester() -> Requester:
    # retries_attempts=1: a request respx let through fails at once, refused.
    return Requester(
        f"http://127.0.0.1:{unused_port()}", route_prefix="/api/v3", retries_attempts=1
    )


def test_respx_using_httpx_sees_a_lent_client(requester: Requester) -> None:
    with respx.mock(using="httpx") as router:
        route = router.get(path="/api/v3/time").respond(json=TIME)
        with httpx.Client() as client, ServerGateway(requester, 12, 34) as gateway:
            gateway.set_session(client)
            assert str(gateway.get_server_time_sync()) == "2026-11-28 17:56:34"
            with pytest.raises(TransportError, match="not mocked"):
                gateway.without_retries().get_workflow_concurrency_sync()
    assert route.call_count == 1
    sent = route.calls.last.request
    assert sent.url.params["client_jobmon_version"] == CLIENT_JOBMON_VERSION


async def test_respx_using_httpx_sees_a_lent_async_client(requester: Requester) -> None:
    with respx.mock(using="httpx") as router:
        route = router.post(path="/api/v3/workflow_run/34/log_heartbeat").respond(
            json={"status": "R"}
        )
        async with httpx.AsyncClient() as client, ServerGateway(requester, 12, 34) as gateway:
            gateway.set_session(client)
            beat = await gateway.log_heartbeat("R", 30.0)
    assert beat.status is WorkflowRunStatus.RUNNING
    assert route.call_count == 1


async def test_a_respx_router_as_the_transports(requester: Requester) -> None:
    router = respx.Router(assert_all_called=True)
    route = router.get(path="/api/v3/time").respond(json=TIME)
    mocked = requester.with_options(
        transport=httpx.MockTransport(router.handler),
        async_transport=httpx.MockTransport(router.async_handler),
    )
    async with ServerGateway(mocked, 12, 34) as gateway:
        assert str(await gateway.get_server_time()) == "2026-11-28 17:56:34"
        assert str(gateway.get_server_time_sync()) == "2026-11-28 17:56:34"
    assert route.call_count == 2


async def test_a_request_no_respx_route_matches_fails_at_once(requester: Requester) -> None:
    router = respx.Router(assert_all_mocked=True)
    mocked = requester.with_options(
        transport=httpx.MockTransport(router.handler),
        async_transport=httpx.MockTransport(router.async_handler),
    )
    async with ServerGateway(mocked, 12, 34) as gateway:
        with pytest.raises(TransportError) as sync_error:
            gateway.get_server_time_sync()
        with pytest.raises(TransportError) as async_error:
            await gateway.get_server_time()
    for error in (sync_error.value, async_error.value):
        assert error.attempts == 1
        assert not error.retryable
        assert "AllMockedAssertionError" in str(error)
