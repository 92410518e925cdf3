"""``jobmon-gateway demo``: a workflow run driven end to end against the in-process fake.

The driver does what a real Jobmon driver does, through the public
:class:`~jobmon_gateway.ServerGateway` only: move the run to running, read the
workflow's metadata and limits, page through its tasks and their DAG edges,
queue the tasks whose upstream tasks are done in batches, heartbeat, and
follow task statuses with incremental updates until nothing is left to run.
The fake server moves queued tasks through running to done (or failed) one
step per heartbeat, so the progress bars show a real run.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from .gateway import ServerGateway
from .models import TaskMetadata, TaskStatus, WorkflowRunStatus
from .progress import ACTIVE, ProgressView, StatusTally, follow
from .testing import FakeJobmonServer
from .transport import Requester

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["run_demo"]

QUEUE_BATCH_SIZE = 25
"""Most tasks queued by one queue_task_batch call."""


def seed_demo_workflow(server: FakeJobmonServer, tasks: int, rng: random.Random) -> tuple[int, int]:
    """Seed a layered DAG of ``tasks`` tasks in two arrays; return (workflow_id, run_id)."""
    workflow = server.add_workflow(max_concurrently_running=60)
    arrays = [
        server.add_array(workflow, max_concurrently_running=40),
        server.add_array(workflow, max_concurrently_running=25),
    ]
    layer_width = max(1, tasks // 8)
    previous: list[int] = []
    created = 0
    while created < tasks:
        size = min(layer_width, tasks - created)
        layer = [
            server.add_task(workflow, array=arrays[(created + i) % 2]).task_id for i in range(size)
        ]
        for task_id in layer:
            for upstream in rng.sample(previous, k=min(len(previous), rng.randint(1, 3))):
                server.add_edge(upstream, task_id)
        previous, created = layer, created + size
    run = server.add_workflow_run(workflow, status=WorkflowRunStatus.BOUND.value)
    return workflow.workflow_id, run.workflow_run_id


class DemoDriver:
    """A small workflow driver: everything it knows comes from gateway calls."""

    def __init__(self, gateway: ServerGateway) -> None:
        self.gateway = gateway
        self.tasks: dict[int, TaskMetadata] = {}
        self.upstream: dict[int, set[int]] = defaultdict(set)
        self.tally = StatusTally()
        self.calls: dict[str, int] = defaultdict(int)

    def start(self) -> None:
        """Move the run to running and load the workflow, its tasks and its DAG."""
        gateway = self.gateway
        self.calls["get_server_time"] += 1
        gateway.get_server_time_sync()
        for status in (
            WorkflowRunStatus.INSTANTIATED,
            WorkflowRunStatus.LAUNCHED,
            WorkflowRunStatus.RUNNING,
        ):
            self.calls["update_status"] += 1
            answer = gateway.update_status_sync(status)
            if answer.status != status:
                raise RuntimeError(f"the run refused {status.value}: it is {answer.status}")
        self.calls["get_workflow_metadata"] += 1
        metadata = gateway.get_workflow_metadata_sync()
        self.calls["get_workflow_concurrency"] += 1
        gateway.get_workflow_concurrency_sync()
        node_of: dict[int, int] = {}
        downstream_nodes: dict[int, list[int]] = {}
        for chunk in gateway.iter_tasks_sync(chunk_size=100):
            self.calls["get_tasks"] += 1
            self.tasks.update(chunk)
            self.calls["get_downstream_tasks"] += 1
            edges = gateway.get_downstream_tasks_sync(chunk, metadata.dag_id)
            for task_id, (node_id, downstream) in edges.downstream_tasks.items():
                node_of[task_id] = node_id
                downstream_nodes[task_id] = downstream
        for array_id in {task.array_id for task in self.tasks.values()}:
            self.calls["get_array_concurrency"] += 1
            gateway.get_array_concurrency_sync(array_id)
        task_of_node = {node: task for task, node in node_of.items()}
        for task_id, nodes in downstream_nodes.items():
            for node in nodes:
                if node in task_of_node:
                    self.upstream[task_of_node[node]].add(task_id)
        self.calls["get_task_status_updates"] += 1
        self.tally.apply(gateway.get_task_status_updates_sync())

    def ready(self) -> list[int]:
        """Registered tasks whose upstream tasks are all done, lowest id first."""
        status_of = self.tally.status_of
        return sorted(
            task_id
            for task_id in self.tasks
            if status_of.get(task_id) == TaskStatus.REGISTERING.value
            and all(status_of.get(up) == TaskStatus.DONE.value for up in self.upstream[task_id])
        )

    def step(self) -> bool:
        """Queue what is ready, heartbeat, sync statuses; False once nothing can move."""
        gateway = self.gateway
        by_array: dict[int, list[int]] = defaultdict(list)
        for task_id in self.ready():
            by_array[self.tasks[task_id].array_id].append(task_id)
        for array_id, task_ids in by_array.items():
            for start in range(0, len(task_ids), QUEUE_BATCH_SIZE):
                self.calls["queue_task_batch"] += 1
                queued = gateway.queue_task_batch_sync(
                    array_id, task_ids[start : start + QUEUE_BATCH_SIZE], 1, 1
                )
                for status, ids in queued.tasks_by_status.items():
                    for task_id in ids:
                        self.tally.status_of[task_id] = str(status)
        self.calls["log_heartbeat"] += 1
        heartbeat = gateway.log_heartbeat_sync(WorkflowRunStatus.RUNNING, 30.0)
        if heartbeat.status != WorkflowRunStatus.RUNNING:
            return False  # asked to resume elsewhere: a driver stops here
        self.calls["get_task_status_updates"] += 1
        self.tally.apply(gateway.get_task_status_updates_sync(since=self.tally.last_sync))
        if self.calls["log_heartbeat"] % 10 == 0:
            self.calls["request_triage"] += 1
            gateway.request_triage_sync()
        active = any(status in ACTIVE for status in self.tally.status_of.values())
        return active or bool(self.ready())

    def finish(self) -> str:
        """End the run: terminate leftovers and set its final status; return it."""
        self.calls["terminate_task_instances"] += 1
        self.gateway.terminate_task_instances_sync()
        counts = self.tally.counts()
        final = (
            WorkflowRunStatus.DONE
            if counts.get(TaskStatus.DONE.value, 0) == len(self.tasks)
            else WorkflowRunStatus.ERROR
        )
        self.calls["update_status"] += 1
        return str(self.gateway.update_status_sync(final).status)


def run_demo(
    console: Console,
    *,
    tasks: int = 300,
    seed: int = 7,
    delay: float = 0.05,
    quiet: bool = False,
) -> dict[str, Any]:
    """Seed the fake, drive one workflow run to its end with a live view; return a report.

    ``quiet`` prints no progress lines when ``console`` is not a terminal.
    """
    if tasks < 1:
        raise ValueError("the demo needs at least one task")
    rng = random.Random(seed)  # noqa: S311 - a repeatable demo, not security
    server = FakeJobmonServer(failure_rate=0.02, seed=seed, advance_on_heartbeat=True)
    workflow_id, run_id = seed_demo_workflow(server, tasks, rng)
    requester = Requester(
        server.service_url,
        route_prefix=server.route_prefix,
        transport=server.transport(),
    )
    started = time.perf_counter()
    with ServerGateway(requester, workflow_id, run_id) as gateway:
        driver = DemoDriver(gateway)
        view = ProgressView(f"demo: workflow {workflow_id}, run {run_id}")
        with follow(console, view, quiet=quiet, transient=quiet) as progress:
            driver.start()
            progress.show(driver.tally)
            while driver.step():
                progress.show(driver.tally)
                time.sleep(delay)
            progress.show(driver.tally)
        final_status = driver.finish()
    counts = driver.tally.counts()
    not_run = len(driver.tasks) - counts.get("D", 0) - counts.get("F", 0)
    elapsed = time.perf_counter() - started
    requests = sum(driver.calls.values())
    return {
        "workflow_id": workflow_id,
        "workflow_run_id": run_id,
        "tasks": len(driver.tasks),
        "counts": counts,
        "final_status": final_status,
        "calls": dict(driver.calls),
        "requests": requests,
        "seconds": round(elapsed, 2),
        "summary": (
            f"workflow run {run_id} ended {final_status}: {counts.get('D', 0)} done,"
            f" {counts.get('F', 0)} failed, {not_run} not run, of {len(driver.tasks)} tasks;"
            f" {requests} calls in {elapsed:.1f}s"
        ),
    }
