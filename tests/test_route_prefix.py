"""One default route prefix (``/api/v3``) everywhere; a 404 for a missing route says so;
``str(error)`` names the full URL.

Every test talks to ``FakeJobmonServer.serve()`` over a real socket on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from click.testing import CliRunner

from jobmon_gateway import (
    GatewayError,
    NotFoundError,
    Requester,
    ServerGateway,
    TransportError,
    cli,
)
from jobmon_gateway.config import HttpSettings
from jobmon_gateway.testing import FakeClock, FakeJobmonServer

Mode = Literal["sync", "async"]
MODES: list[Mode] = ["sync", "async"]
NOW = "2026-11-28 17:56:34"
SECRET = "Bearer s3cr3t-t0ken"


def time_call(mode: Mode, gateway: ServerGateway) -> Any:
    if mode == "sync":
        return gateway.get_server_time_sync()
    return asyncio.run(gateway.get_server_time())


def failure(mode: Mode, gateway: ServerGateway) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        time_call(mode, gateway)
    return caught.value


@pytest.fixture
def url_36() -> Iterator[str]:
    with FakeJobmonServer(clock=FakeClock(NOW)).serve() as url:
        yield url


@pytest.fixture
def url_322() -> Iterator[str]:
    with FakeJobmonServer(server_version="3.2.2", clock=FakeClock(NOW)).serve() as url:
        yield url


def test_requester_from_env_and_the_cli_share_one_default(
    url_36: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ = {"JOBMON__HTTP__SERVICE_URL": url_36}
    assert Requester(url_36).route_prefix == "/api/v3"
    assert Requester.from_env(environ).route_prefix == "/api/v3"
    assert HttpSettings.from_env(environ).route_prefix == "/api/v3"
    # Each of them reaches a 3.6 server as it is.
    with ServerGateway(Requester(url_36, retries_attempts=1), 1, 1) as gateway:
        assert str(gateway.get_server_time_sync()) == NOW
    for name in ("JOBMON__HTTP__ROUTE_PREFIX", "JOBMON__CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(cli.main, ["--url", url_36, "time"])
    assert (result.exit_code, result.stdout) == (0, f"{NOW}\n"), result.output


@pytest.mark.parametrize("mode", MODES)
def test_a_32_server_needs_the_empty_prefix_and_the_404_says_so(mode: Mode, url_322: str) -> None:
    error = failure(mode, ServerGateway(Requester(url_322, retries_attempts=1), 1, 1))
    assert isinstance(error, NotFoundError)
    assert error.url == f"{url_322}/api/v3/time"
    text = str(error)
    assert f"[GET {url_322}/api/v3/time -> 404, attempts=1" in text
    assert "is the route prefix right? The API was looked for under '/api/v3'" in text
    assert "'' for 3.2" in text
    assert error.hint is not None
    assert error.hint in text
    # With the prefix of a 3.2 server, the same call works.
    assert str(time_call(mode, ServerGateway(Requester(url_322, route_prefix=""), 1, 1))) == NOW


@pytest.mark.parametrize("mode", MODES)
def test_a_36_server_asked_without_its_prefix_gets_the_hint(mode: Mode, url_36: str) -> None:
    error = failure(mode, ServerGateway(Requester(url_36, route_prefix=""), 1, 1))
    assert isinstance(error, NotFoundError)
    assert error.server_message == "Not Found"  # FastAPI's own 404
    assert f"{url_36}/time" in str(error)
    assert "The API was looked for under ''" in str(error)


@pytest.mark.parametrize("mode", MODES)
def test_the_hint_names_the_service_urls_own_path(mode: Mode, url_36: str) -> None:
    requester = Requester(f"{url_36}/jobmon", retries_attempts=1)
    error = failure(mode, ServerGateway(requester, 1, 1))
    assert f"[GET {url_36}/jobmon/api/v3/time -> 404" in str(error)
    assert "looked for under '/jobmon/api/v3'" in str(error)


@pytest.mark.parametrize("mode", MODES)
def test_a_404_about_a_row_has_no_prefix_hint(mode: Mode, url_36: str) -> None:
    gateway = ServerGateway(Requester(url_36, retries_attempts=1), 999, 1)

    def call() -> int:
        if mode == "sync":
            return gateway.get_workflow_concurrency_sync()
        return asyncio.run(gateway.get_workflow_concurrency())

    with pytest.raises(NotFoundError) as caught:
        call()
    error = caught.value
    assert error.server_message == "Workflow with ID 999 not found in database."
    assert error.hint is None
    assert "route prefix" not in str(error)


@pytest.mark.parametrize("mode", MODES)
def test_str_names_the_full_url_without_query_or_secret(mode: Mode, url_36: str) -> None:
    requester = Requester(
        url_36, route_prefix="/v9", retries_attempts=1, headers={"Authorization": SECRET}
    )
    error = failure(mode, ServerGateway(requester, 1, 1))
    text = str(error)
    assert error.url == f"{url_36}/v9/time"
    assert error.url in text
    assert "client_jobmon_version" not in text  # the query is not part of it
    assert SECRET not in text
    assert SECRET not in repr(error)


@pytest.mark.parametrize("mode", MODES)
def test_a_connection_failure_names_the_full_url(mode: Mode) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{holder.getsockname()[1]}"
        error = failure(mode, ServerGateway(Requester(url, retries_attempts=1), 1, 1))
    assert isinstance(error, TransportError)
    assert f"[GET {url}/api/v3/time, attempts=1, request_id=" in str(error)
