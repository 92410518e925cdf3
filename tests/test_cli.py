"""Tests of the ``jobmon-gateway`` command line against the fake server on a real socket.

Every command runs through click's ``CliRunner`` with no transport injected:
the CLI builds its requester from ``--url`` / ``--prefix`` and the
``JOBMON__HTTP__*`` environment, exactly as a user's shell would, and talks
to ``FakeJobmonServer.serve()`` over loopback HTTP/1.1.
"""

from __future__ import annotations

import json
import os
import re
import socket
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from click.testing import CliRunner, Result

from jobmon_gateway import cli
from jobmon_gateway.schemas import RESPONSE_MODELS
from jobmon_gateway.testing import FakeClock, FakeJobmonServer

NOW = "2026-11-28 17:56:34"
# Workflow 1's tasks by status, as seeded below.
SEEDED_COUNTS = {"D": 3, "R": 2, "Q": 1, "G": 2, "F": 1}


def seed_mixed_workflow(server: FakeJobmonServer) -> None:
    """Workflow 1 (dag 1, limit 7): nine tasks in five statuses; run 1 running, run 2 done."""
    server.add_workflow(1, dag_id=1, max_concurrently_running=7)
    for status, count in SEEDED_COUNTS.items():
        server.add_tasks(count, status=status)
    server.add_workflow_run(1, status="R", workflow_run_id=1)
    server.add_workflow_run(1, status="D", workflow_run_id=2)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No JOBMON__ settings from the developer's shell; failures give up after one try."""
    for name in list(os.environ):
        if name.startswith("JOBMON__"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("JOBMON__HTTP__RETRIES_ATTEMPTS", "1")
    monkeypatch.setenv("JOBMON__HTTP__REQUEST_TIMEOUT", "5")


@pytest.fixture
def server() -> FakeJobmonServer:
    fake = FakeJobmonServer(clock=FakeClock(NOW))
    seed_mixed_workflow(fake)
    return fake


@pytest.fixture
def url(server: FakeJobmonServer) -> Iterator[str]:
    with server.serve() as base:
        yield base


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A loopback URL that refuses connections: the port is bound but never listened on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{holder.getsockname()[1]}"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli.main, list(args))


def assert_ok(result: Result) -> None:
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.exception is None


def assert_one_error_line(result: Result, exit_code: int) -> str:
    """The command failed as expected: one ``error:`` line on stderr, no traceback."""
    assert result.exit_code == exit_code, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    assert result.stdout == ""
    return lines[0]


def json_lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- time ----------------------------------------------------------------------


def test_time_prints_the_server_clock(url: str) -> None:
    result = run("--url", url, "time")
    assert_ok(result)
    assert result.stdout == f"{NOW}\n"
    assert result.stderr == ""


def test_time_json(url: str) -> None:
    result = run("--url", url, "--json", "time")
    assert_ok(result)
    assert json.loads(result.stdout) == {"time": NOW}


# -- workflow ----------------------------------------------------------------------


def test_workflow_table(server: FakeJobmonServer, url: str) -> None:
    result = run("--url", url, "workflow", "1")
    assert_ok(result)
    out = result.stdout
    assert "workflow 1 (dag 1)" in out
    rows = {
        match.group(1): int(match.group(2))
        for match in re.finditer(r"([A-Z]) [a-z ]+?\s+│\s+(\d+)", out)
    }
    assert rows == SEEDED_COUNTS
    assert re.search(r"all\s+│\s+9\b", out)
    for name in ("D done", "R running", "Q queued", "G registering", "F error fatal"):
        assert name in out
    assert f"max concurrently running: 7   server time: {NOW}" in out
    assert [r.name for r in server.requests] == ["fetch_workflow_metadata", "task_status_updates"]


def test_workflow_json(url: str) -> None:
    result = run("--url", url, "--json", "workflow", "1")
    assert_ok(result)
    assert json.loads(result.stdout) == {
        "workflow_id": 1,
        "dag_id": 1,
        "max_concurrently_running": 7,
        "tasks": 9,
        "counts": SEEDED_COUNTS,
        "time": NOW,
    }


def test_unknown_workflow_says_the_server_answered_an_empty_workflow(url: str) -> None:
    line = assert_one_error_line(run("--url", url, "workflow", "999"), 1)
    assert line == (
        "error: workflow 999 not found: the server answered an empty workflow"
        f" (GET {url}/api/v3/workflow/999/fetch_workflow_metadata -> 200)"
    )


def test_workflow_id_must_be_positive(server: FakeJobmonServer, url: str) -> None:
    line = assert_one_error_line(run("--url", url, "workflow", "0"), 1)
    assert "workflow_id" in line
    assert server.requests == []


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["workflow", "-3"], "workflow_id"),
        (["watch", "-3", "--interval", "0"], "workflow_id"),
        (["heartbeat", "-3", "--status", "R"], "workflow_run_id"),
        (["heartbeat", "--status", "R", "--", "-3"], "workflow_run_id"),
    ],
)
def test_a_negative_id_gets_the_ids_own_check_not_no_such_option(
    server: FakeJobmonServer, url: str, args: list[str], name: str
) -> None:
    line = assert_one_error_line(run("--url", url, *args), 1)
    assert line == f"error: {name} must be a positive int up to 2**63-1, got -3"
    assert server.requests == []


def test_a_negative_option_value_stays_the_options(server: FakeJobmonServer, url: str) -> None:
    result = run("--url", url, "heartbeat", "1", "--status", "R", "--next-report-increment", "-5")
    line = assert_one_error_line(result, 1)
    assert "next_report_increment" in line
    assert server.requests == []


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["workflow", "--bogus", "3"], ("No such option", "--bogus")),
        (["workflow", "-x"], ("No such option", "-x")),
        (["workflow", "1", "-3"], ("unexpected extra argument", "-3")),
    ],
)
def test_other_unknown_words_are_still_usage_errors(
    server: FakeJobmonServer, url: str, args: list[str], said: tuple[str, str]
) -> None:
    result = run("--url", url, *args)
    assert result.exit_code == 2
    # click's words, which its versions punctuate differently ("No such option: -x"
    # in 8.2, "No such option '-x'" later): the usage error and the word it is about.
    what, word = said
    assert what in result.stderr
    assert word in result.stderr
    assert server.requests == []


# -- heartbeat -----------------------------------------------------------------------


def test_heartbeat_prints_the_answered_status(server: FakeJobmonServer, url: str) -> None:
    result = run("--url", url, "heartbeat", "1", "--status", "R")
    assert_ok(result)
    assert result.stdout == "R (RUNNING)\n"
    assert result.stderr == ""
    heartbeat = server.requests_to("log_heartbeat")[0]
    assert heartbeat.json() == {"status": "R", "next_report_increment": 30.0}
    assert server.workflow_run(1).heartbeats == 1


def test_heartbeat_json_and_increment(server: FakeJobmonServer, url: str) -> None:
    result = run(
        "--url", url, "--json", "heartbeat", "1", "--status", "R", "--next-report-increment", "90"
    )
    assert_ok(result)
    assert json.loads(result.stdout) == {"status": "R", "name": "RUNNING"}
    assert server.workflow_run(1).next_report_increment == 90.0


def test_heartbeat_with_an_illegal_transition_prints_the_current_status(
    server: FakeJobmonServer, url: str
) -> None:
    result = run("--url", url, "heartbeat", "2", "--status", "R")
    assert_ok(result)
    assert result.stdout == "D (DONE)\n"
    assert server.workflow_run(2).status == "D"


def test_heartbeat_answers_a_resume_request(server: FakeJobmonServer, url: str) -> None:
    server.request_resume(1)
    result = run("--url", url, "heartbeat", "1", "--status", "R")
    assert_ok(result)
    assert result.stdout == "C (COLD_RESUME)\n"


def test_heartbeat_warns_of_an_unknown_letter_and_still_sends_it(
    server: FakeJobmonServer, url: str
) -> None:
    result = run("--url", url, "heartbeat", "1", "--status", "Z")
    assert_ok(result)
    assert result.stderr == (
        "warning: 'Z' is not a workflow run status this SDK knows; sending it\n"
    )
    assert [r.json()["status"] for r in server.requests_to("log_heartbeat")] == ["Z"]


@pytest.mark.parametrize("status", ["running", "r", "RR", "7", ""])
def test_heartbeat_refuses_an_invalid_status_letter(
    server: FakeJobmonServer, url: str, status: str
) -> None:
    line = assert_one_error_line(run("--url", url, "heartbeat", "1", "--status", status), 1)
    assert "status must be" in line
    assert server.requests == []


def test_heartbeat_unknown_run_keeps_the_servers_message(url: str) -> None:
    line = assert_one_error_line(run("--url", url, "heartbeat", "77", "--status", "R"), 1)
    assert "HTTP 500" in line
    assert f"(POST {url}/api/v3/workflow_run/77/log_heartbeat -> 500" in line
    assert "No row was found when one was required" in line


def test_heartbeat_needs_a_status(url: str) -> None:
    result = run("--url", url, "heartbeat", "1")
    assert result.exit_code == 2
    assert "Missing option '--status'" in result.stderr


# -- watch ---------------------------------------------------------------------------


def progressing_server(**options: Any) -> FakeJobmonServer:
    """Each request moves the fake one step and it queues ready tasks itself."""
    fake = FakeJobmonServer(clock=FakeClock(NOW), advance_every=1, auto_queue=True, **options)
    fake.add_workflow(1, dag_id=1)
    return fake


def test_watch_ends_when_every_task_is_done() -> None:
    fake = progressing_server()
    fake.add_dag(4, chain=True)
    fake.add_tasks(2)
    with fake.serve() as url:
        result = run("--url", url, "watch", "1", "--interval", "0.01")
    assert_ok(result)
    assert "finished: 6 done, 0 failed of 6 tasks" in result.stdout
    assert {task.status for task in fake.tasks.values()} == {"D"}
    # Incremental: only the first status poll is a full snapshot.
    polls = fake.requests_to("task_status_updates")
    assert polls[0].json() == {}
    assert all("last_sync" in poll.json() for poll in polls[1:])


def test_watch_ends_when_tasks_fail() -> None:
    fake = progressing_server(failure_rate=0.5, seed=3)
    fake.add_tasks(8, status="Q", max_attempts=1)
    with fake.serve() as url:
        result = run("--url", url, "watch", "1", "--interval", "0.01")
    assert_ok(result)
    match = re.search(r"finished: (\d+) done, (\d+) failed of 8 tasks", result.stdout)
    assert match is not None, result.stdout
    done, failed = int(match.group(1)), int(match.group(2))
    assert done + failed == 8
    assert failed > 0
    assert sorted(task.status for task in fake.tasks.values()) == ["D"] * done + ["F"] * failed


def test_watch_ends_when_a_failure_leaves_the_rest_unable_to_run() -> None:
    fake = progressing_server()
    fake.add_dag(3, chain=True)  # 1 -> 2 -> 3
    fake.set_task_status(1, "F")
    with fake.serve() as url:
        result = run("--url", url, "watch", "1", "--interval", "0.01")
    assert_ok(result)
    assert "finished: 0 done, 1 failed, 2 cannot run (upstream failed) of 3 tasks" in (
        result.stdout
    )
    # Given up after a few unchanged polls, not polled forever.
    assert len(fake.requests_to("task_status_updates")) <= 5


def test_watch_json_prints_json_lines() -> None:
    fake = progressing_server()
    fake.add_dag(3, chain=True)
    with fake.serve() as url:
        result = run("--url", url, "--json", "watch", "1", "--interval", "0.01")
    assert_ok(result)
    lines = json_lines(result.stdout)
    assert len(lines) == len(fake.requests_to("task_status_updates")) > 1
    for line in lines:
        assert set(line) == {"counts", "time"}
        assert sum(line["counts"].values()) == 3
    assert "D" not in lines[0]["counts"]
    assert lines[-1]["counts"] == {"D": 3}
    # Server times strictly increase: the fake's clock steps once per request.
    times = [line["time"] for line in lines]
    assert times == sorted(set(times))
    assert "finished" not in result.stdout


def test_watch_a_finished_workflow_polls_once(server: FakeJobmonServer) -> None:
    for task in server.tasks.values():
        task.status = "D"
    with server.serve() as url:
        result = run("--url", url, "watch", "1", "--interval", "0.01")
    assert_ok(result)
    assert "finished: 9 done, 0 failed of 9 tasks" in result.stdout
    assert len(server.requests_to("task_status_updates")) == 1


def test_watch_a_workflow_without_tasks_ends_at_once() -> None:
    fake = FakeJobmonServer(clock=FakeClock(NOW))
    fake.add_workflow(1)
    with fake.serve() as url:
        result = run("--url", url, "watch", "1", "--interval", "0.01")
    assert_ok(result)
    assert "of 0 tasks" in result.stdout


def test_watch_unknown_workflow_is_one_error_line(server: FakeJobmonServer, url: str) -> None:
    line = assert_one_error_line(run("--url", url, "watch", "999", "--interval", "0.01"), 1)
    assert "workflow 999 not found" in line
    assert server.requests_to("task_status_updates") == []


def test_watch_refuses_a_negative_interval(url: str) -> None:
    result = run("--url", url, "watch", "1", "--interval", "-1")
    assert result.exit_code == 2
    assert "Invalid value for '--interval'" in result.stderr


def test_watch_ctrl_c_exits_130_with_one_line(
    server: FakeJobmonServer, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(seconds: float) -> NoReturn:
        raise KeyboardInterrupt

    # Replace only the CLI's view of the time module, so nothing else's sleep changes.
    monkeypatch.setattr(cli, "time", types.SimpleNamespace(sleep=interrupted))
    result = run("--url", url, "watch", "1", "--interval", "5")
    assert result.exit_code == 130
    assert isinstance(result.exception, SystemExit)
    assert result.stderr == "stopped\n"
    assert "Traceback" not in result.output
    assert len(server.requests_to("task_status_updates")) == 1


def test_watch_ctrl_c_with_json_keeps_stdout_json(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(seconds: float) -> NoReturn:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "time", types.SimpleNamespace(sleep=interrupted))
    result = run("--url", url, "--json", "watch", "1")
    assert result.exit_code == 130
    assert result.stderr == "stopped\n"
    assert [line["counts"] for line in json_lines(result.stdout)] == [SEEDED_COUNTS]


# -- schema ---------------------------------------------------------------------------


def test_schema_writes_one_file_per_model(tmp_path: Path) -> None:
    out = tmp_path / "schemas"
    result = run("schema", "--out", str(out))
    assert_ok(result)
    expected = {f"{model.__name__}.json" for model in RESPONSE_MODELS}
    assert {path.name for path in out.iterdir()} == expected
    assert {Path(line).name for line in result.stdout.splitlines()} == expected
    for path in out.iterdir():
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_json_lists_the_paths(tmp_path: Path) -> None:
    result = run("--json", "schema", "--out", str(tmp_path))
    assert_ok(result)
    written = json.loads(result.stdout)
    assert len(written) == len(RESPONSE_MODELS)
    assert all(Path(path).is_file() for path in written)


def test_schema_unwritable_folder_is_one_error_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    line = assert_one_error_line(run("schema", "--out", str(blocker / "schemas")), 1)
    assert "cannot write schemas" in line


def test_schema_needs_no_url_and_takes_a_relative_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The autouse fixture left no service URL configured.
    monkeypatch.chdir(tmp_path)
    assert_ok(run("schema", "--out", "out"))
    assert len(list((tmp_path / "out").glob("*.json"))) == len(RESPONSE_MODELS)


# -- demo ------------------------------------------------------------------------------


def test_demo_completes() -> None:
    result = run("demo", "--tasks", "40", "--delay", "0")
    assert_ok(result)
    assert re.search(
        r"workflow run 1 ended [DE]: \d+ done, \d+ failed, \d+ not run, of 40", (result.stdout)
    )


def test_demo_json_report() -> None:
    result = run("--json", "demo", "--tasks", "40", "--delay", "0")
    assert_ok(result)
    report = json.loads(result.stdout)
    assert report["final_status"] in {"D", "E"}
    assert report["tasks"] == 40
    assert sum(report["counts"].values()) == 40
    assert report["final_status"] == ("D" if report["counts"] == {"D": 40} else "E")
    assert report["requests"] == sum(report["calls"].values())


@pytest.mark.parametrize(("option", "value"), [("--tasks", "0"), ("--delay", "-1")])
def test_demo_refuses_bad_numbers(option: str, value: str) -> None:
    result = run("demo", option, value)
    assert result.exit_code == 2
    assert f"Invalid value for '{option}'" in result.stderr
    assert "Traceback" not in result.output


def test_demo_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    from jobmon_gateway import demo

    def interrupted(seconds: float) -> NoReturn:
        raise KeyboardInterrupt

    monkeypatch.setattr(
        demo, "time", types.SimpleNamespace(sleep=interrupted, perf_counter=lambda: 0.0)
    )
    result = run("demo", "--tasks", "40", "--delay", "1")
    assert result.exit_code == 130
    assert result.stderr == "stopped\n"


# -- where the server is: --url, --prefix and the environment --------------------------


def test_service_url_from_the_environment(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBMON__HTTP__SERVICE_URL", url)
    result = run("time")
    assert_ok(result)
    assert result.stdout == f"{NOW}\n"


def test_url_option_wins_over_the_environment(
    url: str, dead_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBMON__HTTP__SERVICE_URL", dead_url)
    assert_ok(run("--url", url, "time"))


def test_prefix_option_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeJobmonServer(route_prefix="", clock=FakeClock(NOW))  # a 3.2 server: no prefix
    seed_mixed_workflow(fake)
    monkeypatch.setenv("JOBMON__HTTP__ROUTE_PREFIX", "/api/v3")
    with fake.serve() as url:
        result = run("--url", url, "--prefix", "", "--json", "workflow", "1")
        assert_ok(result)
        assert json.loads(result.stdout)["counts"] == SEEDED_COUNTS
        assert fake.requests[0].url_path == "/workflow/1/fetch_workflow_metadata"


def test_prefix_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeJobmonServer(route_prefix="/jobmon", clock=FakeClock(NOW))
    with fake.serve() as url:
        monkeypatch.setenv("JOBMON__HTTP__SERVICE_URL", url)
        monkeypatch.setenv("JOBMON__HTTP__ROUTE_PREFIX", "/jobmon")
        result = run("time")
        assert_ok(result)
        assert fake.requests[0].url_path == "/jobmon/time"


def test_default_prefix_is_api_v3(server: FakeJobmonServer, url: str) -> None:
    assert_ok(run("--url", url, "time"))
    assert server.requests[0].url_path == "/api/v3/time"


def test_a_404_on_the_first_call_hints_at_the_prefix(url: str) -> None:
    line = assert_one_error_line(run("--url", url, "--prefix", "/nope", "time"), 1)
    assert line.startswith(f"error: HTTP 404 Not Found (GET {url}/nope/time -> 404); ")
    assert "is the route prefix right? It is '/nope' (--prefix" in line


def test_a_404_after_the_server_answered_gives_no_prefix_hint(
    server: FakeJobmonServer, url: str
) -> None:
    server.inject_fault(404, route="task_status_updates")
    line = assert_one_error_line(run("--url", url, "watch", "1"), 1)
    assert f"(POST {url}/api/v3/workflow/1/task_status_updates -> 404)" in line
    assert "prefix" not in line


def test_a_url_that_already_ends_in_the_prefix_is_not_doubled(
    server: FakeJobmonServer, url: str
) -> None:
    result = run("--url", f"{url}/api/v3/", "time")
    assert_ok(result)
    assert [r.url_path for r in server.requests] == ["/api/v3/time"]


def test_a_password_in_the_url_is_refused_and_never_shown(url: str) -> None:
    # The SDK refuses user info in service_url (credentials go in headers),
    # before anything is sent; the password never reaches the terminal.
    with_userinfo = url.replace("http://", "http://bob:secret@")
    line = assert_one_error_line(run("--url", with_userinfo, "--prefix", "/nope", "time"), 2)
    assert "user name or password" in line
    assert "secret" not in line


def test_url_from_the_config_file(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "jobmon.yaml"
    config.write_text(f"http:\n  service_url: {url}\n", encoding="utf-8")
    monkeypatch.setenv("JOBMON__CONFIG_FILE", str(config))
    result = run("--json", "time")
    assert_ok(result)
    assert json.loads(result.stdout) == {"time": NOW}


# -- expected failures: one line, no traceback --------------------------------------------

COMMANDS = [
    pytest.param(["time"], id="time"),
    pytest.param(["workflow", "1"], id="workflow"),
    pytest.param(["watch", "1", "--interval", "0.01"], id="watch"),
    pytest.param(["heartbeat", "1", "--status", "R"], id="heartbeat"),
]


@pytest.mark.parametrize("command", COMMANDS)
def test_no_url_configured_exits_2(command: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("JOBMON__"):
            monkeypatch.delenv(name)
    line = assert_one_error_line(run(*command), 2)
    assert line == "error: no Jobmon server given: pass --url or set JOBMON__HTTP__SERVICE_URL"


def test_a_config_file_without_a_url_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "jobmon.yaml"
    config.write_text("http:\n  request_timeout: 5\n", encoding="utf-8")
    monkeypatch.setenv("JOBMON__CONFIG_FILE", str(config))
    line = assert_one_error_line(run("time"), 2)
    assert line == (
        "error: no Jobmon server given: pass --url or set JOBMON__HTTP__SERVICE_URL"
        f" (or http.service_url in {config})"
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_connection_refused_names_host_port_and_url(command: list[str], dead_url: str) -> None:
    line = assert_one_error_line(run("--url", dead_url, *command), 1)
    port = dead_url.rsplit(":", 1)[1]
    assert line.startswith(f"error: connection refused by 127.0.0.1 port {port}: ")
    assert re.search(rf"\((GET|POST) {dead_url}/api/v3/\S+; gave up after 1 attempt\)$", line)


def test_connection_refused_retries_then_gives_up(
    dead_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A small time budget ends the retries before the first backoff wait (1 s or more).
    monkeypatch.setenv("JOBMON__HTTP__RETRIES_ATTEMPTS", "5")
    monkeypatch.setenv("JOBMON__HTTP__RETRIES_TIMEOUT", "0.5")
    line = assert_one_error_line(run("--url", dead_url, "time"), 1)
    assert line.endswith(f"(GET {dead_url}/api/v3/time; gave up after 1 attempt)")


@pytest.mark.parametrize("bad_url", ["jobmon:5000", "ftp://127.0.0.1"])
def test_malformed_url_exits_2(bad_url: str) -> None:
    line = assert_one_error_line(run("--url", bad_url, "time"), 2)
    assert "service_url" in line


def test_malformed_setting_exits_2(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBMON__HTTP__RETRIES_ATTEMPTS", "many")
    line = assert_one_error_line(run("--url", url, "time"), 2)
    assert "JOBMON__HTTP__RETRIES_ATTEMPTS" in line


def test_server_error_is_one_error_line(server: FakeJobmonServer, url: str) -> None:
    server.inject_fault(503)
    line = assert_one_error_line(run("--url", url, "time"), 1)
    assert "503" in line


# -- retry budgets ------------------------------------------------------------------------


def test_retries_attempts_option_overrides_the_environment(
    server: FakeJobmonServer, url: str
) -> None:
    # The environment (autouse fixture) allows one attempt: the 503 would end it.
    server.inject_fault(503)
    result = run("--url", url, "--retries-attempts", "2", "time")
    assert_ok(result)
    assert result.stdout == f"{NOW}\n"
    assert [r.url_path for r in server.requests] == ["/api/v3/time"] * 2


def test_retries_attempts_option_applies_to_watch(server: FakeJobmonServer, url: str) -> None:
    for task in server.tasks.values():
        task.status = "D"
    server.inject_fault(503, route="task_status_updates")
    result = run("--url", url, "--retries-attempts", "2", "watch", "1")
    assert_ok(result)
    assert "finished: 9 done, 0 failed of 9 tasks" in result.stdout


def test_retries_timeout_option_overrides_the_environment(
    dead_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBMON__HTTP__RETRIES_ATTEMPTS", "5")
    monkeypatch.setenv("JOBMON__HTTP__RETRIES_TIMEOUT", "300")
    line = assert_one_error_line(run("--url", dead_url, "--retries-timeout", "0.5", "time"), 1)
    assert line.endswith("; gave up after 1 attempt)")


def test_one_shot_commands_give_up_within_their_own_budget(
    dead_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK's default budget (300 s) and many attempts: the command's own
    # budget ends it after a few backoff waits (about ten seconds).
    monkeypatch.setenv("JOBMON__HTTP__RETRIES_ATTEMPTS", "50")
    line = assert_one_error_line(run("--url", dead_url, "time"), 1)
    match = re.search(r"gave up after (\d+) attempts\)$", line)
    assert match is not None, line
    assert 1 < int(match.group(1)) < 50


# -- output that is not a terminal ----------------------------------------------------------


def test_watch_prints_plain_complete_lines_when_not_a_terminal() -> None:
    fake = progressing_server()
    fake.add_dag(4, chain=True)
    fake.add_tasks(2)
    with fake.serve() as url:
        result = run("--url", url, "watch", "1", "--interval", "0.01")
    assert_ok(result)
    lines = result.stdout.splitlines()
    assert "\x1b" not in result.stdout
    assert lines[0].startswith("workflow 1 (dag 1): 6 tasks; ")
    assert re.fullmatch(r"workflow 1 \(dag 1\): 6 tasks; D done 6(, [A-Z] [a-z ]+ 0)*", lines[-2])
    assert lines[-1] == "finished: 6 done, 0 failed of 6 tasks"


def test_demo_summary_is_one_clean_line_when_not_a_terminal() -> None:
    result = run("demo", "--tasks", "40", "--delay", "0")
    assert_ok(result)
    *progress, summary = result.stdout.splitlines()
    assert "\x1b" not in result.stdout
    assert re.fullmatch(
        r"workflow run 1 ended [DE]: \d+ done, \d+ failed, \d+ not run, of 40 tasks;"
        r" \d+ calls in [\d.]+s",
        summary,
    )
    assert progress
    assert all(line.startswith("demo: workflow 1, run 1: 40 tasks; ") for line in progress)
    assert progress[-1].startswith("demo: workflow 1, run 1: 40 tasks; D done ")
    assert result.stdout.endswith("s\n")


# -- schema on stdout -------------------------------------------------------------------------


def test_schema_of_one_model_prints_the_bytes_of_its_file(tmp_path: Path) -> None:
    assert_ok(run("schema", "--out", str(tmp_path)))
    for model in RESPONSE_MODELS:
        result = run("schema", model.__name__)
        assert_ok(result)
        assert result.stdout_bytes == (tmp_path / f"{model.__name__}.json").read_bytes()


def test_schema_without_a_model_prints_every_schema() -> None:
    result = run("schema")
    assert_ok(result)
    everything = json.loads(result.stdout)
    assert sorted(everything) == sorted(model.__name__ for model in RESPONSE_MODELS)
    assert all(
        schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        for schema in everything.values()
    )


def test_schema_out_with_models_writes_only_those(tmp_path: Path) -> None:
    result = run("schema", "HeartbeatResponse", "TasksResponse", "--out", str(tmp_path))
    assert_ok(result)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "HeartbeatResponse.json",
        "TasksResponse.json",
    ]


def test_schema_of_an_unknown_model_exits_2() -> None:
    line = assert_one_error_line(run("schema", "Nope"), 2)
    assert line.startswith("error: no response model Nope; one of: ")
    assert "HeartbeatResponse" in line


def test_watch_rides_out_an_outage_longer_than_a_one_shot_budget(
    server: FakeJobmonServer,
    url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Four 503s: the fourth backoff wait (8 s or more) would take a one-shot
    # command past its 10 s budget; watch keeps the configured 60 s.
    for task in server.tasks.values():
        task.status = "D"
    monkeypatch.setenv("JOBMON__HTTP__RETRIES_ATTEMPTS", "6")
    monkeypatch.setenv("JOBMON__HTTP__RETRIES_TIMEOUT", "60")
    server.inject_fault(503, times=4, route="task_status_updates")
    result = run("--url", url, "watch", "1")
    assert_ok(result)
    assert "finished: 9 done, 0 failed of 9 tasks" in result.stdout
    retries = [
        record
        for record in caplog.records
        if record.name == "jobmon_gateway" and record.getMessage().startswith("retrying POST")
    ]
    assert len(retries) == 4
