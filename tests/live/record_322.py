"""Record wire pairs from a live jobmon-server 3.2.2 into ``tests/wire/jobmon-server-3.2.2/``.

A tool, not a test (the suite never runs it). From the repo root, with the
project's venv::

    python tests/live/record_322.py [OUT_DIR]

It builds (or reuses) ``.live/venv-3.2.2``, starts the server on 127.0.0.1
with a fresh SQLite file, seeds workflows as the live tests do, sends each
recorded request with plain httpx (so the bytes are the server's, not the
SDK's reading of them) and writes one JSON file per case in the format of
``../shared/wire/``: server, method, route, query, request_json, status,
content_type, response_text. Routes are as the gateway names them (3.2
mounts them at ``/``). It overwrites files of the same name in OUT_DIR, and
never writes under ``../shared``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx

# Run as a script, this folder is on sys.path but its package is not.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from live.servers import REPO, SeededWorkflow, bring_up

SERVER = "3.2.2"
# The version the SDK announces; 3.2 answers every version alike.
CLIENT_VERSION = "3.6.0"


def cases(first: SeededWorkflow, second: SeededWorkflow) -> dict[str, dict[str, Any]]:
    """Each case's request: method, route, query and JSON body (None for GET).

    ``first`` is left as seeded except where a case changes it (queueing);
    ``second`` is the one moved to DONE for the status cases.
    """
    wf, wfr = first.workflow_id, first.workflow_run_id
    queued = list(first.task_ids[3:])
    return {
        "log_heartbeat": {
            "method": "POST",
            "route": f"/workflow_run/{wfr}/log_heartbeat",
            "request_json": {"status": "R", "next_report_increment": 30.0},
        },
        "update_status": {
            "method": "PUT",
            "route": f"/workflow_run/{second.workflow_run_id}/update_status",
            "request_json": {"status": "D"},
        },
        "update_status_invalid_transition": {
            "method": "PUT",
            "route": f"/workflow_run/{second.workflow_run_id}/update_status",
            "request_json": {"status": "R"},
        },
        "terminate_task_instances": {
            "method": "PUT",
            "route": f"/workflow_run/{wfr}/terminate_task_instances",
            "request_json": {},
        },
        "fetch_workflow_metadata": {
            "method": "GET",
            "route": f"/workflow/{wf}/fetch_workflow_metadata",
        },
        "get_max_concurrently_running": {
            "method": "GET",
            "route": f"/workflow/{wf}/get_max_concurrently_running",
        },
        "get_max_concurrently_running_missing": {
            "method": "GET",
            "route": "/workflow/999/get_max_concurrently_running",
        },
        "get_tasks_first_chunk": {
            "method": "GET",
            "route": f"/workflow/get_tasks/{wf}",
            "query": {"max_task_id": 0, "chunk_size": 2},
        },
        "get_tasks_next_chunk": {
            "method": "GET",
            "route": f"/workflow/get_tasks/{wf}",
            "query": {"max_task_id": first.task_ids[1], "chunk_size": 2},
        },
        "get_downstream_tasks_new_client": {
            "method": "POST",
            "route": "/task/get_downstream_tasks",
            "query": {"client_jobmon_version": CLIENT_VERSION},
            "request_json": {"task_ids": list(first.task_ids), "dag_id": first.dag_id},
        },
        "get_downstream_tasks_no_version": {
            "method": "POST",
            "route": "/task/get_downstream_tasks",
            "request_json": {"task_ids": list(first.task_ids), "dag_id": first.dag_id},
        },
        "queue_task_batch": {
            "method": "POST",
            "route": f"/array/{first.array_id}/queue_task_batch",
            "request_json": {
                "task_ids": queued,
                "task_resources_id": first.task_resources_id,
                "workflow_run_id": wfr,
                "cluster_id": first.cluster_id,
            },
        },
        "queue_task_batch_empty": {
            "method": "POST",
            "route": f"/array/{first.array_id}/queue_task_batch",
            "request_json": {
                "task_ids": [],
                "task_resources_id": first.task_resources_id,
                "workflow_run_id": wfr,
                "cluster_id": first.cluster_id,
            },
        },
        "task_status_updates_since": {
            "method": "POST",
            "route": f"/workflow/{wf}/task_status_updates",
            "request_json": {"last_sync": "2000-01-01 00:00:00"},
        },
        # Where 3.2 does read a non-int path id, it fails with a 500 (ValueError).
        "error_bad_path_id": {
            "method": "POST",
            "route": "/array/abc/queue_task_batch",
            "request_json": {
                "task_ids": [],
                "task_resources_id": first.task_resources_id,
                "workflow_run_id": wfr,
                "cluster_id": first.cluster_id,
            },
        },
    }


def record(service_url: str, case: dict[str, Any]) -> dict[str, Any]:
    """Send one case as it is and answer its recording."""
    query = case.get("query", {})
    body = case.get("request_json")
    # 3.2 answers a request without Content-Type (GET included) with a 500.
    with httpx.Client(
        base_url=service_url,
        timeout=10.0,
        trust_env=False,
        headers={"Content-Type": "application/json"},
    ) as client:
        answer = client.request(
            case["method"],
            case["route"],
            params={name: str(value) for name, value in query.items()},
            content=None if body is None else json.dumps(body).encode(),
        )
    return {
        "server": SERVER,
        "method": case["method"],
        "route": case["route"],
        "query": query,
        "request_json": body,
        "status": answer.status_code,
        "content_type": answer.headers.get("content-type"),
        "response_text": answer.text,
    }


def main() -> None:
    out = (
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else REPO / "tests" / "wire" / f"jobmon-server-{SERVER}"
    )
    running, server = bring_up(SERVER)
    if running is None or isinstance(server, str):
        raise SystemExit(f"no live {SERVER} server: {server}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        # The order matters: the status moves and queueing change what later cases see.
        for name, case in cases(server.shared, server.pool[0]).items():
            recording = record(server.service_url, case)
            path = out / f"{name}.json"
            path.write_text(json.dumps(recording, indent=2) + "\n", encoding="utf-8")
            print(f"{path}: {recording['status']} {recording['response_text'][:80]!r}")
    finally:
        running.stop()


if __name__ == "__main__":
    main()
