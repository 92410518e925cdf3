"""The drop-in for Jobmon's swarm: built like the swarm builds it, read like the swarm reads it.

Everything here runs without Jobmon: install()/uninstall() against fake
``jobmon.client.swarm`` modules in ``sys.modules``, calls against the SDK's
fake server on a real loopback socket, with an ``aiohttp.ClientSession``
lent the way Jobmon's ``run.py`` lends one. The last test imports the real
swarm in a subprocess of a Jobmon 3.6 venv, when there is one.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import httpx
import psutil
import pytest

import jobmon_gateway.jobmon as dropin
from jobmon_gateway import (
    ConfigurationError,
    NotFoundError,
    Requester,
    RetryBudgetExhaustedError,
    TaskStatus,
    WorkflowRunStatus,
)
from jobmon_gateway import ServerGateway as CoreGateway
from jobmon_gateway.testing import FakeJobmonServer

SRC = Path(__file__).resolve().parents[1] / "src"


def jobmon_requester(url: str, **settings: float) -> SimpleNamespace:
    """A stand-in for ``jobmon.core.requester.Requester``: the four attributes the drop-in reads."""
    values = {"request_timeout": 5, "retries_attempts": 3, "retries_timeout": 0, **settings}
    return SimpleNamespace(service_url=url, **values)


def connections_to(port: int) -> int:
    """Our process's TCP sockets connected to ``port``."""
    return sum(
        1
        for conn in psutil.Process().net_connections(kind="tcp")
        if conn.raddr and conn.raddr.port == port
    )


def unclosed_session_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "Unclosed" in str(w.message)]


@pytest.fixture
def served() -> Iterator[tuple[FakeJobmonServer, str]]:
    server = FakeJobmonServer()
    with server.serve() as url:
        yield server, url


# -- the requester ---------------------------------------------------------------


def test_a_jobmon_requester_becomes_ours_with_the_prefix_inside_the_url() -> None:
    gateway = dropin.ServerGateway(
        jobmon_requester(
            "http://127.0.0.1:8000/api/v3", request_timeout=7, retries_attempts=4, retries_timeout=9
        ),
        2,
        3,
    )
    ours = gateway.requester
    assert ours.base_url == "http://127.0.0.1:8000/api/v3"
    assert ours.request_timeout == 7
    assert ours.retries_attempts == 4
    assert ours.retries_timeout == 9
    # Under a versioned prefix the server is 3.4+: a repeated queue_task_batch is safe.
    assert ours.connection.repeat_safe_queueing


def test_a_jobmon_requester_at_the_root_is_not_taken_for_a_repeat_safe_server() -> None:
    gateway = dropin.ServerGateway(jobmon_requester("http://127.0.0.1:8000"), 2, 3)
    assert not gateway.requester.connection.repeat_safe_queueing


def test_a_requester_without_a_service_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="service_url"):
        dropin.ServerGateway(SimpleNamespace(request_timeout=5), 1, 1)


def test_retries_timeout_zero_is_one_attempt_then_a_runtime_error(
    served: tuple[FakeJobmonServer, str],
) -> None:
    server, url = served
    run = server.add_workflow_run(status="R")
    server.inject_fault(503, times=5)
    gateway = dropin.ServerGateway(
        jobmon_requester(url + "/api/v3", retries_timeout=0, retries_attempts=10),
        run.workflow_id,
        run.workflow_run_id,
    )
    with pytest.raises(RuntimeError) as raised:
        gateway.log_heartbeat_sync("R", 30.0)
    assert isinstance(raised.value, RetryBudgetExhaustedError)
    assert len(server.requests) == 1


def test_our_own_requester_is_taken_as_it_is() -> None:
    requester = Requester("http://127.0.0.1:1", route_prefix="/api/v3")
    assert dropin.ServerGateway(requester, 2, 3).requester is requester


# -- calls the way the swarm makes them -------------------------------------------


async def test_results_read_the_way_the_swarm_reads_them(
    served: tuple[FakeJobmonServer, str],
) -> None:
    server, url = served
    run = server.add_workflow_run(status="R")
    tasks = server.add_tasks(3, workflow=run.workflow_id)
    ids = [task.task_id for task in tasks]
    server.set_task_status(ids[0], "D")
    array_id = tasks[0].array_id
    gateway = dropin.ServerGateway(
        jobmon_requester(url + "/api/v3"), run.workflow_id, run.workflow_run_id
    )
    session = aiohttp.ClientSession()
    gateway.set_session(session)
    try:
        assert await gateway._ensure_session() is session

        heartbeat = await gateway.log_heartbeat(status="R", next_report_increment=30.0)
        assert heartbeat.status == "R"

        snapshot = await gateway.get_task_status_updates(since=None)
        # The swarm buckets tasks in a dict keyed by the letters.
        buckets: dict[str, set[int]] = {letter.value: set() for letter in TaskStatus}
        for status, task_ids in snapshot.tasks_by_status.items():
            buckets[status].update(task_ids)
        assert buckets["D"] == {ids[0]}
        assert buckets["G"] == set(ids[1:])

        # The swarm hands the answer's time back as `since`, and so does its
        # builder with the raw string Jobmon's requester got from /time.
        later = await gateway.get_task_status_updates(since=snapshot.time)
        assert later.tasks_by_status == {} or set(later.tasks_by_status) <= set(buckets)
        raw = server.server_time()
        await gateway.get_task_status_updates(since=raw)

        queued = await gateway.queue_task_batch(
            array_id=array_id, task_ids=ids[1:], task_resources_id=1, cluster_id=1
        )
        task_statuses = {tid: s for s, tids in queued.tasks_by_status.items() for tid in tids}
        assert task_statuses == {ids[1]: "Q", ids[2]: "Q"}

        assert isinstance(await gateway.get_workflow_concurrency(), int)
        assert isinstance(await gateway.get_array_concurrency(array_id), int)
        await gateway.request_triage()
        await gateway.terminate_task_instances()
        done = await gateway.update_status(WorkflowRunStatus.DONE)
        assert done.status == "D"
        assert done.status == WorkflowRunStatus.DONE
    finally:
        await gateway.close()
        assert not session.closed, "a lent session belongs to the swarm"
        await session.close()


def test_async_calls_leave_nothing_open_once_their_loop_ends(
    served: tuple[FakeJobmonServer, str],
) -> None:
    # The swarm never calls close(): its gateway's async connections are
    # kept alive for reuse while its event loop runs and closed when it ends.
    server, url = served
    run = server.add_workflow_run(status="R")
    port = int(url.rsplit(":", 1)[1])
    gateway = dropin.ServerGateway(
        jobmon_requester(url + "/api/v3"), run.workflow_id, run.workflow_run_id
    )

    async def swarm() -> None:
        # Concurrent calls, as the synchronizer makes them, then one more.
        answers = await asyncio.gather(
            gateway.log_heartbeat("R", 30.0),
            gateway.get_workflow_concurrency(),
            gateway.get_server_time(),
        )
        assert answers[0].status == "R"
        await gateway.get_server_time()
        assert connections_to(port) >= 1  # kept alive while the loop runs

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(swarm())
        assert connections_to(port) == 0
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_sync_calls_close_what_they_opened(served: tuple[FakeJobmonServer, str]) -> None:
    server, url = served
    run = server.add_workflow_run(status="B")
    port = int(url.rsplit(":", 1)[1])
    gateway = dropin.ServerGateway(
        jobmon_requester(url + "/api/v3"), run.workflow_id, run.workflow_run_id
    )
    gateway.get_server_time_sync()
    assert gateway.update_status_sync("I").status == "I"
    assert gateway.log_heartbeat_sync("I", 30.0).status == WorkflowRunStatus.INSTANTIATED
    assert gateway.get_task_rows_sync() == {}
    assert list(gateway.iter_task_rows_sync()) == []
    assert connections_to(port) == 0
    # The sync client is made afresh: the gateway still works.
    assert gateway.get_server_time_sync() is not None


async def test_a_session_the_tests_forget_is_not_used_again(
    served: tuple[FakeJobmonServer, str],
) -> None:
    # Jobmon's swarm tests close the session they lent, then set
    # `gateway._session = None` to forget it; a later call must still work.
    server, url = served
    run = server.add_workflow_run(status="R")
    gateway = dropin.ServerGateway(
        jobmon_requester(url + "/api/v3"), run.workflow_id, run.workflow_run_id
    )
    session = aiohttp.ClientSession()
    gateway.set_session(session)
    await gateway.log_heartbeat("R", 30.0)
    await session.close()
    gateway._session = None
    assert gateway._session is None
    assert (await gateway.log_heartbeat("R", 30.0)).status == "R"
    # A lent session that was closed without being forgotten is not used either.
    other = aiohttp.ClientSession()
    gateway.set_session(other)
    await other.close()
    assert (await gateway.log_heartbeat("R", 30.0)).status == "R"
    # Forgetting an open session stops its use too.
    third = aiohttp.ClientSession()
    gateway.set_session(third)
    gateway._session = None
    try:
        assert await gateway._ensure_session() is not third
    finally:
        await third.close()
        await gateway.close()


async def test_ensure_session_without_a_lent_one_is_owned_and_closed_by_close(
    served: tuple[FakeJobmonServer, str],
) -> None:
    server, url = served
    run = server.add_workflow_run(status="R")
    gateway = dropin.ServerGateway(
        jobmon_requester(url + "/api/v3"), run.workflow_id, run.workflow_run_id
    )
    session = await gateway._ensure_session()
    assert await gateway._ensure_session() is session
    assert (await gateway.log_heartbeat("R", 30.0)).status == "R"
    assert not session.closed
    await gateway.close()
    assert session.closed


async def test_a_lent_httpx_client_is_used_and_not_replaced() -> None:
    server = FakeJobmonServer()
    run = server.add_workflow_run(status="R")
    gateway = dropin.ServerGateway(
        jobmon_requester("http://127.0.0.1:9/api/v3"), run.workflow_id, run.workflow_run_id
    )
    # Nothing listens on port 9: only the lent client's transport can answer.
    async with httpx.AsyncClient(transport=server.async_transport()) as client:
        gateway.set_session(client)
        assert (await gateway.log_heartbeat("R", 30.0)).status == "R"
        assert await gateway.get_workflow_concurrency() > 0
        await gateway.close()
        assert not client.is_closed
    assert [r.name for r in server.requests] == ["log_heartbeat", "get_max_concurrently_running"]


async def test_errors_stay_the_sdks(served: tuple[FakeJobmonServer, str]) -> None:
    _, url = served
    gateway = dropin.ServerGateway(jobmon_requester(url + "/api/v3"), 999, 999)
    with pytest.raises(NotFoundError):
        await gateway.get_workflow_concurrency()


# -- install / uninstall --------------------------------------------------------------


class ReferenceGateway:
    """Stands in for ``jobmon.client.swarm.gateway.ServerGateway``."""


@pytest.fixture
def fake_swarm(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, types.ModuleType]]:
    modules: dict[str, types.ModuleType] = {}
    for name in ("jobmon", "jobmon.client", "jobmon.client.swarm"):
        modules[name] = types.ModuleType(name)
    gateway = modules["jobmon.client.swarm.gateway"] = types.ModuleType(
        "jobmon.client.swarm.gateway"
    )
    gateway.ServerGateway = ReferenceGateway  # type: ignore[attr-defined]
    builder = modules["jobmon.client.swarm.builder"] = types.ModuleType(
        "jobmon.client.swarm.builder"
    )
    builder.ServerGateway = ReferenceGateway  # type: ignore[attr-defined]
    builder.Gateway = ReferenceGateway  # type: ignore[attr-defined]  # imported under another name
    builder.Unrelated = object  # type: ignore[attr-defined]
    run = modules["jobmon.client.swarm.run"] = types.ModuleType("jobmon.client.swarm.run")
    run.ServerGateway = ReferenceGateway  # type: ignore[attr-defined]
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    yield modules
    dropin.uninstall()


EXPECTED = [
    "jobmon.client.swarm.builder.Gateway",
    "jobmon.client.swarm.builder.ServerGateway",
    "jobmon.client.swarm.gateway.ServerGateway",
    "jobmon.client.swarm.run.ServerGateway",
]


def test_install_points_the_swarm_at_the_dropin(fake_swarm: dict[str, types.ModuleType]) -> None:
    assert not dropin.installed()
    assert dropin.install() == EXPECTED
    assert dropin.installed()
    for name in EXPECTED:
        module, attribute = name.rsplit(".", 1)
        assert getattr(fake_swarm[module], attribute) is dropin.ServerGateway
    assert fake_swarm["jobmon.client.swarm.builder"].Unrelated is object


def test_install_twice_changes_nothing_and_uninstall_restores(
    fake_swarm: dict[str, types.ModuleType],
) -> None:
    dropin.install()
    assert dropin.install() == EXPECTED
    assert dropin.uninstall() == EXPECTED
    assert not dropin.installed()
    for name in EXPECTED:
        module, attribute = name.rsplit(".", 1)
        assert getattr(fake_swarm[module], attribute) is ReferenceGateway
    assert dropin.uninstall() == []
    # And it can be installed again after that.
    assert dropin.install() == EXPECTED


def test_install_without_jobmon_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import fail, whether Jobmon is installed or not.
    monkeypatch.setitem(sys.modules, "jobmon.client.swarm.gateway", None)
    with pytest.raises(ConfigurationError, match="jobmon_client"):
        dropin.install()
    assert not dropin.installed()


def test_the_dropin_is_the_sdks_gateway() -> None:
    assert issubclass(dropin.ServerGateway, CoreGateway)


# -- the real swarm, in a Jobmon 3.6 venv -----------------------------------------------

JOBMON36_VENVS = [
    Path(os.environ.get("JOBMON36_VENV", "/nonexistent")),
    Path("/work/swarm-venv"),
    Path("/work/cache/jobmon36"),
]

REAL_SWARM_CHECK = """
import json
import jobmon_gateway.jobmon as dropin
from jobmon.client.swarm import builder, gateway, run
from jobmon.client.swarm.builder import SwarmBuilder
from jobmon.core.requester import Requester

reference = gateway.ServerGateway
patched = dropin.install()
again = dropin.install()
jobmon_requester = Requester("http://127.0.0.1:9/api/v3", retries_timeout=0)
swarm_builder = SwarmBuilder(requester=jobmon_requester, workflow_run_id=5)
swarm_builder._workflow_id = 4
built = swarm_builder._ensure_gateway()
state = {
    "patched": patched,
    "again": again,
    "built_is_dropin": type(built) is dropin.ServerGateway,
    "run_is_dropin": run.ServerGateway is dropin.ServerGateway,
    "base_url": built.requester.base_url,
    "ids": [built.workflow_id, built.workflow_run_id],
}
restored = dropin.uninstall()
state["restored"] = restored
state["reference_back"] = all(
    module.ServerGateway is reference for module in (gateway, builder, run)
)
print(json.dumps(state))
"""


def jobmon36_python() -> Path | None:
    for venv in JOBMON36_VENVS:
        python = venv / "bin" / "python"
        if python.exists():
            probe = subprocess.run(
                [str(python), "-c", "import jobmon.client.swarm.gateway, stamina, httpx"],
                capture_output=True,
                check=False,
                timeout=60,
            )
            if probe.returncode == 0:
                return python
    return None


@pytest.mark.timeout(120)
def test_install_on_the_real_jobmon_36_swarm() -> None:
    python = jobmon36_python()
    if python is None:
        pytest.skip("no Jobmon 3.6 venv with the SDK's dependencies (set JOBMON36_VENV)")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [str(python), "-c", REAL_SWARM_CHECK],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout.strip().splitlines()[-1])
    names = [
        "jobmon.client.swarm.builder.ServerGateway",
        "jobmon.client.swarm.gateway.ServerGateway",
        "jobmon.client.swarm.run.ServerGateway",
    ]
    assert state["patched"] == names
    assert state["again"] == names
    assert state["built_is_dropin"]
    assert state["run_is_dropin"]
    assert state["base_url"] == "http://127.0.0.1:9/api/v3"
    assert state["ids"] == [4, 5]
    assert state["restored"] == names
    assert state["reference_back"]
