"""Seed workflows into a live jobmon-server 3.2.2 through its HTTP routes.

No 3.2-era Jobmon client is on PyPI, so this makes the calls that client
made, in its order (read from the server's route handlers): tool, tool
version, task template and its version, nodes, DAG and edges, workflow,
array, task resources, tasks, then a workflow run moved to running. The
workflows have the same five tasks as ``seed_36.py`` (``1 -> 2``,
``1 -> 3``, ``2 -> 4``; task 5 alone).
"""

from __future__ import annotations

from typing import Any

import httpx

# The arrows between the five tasks, by position (0-based).
EDGES = ((0, 1), (0, 2), (1, 3))
STEPS = 5


def seed(base_url: str, count: int, *, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Bind ``count`` workflows and their running runs on the server at ``base_url``."""
    # 3.2 answers a request without Content-Type (GET included) with a 500.
    with httpx.Client(
        base_url=base_url, timeout=timeout, headers={"Content-Type": "application/json"}
    ) as client:

        def call(method: str, route: str, body: dict[str, Any] | None = None) -> Any:
            answer = client.request(method, route, json=body)
            answer.raise_for_status()
            return answer.json()

        cluster = call("GET", "/cluster/dummy")["cluster"]
        cluster_id = cluster[0]
        queue_id = call("GET", f"/cluster/{cluster_id}/queue/null.q")["queue"][0]
        tool_id = call("POST", "/tool", {"name": "jobmon-gateway-live"})["tool"][0]
        tool_version_id = call("POST", "/tool_version", {"tool_id": tool_id})["tool_version"][0]
        template_id = call(
            "POST",
            "/task_template",
            {"tool_version_id": tool_version_id, "task_template_name": "live_step"},
        )["task_template_id"]
        version = call(
            "POST",
            f"/task_template/{template_id}/add_version",
            {
                "node_args": ["step"],
                "task_args": [],
                "op_args": [],
                "command_template": "echo {step}",
                "arg_mapping_hash": "jobmon-gateway-live",
            },
        )["task_template_version"]
        version_id, arg_ids = version[0], version[5]
        step_arg_id = arg_ids["step"]
        nodes = call(
            "POST",
            "/nodes",
            {
                "nodes": [
                    {
                        "task_template_version_id": version_id,
                        "node_args_hash": f"live-step-{step}",
                        "node_args": {str(step_arg_id): str(step)},
                    }
                    for step in range(1, STEPS + 1)
                ]
            },
        )["nodes"]
        node_ids = [nodes[f"{version_id}:live-step-{step}"] for step in range(1, STEPS + 1)]
        dag_id = call("POST", "/dag", {"dag_hash": "jobmon-gateway-live-dag"})["dag_id"]
        # Every node needs an edge row (get_downstream_tasks joins on it);
        # empty lists are stored as NULL.
        call(
            "POST",
            f"/dag/{dag_id}/edges",
            {
                "edges_to_add": [
                    {
                        "node_id": node_ids[position],
                        "upstream_node_ids": [node_ids[a] for a, b in EDGES if b == position],
                        "downstream_node_ids": [node_ids[b] for a, b in EDGES if a == position],
                    }
                    for position in range(STEPS)
                ],
                "mark_created": True,
            },
        )
        seeded = []
        for index in range(count):
            seeded.append(
                _seed_workflow(call, index, tool_version_id, version_id, dag_id, node_ids, queue_id)
                | {"dag_id": dag_id, "node_ids": node_ids, "cluster_id": cluster_id}
            )
        return seeded


def _seed_workflow(
    call: Any,
    index: int,
    tool_version_id: int,
    version_id: int,
    dag_id: int,
    node_ids: list[int],
    queue_id: int,
) -> dict[str, Any]:
    max_concurrently_running = 10_000
    workflow_id = call(
        "POST",
        "/workflow",
        {
            "tool_version_id": tool_version_id,
            "dag_id": dag_id,
            "workflow_args_hash": f"live-args-{index}",
            "task_hash": f"live-tasks-{index}",
            "description": "",
            "name": f"live-{index}",
            "workflow_args": f"live-{index}",
            "max_concurrently_running": max_concurrently_running,
            "workflow_attributes": {},
        },
    )["workflow_id"]
    array_id = call(
        "POST",
        "/array",
        {
            "workflow_id": workflow_id,
            "task_template_version_id": version_id,
            "max_concurrently_running": max_concurrently_running,
            "name": "live_step",
        },
    )["array_id"]
    task_resources_id = call(
        "POST",
        "/task/bind_resources",
        {
            "queue_id": queue_id,
            "task_resources_type_id": "O",
            "requested_resources": {"runtime": 60, "memory": 1},
        },
    )
    bound = call(
        "PUT",
        "/task/bind_tasks_no_args",
        {
            "workflow_id": workflow_id,
            "mark_created": True,
            "tasks": {
                f"hash-{position}": [
                    node_id,
                    f"args-{position}",
                    array_id,
                    task_resources_id,
                    f"live_step_{position + 1}",
                    f"echo {position + 1}",
                    3,
                    True,
                    {"memory": 0.5, "runtime": 0.5},
                    [],
                ]
                for position, node_id in enumerate(node_ids)
            },
        },
    )["tasks"]
    task_ids = [bound[f"hash-{position}"][0] for position in range(len(node_ids))]
    run = call(
        "POST",
        "/workflow_run",
        {
            "workflow_id": workflow_id,
            "user": "jobmon-gateway-live",
            "jobmon_version": "3.2.2",
            "next_report_increment": 300.0,
        },
    )
    workflow_run_id = run["workflow_run_id"]
    if workflow_run_id is None:
        raise RuntimeError(f"the server made no workflow run: {run.get('err_msg')}")
    # The path the 3.2 swarm took to a running run.
    for status in ("B", "I", "O", "R"):
        call("PUT", f"/workflow_run/{workflow_run_id}/update_status", {"status": status})
    return {
        "workflow_id": workflow_id,
        "workflow_run_id": workflow_run_id,
        "array_id": array_id,
        "task_ids": task_ids,
        "task_resources_id": task_resources_id,
        "max_concurrently_running": max_concurrently_running,
    }
