"""Run a real Jobmon 3.6 workflow with ``workflow.run()`` on the reference gateway and the drop-in.

Usage, with the Python of a Jobmon 3.6 venv that has jobmon-gateway installed
(``run_swarm_tests.sh`` makes one)::

    python tests/jobmon_swarm/run_workflow.py [--tasks 300] [--gateways reference,dropin]

For each gateway, in the order given (repeat one to time it again), it starts
the real 3.6 server (``/work/shared/jobmon-3.6/serve.py``, or
``$JOBMON36_SERVE``) on 127.0.0.1 with a fresh SQLite file, binds a workflow
of ``--tasks`` independent tasks plus one task downstream of all of them,
runs it with the dummy distributor and times ``workflow.run()``. Every task must end DONE: the
script asks the server itself (a full ``task_status_updates`` through
jobmon-gateway). It counts aiohttp's "Unclosed client session" reports and
prints one line per gateway, ``RESULT`` and a JSON object (Jobmon's own log
lines share the output): the tasks, their statuses, and what ``run()`` cost:

- ``wall_seconds``: its wall time (it binds the tasks through Jobmon's own
  requester, then runs the swarm until the last task is DONE);
- ``swarm_cpu_seconds``: user + system CPU of this process, the one that
  calls ``run()`` and runs the swarm and its gateway (``RUSAGE_SELF``);
- ``children_cpu_seconds``: that of the processes it waited for meanwhile
  (``RUSAGE_CHILDREN``): the distributor, which on the dummy cluster runs
  every task itself, in its own process (it starts no worker processes);
- ``swarm_requests``: the HTTP requests this process sent during ``run()``
  (binding included), counted as the request lines written to its sockets.

It exits 1 if a run does not end DONE, a task is not DONE, or the drop-in
left a session open. The server is stopped at the end, whatever happens.
Jobmon's client reads its settings when each workflow is made, so every run
talks to its own server.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SERVE = Path(os.environ.get("JOBMON36_SERVE", "/work/shared/jobmon-3.6/serve.py"))
HEALTH_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def jobmon_server(folder: Path) -> Iterator[str]:
    """The real 3.6 server on 127.0.0.1 for as long as the context lasts; yields its URL."""
    port = free_port()
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, str(SERVE), str(port), str(folder / "jobmon.sqlite")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + HEALTH_TIMEOUT
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"the server exited early; see {folder / 'server.log'}")
            try:
                with urllib.request.urlopen(f"{url}/api/v3/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)  # polling a process we cannot wait on otherwise
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


# The start of an HTTP/1.1 request line; a body never starts so.
REQUEST_LINE = re.compile(rb"(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) /")


class RequestCounter:
    """Counts the HTTP requests this process sends, whichever client sends them.

    Both gateways and Jobmon's own requester write to ``socket.socket``s:
    aiohttp and the SDK's async pool through asyncio's transports (``send``),
    requests and the SDK's sync pool with ``sendall``. Each request line is
    one request. The distributor is another process and is not counted.
    """

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()  # the swarm sends from more than one thread

    def saw(self, data: Any) -> None:
        """Count ``data`` (one write to a socket) if it starts a request."""
        if REQUEST_LINE.match(bytes(memoryview(data)[:8])):
            with self._lock:
                self.count += 1


@contextmanager
def counting_requests() -> Iterator[RequestCounter]:
    """Count the requests sent on every socket of this process while the context lasts."""
    counter = RequestCounter()
    send: Callable[..., int] = socket.socket.send
    sendall: Callable[..., None] = socket.socket.sendall
    sendmsg: Callable[..., int] = socket.socket.sendmsg

    def counted_send(sock: socket.socket, data: Any, *args: Any) -> int:
        counter.saw(data)
        return send(sock, data, *args)

    def counted_sendall(sock: socket.socket, data: Any, *args: Any) -> None:
        counter.saw(data)
        sendall(sock, data, *args)

    def counted_sendmsg(sock: socket.socket, buffers: Iterable[Any], *args: Any) -> int:
        buffers = list(buffers)
        if buffers:
            counter.saw(buffers[0])
        return sendmsg(sock, buffers, *args)

    # setattr: mypy refuses assigning to a method, which is the point here.
    setattr(socket.socket, "send", counted_send)  # noqa: B010
    setattr(socket.socket, "sendall", counted_sendall)  # noqa: B010
    setattr(socket.socket, "sendmsg", counted_sendmsg)  # noqa: B010
    try:
        yield counter
    finally:
        setattr(socket.socket, "send", send)  # noqa: B010
        setattr(socket.socket, "sendall", sendall)  # noqa: B010
        setattr(socket.socket, "sendmsg", sendmsg)  # noqa: B010


def cpu_seconds(who: int) -> float:
    """User + system CPU seconds of ``who`` (``resource.RUSAGE_SELF`` or ``RUSAGE_CHILDREN``)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class UnclosedSessions(logging.Handler):
    """Counts aiohttp's "Unclosed client session" reports (a warning and an asyncio log line)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "Unclosed client session" in record.getMessage():
            self.count += 1


def configure_client(url: str) -> None:
    # Before anything of Jobmon's is imported: JobmonConfig reads these.
    os.environ.update(
        {
            "JOBMON__HTTP__SERVICE_URL": url,
            "JOBMON__HTTP__ROUTE_PREFIX": "/api/v3",
            "JOBMON__DISTRIBUTOR__POLL_INTERVAL": "1",
            "JOBMON__HEARTBEAT__WORKFLOW_RUN_INTERVAL": "1",
            "JOBMON__HEARTBEAT__TASK_INSTANCE_INTERVAL": "1",
        }
    )
    # The distributor runs `worker_node_entry_point` from the venv's bin.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"


def run_one(gateway: str, n_tasks: int, url: str) -> dict[str, Any]:
    """Bind and run one workflow on ``gateway`` ("reference" or "dropin"); time ``run()``."""
    from jobmon.client.tool import Tool  # type: ignore[import-not-found]

    import jobmon_gateway.jobmon
    from jobmon_gateway import Requester, ServerGateway, TaskStatus

    if gateway == "dropin":
        jobmon_gateway.jobmon.install()
    else:
        jobmon_gateway.jobmon.uninstall()
    tool = Tool(name=f"swarm-{gateway}")
    tool.set_default_compute_resources_from_dict(
        cluster_name="dummy", compute_resources={"queue": "null.q"}
    )
    template = tool.get_task_template(
        template_name="echo", command_template="echo {arg}", node_args=["arg"]
    )
    fan_in = tool.get_task_template(
        template_name="fan_in", command_template="echo all {arg}", node_args=["arg"]
    )
    tasks = [template.create_task(arg=i) for i in range(n_tasks)]
    last = fan_in.create_task(arg=gateway, upstream_tasks=tasks)
    workflow = tool.create_workflow(workflow_args=f"swarm-{gateway}-{time.time_ns()}")
    workflow.add_tasks([*tasks, last])

    self_before = cpu_seconds(resource.RUSAGE_SELF)
    children_before = cpu_seconds(resource.RUSAGE_CHILDREN)
    with counting_requests() as requests_sent:
        started = time.perf_counter()
        status = workflow.run(seconds_until_timeout=1800)
        wall = time.perf_counter() - started
    swarm_cpu = cpu_seconds(resource.RUSAGE_SELF) - self_before
    # The server is a child too, but it is only waited for after this.
    children_cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - children_before

    requester = Requester(url, route_prefix="/api/v3")
    with ServerGateway(requester, workflow.workflow_id, 1) as ours:
        snapshot = ours.get_task_status_updates_sync()
    by_status = {str(letter): len(ids) for letter, ids in snapshot.tasks_by_status.items()}
    return {
        "gateway": gateway,
        "tasks": n_tasks + 1,
        "run_status": str(status),
        "tasks_by_status": by_status,
        "all_done": by_status == {str(TaskStatus.DONE): n_tasks + 1},
        "wall_seconds": round(wall, 2),
        "swarm_cpu_seconds": round(swarm_cpu, 2),
        "children_cpu_seconds": round(children_cpu, 2),
        "swarm_requests": requests_sent.count,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300, help="independent tasks (plus one)")
    parser.add_argument(
        "--gateways",
        default="reference,dropin",
        help="comma-separated, run in this order: reference (Jobmon's own), dropin",
    )
    args = parser.parse_args()

    unclosed = UnclosedSessions()
    logging.getLogger("asyncio").addHandler(unclosed)
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").addHandler(unclosed)
    warnings.simplefilter("always", ResourceWarning)

    gateways = args.gateways.split(",")
    unknown = set(gateways) - {"reference", "dropin"}
    if unknown:
        parser.error(f"unknown gateways: {', '.join(sorted(unknown))}")
    failed = False
    for gateway in gateways:
        # A fresh server for every run: the same empty database each time, so
        # that a later run does not pay for the rows of an earlier one.
        with (
            tempfile.TemporaryDirectory(prefix="jobmon-swarm-") as folder,
            jobmon_server(Path(folder)) as url,
        ):
            configure_client(url)
            before = unclosed.count
            result = run_one(gateway, args.tasks, url)
            # aiohttp reports an unclosed session when it is collected.
            gc.collect()
            result["unclosed_client_sessions"] = unclosed.count - before
            print("RESULT", json.dumps(result), flush=True)
            failed |= not result["all_done"] or result["run_status"] != "D"
            failed |= gateway == "dropin" and result["unclosed_client_sessions"] > 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
