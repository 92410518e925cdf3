"""Tests of ``FakeJobmonServer.serve()``: the fake over a real loopback HTTP/1.1 socket.

The SDK (``Requester`` + ``ServerGateway``) talks to the served fake with no
transport injected, so every byte crosses a real TCP connection.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from jobmon_gateway import Requester, ServerGateway
from jobmon_gateway.errors import (
    NotFoundError,
    RetryBudgetExhaustedError,
    TransportError,
    WorkflowNotFoundError,
)
from jobmon_gateway.models import WorkflowRunStatus
from jobmon_gateway.testing import FakeClock, FakeJobmonServer

NOW = "2026-11-28 17:56:34"
HEARTBEAT = {"status": "R", "next_report_increment": 30.0}


def fast_requester(url: str, **options: Any) -> Requester:
    """A requester for ``url`` that retries without waiting."""
    settings: dict[str, Any] = {
        "route_prefix": "/api/v3",
        "retries_attempts": 3,
        "wait_initial": 0,
        "wait_jitter": 0,
        "wait_max": 0,
        "request_timeout": 5,
        **options,
    }
    return Requester(url, **settings)


def seeded_server(**options: Any) -> FakeJobmonServer:
    """Workflow 1 (dag 1, limit 5) with tasks 1-3 queued and 4-5 registering; run 1 running."""
    server = FakeJobmonServer(clock=FakeClock(NOW), **options)
    server.add_workflow(1, dag_id=1, max_concurrently_running=5)
    server.add_dag(3, chain=True, status="Q")
    server.add_tasks(2, status="G")
    server.add_workflow_run(1, status="R", workflow_run_id=1)
    return server


@pytest.fixture
def server() -> FakeJobmonServer:
    return seeded_server()


@pytest.fixture
def url(server: FakeJobmonServer) -> Iterator[str]:
    with server.serve() as base:
        yield base


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def connection_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("fake-jobmon-")]


# -- the SDK over the socket ---------------------------------------------------


def test_serve_yields_a_loopback_service_url(url: str) -> None:
    parts = urlsplit(url)
    assert parts.scheme == "http"
    assert parts.hostname == "127.0.0.1"
    assert parts.path == ""
    assert port_of(url) > 0


def test_sync_gateway_calls_over_the_socket(server: FakeJobmonServer, url: str) -> None:
    with ServerGateway(fast_requester(url), 1, 1) as gateway:
        assert gateway.get_server_time_sync().strftime("%Y-%m-%d %H:%M:%S") == NOW
        assert gateway.log_heartbeat_sync(WorkflowRunStatus.RUNNING, 30.0).status == "R"
        metadata = gateway.get_workflow_metadata_sync()
        assert (metadata.workflow_id, metadata.dag_id, metadata.max_concurrently_running) == (
            1,
            1,
            5,
        )
        updates = gateway.get_task_status_updates_sync()
        assert {str(k): v for k, v in updates.tasks_by_status.items()} == {
            "G": [4, 5],
            "Q": [1, 2, 3],
        }
        queued = gateway.queue_task_batch_sync(1, [4, 5], 1, 1)
        assert {str(k): v for k, v in queued.tasks_by_status.items()} == {"Q": [4, 5]}
        tasks = [task_id for chunk in gateway.iter_tasks_sync(chunk_size=2) for task_id in chunk]
        assert tasks == [1, 2, 3, 4, 5]
        edges = gateway.get_downstream_tasks_sync([1, 2], 1)
        assert edges.downstream_tasks[1][1] == [server.task(2).node_id]
    assert server.task(4).status == "Q"
    heartbeats = server.requests_to("log_heartbeat")
    assert len(heartbeats) == 1
    assert heartbeats[0].json() == HEARTBEAT
    assert heartbeats[0].headers["content-type"] == "application/json"
    assert heartbeats[0].query["client_jobmon_version"] == "3.6.0"
    assert heartbeats[0].url_path == "/api/v3/workflow_run/1/log_heartbeat"


async def test_async_gateway_calls_over_the_socket(url: str) -> None:
    async with ServerGateway(fast_requester(url), 1, 1) as gateway:
        answers = await asyncio.gather(
            *(gateway.log_heartbeat(WorkflowRunStatus.RUNNING, 30.0) for _ in range(20))
        )
        concurrency = await gateway.get_workflow_concurrency()
    assert {str(answer.status) for answer in answers} == {"R"}
    assert concurrency == 5


def test_unknown_workflow_raises_workflow_not_found(url: str) -> None:
    with ServerGateway(fast_requester(url), 999, 1) as gateway:
        with pytest.raises(WorkflowNotFoundError):
            gateway.get_workflow_metadata_sync()
        with pytest.raises(NotFoundError) as caught:
            gateway.get_workflow_concurrency_sync()
    assert caught.value.status == 404
    assert caught.value.attempts == 1
    assert caught.value.server_message == "Workflow with ID 999 not found in database."


def test_error_envelope_keeps_its_content_type(url: str) -> None:
    with httpx.Client() as client:
        answer = client.post(url + "/api/v3/workflow_run/77/log_heartbeat", json=HEARTBEAT)
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/custom+json"
    assert answer.json()["error"] == {
        "type": "<class 'sqlalchemy.exc.NoResultFound'>",
        "exception_message": "No row was found when one was required",
        "status_code": "500",
    }


def test_route_prefix_of_the_fake_applies(url: str) -> None:
    with httpx.Client() as client:
        outside = client.get(url + "/time")
        inside = client.get(url + "/api/v3/time")
    assert outside.status_code == 404
    assert outside.json() == {"detail": "Not Found"}
    assert inside.json() == {"time": NOW}


def test_a_3_2_style_server_without_prefix() -> None:
    server = FakeJobmonServer(route_prefix="", clock=FakeClock(NOW))
    with server.serve() as url, ServerGateway(fast_requester(url, route_prefix=""), 1, 1) as gw:
        assert gw.get_server_time_sync().strftime("%Y-%m-%d %H:%M:%S") == NOW
    assert server.requests[0].url_path == "/time"


# -- HTTP/1.1 details ----------------------------------------------------------


def test_large_answers_go_out_gzip_compressed(server: FakeJobmonServer, url: str) -> None:
    server.add_tasks(300, status="G")
    with httpx.Client() as client:
        answer = client.post(url + "/api/v3/workflow/1/task_status_updates", json={})
    assert answer.headers["content-encoding"] == "gzip"
    assert answer.headers["vary"] == "Accept-Encoding"
    assert len(answer.json()["tasks_by_status"]["G"]) == 302
    # Content-Length counts the compressed bytes actually sent.
    assert int(answer.headers["content-length"]) < len(answer.content)


def test_gzip_body_is_the_compressed_bytes_on_the_wire(server: FakeJobmonServer, url: str) -> None:
    server.add_tasks(300, status="G")
    connection = http.client.HTTPConnection("127.0.0.1", port_of(url), timeout=5)
    try:
        connection.request(
            "POST",
            "/api/v3/workflow/1/task_status_updates",
            body=b"{}",
            headers={"Content-Type": "application/json", "Accept-Encoding": "gzip"},
        )
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    assert response.getheader("Content-Encoding") == "gzip"
    assert int(response.getheader("Content-Length", "-1")) == len(raw)
    assert len(json.loads(gzip.decompress(raw))["tasks_by_status"]["G"]) == 302


def test_connections_are_kept_alive(url: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port_of(url), timeout=5)
    try:
        connection.request("GET", "/api/v3/time", headers={"Content-Type": "application/json"})
        first = connection.getresponse()
        assert first.version == 11
        assert first.getheader("Connection") is None
        assert json.loads(first.read()) == {"time": NOW}
        sock = connection.sock
        assert sock is not None
        connection.request(
            "POST",
            "/api/v3/workflow_run/1/log_heartbeat",
            body=json.dumps(HEARTBEAT),
            headers={"Content-Type": "application/json"},
        )
        second = connection.getresponse()
        assert json.loads(second.read()) == {"status": "R"}
        # http.client reconnects silently after a close; the same socket means it did not.
        assert connection.sock is sock
    finally:
        connection.close()


def test_httpx_reuses_one_connection(url: str) -> None:
    with httpx.Client() as client:
        peers = {
            client.get(url + "/api/v3/time")
            .extensions["network_stream"]
            .get_extra_info("client_addr")
            for _ in range(5)
        }
    assert len(peers) == 1


def test_connection_close_from_the_client_is_honoured(url: str) -> None:
    with httpx.Client() as client:
        answer = client.get(url + "/api/v3/time", headers={"Connection": "close"})
    assert answer.headers["connection"] == "close"
    assert answer.json() == {"time": NOW}


def test_chunked_request_body_is_read(server: FakeJobmonServer, url: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port_of(url), timeout=5)
    try:
        connection.request(
            "POST",
            "/api/v3/workflow_run/1/log_heartbeat",
            body=iter([b'{"status": "R", ', b'"next_report_increment": 30.0}']),
            headers={"Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        assert json.loads(response.read()) == {"status": "R"}
    finally:
        connection.close()
    recorded = server.requests_to("log_heartbeat")[0]
    assert recorded.json() == HEARTBEAT
    assert "transfer-encoding" not in recorded.headers


def test_head_request_gets_headers_only(url: str) -> None:
    with httpx.Client() as client:
        answer = client.head(url + "/api/v3/time")
    assert answer.status_code == 405
    assert answer.content == b""


def test_served_request_is_recorded_as_sent(server: FakeJobmonServer, url: str) -> None:
    with httpx.Client() as client:
        client.get(
            url + "/api/v3/workflow/1/get_max_concurrently_running",
            params={"client_jobmon_version": "3.6.0"},
            headers={"X-Server-Structlog-Context": '{"workflow_id": 1}'},
        )
    recorded = server.requests[-1]
    assert recorded.name == "get_max_concurrently_running"
    assert recorded.method == "GET"
    assert recorded.query == {"client_jobmon_version": "3.6.0"}
    assert recorded.headers["x-server-structlog-context"] == '{"workflow_id": 1}'
    assert recorded.headers["host"] == urlsplit(url).netloc
    assert recorded.body == b""


# -- faults over the socket --------------------------------------------------------


def test_injected_status_fault_passes_through(server: FakeJobmonServer, url: str) -> None:
    server.inject_fault(503, times=2)
    with ServerGateway(fast_requester(url), 1, 1) as gateway:
        assert gateway.log_heartbeat_sync(WorkflowRunStatus.RUNNING, 30.0).status == "R"
    assert [r.name for r in server.requests] == [None, None, "log_heartbeat"]


def test_injected_transport_fault_closes_the_connection(server: FakeJobmonServer, url: str) -> None:
    server.inject_fault(error=httpx.ReadError)
    with httpx.Client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(url + "/api/v3/time")
        assert client.get(url + "/api/v3/time").json() == {"time": NOW}


def test_sdk_retries_a_dropped_connection(server: FakeJobmonServer, url: str) -> None:
    server.inject_fault(error=httpx.ReadError, times=2)
    with ServerGateway(fast_requester(url), 1, 1) as gateway:
        assert gateway.get_workflow_concurrency_sync() == 5
    assert len(server.requests) == 3


def test_reset_after_500_like_uvicorn() -> None:
    server = seeded_server(drop_connection_after_500=True)
    server.inject_fault(500)
    with server.serve() as url, ServerGateway(fast_requester(url), 1, 1) as gateway:
        assert gateway.log_heartbeat_sync(WorkflowRunStatus.RUNNING, 30.0).status == "R"
    # The 500, the request that met the dropped connection, the answered retry.
    assert [r.name for r in server.requests] == [None, None, "log_heartbeat"]


def test_retries_run_out_on_a_persistent_fault(server: FakeJobmonServer, url: str) -> None:
    server.inject_fault(error=httpx.ConnectError, times=10)
    with (
        ServerGateway(fast_requester(url, retries_attempts=2), 1, 1) as gateway,
        pytest.raises(RetryBudgetExhaustedError) as caught,
    ):
        gateway.get_server_time_sync()
    assert caught.value.attempts == 2
    assert isinstance(caught.value.last_error, TransportError)


# -- lifecycle and safety ------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "192.168.0.1", "::", "example.com", ""])
def test_non_loopback_hosts_are_refused(server: FakeJobmonServer, host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        server.serve(host)


@pytest.mark.parametrize("port", [-1, 65536, True])
def test_bad_ports_are_refused(server: FakeJobmonServer, port: Any) -> None:
    with pytest.raises(ValueError, match="port"):
        server.serve(port=port)


def test_localhost_means_127_0_0_1(server: FakeJobmonServer) -> None:
    with server.serve("localhost") as url:
        assert urlsplit(url).hostname == "127.0.0.1"
        assert httpx.get(url + "/api/v3/time").json() == {"time": NOW}


def test_other_loopback_ipv4_addresses_are_served(server: FakeJobmonServer) -> None:
    with server.serve("127.0.0.2") as url:
        assert urlsplit(url).hostname == "127.0.0.2"
        assert httpx.get(url + "/api/v3/time").json() == {"time": NOW}


def test_ipv6_loopback_is_served(server: FakeJobmonServer) -> None:
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with server.serve("::1") as url:
        assert url.startswith("http://[::1]:")
        with ServerGateway(fast_requester(url), 1, 1) as gateway:
            assert gateway.log_heartbeat_sync("R", 30.0).status == "R"


def test_an_explicit_port_is_used(server: FakeJobmonServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    with server.serve(port=free_port) as url:
        assert port_of(url) == free_port


def test_exit_stops_the_server_and_joins_its_threads(server: FakeJobmonServer) -> None:
    with server.serve() as url:
        client = httpx.Client()
        # A kept-alive connection stays open into the exit.
        assert client.get(url + "/api/v3/time").status_code == 200
        assert connection_threads()
    assert connection_threads() == []
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port_of(url)))
    with pytest.raises(httpx.TransportError):
        client.get(url + "/api/v3/time")
    client.close()


def test_exit_on_an_exception_still_stops(server: FakeJobmonServer) -> None:
    with pytest.raises(RuntimeError, match="boom"), server.serve() as url:
        raise RuntimeError("boom")
    assert connection_threads() == []
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port_of(url)))


def test_two_servers_share_one_fake(server: FakeJobmonServer) -> None:
    with server.serve() as first, server.serve() as second:
        assert first != second
        for url in (first, second):
            with ServerGateway(fast_requester(url), 1, 1) as gateway:
                gateway.log_heartbeat_sync("R", 30.0)
    assert server.workflow_run(1).heartbeats == 2


def test_serving_does_not_write_to_stderr(
    server: FakeJobmonServer, capfd: pytest.CaptureFixture[str]
) -> None:
    server.inject_fault(error=httpx.ReadError)
    with server.serve() as url, httpx.Client() as client:
        with pytest.raises(httpx.TransportError):
            client.get(url + "/api/v3/time")
        client.get(url + "/api/v3/time")
        client.get(url + "/nowhere")
    captured = capfd.readouterr()
    assert captured.err == ""
    assert captured.out == ""
