"""A request id per call: in ``X-Server-Structlog-Context`` on every attempt, in the error,
in ``str(error)`` and in the retry log line. Sync and async."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import select
from typing import Any, Literal

import httpx
import pytest

from jobmon_gateway import GatewayError, Requester, ServerError, ServerGateway
from jobmon_gateway.routes import get_server_time
from jobmon_gateway.testing import FakeClock, FakeJobmonServer

Mode = Literal["sync", "async"]
MODES: list[Mode] = ["sync", "async"]
NOW = "2026-11-28 17:56:34"
ID = re.compile(r"[0-9a-f]{12}-[0-9a-f]+")


class Script(httpx.MockTransport):
    """Answers with the given statuses in turn (then 200), recording each log context."""

    def __init__(self, *statuses: int) -> None:
        super().__init__(self.answer)
        self.statuses = list(statuses)
        self.contexts: list[dict[str, Any]] = []

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.contexts.append(json.loads(request.headers["x-server-structlog-context"]))
        status = self.statuses.pop(0) if self.statuses else 200
        return httpx.Response(status, json={"time": NOW})

    @property
    def ids(self) -> list[str]:
        return [context["client_request_id"] for context in self.contexts]


def requester(transport: httpx.MockTransport, **options: Any) -> Requester:
    return Requester(
        "http://127.0.0.1:1",
        transport=transport,
        async_transport=transport,
        wait_initial=0,
        wait_jitter=0,
        wait_max=0,
        **options,
    )


def time_call(mode: Mode, gateway: ServerGateway) -> Any:
    if mode == "sync":
        return gateway.get_server_time_sync()
    return asyncio.run(gateway.get_server_time())


@pytest.mark.parametrize("mode", MODES)
def test_every_attempt_of_a_call_sends_the_calls_id(mode: Mode) -> None:
    script = Script(503, 502)
    time_call(mode, ServerGateway(requester(script), workflow_id=12, workflow_run_id=34))
    assert len(script.contexts) == 3
    first = script.contexts[0]
    assert set(first) == {"workflow_id", "workflow_run_id", "client_request_id"}
    assert (first["workflow_id"], first["workflow_run_id"]) == (12, 34)
    assert ID.fullmatch(first["client_request_id"])
    assert script.contexts == [first] * 3


@pytest.mark.parametrize("mode", MODES)
def test_each_call_has_an_id_of_its_own(mode: Mode) -> None:
    script = Script()
    gateway = ServerGateway(requester(script), 1, 1)
    for _ in range(3):
        time_call(mode, gateway)
    assert len(set(script.ids)) == 3


@pytest.mark.parametrize("mode", MODES)
def test_the_error_and_the_retry_log_name_the_id(
    mode: Mode, caplog: pytest.LogCaptureFixture
) -> None:
    script = Script(503, 503)
    gateway = ServerGateway(requester(script, retries_attempts=2), 1, 1)
    with (
        caplog.at_level(logging.WARNING, logger="jobmon_gateway"),
        pytest.raises(ServerError) as caught,
    ):
        time_call(mode, gateway)
    error = caught.value
    sent = script.ids[0]
    assert error.request_id == sent
    assert error.last_error.request_id == sent  # type: ignore[attr-defined]
    assert f"request_id={sent}]" in str(error)
    (retry,) = [record for record in caplog.records if record.name == "jobmon_gateway"]
    assert f"request_id={sent}" in retry.getMessage()
    assert getattr(retry, "jobmon_gateway.request_id") == sent


@pytest.mark.parametrize("mode", MODES)
def test_an_error_without_retries_names_the_id(mode: Mode) -> None:
    script = Script(404)
    with pytest.raises(GatewayError) as caught:
        time_call(mode, ServerGateway(requester(script), 1, 1).without_retries())
    assert caught.value.request_id == script.ids[0]
    assert f"request_id={script.ids[0]}" in str(caught.value)


@pytest.mark.parametrize("mode", MODES)
def test_an_uncounted_resend_keeps_the_id(mode: Mode) -> None:
    # A 500, then the kept-alive connection is reset (as uvicorn does): the
    # retry goes out, fails before any answer, and is resent on a new one.
    server = FakeJobmonServer(clock=FakeClock(NOW), drop_connection_after_500=True)
    server.inject_fault(500, route="/time")
    with server.serve() as url:
        gateway = ServerGateway(requester_for(url), 1, 1)
        assert str(time_call(mode, gateway)) == NOW
    contexts = [
        json.loads(request.headers["x-server-structlog-context"]) for request in server.requests
    ]
    assert len(contexts) == 3
    assert len({context["client_request_id"] for context in contexts}) == 1


def requester_for(url: str) -> Requester:
    return Requester(url, wait_initial=0, wait_jitter=0, wait_max=0, request_timeout=5)


@pytest.mark.parametrize("mode", MODES)
def test_a_requester_alone_sends_an_id_beside_its_own_context(mode: Mode) -> None:
    script = Script()
    given = requester(script, headers={"X-Server-Structlog-Context": '{"team": "genomics"}'})
    call = get_server_time()
    if mode == "sync":
        with given.new_client() as client:
            given.send(call, client)
    else:

        async def send() -> None:
            async with given.new_async_client() as client:
                await given.send_async(call, client)

        asyncio.run(send())
    (context,) = script.contexts
    assert context["team"] == "genomics"
    assert ID.fullmatch(context["client_request_id"])


def test_a_context_that_is_not_json_is_sent_as_given() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["x-server-structlog-context"])
        return httpx.Response(200, json={"time": NOW})

    transport = httpx.MockTransport(answer)
    given = requester(transport, headers={"X-Server-Structlog-Context": "not-json"})
    with given.new_client() as client:
        given.send(get_server_time(), client)
    assert seen == ["not-json"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is POSIX only")
def test_a_forked_child_makes_ids_of_its_own() -> None:
    script = Script()
    gateway = ServerGateway(requester(script), 1, 1)
    gateway.get_server_time_sync()
    reading, writing = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one call, its id to the pipe, and out whatever happens
        try:
            gateway.get_server_time_sync()
            os.write(writing, script.ids[-1].encode())
        finally:
            os._exit(0)
    os.close(writing)
    try:
        ready, _, _ = select.select([reading], [], [], 15.0)
        child_id = os.read(reading, 100).decode() if ready else ""
    finally:
        os.close(reading)
        os.waitpid(pid, 0)
    gateway.get_server_time_sync()
    parent_ids = script.ids
    assert ID.fullmatch(child_id), child_id
    assert child_id not in parent_ids
    # Not just another number: another prefix, so no later id of either can meet.
    assert child_id.split("-")[0] != parent_ids[0].split("-")[0]
    assert parent_ids[0].split("-")[0] == parent_ids[1].split("-")[0]
