"""``FakeJobmonServer(server_version="3.2.2")``: the wire behaviour of a Jobmon 3.2.2 server.

The contract test replays every recording of a real 3.2.2 server
(``../shared/wire/jobmon-server-3.2.2/``) against a 3.2.2 fake seeded with the
recorded scenario and wants the same status, content type, JSON and bytes.
The other tests pin what PROTOCOL.md says of 3.2, spoken to with plain httpx
or raw sockets, and through the SDK where a user would.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from jobmon_gateway import GatewayError, ServerError, ServerGateway, TaskStatus
from jobmon_gateway.testing import FakeClock, FakeJobmonServer

WIRE_DIR = Path(__file__).parents[2] / "shared" / "wire" / "jobmon-server-3.2.2"
RECORDINGS = sorted(WIRE_DIR.glob("*.json")) if WIRE_DIR.is_dir() else []
# The recordings' own server, whose URL the 404 text quotes.
RECORDED_SERVICE_URL = "http://127.0.0.1:18322"
RECORDED_NOW = "2026-11-28 17:56:42"
HEARTBEAT = {"status": "R", "next_report_increment": 30.0}
JSON_HEADERS = {"Content-Type": "application/json"}


def recorded_server(recorded: dict[str, Any]) -> FakeJobmonServer:
    """Workflow 1 with no tasks and its run 1, as the 3.2.2 recordings saw them."""
    answer = json.loads(recorded["response_text"]) if recorded["status"] != 404 else None
    recorded_time = answer.get("time") if isinstance(answer, dict) else None
    server = FakeJobmonServer(
        server_version="3.2.2", clock=FakeClock(recorded_time or RECORDED_NOW)
    )
    server.add_workflow(1, dag_id=1)
    server.add_workflow_run(1, status="R", workflow_run_id=1)
    return server


def client_for(server: FakeJobmonServer, base_url: str | None = None) -> httpx.Client:
    """A plain httpx client on the fake, sending JSON as every Jobmon client does."""
    return httpx.Client(
        transport=server.transport(),
        base_url=base_url or server.base_url,
        headers=JSON_HEADERS,
    )


@pytest.fixture
def server() -> FakeJobmonServer:
    """Workflow 1 (dag 1, limit 5), array 1, tasks 1 -> 2 and 3 registering, run 1 running."""
    fake = FakeJobmonServer(server_version="3.2.2", clock=FakeClock(RECORDED_NOW))
    fake.add_workflow(1, dag_id=1, max_concurrently_running=5)
    fake.add_array(1, array_id=1)
    fake.add_dag(3, [(0, 1), (0, 2)])
    fake.add_workflow_run(1, status="R", workflow_run_id=1)
    return fake


@pytest.fixture
def client(server: FakeJobmonServer) -> httpx.Client:
    return client_for(server)


# -- contract -------------------------------------------------------------------


@pytest.mark.skipif(not RECORDINGS, reason=f"no 3.2.2 recordings at {WIRE_DIR} (../shared absent)")
@pytest.mark.parametrize("recording", RECORDINGS, ids=[path.stem for path in RECORDINGS])
def test_replays_recorded_3_2_2_pair(recording: Path) -> None:
    recorded = json.loads(recording.read_text(encoding="utf-8"))
    fake = recorded_server(recorded)
    with client_for(fake, RECORDED_SERVICE_URL) as http:
        answer = http.request(
            recorded["method"],
            recorded["route"],
            params=recorded["query"],
            json=recorded["request_json"],
        )
    assert answer.status_code == recorded["status"]
    assert answer.headers["content-type"] == recorded["content_type"]
    if recorded["content_type"].startswith("application/json"):
        assert answer.json() == json.loads(recorded["response_text"])
    assert answer.text == recorded["response_text"]
    assert answer.headers["connection"] == "close"


def test_the_3_2_2_recordings_cover_what_they_should() -> None:
    if not RECORDINGS:
        pytest.skip(f"no 3.2.2 recordings at {WIRE_DIR} (../shared absent)")
    statuses = {json.loads(path.read_text())["status"] for path in RECORDINGS}
    assert {200, 400, 404, 500} <= statuses


# -- the version switch ---------------------------------------------------------


def test_default_is_3_6_and_3_2_2_mounts_at_the_root() -> None:
    assert FakeJobmonServer().server_version == "3.6"
    assert FakeJobmonServer().route_prefix == "/api/v3"
    old = FakeJobmonServer(server_version="3.2.2")
    assert old.route_prefix == ""
    assert old.base_url == old.service_url
    assert (
        FakeJobmonServer(server_version="3.2.2", route_prefix="/jobmon").route_prefix == "/jobmon"
    )


@pytest.mark.parametrize("version", ["3.2", "3.6.0", "3.2.1", "", "latest"])
def test_unknown_versions_are_refused(version: str) -> None:
    with pytest.raises(ValueError, match=r"server_version must be one of 3\.6, 3\.2\.2"):
        FakeJobmonServer(server_version=version)


def test_3_2_2_refuses_a_gzip_setting() -> None:
    with pytest.raises(ValueError, match="never compresses"):
        FakeJobmonServer(server_version="3.2.2", gzip_min_size=10)


def test_routes_live_at_the_root(client: httpx.Client) -> None:
    assert client.get("/time").json() == {"time": RECORDED_NOW}
    under_prefix = client.get("/api/v3/time")
    assert under_prefix.status_code == 404
    assert under_prefix.headers["content-type"] == "text/html; charset=utf-8"


# -- answers that differ from 3.6 -------------------------------------------------


def test_triage_and_terminate_answer_null_after_doing_the_work(
    server: FakeJobmonServer, client: httpx.Client
) -> None:
    server.set_task_status(1, "R")
    server.set_task_status(2, "O")
    triage = client.post("/workflow_run/1/set_status_for_triaging", json={})
    terminate = client.put("/workflow_run/1/terminate_task_instances", json={})
    for answer in (triage, terminate):
        assert answer.status_code == 200
        assert answer.text == "null\n"
        assert answer.json() is None
    # The work was done even though the count is not sent.
    assert server.task(1).status == server.task(2).status == "F"


def test_terminate_of_an_unknown_run_is_a_500(client: httpx.Client) -> None:
    answer = client.put("/workflow_run/999/terminate_task_instances", json={})
    assert answer.status_code == 500
    assert answer.json()["error"]["type"] == "<class 'sqlalchemy.exc.NoResultFound'>"


@pytest.mark.parametrize("version", [None, "3.6.0", "3.4.24", "3.4.23", "3.5.0.dev1", "stage"])
def test_downstream_ids_are_always_json_strings(client: httpx.Client, version: str | None) -> None:
    params = {} if version is None else {"client_jobmon_version": version}
    answer = client.post(
        "/task/get_downstream_tasks", params=params, json={"task_ids": [1, 2, 3], "dag_id": 1}
    )
    assert answer.status_code == 200
    node_1, node_2, node_3 = (answer.json()["downstream_tasks"][str(i)] for i in (1, 2, 3))
    assert isinstance(node_1[1], str)
    assert json.loads(node_1[1]) == [node_2[0], node_3[0]]
    assert node_2[1] is None
    assert node_3[1] is None


def test_there_is_no_array_concurrency_route(client: httpx.Client) -> None:
    answer = client.get("/array/1/get_array_max_concurrently_running")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert answer.text == (
        "This route does not exist: http://127.0.0.1:1/array/1/get_array_max_concurrently_running"
    )


def test_an_unknown_workflows_limit_is_a_500_no_result_found(client: httpx.Client) -> None:
    answer = client.get("/workflow/999/get_max_concurrently_running")
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {
        "error": {
            "exception_message": "No row was found when one was required",
            "status_code": "500",
            "type": "<class 'sqlalchemy.exc.NoResultFound'>",
        }
    }
    assert client.get("/workflow/1/get_max_concurrently_running").json() == {
        "max_concurrently_running": 5
    }


def test_404s_are_plain_text_quoting_the_url(client: httpx.Client) -> None:
    answer = client.get("/no_such_route", params={"client_jobmon_version": "3.6.0"})
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert answer.text == (
        "This route does not exist: http://127.0.0.1:1/no_such_route?client_jobmon_version=3.6.0"
    )


def test_the_400_envelope_has_no_status_code(client: httpx.Client) -> None:
    answer = client.post("/workflow_run/1/log_heartbeat", json={"status": "R"})
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {
        "error": {
            "exception_message": (
                "\"'next_report_increment' in request to /workflow_run/1/log_heartbeat\""
            ),
            "type": "<class 'jobmon.server.web.server_side_exception.InvalidUsage'>",
        }
    }


@pytest.mark.parametrize(
    ("method", "route", "status", "exception_type"),
    [
        ("POST", "/workflow_run/x/log_heartbeat", 400, "InvalidUsage"),
        ("PUT", "/workflow_run/x/update_status", 400, "InvalidUsage"),
        ("PUT", "/workflow_run/x/terminate_task_instances", 400, "InvalidUsage"),
        ("POST", "/workflow_run/x/set_status_for_triaging", 400, "InvalidUsage"),
        ("POST", "/array/x/queue_task_batch", 500, "ValueError"),
        ("GET", "/workflow/x/get_max_concurrently_running", 500, "NoResultFound"),
    ],
)
def test_a_non_integer_id_is_no_422(
    client: httpx.Client, method: str, route: str, status: int, exception_type: str
) -> None:
    body = {**HEARTBEAT, "task_ids": [], "task_resources_id": 1, "workflow_run_id": 1}
    answer = client.request(method, route, json=None if method == "GET" else body)
    assert answer.status_code == status
    assert exception_type in answer.json()["error"]["type"]
    if status == 400:
        assert "invalid literal for int() with base 10: 'x'" in answer.text


def test_ids_that_are_no_integers_find_nothing_where_the_server_filters_by_text(
    client: httpx.Client,
) -> None:
    assert client.get("/workflow/x/fetch_workflow_metadata").json() == {"workflow": []}
    listed = client.get("/workflow/get_tasks/x", params={"max_task_id": 0, "chunk_size": 3})
    assert listed.json() == {"tasks": {}}
    assert client.post("/workflow/x/task_status_updates", json={}).json()["tasks_by_status"] == {}


def test_errors_are_application_json_not_custom_json(client: httpx.Client) -> None:
    for answer in (
        client.post("/workflow_run/999/log_heartbeat", json=HEARTBEAT),
        client.post("/array/1/queue_task_batch", json={}),
        client.post("/workflow_run/1/log_heartbeat", content=b"{not json"),
    ):
        assert answer.status_code in (400, 500)
        assert answer.headers["content-type"] == "application/json"
    missing_key = client.post("/array/1/queue_task_batch", json={})
    assert missing_key.status_code == 500
    assert missing_key.json()["error"] == {
        "exception_message": "'task_ids'",
        "status_code": "500",
        "type": "<class 'KeyError'>",
    }


def test_a_wrong_method_is_a_500(client: httpx.Client) -> None:
    answer = client.get("/workflow_run/1/log_heartbeat")
    assert answer.status_code == 500
    assert answer.json()["error"]["type"] == "<class 'werkzeug.exceptions.MethodNotAllowed'>"


def test_head_is_served_on_get_routes_only(client: httpx.Client) -> None:
    assert client.head("/time").status_code == 200
    assert client.head("/workflow_run/1/log_heartbeat").status_code == 500


def test_a_request_without_json_content_type_is_a_500(server: FakeJobmonServer) -> None:
    with httpx.Client(transport=server.transport(), base_url=server.base_url) as bare:
        answer = bare.get("/time")
    assert answer.status_code == 500
    assert answer.json()["error"]["type"] == "<class 'werkzeug.exceptions.UnsupportedMediaType'>"


def test_answers_are_sorted_compact_json_with_a_newline(server: FakeJobmonServer) -> None:
    server.add_tasks(10)  # tasks 4..13: keys "9" and "10" sort as numbers
    with client_for(server) as http:
        answer = http.get("/workflow/get_tasks/1", params={"max_task_id": 7, "chunk_size": 4})
    assert answer.text.endswith("}\n")
    assert list(answer.json()["tasks"]) == ["8", "9", "10", "11"]
    assert answer.text.startswith('{"tasks":{"8":[')


def test_never_gzips(server: FakeJobmonServer) -> None:
    server.add_tasks(40)
    with client_for(server) as http:
        answer = http.get(
            "/workflow/get_tasks/1",
            params={"max_task_id": 0, "chunk_size": 100},
            headers={"Accept-Encoding": "gzip"},
        )
    assert len(answer.content) > 1000
    assert "content-encoding" not in answer.headers


def test_injected_server_errors_use_the_3_2_2_envelope(
    server: FakeJobmonServer, client: httpx.Client
) -> None:
    server.inject_fault(500)
    server.inject_fault(423)
    for status in (500, 423):
        answer = client.get("/time")
        assert answer.status_code == status
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["error"]["status_code"] == str(status)


# -- queue_task_batch is not safe to repeat ------------------------------------------


def _queue(client: httpx.Client, task_ids: list[int], workflow_run_id: int = 1) -> httpx.Response:
    message = {
        "task_ids": task_ids,
        "task_resources_id": 1,
        "workflow_run_id": workflow_run_id,
        "cluster_id": 2,
    }
    return client.post("/array/1/queue_task_batch", json=message)


def test_every_repeat_of_queue_task_batch_adds_task_instances(
    server: FakeJobmonServer, client: httpx.Client
) -> None:
    answers = [_queue(client, [1, 2]).json() for _ in range(3)]
    assert answers == [{"tasks_by_status": {"Q": [1, 2]}}] * 3
    assert [server.task(i).task_instances for i in (1, 2, 3)] == [3, 3, 0]
    # One attempt: only the first call moved the tasks out of G.
    assert [server.task(i).num_attempts for i in (1, 2)] == [1, 1]


def test_on_3_6_the_same_repeats_add_nothing() -> None:
    fake = FakeJobmonServer()
    fake.add_array(array_id=1)
    fake.add_tasks(2)
    with httpx.Client(transport=fake.transport(), base_url=fake.base_url) as http:
        for _ in range(3):
            _queue(http, [1, 2])
    assert [fake.task(i).task_instances for i in (1, 2)] == [1, 1]


def test_queue_task_batch_with_an_unknown_run_still_answers_200(
    server: FakeJobmonServer, client: httpx.Client
) -> None:
    answer = _queue(client, [1], workflow_run_id=4242)
    assert answer.status_code == 200
    assert answer.json() == {"tasks_by_status": {"Q": [1]}}
    assert server.task(1).workflow_run_id == 4242


def test_the_sdk_sees_the_repeat_count(server: FakeJobmonServer) -> None:
    with ServerGateway(server.requester(), 1, 1) as gateway:
        first = gateway.queue_task_batch_sync(1, [3], 1, 2)
        again = gateway.queue_task_batch_sync(1, [3], 1, 2)
    assert first.tasks_by_status == again.tasks_by_status == {TaskStatus.QUEUED: [3]}
    assert server.task(3).task_instances == 2
    assert len(server.requests_to("queue_task_batch")) == 2


# -- over a loopback socket ----------------------------------------------------------


def _raw_exchange(url: str, requests: int) -> list[bytes]:
    """Send ``requests`` GET /time on one TCP connection; return what came back for each."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    answers: list[bytes] = []
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as connection:
        request = (
            f"GET /time HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n\r\n"
        ).encode()
        for _ in range(requests):
            try:
                connection.sendall(request)
                chunks = []
                while chunk := connection.recv(65536):
                    chunks.append(chunk)
            except OSError:
                chunks = []
            answers.append(b"".join(chunks))
    return answers


def test_served_3_2_2_closes_every_connection(server: FakeJobmonServer) -> None:
    with server.serve() as url:
        first, second = _raw_exchange(url, 2)
    head = first.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 200")
    assert b"\r\nconnection: close" in head
    # The server closed the connection: recv() above saw the end, and the
    # second request on it got nothing.
    assert second == b""


def test_sdk_over_a_served_3_2_2_fake(server: FakeJobmonServer) -> None:
    server.add_workflow(2, dag_id=2)
    with server.serve() as url:
        requester = server.requester(service_url=url, transport=None, async_transport=None)
        with ServerGateway(requester, 1, 1) as gateway:
            assert gateway.log_heartbeat_sync("R", 30.0).status == "R"
            assert gateway.get_task_status_updates_sync().tasks_by_status == {"G": [1, 2, 3]}
            gateway.request_triage_sync()
            with pytest.raises(GatewayError) as absent:
                gateway.without_retries().get_array_concurrency_sync(1)
            assert absent.value.status == 404
        with (
            ServerGateway(requester, 999, 1) as unknown,
            pytest.raises(ServerError) as missing,
        ):
            unknown.without_retries().get_workflow_concurrency_sync()
        assert missing.value.status == 500
    assert len(server.requests) == 5


async def test_async_sdk_through_requester(server: FakeJobmonServer) -> None:
    async with ServerGateway(server.requester(), 1, 1) as gateway:
        assert (await gateway.get_workflow_metadata()).dag_id == 1
        downstream = await gateway.get_downstream_tasks([1], 1)
        await gateway.request_triage()
    node_id, ids = downstream.downstream_tasks[1]
    assert node_id == server.task(1).node_id
    assert ids == [server.task(2).node_id, server.task(3).node_id]
