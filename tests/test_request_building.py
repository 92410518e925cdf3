"""The request a transport is handed is the one httpx would build from the same lines and body.

The SDK builds its ``httpx.Request`` directly (httpx's ``content=`` path
costs three times as much): the Host line first, the given headers in their
order, the body's Content-Length last, the body readable as
``request.content``. Checked here against httpx's own construction, for
GET, POST and PUT, sync and async, and for a caller who names a framing
header (Host) himself.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import httpx
import pytest

from jobmon_gateway import Requester, ServerGateway, TaskStatus

Mode = Literal["sync", "async"]
MODES: list[Mode] = ["sync", "async"]
NOW = "2026-11-28 17:56:34"
AUTO = (b"host", b"content-length")


class Recorder(httpx.MockTransport):
    """Answers every call with 200, keeping each request and its body as first read."""

    def __init__(self) -> None:
        super().__init__(self.answer)
        self.seen: list[tuple[httpx.Request, bytes]] = []

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request, request.content))
        if request.url.path.endswith("/time"):
            return httpx.Response(200, json={"time": NOW})
        if "terminate_task_instances" in request.url.path:
            return httpx.Response(200, json={"workflow_run_id": 7, "num_terminated": 0})
        return httpx.Response(200, json={"status": "R"})


def gateway(recorder: Recorder, **options: Any) -> ServerGateway:
    requester = Requester(
        "http://127.0.0.1:1", transport=recorder, async_transport=recorder, **options
    )
    return ServerGateway(requester, 1, 7)


def run_calls(mode: Mode, gw: ServerGateway) -> None:
    if mode == "sync":
        gw.get_server_time_sync()
        gw.log_heartbeat_sync(TaskStatus.RUNNING, 90)
        gw.terminate_task_instances_sync()
        return

    async def calls() -> None:
        await gw.get_server_time()
        await gw.log_heartbeat(TaskStatus.RUNNING, 90)
        await gw.terminate_task_instances()
        await gw.close()

    asyncio.run(calls())


def as_httpx_builds_it(request: httpx.Request, body: bytes) -> httpx.Request:
    """httpx's own request from the same URL, given lines (but the ones it adds) and body."""
    given = [(name, value) for name, value in request.headers.raw if name.lower() not in AUTO]
    return httpx.Request(
        request.method,
        request.url,
        headers=given,
        content=body if request.method != "GET" else None,
    )


@pytest.mark.parametrize("mode", MODES)
def test_each_request_is_what_httpx_builds_from_the_same_lines(mode: Mode) -> None:
    recorder = Recorder()
    run_calls(mode, gateway(recorder, headers={"X-Team": "pipelines"}))
    assert [request.method for request, _ in recorder.seen] == ["GET", "POST", "PUT"]
    for request, body in recorder.seen:
        expected = as_httpx_builds_it(request, body)
        assert request.headers.raw == expected.headers.raw
        assert request.content == body == expected.content
        assert request.headers.raw[0] == (b"Host", b"127.0.0.1:1")
        assert (b"X-Team", b"pipelines") in request.headers.raw
    get, post, put = (request for request, _ in recorder.seen)
    assert "content-length" not in get.headers
    assert post.headers["content-length"] == str(len(post.content)) != "0"
    assert post.content.startswith(b"{")
    assert put.content == b"{}"


def test_sync_and_async_send_the_same_lines() -> None:
    seen: dict[Mode, list[list[tuple[bytes, bytes]]]] = {}
    for mode in MODES:
        recorder = Recorder()
        run_calls(mode, gateway(recorder))
        # The request id is the one line that differs per call.
        seen[mode] = [
            [
                (name, b"" if name.lower() == b"x-server-structlog-context" else value)
                for name, value in request.headers.raw
            ]
            for request, _ in recorder.seen
        ]
    assert seen["sync"] == seen["async"]


@pytest.mark.parametrize("mode", MODES)
def test_a_host_header_given_by_the_caller_is_sent_once_and_as_given(mode: Mode) -> None:
    recorder = Recorder()
    run_calls(mode, gateway(recorder, headers={"Host": "jobmon.internal"}))
    for request, body in recorder.seen:
        hosts = [value for name, value in request.headers.raw if name.lower() == b"host"]
        assert hosts == [b"jobmon.internal"]
        assert request.content == body
        if request.method != "GET":
            assert request.headers["content-length"] == str(len(body))


@pytest.mark.parametrize("mode", MODES)
def test_request_hooks_can_read_the_body(mode: Mode) -> None:
    bodies: list[bytes] = []

    def hook(request: httpx.Request) -> None:
        bodies.append(request.content)

    async def async_hook(request: httpx.Request) -> None:
        hook(request)

    recorder = Recorder()
    chosen = hook if mode == "sync" else async_hook
    run_calls(mode, gateway(recorder, event_hooks={"request": [chosen]}))
    assert bodies == [body for _, body in recorder.seen]
    assert bodies[1].startswith(b'{"')
