"""Every gateway call against the real Jobmon servers, 3.6 and 3.2.2, sync and async.

Through the public API only (``Requester``, ``ServerGateway``), on the live
servers that ``conftest.py`` starts and seeds. What is expected is the wire
contract (``../shared/PROTOCOL.md``): where the two servers differ, the test
says which answers what. Calls that change a workflow's state take a
workflow of their own (``live_server.take_workflow()``); the others share
``live_server.shared``, whose tasks stay REGISTERING and whose run stays
RUNNING. Task instances are counted in the server's own SQLite file.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any, Literal

import aiohttp
import httpx
import pytest

from jobmon_gateway import (
    CLIENT_JOBMON_VERSION,
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    RetryBudgetExhaustedError,
    ServerError,
    ServerGateway,
    TaskMetadata,
    TaskRow,
    TaskStatus,
    WorkflowNotFoundError,
    WorkflowRunStatus,
)

from .lost_answer_proxy import LostAnswerProxy
from .servers import LiveServer, SeededWorkflow

# conftest.py gives the first live test the time to bring the servers up.
pytestmark = pytest.mark.live

Mode = Literal["sync", "async"]
UNKNOWN = 999_999
NO_SUCH_ROW = "sqlalchemy.exc.NoResultFound"


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> Mode:
    """Each test runs its calls both ways: awaited, and through the ``_sync`` twins."""
    chosen: Mode = request.param
    return chosen


class Calls:
    """A gateway's calls, made the way ``mode`` says (awaited, or the ``_sync`` twin)."""

    def __init__(self, gateway: ServerGateway, mode: Mode) -> None:
        self.gateway = gateway
        self.mode = mode

    async def __call__(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self.mode == "async":
            return await getattr(self.gateway, name)(*args, **kwargs)
        return getattr(self.gateway, f"{name}_sync")(*args, **kwargs)

    def without_retries(self) -> Calls:
        return Calls(self.gateway.without_retries(), self.mode)

    async def iter_tasks(self, chunk_size: int) -> list[dict[int, TaskMetadata]]:
        if self.mode == "async":
            return [chunk async for chunk in self.gateway.iter_tasks(chunk_size)]
        return list(self.gateway.iter_tasks_sync(chunk_size))

    async def iter_task_rows(self, chunk_size: int) -> list[dict[int, TaskRow]]:
        if self.mode == "async":
            return [chunk async for chunk in self.gateway.iter_task_rows(chunk_size)]
        return list(self.gateway.iter_task_rows_sync(chunk_size))


@contextlib.asynccontextmanager
async def gateway_for(
    server: LiveServer,
    mode: Mode,
    workflow_id: int,
    workflow_run_id: int,
    **options: Any,
) -> AsyncIterator[Calls]:
    """A gateway on ``server`` for one workflow run, closed afterwards."""
    gateway = ServerGateway(server.requester(**options), workflow_id, workflow_run_id)
    try:
        yield Calls(gateway, mode)
    finally:
        await gateway.close()


@contextlib.asynccontextmanager
async def watched_gateway_for(
    server: LiveServer,
    mode: Mode,
    workflow: SeededWorkflow,
    on_response: Callable[[httpx.Request, bytes], None],
    **options: Any,
) -> AsyncIterator[Calls]:
    """A gateway sending on a client of ours that shows us each answer's raw bytes."""
    gateway = ServerGateway(
        server.requester(**options), workflow.workflow_id, workflow.workflow_run_id
    )
    if mode == "async":

        async def async_hook(response: httpx.Response) -> None:
            on_response(response.request, await response.aread())

        async with httpx.AsyncClient(
            event_hooks={"response": [async_hook]}, trust_env=False
        ) as async_client:
            gateway.set_session(async_client)
            try:
                yield Calls(gateway, mode)
            finally:
                await gateway.close()
        return

    def sync_hook(response: httpx.Response) -> None:
        on_response(response.request, response.read())

    with httpx.Client(event_hooks={"response": [sync_hook]}, trust_env=False) as client:
        gateway.set_session(client)
        try:
            yield Calls(gateway, mode)
        finally:
            await gateway.close()


def by_status(tasks_by_status: dict[Any, list[int]]) -> dict[str, list[int]]:
    """A status map with plain letters as keys and sorted ids, for comparing."""
    return {str(status): sorted(ids) for status, ids in tasks_by_status.items()}


# -- the run's own calls --------------------------------------------------------------


async def test_log_heartbeat_answers_the_runs_status(live_server: LiveServer, mode: Mode) -> None:
    shared = live_server.shared
    async with gateway_for(live_server, mode, shared.workflow_id, shared.workflow_run_id) as call:
        answer = await call("log_heartbeat", WorkflowRunStatus.RUNNING, 30.0)
        assert answer.status == WorkflowRunStatus.RUNNING
        assert answer.status == "R"


async def test_update_status_moves_the_run_and_answers_unchanged_on_an_illegal_move(
    live_server: LiveServer, mode: Mode
) -> None:
    workflow = live_server.take_workflow()
    async with gateway_for(
        live_server, mode, workflow.workflow_id, workflow.workflow_run_id
    ) as call:
        moved = await call("update_status", WorkflowRunStatus.DONE)
        assert moved.status == WorkflowRunStatus.DONE
        # 3.6 commits the move only after answering; the next call must see it.
        live_server.wait_for_run_status(workflow.workflow_run_id, "D")
        # DONE -> RUNNING is illegal: not an error, the status comes back unchanged.
        refused = await call("update_status", "R")
        assert refused.status == WorkflowRunStatus.DONE
        # A heartbeat says what the run is, whatever the driver believed.
        beat = await call("log_heartbeat", "R", 30.0)
        assert beat.status == WorkflowRunStatus.DONE


async def test_terminate_task_instances_answers_what_is_known(
    live_server: LiveServer, mode: Mode
) -> None:
    shared = live_server.shared
    async with gateway_for(live_server, mode, shared.workflow_id, shared.workflow_run_id) as call:
        answer = await call("terminate_task_instances")
    assert answer.workflow_run_id == shared.workflow_run_id
    if live_server.version == "3.2.2":
        # 3.2 does the work and answers null: the count is unknown, not zero.
        assert answer.num_terminated is None
    else:
        # Nothing of the shared run was launched or running.
        assert answer.num_terminated == 0


async def test_request_triage_answers_nothing(live_server: LiveServer, mode: Mode) -> None:
    shared = live_server.shared
    async with gateway_for(live_server, mode, shared.workflow_id, shared.workflow_run_id) as call:
        assert await call("request_triage") is None


# -- the workflow's calls ----------------------------------------------------------------


async def test_get_task_status_updates_full_snapshot(live_server: LiveServer, mode: Mode) -> None:
    shared = live_server.shared
    async with gateway_for(live_server, mode, shared.workflow_id, shared.workflow_run_id) as call:
        snapshot = await call("get_task_status_updates")
        server_time = await call("get_server_time")
    assert by_status(snapshot.tasks_by_status) == {"G": sorted(shared.task_ids)}
    assert list(snapshot.tasks_by_status) == [TaskStatus.REGISTERING]
    assert isinstance(snapshot.time, datetime)
    assert snapshot.time.tzinfo is None
    # Both are the database's clock: the later reading is not earlier.
    assert snapshot.time <= server_time


async def test_get_task_status_updates_since_syncs_the_changes(
    live_server: LiveServer, mode: Mode
) -> None:
    workflow = live_server.take_workflow()
    first, *rest = workflow.task_ids
    async with gateway_for(
        live_server, mode, workflow.workflow_id, workflow.workflow_run_id
    ) as call:
        before = await call("get_task_status_updates")
        assert by_status(before.tasks_by_status) == {"G": sorted(workflow.task_ids)}
        await call(
            "queue_task_batch",
            workflow.array_id,
            [first],
            workflow.task_resources_id,
            workflow.cluster_id,
        )
        changed = await call("get_task_status_updates", since=before.time)
        # The queued task is among the changes (a task changed within the
        # same second as `before` may be reported again: the clock has seconds).
        assert first in changed.tasks_by_status[TaskStatus.QUEUED]
        assert first not in changed.tasks_by_status.get(TaskStatus.REGISTERING, [])
        assert changed.time >= before.time
        # The same, with the time as the server's own string.
        as_text = await call(
            "get_task_status_updates", since=before.time.strftime("%Y-%m-%d %H:%M:%S")
        )
        assert by_status(as_text.tasks_by_status) == by_status(changed.tasks_by_status)
        # Nothing has changed after a time still to come.
        later = await call("get_task_status_updates", since=changed.time + timedelta(days=1))
        assert later.tasks_by_status == {}
        after = await call("get_task_status_updates")
    assert by_status(after.tasks_by_status) == {"G": sorted(rest), "Q": [first]}


async def test_get_workflow_concurrency(live_server: LiveServer, mode: Mode) -> None:
    shared = live_server.shared
    async with gateway_for(live_server, mode, shared.workflow_id, shared.workflow_run_id) as call:
        assert await call("get_workflow_concurrency") == shared.max_concurrently_running


async def test_get_array_concurrency(live_server: LiveServer, mode: Mode) -> None:
    shared = live_server.shared
    async with gateway_for(live_server, mode, shared.workflow_id, shared.workflow_run_id) as call:
        if live_server.version == "3.2.2":
            # Servers before 3.4 lack the route.
            with pytest.raises(NotFoundError) as raised:
                await call("get_array_concurrency", shared.array_id)
            assert raised.value.status == 404
            return
        limit = await call("get_array_concurrency", shared.array_id)
        tasks = await call("get_tasks", 0, 1)
    # Two routes, one limit: the array's, as get_tasks reports it too.
    assert limit == next(iter(tasks.values())).array_max_concurrently_running


async def test_get_workflow_metadata(live_server: LiveServer, mode: Mode) -> None:
    shared = live_server.shared
    async with gateway_for(live_server, mode, shared.workflow_id, shared.workflow_run_id) as call:
        metadata = await call("get_workflow_metadata")
    assert metadata.workflow_id == shared.workflow_id
    assert metadata.dag_id == shared.dag_id
    assert metadata.max_concurrently_running == shared.max_concurrently_running


async def test_get_tasks_pages_by_task_id(live_server: LiveServer, mode: Mode) -> None:
    shared = live_server.shared
    ids = sorted(shared.task_ids)
    async with gateway_for(live_server, mode, shared.workflow_id, shared.workflow_run_id) as call:
        first = await call("get_tasks", 0, 2)
        second = await call("get_tasks", max(first), 2)
        last = await call("get_tasks", max(second), 2)
        past_end = await call("get_tasks", max(last), 2)
    assert [list(first), list(second), list(last), past_end] == [ids[:2], ids[2:4], ids[4:], {}]
    for task in (*first.values(), *second.values(), *last.values()):
        assert task.array_id == shared.array_id
        assert task.status == TaskStatus.REGISTERING
        assert task.cluster_name == "dummy"
        assert task.queue_name == "null.q"
        assert task.max_attempts >= 1
        assert isinstance(task.requested_resources, dict)
        assert task.fallback_queues == []


async def test_iter_tasks_walks_every_chunk(live_server: LiveServer, mode: Mode) -> None:
    shared = live_server.shared
    ids = sorted(shared.task_ids)
    async with gateway_for(live_server, mode, shared.workflow_id, shared.workflow_run_id) as call:
        chunks = await call.iter_tasks(2)
        whole = await call.iter_tasks(500)
        rows = await call.iter_task_rows(2)
    assert [list(chunk) for chunk in chunks] == [ids[:2], ids[2:4], ids[4:]]
    assert [list(chunk) for chunk in whole] == [ids]
    # The same pages as TaskRows: the models' values, row for row.
    assert rows == [
        {task_id: TaskRow.from_metadata(task) for task_id, task in chunk.items()}
        for chunk in chunks
    ]
    assert all(type(row) is TaskRow for chunk in rows for row in chunk.values())


@pytest.mark.parametrize("client_version", [CLIENT_JOBMON_VERSION, "3.4.0"])
async def test_get_downstream_tasks_reads_every_form_the_server_sends(
    live_server: LiveServer, mode: Mode, client_version: str
) -> None:
    shared = live_server.shared
    forms: set[str] = set()

    def note_forms(request: httpx.Request, content: bytes) -> None:
        if request.url.path.endswith("/task/get_downstream_tasks"):
            rows = json.loads(content)["downstream_tasks"].values()
            forms.update(type(downstream).__name__ for _node, downstream in rows)

    async with watched_gateway_for(
        live_server, mode, shared, note_forms, client_jobmon_version=client_version
    ) as call:
        answer = await call("get_downstream_tasks", shared.task_ids, shared.dag_id)
    assert {
        task_id: (node_id, sorted(downstream))
        for task_id, (node_id, downstream) in answer.downstream_tasks.items()
    } == shared.downstream_nodes()
    # The wire form depends on the server and the announced version (3.4.23+
    # gets a JSON list, older a JSON-encoded string, 3.2 always the string);
    # a node with no downstream edges comes as null.
    list_form = live_server.version == "3.6" and client_version == CLIENT_JOBMON_VERSION
    assert forms == {"list" if list_form else "str", "NoneType"}


async def test_get_server_time_is_naive(live_server: LiveServer, mode: Mode) -> None:
    shared = live_server.shared
    async with gateway_for(live_server, mode, shared.workflow_id, shared.workflow_run_id) as call:
        earlier = await call("get_server_time")
        later = await call("get_server_time")
    assert isinstance(earlier, datetime)
    assert earlier.tzinfo is None
    assert earlier <= later


# -- queueing ------------------------------------------------------------------------------


async def test_queue_task_batch_and_its_repeat(live_server: LiveServer, mode: Mode) -> None:
    workflow = live_server.take_workflow()
    batch = list(workflow.task_ids[3:])
    async with gateway_for(
        live_server, mode, workflow.workflow_id, workflow.workflow_run_id
    ) as call:

        async def queue(task_ids: list[int]) -> dict[str, list[int]]:
            answer = await call(
                "queue_task_batch",
                workflow.array_id,
                task_ids,
                workflow.task_resources_id,
                workflow.cluster_id,
            )
            return by_status(answer.tasks_by_status)

        assert live_server.count_task_instances(batch) == 0
        assert await queue(batch) == {"Q": sorted(batch)}
        assert live_server.count_task_instances(batch) == len(batch)
        # The caller's own repeat: the same answer; 3.6 adds no task instance,
        # 3.2 one more per task (PROTOCOL.md: not safe to repeat there).
        assert await queue(batch) == {"Q": sorted(batch)}
        repeats_add = 0 if live_server.repeat_safe_queue else len(batch)
        assert live_server.count_task_instances(batch) == len(batch) + repeats_add
        assert await queue([]) == {}
        assert live_server.count_task_instances(workflow.task_ids) == len(batch) + repeats_add
        tasks = await call("get_tasks", 0, 500)
    assert {task_id: str(task.status) for task_id, task in tasks.items()} == {
        task_id: "Q" if task_id in batch else "G" for task_id in workflow.task_ids
    }


async def test_queue_task_batch_whose_answer_is_lost_adds_no_duplicate(
    live_server: LiveServer, mode: Mode
) -> None:
    workflow = live_server.take_workflow()
    batch = list(workflow.task_ids[:2])
    with LostAnswerProxy(live_server.port, "/queue_task_batch") as proxy:
        async with gateway_for(
            live_server,
            mode,
            workflow.workflow_id,
            workflow.workflow_run_id,
            service_url=proxy.url,
            retries_attempts=3,
        ) as call:
            queue = (
                "queue_task_batch",
                workflow.array_id,
                batch,
                workflow.task_resources_id,
                workflow.cluster_id,
            )
            if live_server.repeat_safe_queue:
                # 3.6 makes a repeat harmless, so the call is retried and answers.
                answer = await call(*queue)
                assert by_status(answer.tasks_by_status) == {"Q": sorted(batch)}
            else:
                # 3.2 would add a task instance per task on each resend: the
                # call fails instead, and the caller decides.
                with pytest.raises(GatewayError):
                    await call(*queue)
            # Either way the work was done once: the tasks are queued.
            snapshot = await call("get_task_status_updates")
    assert proxy.errors == []
    assert proxy.answers_lost == 1
    assert sorted(snapshot.tasks_by_status[TaskStatus.QUEUED]) == sorted(batch)
    assert live_server.count_task_instances(batch) == len(batch)


# -- errors --------------------------------------------------------------------------------


async def test_unknown_workflow(live_server: LiveServer, mode: Mode) -> None:
    shared = live_server.shared
    async with gateway_for(live_server, mode, UNKNOWN, shared.workflow_run_id) as call:
        with pytest.raises(WorkflowNotFoundError):
            await call("get_workflow_metadata")
        assert await call("get_tasks", 0, 10) == {}
        assert (await call("get_task_status_updates")).tasks_by_status == {}
        if live_server.version == "3.6":
            with pytest.raises(NotFoundError) as not_found:
                await call("get_workflow_concurrency")
            assert not_found.value.status == 404
            return
        # 3.2 answers a 500 (NoResultFound) instead of a 404.
        with pytest.raises(ServerError) as failed:
            await call.without_retries()("get_workflow_concurrency")
        assert failed.value.status == 500
        assert failed.value.server_error_type == NO_SUCH_ROW


@pytest.mark.parametrize(
    "call_name", ["log_heartbeat", "update_status", "terminate_task_instances"]
)
async def test_unknown_workflow_run(live_server: LiveServer, mode: Mode, call_name: str) -> None:
    shared = live_server.shared
    arguments: dict[str, tuple[Any, ...]] = {
        "log_heartbeat": ("R", 30.0),
        "update_status": ("R",),
        "terminate_task_instances": (),
    }
    async with gateway_for(
        live_server, mode, shared.workflow_id, UNKNOWN, retries_attempts=2
    ) as call:
        with pytest.raises(RetryBudgetExhaustedError) as exhausted:
            await call(call_name, *arguments[call_name])
    assert exhausted.value.status == 500
    assert exhausted.value.attempts == 2
    assert exhausted.value.server_error_type == NO_SUCH_ROW
    async with gateway_for(live_server, mode, shared.workflow_id, UNKNOWN) as call:
        with pytest.raises(ServerError) as failed:
            await call.without_retries()(call_name, *arguments[call_name])
    assert failed.value.status == 500
    assert failed.value.attempts == 1
    assert failed.value.server_error_type == NO_SUCH_ROW


async def test_unknown_array(live_server: LiveServer, mode: Mode) -> None:
    shared = live_server.shared
    async with gateway_for(live_server, mode, shared.workflow_id, shared.workflow_run_id) as call:
        if live_server.version == "3.2.2":
            # The route itself is absent before 3.4.
            with pytest.raises(NotFoundError) as not_found:
                await call("get_array_concurrency", UNKNOWN)
            assert not_found.value.status == 404
            return
        # 3.6 answers an unknown array with a 500 (NoResultFound), not a 404.
        with pytest.raises(ServerError) as failed:
            await call.without_retries()("get_array_concurrency", UNKNOWN)
    assert failed.value.status == 500
    assert failed.value.server_error_type == NO_SUCH_ROW


async def test_bad_ids_are_refused_before_sending(live_server: LiveServer, mode: Mode) -> None:
    workflow = live_server.shared
    sent: list[str] = []
    requester = live_server.requester()
    for bad in (0, -1, True, "1", 1.0):
        with pytest.raises(InvalidRequestError):
            ServerGateway(requester, bad, workflow.workflow_run_id)  # type: ignore[arg-type]
        with pytest.raises(InvalidRequestError):
            ServerGateway(requester, workflow.workflow_id, bad)  # type: ignore[arg-type]
    refused: list[tuple[Any, ...]] = [
        ("get_array_concurrency", 0),
        ("get_array_concurrency", True),
        ("queue_task_batch", workflow.array_id, [0], workflow.task_resources_id, 1),
        ("queue_task_batch", workflow.array_id, [-1], workflow.task_resources_id, 1),
        ("queue_task_batch", workflow.array_id, ["1"], workflow.task_resources_id, 1),
        ("queue_task_batch", 0, [workflow.task_ids[0]], workflow.task_resources_id, 1),
        ("queue_task_batch", workflow.array_id, [workflow.task_ids[0]], -3, 1),
        ("queue_task_batch", workflow.array_id, [workflow.task_ids[0]], 1, 0),
        ("get_downstream_tasks", [0], workflow.dag_id),
        ("get_downstream_tasks", workflow.task_ids, -1),
        ("get_tasks", -1, 10),
        ("get_tasks", 0, 0),
    ]
    async with watched_gateway_for(
        live_server, mode, workflow, lambda request, _content: sent.append(str(request.url))
    ) as call:
        for name, *arguments in refused:
            with pytest.raises(InvalidRequestError) as raised:
                await call(name, *arguments)
            assert raised.value.attempts == 0, name
        with pytest.raises(InvalidRequestError):
            await call.iter_tasks(0)
    assert sent == []
    assert live_server.count_task_instances(workflow.task_ids) == 0


@pytest.mark.parametrize("retries_off", ["retries_attempts=1", "without_retries"])
async def test_a_call_right_after_a_500_succeeds(
    live_server: LiveServer, mode: Mode, retries_off: str
) -> None:
    shared = live_server.shared
    options = {"retries_attempts": 1} if retries_off == "retries_attempts=1" else {}
    async with gateway_for(
        live_server, mode, shared.workflow_id, UNKNOWN, **options
    ) as gateway_call:
        call = gateway_call if options else gateway_call.without_retries()
        # After a 500 the 3.6 server drops the kept-alive connection unannounced:
        # the next request must not be lost to that, again and again.
        for _ in range(3):
            with pytest.raises(GatewayError) as failed:
                await call("log_heartbeat", "R", 30.0)
            assert failed.value.status == 500
            assert failed.value.attempts == 1
            assert isinstance(await call("get_server_time"), datetime)


# -- what the lead is landing (HELPERS.md interfaces) ---------------------------------------


async def test_errors_name_the_full_url(live_server: LiveServer, mode: Mode) -> None:
    shared = live_server.shared
    base = live_server.service_url + live_server.route_prefix
    async with gateway_for(live_server, mode, shared.workflow_id, UNKNOWN) as call:
        with pytest.raises(ServerError) as failed:
            await call.without_retries()("log_heartbeat", "R", 30.0)
    # Scheme, host, port, route prefix and route; no query.
    assert getattr(failed.value, "url", None) == f"{base}/workflow_run/{UNKNOWN}/log_heartbeat"
    async with gateway_for(live_server, mode, UNKNOWN, shared.workflow_run_id) as call:
        with pytest.raises(WorkflowNotFoundError) as not_found:
            await call("get_workflow_metadata")
    assert (
        getattr(not_found.value, "url", None)
        == f"{base}/workflow/{UNKNOWN}/fetch_workflow_metadata"
    )


async def test_retries_timeout_zero_means_one_attempt(live_server: LiveServer, mode: Mode) -> None:
    # Jobmon's own configuration uses retries_timeout=0: one attempt, then a RuntimeError.
    shared = live_server.shared
    async with gateway_for(
        live_server, mode, shared.workflow_id, UNKNOWN, retries_timeout=0
    ) as call:
        with pytest.raises(RetryBudgetExhaustedError) as exhausted:
            await call("log_heartbeat", "R", 30.0)
    assert isinstance(exhausted.value, RuntimeError)
    assert exhausted.value.attempts == 1
    assert exhausted.value.status == 500
    assert exhausted.value.server_error_type == NO_SUCH_ROW


async def test_the_drop_in_with_a_lent_aiohttp_session(live_server: LiveServer) -> None:
    # What Jobmon's swarm does: set_session(aiohttp.ClientSession()), never
    # closing it here. The drop-in keeps it for the swarm and sends on httpx.
    from jobmon_gateway.jobmon import ServerGateway as DropIn

    shared = live_server.shared
    async with aiohttp.ClientSession() as session:
        gateway = DropIn(live_server.requester(), shared.workflow_id, shared.workflow_run_id)
        gateway.set_session(session)
        assert await gateway._ensure_session() is session
        try:
            beat = await gateway.log_heartbeat("R", 30.0)
            chunks = [chunk async for chunk in gateway.iter_tasks(2)]
            downstream = await gateway.get_downstream_tasks(shared.task_ids, shared.dag_id)
        finally:
            await gateway.close()
        assert not session.closed
    assert beat.status == WorkflowRunStatus.RUNNING
    assert [task_id for chunk in chunks for task_id in chunk] == sorted(shared.task_ids)
    assert {
        task_id: (node_id, sorted(nodes))
        for task_id, (node_id, nodes) in downstream.downstream_tasks.items()
    } == shared.downstream_nodes()
