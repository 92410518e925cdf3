"""Mistakes a user can make, each of which mypy --strict must report.

Never run, only type-checked (``mypy --strict tests/typing``). Every line
below is wrong and carries the exact ``# type: ignore[code]`` mypy reports for
it. ``warn_unused_ignores = true`` (pyproject's ``[tool.mypy]``) turns an
ignore that is no longer needed into an error, so if a signature or a result
type loosens (an id typed ``Any`` or ``object``, a result typed ``Any``, a
model no longer frozen, keys no longer ``int``) this file fails the check.

The read-only cases rely on the pydantic mypy plugin that pyproject enables;
``bool`` is not used as a wrong id: to mypy it is an ``int`` (the SDK refuses
it at run time instead).
"""

from __future__ import annotations

from datetime import datetime

from jobmon_gateway import (
    GatewayError,
    HeartbeatResponse,
    HttpSettings,
    Requester,
    ServerGateway,
    TaskMetadata,
    TaskRow,
    WorkflowMetadata,
    WorkflowRunStatus,
)
from jobmon_gateway.schemas import export_schemas


def _use(*values: object) -> None:
    """Consume values so that linters see them used."""


def wrong_construction(requester: Requester) -> None:
    """Ids, settings and options of the wrong type or name."""
    ServerGateway(requester, "12", 34)  # type: ignore[arg-type]
    ServerGateway(requester, 12, workflow_run_id=[34])  # type: ignore[arg-type]
    ServerGateway("http://jobmon:5000", 12, 34)  # type: ignore[arg-type]
    Requester("http://jobmon:5000", request_timeout="20")  # type: ignore[arg-type]
    Requester("http://jobmon:5000", retries=3)  # type: ignore[call-arg]
    Requester("http://jobmon:5000", "/api/v3")  # type: ignore[call-arg]
    HttpSettings.from_env({"JOBMON__HTTP__REQUEST_TIMEOUT": 20})  # type: ignore[dict-item]


async def wrong_async_arguments(gateway: ServerGateway) -> None:
    """Arguments of the async calls: a str id, a list where an int goes, ..."""
    await gateway.get_array_concurrency("7")  # type: ignore[arg-type]
    await gateway.get_array_concurrency([7])  # type: ignore[arg-type]
    await gateway.get_array_concurrency(7.0)  # type: ignore[arg-type]
    await gateway.get_array_concurrency(None)  # type: ignore[arg-type]
    await gateway.update_status(4)  # type: ignore[arg-type]
    await gateway.log_heartbeat(30.0, "R")  # type: ignore[arg-type]
    await gateway.log_heartbeat("R", "30")  # type: ignore[arg-type]
    await gateway.log_heartbeat("R")  # type: ignore[call-arg]
    await gateway.queue_task_batch(1, ["4", "5"], 1, 2)  # type: ignore[list-item]
    await gateway.queue_task_batch(1, 4, 1, 2)  # type: ignore[arg-type]
    await gateway.queue_task_batch(1, [4, 5], 1)  # type: ignore[call-arg]
    await gateway.get_tasks(chunk_size="500")  # type: ignore[arg-type]
    await gateway.get_tasks(max_task_id=None)  # type: ignore[arg-type]
    await gateway.get_downstream_tasks([1, 2], dag_id="1")  # type: ignore[arg-type]
    await gateway.get_task_status_updates(since=1700000000)  # type: ignore[arg-type]


async def async_and_sync_mixed_up(gateway: ServerGateway) -> None:
    """Awaiting a sync call, forgetting to await an async one, the wrong kind of for."""
    await gateway.log_heartbeat_sync("R", 30.0)  # type: ignore[misc]
    await gateway.get_server_time_sync()  # type: ignore[misc]
    await gateway.iter_tasks()  # type: ignore[misc]
    for _chunk in gateway.iter_tasks():  # type: ignore[attr-defined]
        pass
    async for _page in gateway.iter_tasks_sync():  # type: ignore[attr-defined]
        pass
    _status = gateway.log_heartbeat("R", 30.0).status  # type: ignore[attr-defined]
    _later: datetime = gateway.get_server_time()  # type: ignore[assignment]
    gateway.request_triage()  # type: ignore[unused-coroutine]


def sync_forgot_the_twin(gateway: ServerGateway) -> None:
    """Calling the async method from sync code and using it as a result."""
    _heartbeat: HeartbeatResponse = gateway.log_heartbeat("R", 30.0)  # type: ignore[assignment]


def results_are_exact(gateway: ServerGateway) -> None:
    """Results are exact types: int task-id keys, typed fields, frozen models."""
    tasks = gateway.get_tasks_sync()
    _use(tasks["1"])  # type: ignore[index]
    task: TaskMetadata = tasks[1]
    task.status = "D"  # type: ignore[misc]
    _use(task.resource_scales.memory)  # type: ignore[attr-defined]
    row: TaskRow = gateway.get_task_rows_sync()[1]
    row.status = "D"  # type: ignore[misc]
    _use(row.model_dump())  # type: ignore[attr-defined]
    _models: dict[int, TaskMetadata] = gateway.get_task_rows_sync()  # type: ignore[assignment]
    meta: WorkflowMetadata = gateway.get_workflow_metadata_sync()
    meta.dag_id = 2  # type: ignore[misc]
    _use(meta.dag_id + "x")  # type: ignore[operator]
    _now: str = gateway.get_server_time_sync()  # type: ignore[assignment]
    _limit: str = gateway.get_workflow_concurrency_sync()  # type: ignore[assignment]
    _nothing = gateway.request_triage_sync()  # type: ignore[func-returns-value]
    edges = gateway.get_downstream_tasks_sync([1], 1)
    node, downstream = edges.downstream_tasks[1]
    _use(downstream.upper())  # type: ignore[attr-defined]
    _use(node.append(1))  # type: ignore[attr-defined]


def wrong_sync_use(gateway: ServerGateway) -> None:
    """Sessions, arity and names of the sync calls."""
    gateway.set_session("http://jobmon:5000")  # type: ignore[arg-type]
    gateway.get_tasks_sync(0, 500, 3)  # type: ignore[call-arg]
    gateway.no_such_call_sync()  # type: ignore[attr-defined]
    with gateway.without_retries() as view:
        view.log_heartbeat_sync(WorkflowRunStatus.RUNNING)  # type: ignore[call-arg]


def errors_carry_optional_fields(error: GatewayError) -> None:
    """What an error carries is typed, Optional where it may be missing."""
    _use(error.status + 1)  # type: ignore[operator]
    _use(error.server_message.upper())  # type: ignore[union-attr]
    GatewayError("boom", status="500")  # type: ignore[arg-type]
    GatewayError("boom", attempts=None)  # type: ignore[arg-type]


def schema_export(directory: int) -> None:
    """export_schemas takes a path and gives back paths."""
    export_schemas(directory)  # type: ignore[arg-type]
    _paths: list[str] = export_schemas("out")  # type: ignore[assignment]
