"""The testing kit as a user's driver meets it: ``jobmon_server.requester()``, the fake's
service URL, and ``requests_to`` by gateway call or route name.

``jobmon_server`` is the fixture the installed pytest11 entry point registers.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

from jobmon_gateway import (
    GatewayError,
    Requester,
    ServerGateway,
    TransportError,
    WorkflowRunStatus,
)
from jobmon_gateway.testing import FakeJobmonServer

# Every ServerGateway call and its arguments against the `seeded` server below.
GATEWAY_CALLS: dict[str, tuple[Any, ...]] = {
    "get_server_time": (),
    "log_heartbeat": ("R", 30.0),
    "update_status": ("R",),
    "terminate_task_instances": (),
    "request_triage": (),
    "get_task_status_updates": (),
    "get_workflow_concurrency": (),
    "get_array_concurrency": (1,),
    "queue_task_batch": (1, [1], 1, 1),
    "get_workflow_metadata": (),
    "get_tasks": (0, 10),
    "get_downstream_tasks": ([1], 1),
}
# The server's name of each call's route.
ROUTE_NAMES = {
    "get_server_time": "time",
    "log_heartbeat": "log_heartbeat",
    "update_status": "update_status",
    "terminate_task_instances": "terminate_task_instances",
    "request_triage": "set_status_for_triaging",
    "get_task_status_updates": "task_status_updates",
    "get_workflow_concurrency": "get_max_concurrently_running",
    "get_array_concurrency": "get_array_max_concurrently_running",
    "queue_task_batch": "queue_task_batch",
    "get_workflow_metadata": "fetch_workflow_metadata",
    "get_tasks": "get_tasks",
    "get_downstream_tasks": "get_downstream_tasks",
}


def seed(server: FakeJobmonServer) -> None:
    """Workflow 1 (dag 1), array 1, tasks 1 -> 2 registering, run 1 running."""
    server.add_workflow(1, dag_id=1, max_concurrently_running=4)
    server.add_array(1, array_id=1)
    server.add_dag(2, chain=True)
    server.add_workflow_run(1, status="R", workflow_run_id=1)


# -- requester() --------------------------------------------------------------------


def test_requester_drives_a_sync_gateway(jobmon_server: FakeJobmonServer) -> None:
    seed(jobmon_server)
    jobmon_server.request_resume(1)
    with ServerGateway(jobmon_server.requester(), 1, 1) as gateway:
        answer = gateway.log_heartbeat_sync("R", 30.0)
        queued = gateway.queue_task_batch_sync(1, [1, 2], 1, 1)
    assert answer.status is WorkflowRunStatus.COLD_RESUME
    assert queued.tasks_by_status == {"Q": [1, 2]}
    assert [r.call for r in jobmon_server.requests] == ["log_heartbeat", "queue_task_batch"]


async def test_requester_drives_an_async_gateway(jobmon_server: FakeJobmonServer) -> None:
    seed(jobmon_server)
    async with ServerGateway(jobmon_server.requester(), 1, 1) as gateway:
        snapshot = await gateway.get_task_status_updates()
        metadata = await gateway.get_workflow_metadata()
    assert snapshot.tasks_by_status == {"G": [1, 2]}
    assert (metadata.workflow_id, metadata.dag_id, metadata.max_concurrently_running) == (1, 1, 4)
    assert [r.call for r in jobmon_server.requests] == [
        "get_task_status_updates",
        "get_workflow_metadata",
    ]


def test_requester_uses_the_fakes_prefix() -> None:
    # Both transports are proven by the sync and async tests above: without
    # them those requests would be refused at 127.0.0.1:1.
    old = FakeJobmonServer(server_version="3.2.2")
    assert old.requester().base_url == old.service_url == "http://127.0.0.1:1"
    assert FakeJobmonServer().requester().base_url == "http://127.0.0.1:1/api/v3"
    custom = FakeJobmonServer(route_prefix="/jobmon")
    assert custom.requester().base_url == "http://127.0.0.1:1/jobmon"


def test_requester_options_pass_through(jobmon_server: FakeJobmonServer) -> None:
    seed(jobmon_server)
    jobmon_server.inject_fault(503, route="/time")
    with ServerGateway(jobmon_server.requester(retries_attempts=2), 1, 1) as gateway:
        gateway.get_server_time_sync()
    # One fault, one retry: served without waiting.
    assert len(jobmon_server.requests) == 2

    jobmon_server.inject_fault(503, route="/time")
    with (
        ServerGateway(jobmon_server.requester(retries_attempts=1), 1, 1) as gateway,
        pytest.raises(GatewayError),
    ):
        gateway.get_server_time_sync()
    assert len(jobmon_server.requests) == 3


async def test_async_retries_go_to_the_fake_too(jobmon_server: FakeJobmonServer) -> None:
    seed(jobmon_server)
    jobmon_server.inject_fault(503, times=2, route="log_heartbeat")
    async with ServerGateway(jobmon_server.requester(retries_attempts=3), 1, 1) as gateway:
        answer = await gateway.log_heartbeat("R", 30.0)
    assert answer.status == "R"
    assert len(jobmon_server.requests) == 3
    assert len(jobmon_server.requests_to("log_heartbeat")) == 1


# -- nothing leaves loopback --------------------------------------------------------


class Dialled:
    """What the process tried to resolve and connect to; refuses anything off loopback."""

    def __init__(self) -> None:
        self.lookups: list[str] = []
        self.connects: list[str] = []


@pytest.fixture
def dialled(monkeypatch: pytest.MonkeyPatch) -> Dialled:
    seen = Dialled()
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        text = host.decode() if isinstance(host, bytes) else str(host)
        seen.lookups.append(text)
        if not _is_loopback_ip(text):
            # Never let a test make a DNS lookup, even a failing one.
            raise socket.gaierror(socket.EAI_NONAME, f"lookup of {text!r} refused by the test")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> None:
        host = str(address[0]) if isinstance(address, tuple) else str(address)
        seen.connects.append(host)
        if not _is_loopback_ip(host):
            raise ConnectionRefusedError(f"connect to {host!r} refused by the test")
        real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


def _is_loopback_ip(text: str) -> bool:
    try:
        return ipaddress.ip_address(text.strip("[]")).is_loopback
    except ValueError:
        return False


def test_the_service_url_is_a_loopback_address() -> None:
    for server in (FakeJobmonServer(), FakeJobmonServer(server_version="3.2.2")):
        parts = urlsplit(server.service_url)
        assert parts.scheme == "http"
        assert parts.hostname is not None
        assert _is_loopback_ip(parts.hostname)
        assert server.base_url == server.service_url + server.route_prefix


def _bare_requester(server: FakeJobmonServer) -> Requester:
    # What a user writes when they forget the transport.
    return Requester(server.service_url, route_prefix=server.route_prefix, request_timeout=5)


def test_sync_call_without_the_transport_is_refused_on_loopback(
    jobmon_server: FakeJobmonServer, dialled: Dialled
) -> None:
    with (
        ServerGateway(_bare_requester(jobmon_server), 1, 1) as gateway,
        pytest.raises(TransportError) as refused,
    ):
        gateway.without_retries().get_server_time_sync()
    assert "refused" in str(refused.value).lower()
    assert dialled.connects, "the call never tried to connect"
    assert all(_is_loopback_ip(host) for host in dialled.lookups + dialled.connects), dialled
    assert jobmon_server.requests == []


async def test_async_call_without_the_transport_is_refused_on_loopback(
    jobmon_server: FakeJobmonServer, dialled: Dialled
) -> None:
    async with ServerGateway(_bare_requester(jobmon_server), 1, 1) as gateway:
        with pytest.raises(TransportError) as refused:
            await gateway.without_retries().get_server_time()
    assert "refused" in str(refused.value).lower() or "connect" in str(refused.value).lower()
    assert dialled.connects, "the call never tried to connect"
    assert all(_is_loopback_ip(host) for host in dialled.lookups + dialled.connects), dialled
    assert jobmon_server.requests == []


# -- requests_to --------------------------------------------------------------------


async def _every_call(server: FakeJobmonServer, mode: str) -> None:
    async with ServerGateway(server.requester(retries_attempts=1), 1, 1) as gateway:
        for name, args in GATEWAY_CALLS.items():
            if mode == "sync":
                getattr(gateway, f"{name}_sync")(*args)
            else:
                call: Callable[..., Awaitable[Any]] = getattr(gateway, name)
                await call(*args)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_requests_to_takes_every_gateway_call_and_route_name(
    jobmon_server: FakeJobmonServer, mode: str
) -> None:
    seed(jobmon_server)
    await _every_call(jobmon_server, mode)
    assert len(jobmon_server.requests) == len(GATEWAY_CALLS) == 12
    for call_name, route_name in ROUTE_NAMES.items():
        by_call = jobmon_server.requests_to(call_name)
        assert len(by_call) == 1, call_name
        assert by_call == jobmon_server.requests_to(route_name)
        assert (by_call[0].call, by_call[0].name) == (call_name, route_name)


def test_requests_to_keeps_the_order_and_skips_faults(jobmon_server: FakeJobmonServer) -> None:
    seed(jobmon_server)
    jobmon_server.inject_fault(503, route="/time")
    with ServerGateway(jobmon_server.requester(retries_attempts=2), 1, 1) as gateway:
        gateway.get_server_time_sync()
        gateway.log_heartbeat_sync("R", 30.0)
        gateway.get_server_time_sync()
    times = jobmon_server.requests_to("get_server_time")
    assert len(times) == 2
    assert times == jobmon_server.requests_to("time")
    assert [r.route for r in jobmon_server.requests] == ["/time"] * 2 + [
        "/workflow_run/1/log_heartbeat",
        "/time",
    ]
    assert jobmon_server.requests[0].name is None  # the injected fault


@pytest.mark.parametrize(
    "name", ["get_time", "heartbeat", "triage", "", "Log_Heartbeat", "/time", "log_heartbeat_sync"]
)
def test_requests_to_refuses_a_name_that_is_no_route(
    jobmon_server: FakeJobmonServer, name: str
) -> None:
    with pytest.raises(ValueError, match="unknown route or gateway call name") as refused:
        jobmon_server.requests_to(name)
    # The message lists what would have been accepted.
    assert "get_server_time" in str(refused.value)
    assert "set_status_for_triaging" in str(refused.value)


def test_requests_to_on_3_2_2_never_counts_the_absent_array_route() -> None:
    server = FakeJobmonServer(server_version="3.2.2")
    seed(server)
    with ServerGateway(server.requester(retries_attempts=1), 1, 1) as gateway:
        with pytest.raises(GatewayError):
            gateway.get_array_concurrency_sync(1)
        gateway.get_server_time_sync()
    assert server.requests_to("get_array_concurrency") == []
    assert [r.url_path for r in server.requests if r.name is None] == [
        "/array/1/get_array_max_concurrently_running"
    ]
    assert len(server.requests_to("get_server_time")) == 1
