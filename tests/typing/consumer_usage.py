"""How a user's code reads, and the exact types mypy --strict must give it.

Never run, only type-checked (``mypy --strict tests/typing``): nothing here is
called, and pytest does not collect the file. Each ``assert_type`` pins a
result type of the public API; if one loosens (to ``Any``, a wider union, an
untyped dict), mypy fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from typing_extensions import assert_type

from jobmon_gateway import (
    CLIENT_JOBMON_VERSION,
    Call,
    DownstreamTasksResponse,
    GatewayError,
    HeartbeatResponse,
    HttpSettings,
    NotFoundError,
    QueueResponse,
    Requester,
    RetryBudgetExhaustedError,
    ServerGateway,
    StatusUpdateResponse,
    TaskMetadata,
    TaskRow,
    TasksResponse,
    TaskStatus,
    TaskStatusUpdatesResponse,
    TerminateTaskInstancesResponse,
    WorkflowMetadata,
    WorkflowNotFoundError,
    WorkflowRunStatus,
    __version__,
)
from jobmon_gateway.schemas import export_schemas
from jobmon_gateway.testing import FakeJobmonServer, RecordedRequest

log = logging.getLogger(__name__)


def configure() -> Requester:
    """Settings from the environment, from code, and copies with changes."""
    from_env = Requester.from_env()
    assert_type(from_env, Requester)
    assert_type(Requester.from_env({"JOBMON__HTTP__SERVICE_URL": "http://x"}), Requester)
    assert_type(Requester.from_env(request_timeout=5), Requester)
    explicit = Requester(
        "http://jobmon.example.org:5000",
        route_prefix="/api/v3",
        request_timeout=20.0,
        retries_attempts=10,
        retries_timeout=300,
        headers={"Authorization": "Bearer token"},
    )
    assert_type(explicit.with_options(retries_attempts=1), Requester)
    assert_type(explicit.base_url, str)
    assert_type(explicit.new_client(), httpx.Client)
    assert_type(explicit.new_async_client(), httpx.AsyncClient)
    settings = HttpSettings.from_env()
    assert_type(settings, HttpSettings)
    assert_type(settings.service_url, str)
    assert_type(settings.request_timeout, float)
    assert_type(settings.retries_attempts, int)
    assert_type(CLIENT_JOBMON_VERSION, str)
    assert_type(__version__, str)
    return explicit


async def drive(requester: Requester) -> None:
    """Every async call, the way a workflow driver makes them."""
    async with ServerGateway(requester, workflow_id=12, workflow_run_id=34) as gateway:
        assert_type(gateway, ServerGateway)
        assert_type(gateway.workflow_id, int)
        assert_type(gateway.workflow_run_id, int)
        quick = gateway.with_options(request_timeout=2, retries_attempts=2, retries_timeout=5.0)
        assert_type(quick, ServerGateway)
        assert_type(gateway.without_retries().with_options(request_timeout=1.5), ServerGateway)
        assert_type(await quick.log_heartbeat("R", 30), HeartbeatResponse)

        heartbeat = await gateway.log_heartbeat(WorkflowRunStatus.RUNNING, 30.0)
        assert_type(heartbeat, HeartbeatResponse)
        assert_type(heartbeat.status, WorkflowRunStatus | str)
        if heartbeat.status in (WorkflowRunStatus.COLD_RESUME, WorkflowRunStatus.HOT_RESUME):
            return
        assert_type(await gateway.log_heartbeat("R", 30), HeartbeatResponse)

        updated = await gateway.update_status(WorkflowRunStatus.DONE)
        assert_type(updated, StatusUpdateResponse)
        assert_type(updated.status, WorkflowRunStatus | str)
        assert_type(await gateway.update_status("D"), StatusUpdateResponse)

        terminated = await gateway.terminate_task_instances()
        assert_type(terminated, TerminateTaskInstancesResponse)
        assert_type(terminated.num_terminated, int | None)
        assert_type(terminated.workflow_run_id, int)

        await gateway.request_triage()

        snapshot = await gateway.get_task_status_updates()
        assert_type(snapshot, TaskStatusUpdatesResponse)
        assert_type(snapshot.time, datetime)
        assert_type(snapshot.tasks_by_status, dict[TaskStatus | str, list[int]])
        queued_ids: list[int] = snapshot.tasks_by_status.get(TaskStatus.QUEUED, [])
        log.info("queued: %s", queued_ids)
        since = await gateway.get_task_status_updates(since=snapshot.time)
        assert_type(since, TaskStatusUpdatesResponse)
        assert_type(
            await gateway.get_task_status_updates("2026-11-28 17:56:34"),
            TaskStatusUpdatesResponse,
        )

        assert_type(await gateway.get_workflow_concurrency(), int)
        assert_type(await gateway.get_array_concurrency(7), int)
        assert_type(await gateway.get_array_concurrency(array_id=7), int)

        queued = await gateway.queue_task_batch(
            array_id=1, task_ids=[4, 5], task_resources_id=1, cluster_id=2
        )
        assert_type(queued, QueueResponse)
        assert_type(queued.tasks_by_status, dict[TaskStatus | str, list[int]])
        assert_type(await gateway.queue_task_batch(1, range(4, 6), 1, 2), QueueResponse)
        assert_type(await gateway.queue_task_batch(1, (4, 5), 1, 2), QueueResponse)

        metadata = await gateway.get_workflow_metadata()
        assert_type(metadata, WorkflowMetadata)
        assert_type(metadata.dag_id, int)
        assert_type(metadata.workflow_id, int)
        assert_type(metadata.max_concurrently_running, int)

        chunk = await gateway.get_tasks(max_task_id=0, chunk_size=500)
        assert_type(chunk, dict[int, TaskMetadata])
        assert_type(await gateway.get_tasks(), dict[int, TaskMetadata])
        for task_id, task in chunk.items():
            assert_type(task_id, int)
            assert_type(task, TaskMetadata)
            assert_type(task.array_id, int)
            assert_type(task.status, TaskStatus | str)
            assert_type(task.max_attempts, int)
            assert_type(task.resource_scales, dict[str, Any])
            assert_type(task.fallback_queues, list[Any])
            assert_type(task.requested_resources, dict[str, Any])
            assert_type(task.cluster_name, str)
            assert_type(task.queue_name, str)
            assert_type(task.array_max_concurrently_running, int)
        if chunk:
            assert_type(max(chunk), int)

        rows = await gateway.get_task_rows(max_task_id=0, chunk_size=500)
        assert_type(rows, dict[int, TaskRow])
        for row in rows.values():
            # The same attributes as TaskMetadata, of the same types.
            assert_type(row.array_id, int)
            assert_type(row.status, TaskStatus | str)
            assert_type(row.resource_scales, dict[str, Any])
            assert_type(row.fallback_queues, list[Any])
            assert_type(row.array_max_concurrently_running, int)
            assert_type(row.to_metadata(), TaskMetadata)
            assert_type(TaskRow.from_metadata(row.to_metadata()), TaskRow)
        async for row_page in gateway.iter_task_rows(chunk_size=1000):
            assert_type(row_page, dict[int, TaskRow])

        pages = gateway.iter_tasks(chunk_size=1000)
        assert_type(pages, AsyncIterator[dict[int, TaskMetadata]])
        async for page in gateway.iter_tasks():
            assert_type(page, dict[int, TaskMetadata])
            edges = await gateway.get_downstream_tasks(page, metadata.dag_id)
            assert_type(edges, DownstreamTasksResponse)
            for task_id, (node_id, downstream) in edges.downstream_tasks.items():
                assert_type(task_id, int)
                assert_type(node_id, int)
                assert_type(downstream, list[int])
        assert_type(
            await gateway.get_downstream_tasks([1, 2], dag_id=metadata.dag_id),
            DownstreamTasksResponse,
        )

        assert_type(await gateway.get_server_time(), datetime)

        once = gateway.without_retries()
        assert_type(once, ServerGateway)
        assert_type(await once.log_heartbeat("R", 30.0), HeartbeatResponse)

        # Calls run concurrently like any coroutine.
        clock, limit = await asyncio.gather(
            gateway.get_server_time(), gateway.get_workflow_concurrency()
        )
        assert_type(clock, datetime)
        assert_type(limit, int)


def drive_sync(requester: Requester) -> None:
    """Every sync twin, in a plain function."""
    with ServerGateway(requester, 12, 34) as gateway:
        assert_type(gateway, ServerGateway)
        assert_type(gateway.log_heartbeat_sync("R", 30.0), HeartbeatResponse)
        assert_type(gateway.log_heartbeat_sync("R", 30.0).status, WorkflowRunStatus | str)
        assert_type(gateway.update_status_sync(WorkflowRunStatus.DONE), StatusUpdateResponse)
        assert_type(gateway.update_status_sync("D").status, WorkflowRunStatus | str)
        assert_type(gateway.terminate_task_instances_sync(), TerminateTaskInstancesResponse)
        gateway.request_triage_sync()
        snapshot = gateway.get_task_status_updates_sync()
        assert_type(snapshot, TaskStatusUpdatesResponse)
        assert_type(snapshot.tasks_by_status, dict[TaskStatus | str, list[int]])
        assert_type(
            gateway.get_task_status_updates_sync(since=snapshot.time), TaskStatusUpdatesResponse
        )
        assert_type(gateway.get_workflow_concurrency_sync(), int)
        assert_type(gateway.get_array_concurrency_sync(7), int)
        queued = gateway.queue_task_batch_sync(1, [4, 5], 1, 2)
        assert_type(queued, QueueResponse)
        assert_type(queued.tasks_by_status, dict[TaskStatus | str, list[int]])
        metadata = gateway.get_workflow_metadata_sync()
        assert_type(metadata, WorkflowMetadata)
        assert_type(gateway.get_tasks_sync(0, 500), dict[int, TaskMetadata])
        for task in gateway.get_tasks_sync(0, 500).values():
            assert_type(task.status, TaskStatus | str)
        pages = gateway.iter_tasks_sync(chunk_size=1000)
        assert_type(pages, Iterator[dict[int, TaskMetadata]])
        assert_type(gateway.get_task_rows_sync(0, 500), dict[int, TaskRow])
        assert_type(gateway.iter_task_rows_sync(), Iterator[dict[int, TaskRow]])
        for page in gateway.iter_tasks_sync():
            assert_type(page, dict[int, TaskMetadata])
            edges = gateway.get_downstream_tasks_sync(list(page), metadata.dag_id)
            assert_type(edges, DownstreamTasksResponse)
        assert_type(gateway.get_server_time_sync(), datetime)
        gateway.close_sync()


async def own_sessions(requester: Requester) -> None:
    """Bringing one's own clients, and closing by hand."""
    gateway = ServerGateway(requester, workflow_id=1, workflow_run_id=2)
    async with httpx.AsyncClient() as client:
        gateway.set_session(client)
        assert_type(await gateway.get_server_time(), datetime)
    with httpx.Client() as sync_client:
        gateway.set_session(sync_client)
        assert_type(gateway.get_server_time_sync(), datetime)
    await gateway.close()


async def handle_errors(gateway: ServerGateway) -> int | None:
    """Catching the error tree at several levels, reading what the errors carry."""
    try:
        return await gateway.get_array_concurrency(7)
    except NotFoundError as error:
        assert_type(error.status, int | None)
        return None
    except RetryBudgetExhaustedError as error:
        assert_type(error.last_error, GatewayError)
        assert_type(error.attempts, int)
        assert_type(error.elapsed, float | None)
        assert_type(error.retries_attempts, int | None)
        assert_type(error.retries_timeout, float | None)
        assert_type(error.server_message, str | None)
        assert_type(error.server_error_type, str | None)
        raise
    except GatewayError as error:
        assert_type(error.request_id, str | None)
        assert_type(error.hint, str | None)
        assert_type(error.url, str | None)
        assert_type(error.method, str | None)
        assert_type(error.route, str | None)
        assert_type(error.retry_after, float | None)
        assert_type(error.retryable, bool)
        raise
    finally:
        try:
            gateway.get_workflow_metadata_sync()
        except WorkflowNotFoundError as missing:
            # Also a ValueError, as the reference client promised.
            assert_type(missing, WorkflowNotFoundError)
            value_error: ValueError = missing
            log.info("%s", value_error)


def low_level(requester: Requester, client: httpx.Client) -> None:
    """A Call is typed by its result; the requester hands that type back."""
    from jobmon_gateway import routes

    call = routes.get_server_time()
    assert_type(call, Call[datetime])
    assert_type(requester.send(call, client), datetime)
    assert_type(requester.send(routes.get_tasks(1), client), dict[int, TaskMetadata])


def schemas(out: Path) -> None:
    """Exporting the JSON Schemas."""
    assert_type(export_schemas(out), list[Path])
    assert_type(export_schemas("schemas"), list[Path])


def status_fields(raw: bytes) -> None:
    """Every status field of every response model, read straight off the model.

    tests/test_typing_suite.py checks that each status field of each response
    model (nested ones included) has its line here. Mypy folds a union with
    its own base class, so ``WorkflowRunStatus | str`` (the enum is a str)
    reads as ``str`` on attribute access and ``assert_type`` takes either:
    these lines pin the field against ``Any``/``int`` and the like, not
    against a plain ``str``.
    """
    assert_type(HeartbeatResponse.model_validate_json(raw).status, WorkflowRunStatus | str)
    assert_type(StatusUpdateResponse.model_validate_json(raw).status, WorkflowRunStatus | str)
    assert_type(TaskMetadata.model_validate_json(raw).status, TaskStatus | str)
    assert_type(
        QueueResponse.model_validate_json(raw).tasks_by_status, dict[TaskStatus | str, list[int]]
    )
    assert_type(
        TaskStatusUpdatesResponse.model_validate_json(raw).tasks_by_status,
        dict[TaskStatus | str, list[int]],
    )
    for letter, ids in TaskStatusUpdatesResponse.model_validate_json(raw).tasks_by_status.items():
        assert_type(letter, TaskStatus | str)
        assert_type(ids, list[int])
    for letter in QueueResponse.model_validate_json(raw).tasks_by_status:
        assert_type(letter, TaskStatus | str)
    for task in TasksResponse.model_validate_json(raw).tasks.values():
        assert_type(task.status, TaskStatus | str)
    # A known letter narrows to the enum; an unknown one stays a str.
    status = HeartbeatResponse.model_validate_json(raw).status
    if isinstance(status, WorkflowRunStatus):
        assert_type(status, WorkflowRunStatus)
    else:
        assert_type(status, str)


async def testing_kit(jobmon_server: FakeJobmonServer) -> None:
    """The pytest fixture's server, as a user's test reads it."""
    requester = jobmon_server.requester(retries_attempts=1)
    assert_type(requester, Requester)
    with ServerGateway(requester, 1, 1) as gateway:
        assert_type(gateway.log_heartbeat_sync("R", 30.0).status, WorkflowRunStatus | str)
    async with ServerGateway(jobmon_server.requester(), 1, 1) as gateway:
        assert_type((await gateway.log_heartbeat("R", 30.0)).status, WorkflowRunStatus | str)
    assert_type(jobmon_server.requests_to("get_server_time"), list[RecordedRequest])
    assert_type(jobmon_server.requests, list[RecordedRequest])
    assert_type(jobmon_server.service_url, str)
    with jobmon_server.serve() as url:
        assert_type(url, str)
    old = FakeJobmonServer(server_version="3.2.2")
    assert_type(old.server_version, str)
    assert_type(old.task(1).task_instances, int)
