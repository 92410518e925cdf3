"""Seed workflows into a live Jobmon 3.6 server with Jobmon's own client.

Usage (with the venv made by ``../shared/jobmon-3.6/install.sh``)::

    python seed_36.py SERVICE_URL COUNT

``SERVICE_URL`` is ``http://127.0.0.1:PORT`` (the client adds ``/api/v3``).
It binds ``COUNT`` workflows of the same five tasks (``1 -> 2``, ``1 -> 3``,
``2 -> 4``; task 5 stands alone) and for each a workflow run moved to
running, and prints one JSON object: ``{"workflows": [...]}`` with, per
workflow, the ids a test needs (workflow, run, DAG, array, tasks in that
order, task resources, cluster). This runs in the server's venv, not the
project's: its imports go through ``importlib`` so that the project's type
checker, which has none of these packages, sees plain modules.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any


def move(run: Any, status: str) -> None:
    """Move the run to ``status`` and make sure it got there.

    The 3.6 server commits an update_status after it has answered (the
    session is a FastAPI dependency that ends after the response is sent), so
    the next move can read the run's previous status, be refused as an
    illegal transition, and leave the run behind; the same holds for the
    run's creation. Until the answer names the new status, the move is sent
    again (each try is a full round trip, and the commit lands within
    milliseconds).
    """
    route = f"/workflow_run/{run.workflow_run_id}/update_status"
    answered: object = None
    for _ in range(100):
        try:
            _, answer = run.requester.send_request(
                app_route=route, message={"status": status}, request_type="put"
            )
        except RuntimeError as exc:
            # The first move can come before the run's own row is committed:
            # the server answers 500 NoResultFound (Jobmon's client raises a
            # RuntimeError for it, its retries being off here).
            answered = exc
            continue
        answered = answer.get("status")
        if answered == status:
            return
    raise RuntimeError(f"run {run.workflow_run_id} did not move to {status!r}: {answered!r}")


def seed(count: int) -> list[dict[str, Any]]:
    """Bind ``count`` workflows and their runs; answer their ids."""
    tool_module = importlib.import_module("jobmon.client.tool")
    workflow_run_module = importlib.import_module("jobmon.client.workflow_run")
    constants = importlib.import_module("jobmon.core.constants")
    running = constants.WorkflowRunStatus

    tool = tool_module.Tool(name="jobmon-gateway-live")
    # The dummy cluster never runs anything: the tests only need rows.
    tool.set_default_compute_resources_from_dict(
        cluster_name="dummy", compute_resources={"queue": "null.q"}
    )
    template = tool.get_task_template(
        template_name="live_step",
        command_template="echo {step}",
        node_args=["step"],
        task_args=[],
        op_args=[],
    )
    seeded = []
    for index in range(count):
        first = template.create_task(step=1)
        second = template.create_task(step=2, upstream_tasks=[first])
        third = template.create_task(step=3, upstream_tasks=[first])
        fourth = template.create_task(step=4, upstream_tasks=[second])
        alone = template.create_task(step=5)
        tasks = [first, second, third, fourth, alone]
        workflow = tool.create_workflow(
            name=f"live-{index}", workflow_args=f"jobmon-gateway-live-{os.getpid()}-{index}"
        )
        workflow.add_tasks(tasks)
        workflow.bind()
        workflow._bind_tasks()
        run = workflow_run_module.WorkflowRunFactory(workflow.workflow_id).create_workflow_run()
        # The path the swarm takes to a running run: heartbeats and queueing expect it.
        for status in (running.BOUND, running.INSTANTIATED, running.LAUNCHED, running.RUNNING):
            move(run, status)
        array = workflow.arrays["live_step"]
        seeded.append(
            {
                "workflow_id": workflow.workflow_id,
                "workflow_run_id": run.workflow_run_id,
                "dag_id": workflow.dag_id,
                "array_id": array.array_id,
                "task_ids": [task.task_id for task in tasks],
                "node_ids": [task.node.node_id for task in tasks],
                "task_resources_id": first.original_task_resources.id,
                "cluster_id": workflow.get_cluster_by_name("dummy").id,
                "max_concurrently_running": workflow.max_concurrently_running,
            }
        )
    return seeded


def main() -> None:
    service_url, count = sys.argv[1], int(sys.argv[2])
    os.environ["JOBMON__HTTP__SERVICE_URL"] = service_url
    os.environ["JOBMON__HTTP__ROUTE_PREFIX"] = "/api/v3"
    # A failure should surface at once, not after Jobmon's five minutes of retries.
    os.environ["JOBMON__HTTP__RETRIES_TIMEOUT"] = "0"
    os.environ["JOBMON__HTTP__REQUEST_TIMEOUT"] = "10"
    print(json.dumps({"workflows": seed(count)}))


if __name__ == "__main__":
    main()
