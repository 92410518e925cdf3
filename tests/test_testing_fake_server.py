"""Tests of the fake Jobmon server, spoken to with plain httpx (never the SDK client).

The contract test replays every recorded request/response pair of a real
Jobmon 3.6 server against a fake seeded with the recorded scenario and wants
the same status, content type and bytes back.
"""

from __future__ import annotations

import ast
import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobmon_gateway.testing import (
    IGNORED_WORKFLOW_RUN_TRANSITIONS,
    NO_SERVER_TIME,
    WORKFLOW_RUN_STATUSES,
    WORKFLOW_RUN_TRANSITIONS,
    FakeClock,
    FakeJobmonServer,
    sends_downstream_as_list,
)

# `jobmon_server` comes from the pytest11 entry point that installing the
# package registers, as it does for users.

WIRE_DIR = Path(__file__).parents[2] / "shared" / "wire" / "jobmon-server-3.6"
RECORDINGS = sorted(WIRE_DIR.glob("*.json")) if WIRE_DIR.is_dir() else []
TESTING_PACKAGE = Path(__file__).parents[1] / "src" / "jobmon_gateway" / "testing"
RECORDED_NOW = "2026-11-28 17:56:39"
HEARTBEAT = {"status": "R", "next_report_increment": 30.0}

# Task -> DAG node, and task-level edges, chosen so that tasks 1, 2, 6 and 11
# have exactly the nodes and downstream nodes of the get_downstream_tasks
# recordings: node 4 -> [2, 9], node 11 -> [3, 2], node 2 -> [6], node 6 -> none.
RECORDED_NODES = {1: 4, 2: 11, 3: 3, 4: 5, 5: 7, 6: 2, 7: 8, 8: 9, 9: 10, 10: 1, 11: 6}
RECORDED_EDGES = [(1, 6), (1, 8), (2, 3), (2, 6), (6, 11)]


def seed_recorded_scenario(server: FakeJobmonServer, run_status: str = "I") -> None:
    """Workflow 1 (dag 1, limit 37), array 1, tasks 1-5 queued and 6-11 registering, run 1."""
    server.add_workflow(1, dag_id=1, max_concurrently_running=37)
    server.add_array(1, array_id=1)
    for task_id, node_id in RECORDED_NODES.items():
        status = "Q" if task_id <= 5 else "G"
        server.add_task(1, task_id=task_id, node_id=node_id, status=status)
    for upstream, downstream in RECORDED_EDGES:
        server.add_edge(upstream, downstream)
    server.add_workflow_run(1, status=run_status, workflow_run_id=1)


def recorded_server(case: str, recorded: dict[str, Any]) -> FakeJobmonServer:
    """A fake in the state the real server was in when ``case`` was recorded."""
    answer = json.loads(recorded["response_text"])
    recorded_time = answer.get("time") if isinstance(answer, dict) else None
    server = FakeJobmonServer(clock=FakeClock(recorded_time or RECORDED_NOW))
    # update_status moved the run from bound to instantiated; every later pair
    # saw it instantiated.
    seed_recorded_scenario(server, run_status="B" if case == "update_status" else "I")
    if case == "terminate_task_instances":
        # Two task instances were alive when terminate was recorded.
        server.set_task_status(4, "R")
        server.set_task_status(5, "R")
    return server


def client_for(server: FakeJobmonServer) -> httpx.Client:
    """A plain httpx client on the fake, sending JSON like the reference client."""
    return httpx.Client(
        transport=server.transport(),
        base_url=server.base_url,
        headers={"Content-Type": "application/json"},
    )


@pytest.fixture
def server() -> FakeJobmonServer:
    """The recorded scenario, clock frozen at the recorded time."""
    fake = FakeJobmonServer(clock=FakeClock(RECORDED_NOW))
    seed_recorded_scenario(fake)
    return fake


@pytest.fixture
def client(server: FakeJobmonServer) -> Iterator[httpx.Client]:
    """A sync client on ``server``."""
    with client_for(server) as opened:
        yield opened


# -- contract -------------------------------------------------------------------


@pytest.mark.skipif(not RECORDINGS, reason=f"no recordings at {WIRE_DIR}")
@pytest.mark.parametrize("recording", RECORDINGS, ids=[path.stem for path in RECORDINGS])
def test_replays_recorded_pair_byte_for_byte(recording: Path) -> None:
    recorded = json.loads(recording.read_text())
    fake = recorded_server(recording.stem, recorded)
    with client_for(fake) as http:
        answer = http.request(
            recorded["method"],
            recorded["route"],
            params=recorded["query"],
            json=recorded["request_json"],
        )
    assert answer.status_code == recorded["status"]
    assert answer.headers["content-type"] == recorded["content_type"]
    assert answer.json() == json.loads(recorded["response_text"])
    assert answer.text == recorded["response_text"]


# -- workflow-run statuses --------------------------------------------------------


def test_update_status_follows_the_transition_table() -> None:
    for current in WORKFLOW_RUN_STATUSES:
        for wanted in WORKFLOW_RUN_STATUSES:
            fake = FakeJobmonServer()
            run = fake.add_workflow_run(status=current)
            with client_for(fake) as http:
                answer = http.put(
                    f"/workflow_run/{run.workflow_run_id}/update_status", json={"status": wanted}
                )
            legal = wanted in WORKFLOW_RUN_TRANSITIONS.get(current, frozenset())
            assert answer.status_code == 200
            assert answer.json() == {"status": wanted if legal else current}, (current, wanted)
            assert run.status == (wanted if legal else current)


def test_transition_table_matches_jobmon_run_lifecycle() -> None:
    assert WORKFLOW_RUN_TRANSITIONS["B"] == {"I", "E", "C", "H"}
    assert WORKFLOW_RUN_TRANSITIONS["I"] == {"O", "E"}
    assert WORKFLOW_RUN_TRANSITIONS["O"] == {"R", "E"}
    assert WORKFLOW_RUN_TRANSITIONS["R"] == {"D", "S", "E", "C", "H"}
    assert WORKFLOW_RUN_TRANSITIONS["C"] == WORKFLOW_RUN_TRANSITIONS["H"] == {"T"}
    for final in "ADSET":
        assert final not in WORKFLOW_RUN_TRANSITIONS
    assert ("R", "R") in IGNORED_WORKFLOW_RUN_TRANSITIONS


def test_heartbeat_records_accepted_beats_only() -> None:
    clock = FakeClock("2026-01-01 00:00:00")
    fake = FakeJobmonServer(clock=clock)
    run = fake.add_workflow_run(status="O")
    with client_for(fake) as http:
        route = f"/workflow_run/{run.workflow_run_id}/log_heartbeat"
        assert http.post(route, json=HEARTBEAT).json() == {"status": "R"}
        assert str(run.heartbeat_date) == "2026-01-01 00:00:30"
        clock.advance(10)
        assert http.post(route, json=HEARTBEAT).json() == {"status": "R"}
        assert str(run.heartbeat_date) == "2026-01-01 00:00:40"
        clock.advance(10)
        refused = http.post(route, json={"status": "B", "next_report_increment": 30.0})
        assert refused.json() == {"status": "R"}
        assert str(run.heartbeat_date) == "2026-01-01 00:00:40"
    assert run.heartbeats == 3


def test_resume_request_reaches_the_run_through_its_heartbeat(
    jobmon_server: FakeJobmonServer,
) -> None:
    cold = jobmon_server.add_workflow_run(status="R")
    hot_workflow = jobmon_server.add_workflow()
    hot = jobmon_server.add_workflow_run(hot_workflow, status="R")
    jobmon_server.request_resume(cold.workflow_id)
    jobmon_server.request_resume(hot_workflow, reset_running_jobs=False)
    with client_for(jobmon_server) as http:
        cold_answer = http.post(
            f"/workflow_run/{cold.workflow_run_id}/log_heartbeat", json=HEARTBEAT
        )
        hot_answer = http.post(f"/workflow_run/{hot.workflow_run_id}/log_heartbeat", json=HEARTBEAT)
        terminated = http.put(
            f"/workflow_run/{cold.workflow_run_id}/update_status", json={"status": "T"}
        )
    assert cold_answer.json() == {"status": "C"}
    assert hot_answer.json() == {"status": "H"}
    assert terminated.json() == {"status": "T"}


def test_terminate_kills_launched_and_running_but_hot_resume_spares_running() -> None:
    fake = FakeJobmonServer()
    tasks = fake.add_tasks(4, status="R")
    fake.set_task_status(tasks[0], "O")
    fake.set_task_status(tasks[3], "Q")
    cold = fake.add_workflow_run(status="C")
    with client_for(fake) as http:
        answer = http.put(f"/workflow_run/{cold.workflow_run_id}/terminate_task_instances")
    assert answer.json() == {"workflow_run_id": cold.workflow_run_id, "num_terminated": 3}
    assert [t.status for t in tasks] == ["F", "F", "F", "Q"]

    fake = FakeJobmonServer()
    tasks = fake.add_tasks(2, status="R")
    fake.set_task_status(tasks[0], "O")
    hot = fake.add_workflow_run(status="H")
    with client_for(fake) as http:
        answer = http.put(f"/workflow_run/{hot.workflow_run_id}/terminate_task_instances")
    assert answer.json()["num_terminated"] == 1
    assert [t.status for t in tasks] == ["F", "R"]


def test_triage_answers_empty_object(client: httpx.Client) -> None:
    answer = client.post("/workflow_run/1/set_status_for_triaging", json={})
    assert (answer.status_code, answer.text) == (200, "{}")


# -- queueing -------------------------------------------------------------------


def test_queue_task_batch_is_safe_to_repeat() -> None:
    fake = FakeJobmonServer()
    tasks = fake.add_tasks(3, status="G")
    fake.set_task_status(tasks[2], "A")
    run = fake.add_workflow_run()
    message = {
        "task_ids": [3, 1, 2, 999],
        "task_resources_id": 1,
        "workflow_run_id": run.workflow_run_id,
        "cluster_id": 2,
    }
    with client_for(fake) as http:
        first = http.post("/array/1/queue_task_batch", json=message)
        again = http.post("/array/1/queue_task_batch", json=message)
    assert first.text == again.text == '{"tasks_by_status":{"Q":[1,2,3]}}'
    assert [t.num_attempts for t in tasks] == [1, 1, 1]
    assert {t.workflow_run_id for t in tasks} == {run.workflow_run_id}


def test_queue_task_batch_reports_tasks_it_cannot_queue_as_they_are(
    client: httpx.Client, server: FakeJobmonServer
) -> None:
    server.set_task_status(6, "R")
    message = {"task_ids": [6, 7, 1], "task_resources_id": 1, "workflow_run_id": 1}
    answer = client.post("/array/1/queue_task_batch", json=message)
    assert answer.json() == {"tasks_by_status": {"Q": [1, 7], "R": [6]}}


# -- task status updates ----------------------------------------------------------


def test_task_status_updates_since_last_sync() -> None:
    clock = FakeClock("2026-11-28 16:59:00")
    fake = FakeJobmonServer(clock=clock)
    fake.add_tasks(4, status="G")
    clock.set("2026-11-28 17:00:00")
    with client_for(fake) as http:
        full = http.post("/workflow/1/task_status_updates", json={}).json()
        assert full == {"tasks_by_status": {"G": [1, 2, 3, 4]}, "time": "2026-11-28 17:00:00"}
        clock.advance(5)
        fake.set_task_status(2, "Q")
        fake.set_task_status(4, "D")
        clock.advance(5)
        since = http.post("/workflow/1/task_status_updates", json={"last_sync": full["time"]})
        assert since.json() == {
            "tasks_by_status": {"D": [4], "Q": [2]},
            "time": "2026-11-28 17:00:10",
        }
        # A status set at the very second of last_sync still counts (>=).
        at_edge = http.post(
            "/workflow/1/task_status_updates", json={"last_sync": "2026-11-28 17:00:05"}
        )
        assert at_edge.json()["tasks_by_status"] == {"D": [4], "Q": [2]}
        later = http.post(
            "/workflow/1/task_status_updates", json={"last_sync": "2026-11-28 17:00:06"}
        )
        assert later.json()["tasks_by_status"] == {}
        unknown = http.post("/workflow/99/task_status_updates", json={})
        assert unknown.json() == {"tasks_by_status": {}, "time": "2026-11-28 17:00:10"}


def test_server_without_a_clock_sends_the_zero_time(
    client: httpx.Client, server: FakeJobmonServer
) -> None:
    server.time_unavailable = True
    assert client.get("/time").json() == {"time": NO_SERVER_TIME}
    assert client.post("/workflow/1/task_status_updates", json={}).json()["time"] == NO_SERVER_TIME


# -- get_tasks paging -------------------------------------------------------------


def test_get_tasks_pages_by_integer_id_and_skips_done_tasks() -> None:
    fake = FakeJobmonServer()
    tasks = fake.add_tasks(12)
    for done in (2, 9, 11):
        fake.set_task_status(done, "D")
    seen: list[int] = []
    max_task_id = 0
    with client_for(fake) as http:
        while True:
            chunk = http.get(
                "/workflow/get_tasks/1", params={"max_task_id": max_task_id, "chunk_size": 4}
            ).json()["tasks"]
            if not chunk:
                break
            assert len(chunk) <= 4
            ids = [int(key) for key in chunk]
            assert ids == sorted(ids)
            seen.extend(ids)
            max_task_id = max(ids)
    assert seen == [t.task_id for t in tasks if t.status != "D"]


def test_get_tasks_rows_carry_python_literals() -> None:
    fake = FakeJobmonServer()
    fake.add_array(max_concurrently_running=7)
    fake.add_task(
        resource_scales={"memory": 0.25},
        fallback_queues=["long.q", "all.q"],
        requested_resources={"cores": 2, "queue": "all.q"},
        cluster_name="slurm",
        queue_name="all.q",
        max_attempts=5,
    )
    fake.add_task(resource_scales=None, cluster_name=None, queue_name=None)
    with client_for(fake) as http:
        rows = http.get("/workflow/get_tasks/1", params={"max_task_id": 0, "chunk_size": 10}).json()
    assert rows["tasks"] == {
        "1": [
            1,
            "G",
            5,
            "{'memory': 0.25}",
            "['long.q', 'all.q']",
            "{'cores': 2, 'queue': 'all.q'}",
            "slurm",
            "all.q",
            7,
        ],
        "2": [1, "G", 3, None, "[]", "{}", None, None, 7],
    }


def test_get_tasks_requires_integer_query_parameters(client: httpx.Client) -> None:
    answer = client.get("/workflow/get_tasks/1", params={"chunk_size": "many"})
    assert answer.status_code == 422
    assert answer.json() == {
        "detail": [
            {
                "type": "missing",
                "loc": ["query", "max_task_id"],
                "msg": "Field required",
                "input": None,
            },
            {
                "type": "int_parsing",
                "loc": ["query", "chunk_size"],
                "msg": "Input should be a valid integer, unable to parse string as an integer",
                "input": "many",
            },
        ]
    }


# -- downstream tasks -------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "as_list"),
    [
        ("3.6.0", True),
        ("3.4.24", True),
        ("3.5", True),
        ("4", True),
        ("3.4.23.post1", True),
        ("3.4.23.1", True),
        ("3.2.0.dev7", True),
        ("3.0.0-stage", True),
        ("3.4.23", False),
        ("3.4.23rc1", False),
        ("3.4.0", False),
        ("2.9", False),
        ("unknown", False),
        ("", False),
        (None, False),
    ],
)
def test_downstream_form_depends_on_client_version(
    client: httpx.Client, version: str | None, as_list: bool
) -> None:
    assert sends_downstream_as_list(version) is as_list
    params = {} if version is None else {"client_jobmon_version": version}
    answer = client.post(
        "/task/get_downstream_tasks", params=params, json={"task_ids": [2, 11], "dag_id": 1}
    )
    expected = [3, 2] if as_list else "[3, 2]"
    assert answer.json() == {"downstream_tasks": {"2": [11, expected], "11": [6, None]}}


def test_downstream_tasks_of_another_dag_or_unknown_tasks_are_absent(
    client: httpx.Client, server: FakeJobmonServer
) -> None:
    other = server.add_workflow(dag_id=2)
    task = server.add_task(other)
    body = {"task_ids": [1, task.task_id, 999], "dag_id": 2}
    answer = client.post("/task/get_downstream_tasks", json=body)
    assert answer.json() == {"downstream_tasks": {str(task.task_id): [task.node_id, None]}}


def test_add_dag_links_tasks_through_their_nodes(jobmon_server: FakeJobmonServer) -> None:
    tasks = jobmon_server.add_dag(4, edges=[(0, 2)], chain=True)
    nodes = [t.node_id for t in tasks]
    assert jobmon_server.downstream_node_ids(1, nodes[0]) == [nodes[2], nodes[1]]
    assert jobmon_server.downstream_node_ids(1, nodes[3]) is None


# -- progress ---------------------------------------------------------------------


def test_polling_client_sees_run_progress_to_the_end() -> None:
    fake = FakeJobmonServer(clock=FakeClock("2026-11-28 17:00:00"))
    fake.add_workflow(max_concurrently_running=2)
    fake.add_tasks(5, status="G")
    run = fake.add_workflow_run(status="R")
    statuses: dict[int, str] = {}
    with client_for(fake) as http:
        http.post(
            "/array/1/queue_task_batch",
            json={"task_ids": [1, 2, 3, 4, 5], "task_resources_id": 1, "workflow_run_id": 1},
        )
        last_sync = None
        for _ in range(20):
            message: dict[str, str] = {} if last_sync is None else {"last_sync": last_sync}
            update = http.post("/workflow/1/task_status_updates", json=message).json()
            last_sync = update["time"]
            for status, ids in update["tasks_by_status"].items():
                statuses.update(dict.fromkeys(ids, status))
            assert list(statuses.values()).count("R") <= 2
            if set(statuses.values()) == {"D"}:
                break
            fake.advance()
        done = http.put(f"/workflow_run/{run.workflow_run_id}/update_status", json={"status": "D"})
    assert statuses == dict.fromkeys(range(1, 6), "D")
    assert done.json() == {"status": "D"}


def test_advance_respects_array_limit_and_dag_order_with_auto_queue() -> None:
    fake = FakeJobmonServer(auto_queue=True)
    fake.add_array(max_concurrently_running=1)
    tasks = fake.add_dag(3, chain=True)
    fake.add_workflow_run()
    order: list[list[str]] = []
    for _ in range(8):
        fake.advance()
        order.append([t.status for t in tasks])
    assert order[:6] == [
        ["Q", "G", "G"],
        ["R", "G", "G"],
        ["D", "Q", "G"],
        ["D", "R", "G"],
        ["D", "D", "Q"],
        ["D", "D", "R"],
    ]
    assert order[-1] == ["D", "D", "D"]
    assert all(t.num_attempts == 1 for t in tasks)

    fake = FakeJobmonServer()
    fake.add_array(max_concurrently_running=2)
    parallel = fake.add_tasks(3, status="Q")
    fake.advance()
    assert [t.status for t in parallel] == ["R", "R", "Q"]
    fake.advance()
    assert [t.status for t in parallel] == ["D", "D", "R"]


def test_failures_retry_until_attempts_run_out() -> None:
    fake = FakeJobmonServer(auto_queue=True, failure_rate=1.0)
    task = fake.add_task(max_attempts=2)
    steps = fake.advance_until_settled()
    assert task.status == "F"
    assert task.num_attempts == 2
    assert steps < 10


def test_seeded_failures_are_repeatable() -> None:
    def finals(seed: int) -> list[str]:
        fake = FakeJobmonServer(auto_queue=True, failure_rate=0.5, seed=seed)
        tasks = fake.add_tasks(20, status="Q")
        fake.advance_until_settled()
        return [t.status for t in tasks]

    assert finals(7) == finals(7)
    assert set(finals(7)) <= {"D", "F"}
    assert "D" in finals(7)


def test_automatic_advance_every_n_requests_and_on_heartbeat() -> None:
    fake = FakeJobmonServer(advance_every=2)
    task = fake.add_task(status="Q")
    with client_for(fake) as http:
        http.get("/time")
        assert task.status == "Q"
        http.get("/time")
        assert task.status == "R"

    fake = FakeJobmonServer(advance_on_heartbeat=True)
    task = fake.add_task(status="Q")
    run = fake.add_workflow_run()
    with client_for(fake) as http:
        http.post(f"/workflow_run/{run.workflow_run_id}/log_heartbeat", json=HEARTBEAT)
        http.post(f"/workflow_run/{run.workflow_run_id}/log_heartbeat", json=HEARTBEAT)
    assert task.status == "D"


# -- errors, routing, transports --------------------------------------------------


def test_error_answers(client: httpx.Client) -> None:
    missing_run = client.put("/workflow_run/5/update_status", json={"status": "R"})
    assert missing_run.status_code == 500
    assert missing_run.headers["content-type"] == "application/custom+json"
    assert "NoResultFound" in missing_run.json()["error"]["type"]

    bad_json = client.put("/workflow_run/1/update_status", content=b"{not json")
    assert bad_json.status_code == 400

    assert client.get("/workflow/9/get_max_concurrently_running").status_code == 404
    assert client.get("/array/9/get_array_max_concurrently_running").json() == {
        "error": "Array with ID 9 not found in database."
    }
    assert client.get("/workflow_run/1/log_heartbeat").json() == {"detail": "Method Not Allowed"}
    assert client.get("/workflow/get_tasks/1/", params={"max_task_id": 0}).status_code == 404
    bad_run_id = client.put("/workflow_run/x/terminate_task_instances")
    assert bad_run_id.json()["detail"][0]["loc"] == ["path", "workflow_run_id"]


def test_routes_live_under_the_configured_prefix() -> None:
    old_style = FakeJobmonServer(route_prefix="")
    old_style.add_workflow(max_concurrently_running=3)
    with httpx.Client(transport=old_style.transport(), base_url=old_style.base_url) as http:
        assert http.get("/workflow/1/get_max_concurrently_running").json() == {
            "max_concurrently_running": 3
        }
        assert http.get("/api/v3/workflow/1/get_max_concurrently_running").status_code == 404

    mounted = FakeJobmonServer()
    with httpx.Client(transport=mounted.transport(), base_url=mounted.service_url) as http:
        assert http.get("/time").json() == {"detail": "Not Found"}
        assert http.get("/api/v3/time").status_code == 200


def test_requests_are_recorded(client: httpx.Client, server: FakeJobmonServer) -> None:
    client.post(
        "/workflow_run/1/log_heartbeat",
        params={"client_jobmon_version": "3.6.0"},
        json={"status": "I", "next_report_increment": 30.0},
    )
    client.get("/nowhere")
    beat, lost = server.requests
    assert beat.name == "log_heartbeat"
    assert beat.route == "/workflow_run/1/log_heartbeat"
    assert beat.url_path == "/api/v3/workflow_run/1/log_heartbeat"
    assert beat.query == {"client_jobmon_version": "3.6.0"}
    assert beat.headers["content-type"] == "application/json"
    assert beat.json() == {"status": "I", "next_report_increment": 30.0}
    assert lost.name is None
    assert server.requests_to("log_heartbeat") == [beat]


def test_injected_faults_then_recovery(client: httpx.Client, server: FakeJobmonServer) -> None:
    server.inject_fault(503, times=2, route="log_heartbeat")
    server.inject_fault(423)
    assert client.get("/time").status_code == 423
    beat = client.post("/workflow_run/1/log_heartbeat", json=HEARTBEAT)
    assert (beat.status_code, beat.headers["content-type"]) == (503, "text/html")
    assert client.post("/workflow_run/1/log_heartbeat", json=HEARTBEAT).status_code == 503
    assert client.post("/workflow_run/1/log_heartbeat", json=HEARTBEAT).status_code == 200
    assert server.workflow_run(1).heartbeats == 1

    server.inject_fault(error=httpx.ConnectError)
    with pytest.raises(httpx.ConnectError):
        client.get("/time")
    server.inject_fault(418, body="teapot", content_type="text/plain")
    assert client.get("/time").text == "teapot"


def test_connection_drops_after_a_500_when_asked() -> None:
    fake = FakeJobmonServer(drop_connection_after_500=True)
    with client_for(fake) as http:
        assert http.post("/workflow_run/1/log_heartbeat", json=HEARTBEAT).status_code == 500
        with pytest.raises(httpx.ReadError):
            http.get("/time")
        assert http.get("/time").status_code == 200


def test_large_answers_are_gzipped_when_accepted() -> None:
    fake = FakeJobmonServer()
    fake.add_tasks(40)
    params = {"max_task_id": 0, "chunk_size": 100}
    with httpx.Client(transport=fake.transport(), base_url=fake.base_url) as http:
        answer = http.get("/workflow/get_tasks/1", params=params)
        plain = http.get(
            "/workflow/get_tasks/1", params=params, headers={"Accept-Encoding": "identity"}
        )
    assert answer.headers["content-encoding"] == "gzip"
    assert len(answer.json()["tasks"]) == 40
    assert "content-encoding" not in plain.headers
    assert answer.content == plain.content
    assert len(answer.content) >= 1000


async def test_async_transport_serves_concurrent_requests(server: FakeJobmonServer) -> None:
    async with httpx.AsyncClient(
        transport=server.async_transport(), base_url=server.base_url
    ) as http:
        answers = await asyncio.gather(
            *(
                http.post("/workflow_run/1/log_heartbeat", json={**HEARTBEAT, "status": "O"})
                for _ in range(10)
            ),
            http.get("/workflow/1/fetch_workflow_metadata"),
        )
    assert {a.json()["status"] for a in answers[:-1]} == {"O"}
    assert answers[-1].json() == {"workflow": [1, 1, 37]}
    assert server.workflow_run(1).heartbeats == 10


def test_sync_transport_is_thread_safe() -> None:
    fake = FakeJobmonServer()
    fake.add_tasks(200)
    fake.add_workflow_run()
    errors: list[BaseException] = []

    def queue(ids: list[int]) -> None:
        try:
            with client_for(fake) as http:
                for task_id in ids:
                    message = {"task_ids": [task_id], "task_resources_id": 1, "workflow_run_id": 1}
                    http.post("/array/1/queue_task_batch", json=message)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=queue, args=(list(range(i, 201, 4)),)) for i in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert fake.tasks_by_status(1) == {"Q": list(range(1, 201))}
    assert len(fake.requests) == 200


# -- packaging --------------------------------------------------------------------


def test_fixture_hands_out_an_empty_server(jobmon_server: FakeJobmonServer) -> None:
    assert isinstance(jobmon_server, FakeJobmonServer)
    assert not jobmon_server.tasks
    assert not jobmon_server.requests


def _imports(tree: ast.AST) -> Iterator[tuple[ast.AST, str, int]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node, alias.name, 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield (node, node.module or "", node.level)


def _sdk_import_sites(tree: ast.AST) -> set[int]:
    """The import statements inside requester() or a TYPE_CHECKING block (by id)."""
    sites: set[int] = set()
    for node in ast.walk(tree):
        inside_requester = isinstance(node, ast.FunctionDef) and node.name == "requester"
        type_checking = isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        if inside_requester or type_checking:
            sites |= {id(statement) for statement, _, _ in _imports(node)}
    return sites


def test_fake_imports_only_stdlib_and_httpx() -> None:
    allowed = set(sys.stdlib_module_names) | {"httpx", "__future__"}
    for module in TESTING_PACKAGE.glob("*.py"):
        if module.name == "pytest_plugin.py":
            continue
        tree = ast.parse(module.read_text())
        sdk_sites = _sdk_import_sites(tree)
        for statement, name, level in _imports(tree):
            # Relative imports stay inside jobmon_gateway.testing.
            assert level in (0, 1), f"{module.name} imports {'.' * level}{name}"
            if level == 1:
                continue
            if name.split(".")[0] == "jobmon_gateway":
                # Only the ready-wired Requester needs the SDK, and it imports it late.
                assert name == "jobmon_gateway.transport", f"{module.name} imports {name}"
                assert id(statement) in sdk_sites, f"{module.name}: {name} outside requester()"
                continue
            assert name.split(".")[0] in allowed, f"{module.name} imports {name}"


def test_importing_the_fake_does_not_import_pytest() -> None:
    probe = "import sys, jobmon_gateway.testing; print('pytest' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
