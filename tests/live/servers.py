"""The live Jobmon servers: their venvs, their processes, their seeded workflows.

``conftest.py`` turns these into session fixtures; ``record_322.py`` uses
them to record wire pairs. Each server gets a venv (cached under
``<repo>/.live/``): 3.6 from ``../shared/jobmon-3.6/install.sh``, 3.2.2 from
``pip install jobmon-server==3.2.2 pymysql``. It runs on 127.0.0.1 on a free
port with a fresh SQLite file in a temporary folder that is removed when it
stops; workflows are seeded with Jobmon's own client (3.6, ``seed_36.py``) or
through the HTTP routes (3.2.2, ``seed_322.py``).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from jobmon_gateway import Requester

from . import seed_322

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SHARED = REPO.parent / "shared"
JOBMON_36 = SHARED / "jobmon-3.6"
# Ignored by git (.gitignore): the servers' venvs, kept between runs.
CACHE = REPO / ".live"
SERVERS = ("3.6", "3.2.2")

# A fresh build of both venvs takes about a minute here; past this it has failed.
BUILD_TIMEOUT = 240.0
# The 3.2.2 server needs several seconds to import on a loaded machine.
START_TIMEOUT = 90.0
SEED_TIMEOUT = 120.0
# Each test and each (server, mode) pair takes its own workflows for calls
# that change a workflow's state; this many are seeded per server.
POOL_SIZE = 8


@dataclass(frozen=True)
class SeededWorkflow:
    """One seeded workflow and its running workflow run, with the ids a test needs.

    Its five tasks (``task_ids``, in seeding order) form the DAG ``1 -> 2``,
    ``1 -> 3``, ``2 -> 4`` with task 5 alone; ``node_ids`` are their DAG
    nodes in the same order. All tasks start REGISTERING (``G``).
    """

    workflow_id: int
    workflow_run_id: int
    dag_id: int
    array_id: int
    task_ids: tuple[int, ...]
    node_ids: tuple[int, ...]
    task_resources_id: int
    cluster_id: int
    max_concurrently_running: int

    @classmethod
    def from_seed(cls, seeded: dict[str, Any]) -> SeededWorkflow:
        return cls(
            workflow_id=int(seeded["workflow_id"]),
            workflow_run_id=int(seeded["workflow_run_id"]),
            dag_id=int(seeded["dag_id"]),
            array_id=int(seeded["array_id"]),
            task_ids=tuple(int(i) for i in seeded["task_ids"]),
            node_ids=tuple(int(i) for i in seeded["node_ids"]),
            task_resources_id=int(seeded["task_resources_id"]),
            cluster_id=int(seeded["cluster_id"]),
            max_concurrently_running=int(seeded["max_concurrently_running"]),
        )

    def downstream_nodes(self) -> dict[int, tuple[int, list[int]]]:
        """Each task's node and its downstream nodes (sorted), as the seeded DAG has them."""
        edges = {0: [1, 2], 1: [3]}
        return {
            task_id: (
                self.node_ids[position],
                sorted(self.node_ids[i] for i in edges.get(position, [])),
            )
            for position, task_id in enumerate(self.task_ids)
        }


@dataclass
class LiveServer:
    """A real Jobmon server running for this session, and the workflows seeded into it.

    Attributes:
        version: ``"3.6"`` or ``"3.2.2"``.
        port: The port on 127.0.0.1.
        route_prefix: ``"/api/v3"`` (3.6) or ``""`` (3.2.2).
        db_path: The server's SQLite file (read it with :meth:`count_task_instances`).
        shared: A workflow for calls that do not change its tasks or its run's status.
    """

    version: str
    port: int
    route_prefix: str
    db_path: Path
    shared: SeededWorkflow
    pool: list[SeededWorkflow] = field(repr=False)

    @property
    def service_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def repeat_safe_queue(self) -> bool:
        """Whether repeating queue_task_batch adds no task instance (3.6 yes, 3.2.2 no)."""
        return self.version != "3.2.2"

    def requester(self, **options: Any) -> Requester:
        """A requester for this server with short timeouts and instant retries."""
        settings: dict[str, Any] = {
            "route_prefix": self.route_prefix,
            "request_timeout": 10.0,
            "retries_attempts": 3,
            "retries_timeout": 20.0,
            "wait_initial": 0.0,
            "wait_max": 0.0,
            "wait_jitter": 0.0,
            **options,
        }
        return Requester(settings.pop("service_url", self.service_url), **settings)

    def take_workflow(self) -> SeededWorkflow:
        """A workflow no other test has had: for calls that change its state."""
        if not self.pool:
            raise RuntimeError(f"all {POOL_SIZE} seeded workflows are taken: raise POOL_SIZE")
        return self.pool.pop(0)

    def wait_for_run_status(self, workflow_run_id: int, status: str, timeout: float = 10.0) -> None:
        """Wait until the database holds ``status`` for the run (bounded by ``timeout``).

        The 3.6 server commits update_status and log_heartbeat only after it
        has answered, so a call that reads the run right after may still see
        the status from before. A test that needs the new one waits here.
        """
        deadline = time.monotonic() + timeout
        found = None
        while time.monotonic() < deadline:
            with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10) as db:
                row = db.execute(
                    "SELECT status FROM workflow_run WHERE id = ?", (workflow_run_id,)
                ).fetchone()
            found = None if row is None else row[0]
            if found == status:
                return
            # Polling: the server's commit announces nothing we could wait on.
            time.sleep(0.01)
        raise AssertionError(
            f"workflow run {workflow_run_id} is {found!r}, not {status!r}, after {timeout}s"
        )

    def count_task_instances(self, task_ids: tuple[int, ...] | list[int]) -> int:
        """How many task instances the server's database holds for ``task_ids``."""
        # Read-only, so the test can never change what the server sees.
        with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10) as db:
            marks = ",".join("?" * len(task_ids))
            row = db.execute(
                f"SELECT COUNT(*) FROM task_instance WHERE task_id IN ({marks})",
                list(task_ids),
            ).fetchone()
        return int(row[0])


@dataclass
class RunningServer:
    """A started server process and where it keeps its files."""

    version: str
    process: subprocess.Popen[bytes]
    folder: Path
    port: int
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)


_STARTED: list[RunningServer] = []


@atexit.register
def _stop_every_server() -> None:
    # A safety net: a session fixture interrupted while a server was coming up
    # (a timeout in its setup) never reaches its teardown; stop it anyway.
    for server in _STARTED:
        server.stop()


class ServerUnavailableError(Exception):
    """A live server cannot be had here; the message says why (the tests skip with it)."""


def _child_env() -> dict[str, str]:
    # The servers and Jobmon's client must only ever talk to 127.0.0.1: drop
    # proxy settings (a proxy is another host) and any Jobmon configuration
    # of the developer's that would point them elsewhere.
    return {
        name: value
        for name, value in os.environ.items()
        if not name.upper().endswith("_PROXY") and not name.startswith("JOBMON__")
    }


def _run(command: list[str], timeout: float) -> None:
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            timeout=timeout,
            env=_child_env(),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ServerUnavailableError(f"{command[0]} did not finish in {timeout:.0f}s") from exc
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).decode("utf-8", "replace").strip()[-1500:]
        raise ServerUnavailableError(f"{' '.join(command)} exited {done.returncode}:\n{tail}")


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def build_venv(version: str) -> Path:
    """The venv of ``version``'s server, built unless the cached one works."""
    venv = CACHE / f"venv-{version}"
    python = _venv_python(venv)
    if version == "3.6":
        # install.sh checks the cached venv itself and returns at once when it works.
        _run(["bash", str(JOBMON_36 / "install.sh"), str(venv)], BUILD_TIMEOUT)
        return venv
    ready = [
        str(python),
        "-c",
        "import importlib.metadata as m, pymysql; assert m.version('jobmon-server') == '3.2.2'",
    ]
    if python.exists() and subprocess.run(ready, capture_output=True, check=False).returncode == 0:
        return venv
    _run([sys.executable, "-m", "venv", str(venv)], BUILD_TIMEOUT)
    _run(
        [str(python), "-m", "pip", "install", "-q", "jobmon-server==3.2.2", "pymysql"],
        BUILD_TIMEOUT,
    )
    return venv


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start(version: str, venv: Path) -> RunningServer:
    folder = Path(tempfile.mkdtemp(prefix=f"jobmon-live-{version}-"))
    port = _free_port()
    script = JOBMON_36 / "serve.py" if version == "3.6" else HERE / "serve_322.py"
    log_path = folder / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(_venv_python(venv)), str(script), str(port), str(folder / "jobmon.sqlite")],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=folder,
            env=_child_env(),
        )
    server = RunningServer(version, process, folder, port, log_path)
    _STARTED.append(server)
    return server


def wait_ready(running: RunningServer) -> None:
    route = "/api/v3/health" if running.version == "3.6" else "/time"
    url = f"http://127.0.0.1:{running.port}{route}"
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if running.process.poll() is not None:
                raise ServerUnavailableError(
                    f"the {running.version} server exited {running.process.returncode}:\n"
                    f"{running.log_tail()}"
                )
            try:
                # 3.2 answers a request without Content-Type with a 500.
                if client.get(url, headers={"Content-Type": "application/json"}).is_success:
                    return
            except httpx.TransportError:
                pass
            # Polling: a starting server announces nothing we could wait on.
            time.sleep(0.1)
    raise ServerUnavailableError(
        f"the {running.version} server did not answer {url} within {START_TIMEOUT:.0f}s:\n"
        f"{running.log_tail()}"
    )


def _seed(running: RunningServer, venv: Path) -> list[SeededWorkflow]:
    service_url = f"http://127.0.0.1:{running.port}"
    if running.version == "3.2.2":
        seeded = seed_322.seed(service_url, POOL_SIZE + 1)
    else:
        command = [str(_venv_python(venv)), str(HERE / "seed_36.py"), service_url]
        try:
            done = subprocess.run(
                [*command, str(POOL_SIZE + 1)],
                capture_output=True,
                timeout=SEED_TIMEOUT,
                env=_child_env(),
                cwd=running.folder,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"seeding 3.6 took over {SEED_TIMEOUT:.0f}s") from exc
        if done.returncode != 0:
            raise RuntimeError(
                f"seeding 3.6 failed ({done.returncode}):\n"
                f"{done.stderr.decode('utf-8', 'replace')[-2000:]}\n"
                f"server log:\n{running.log_tail()}"
            )
        seeded = json.loads(done.stdout.decode("utf-8").strip().splitlines()[-1])["workflows"]
    return [SeededWorkflow.from_seed(workflow) for workflow in seeded]


def bring_up(version: str) -> tuple[RunningServer | None, LiveServer | str]:
    """Build, start and seed one server; a reason string instead when it cannot be had."""
    try:
        venv = build_venv(version)
    except ServerUnavailableError as exc:
        return None, f"cannot build the Jobmon {version} server's venv: {exc}"
    running = start(version, venv)
    try:
        wait_ready(running)
        workflows = _seed(running, venv)
    except BaseException:
        running.stop()
        raise
    server = LiveServer(
        version=version,
        port=running.port,
        route_prefix="/api/v3" if version == "3.6" else "",
        db_path=running.folder / "jobmon.sqlite",
        shared=workflows[0],
        pool=workflows[1:],
    )
    return running, server
