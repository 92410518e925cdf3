"""One table of the server's routes: for each call its method, path, message and decoder.

A route function checks the caller's input, then returns a :class:`Call`: a
typed description of one request and of how to decode its answer. The
transport sends any ``Call[T]`` and hands back a ``T``, so each gateway method
is one line, shared by its async and sync forms, and mypy infers every result
type from here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from ._big_answers import (
    decode_downstream_tasks,
    decode_task_rows,
    decode_task_status_updates,
    decode_tasks,
)
from .errors import InvalidRequestError, WorkflowNotFoundError
from .models import (
    MAX_ID,
    SERVER_TIME_FORMAT,
    DownstreamTasksResponse,
    HeartbeatResponse,
    NullOrEmptyObject,
    QueueResponse,
    ServerTimeResponse,
    StatusUpdateResponse,
    TaskMetadata,
    TaskRow,
    TaskStatusUpdatesResponse,
    TerminateTaskInstancesResponse,
    WorkflowConcurrencyResponse,
    WorkflowMetadata,
    WorkflowMetadataResponse,
    WorkflowRunStatus,
)

__all__ = ["Call", "HttpMethod"]

T = TypeVar("T")
HttpMethod = Literal["GET", "POST", "PUT"]


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request to the server and the decoder of its 2xx answer.

    Attributes:
        method: HTTP method.
        route: Path below the base URL, e.g. ``"/workflow_run/7/log_heartbeat"``.
        decode: Turns the answer's raw bytes into the result ``T``; raises
            ``ValueError`` (pydantic's ``ValidationError`` included) for a body
            that does not fit, or a :class:`~jobmon_gateway.GatewayError`.
        query: Query parameters (the message of a GET).
        body: JSON body (the message of a POST or PUT).
        repeat_safe: Whether sending it twice has the effect of sending it
            once on every server. ``False`` for ``queue_task_batch``: a 3.2
            server adds a task instance per repeat, so it is resent only
            where the request surely never reached the server, unless the
            requester knows the server to be repeat-safe.
    """

    method: HttpMethod
    route: str
    decode: Callable[[bytes], T]
    query: Mapping[str, str | int | float] = field(default_factory=dict)
    body: Mapping[str, Any] | None = None
    repeat_safe: bool = True


# ---------------------------------------------------------------------------
# Input checks: everything the caller passes is refused here, before a path
# or a body is built from it.


def positive_id(name: str, value: object) -> int:
    """Return ``value`` if it is a positive int, else raise :class:`InvalidRequestError`.

    ``bool`` is refused although it is an ``int`` subclass, and so is ``str``:
    no path is ever built from arbitrary text.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(
            f"{name} must be a positive int, got {type(value).__name__} {_shown(value)}"
        )
    if not 0 < value <= MAX_ID:
        raise InvalidRequestError(
            f"{name} must be a positive int up to 2**63-1, got {_shown(value)}"
        )
    return int(value)


def _shown(value: object) -> str:
    # repr() of a 5,000-digit int raises ValueError; a huge repr helps nobody.
    if isinstance(value, int) and value.bit_length() > 128:
        return "a huge int"
    try:
        return repr(value)[:80]
    except Exception:
        return type(value).__name__


def _non_negative_id(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        raise InvalidRequestError(f"{name} must be an int from 0 to 2**63-1, got {_shown(value)}")
    return int(value)


def _task_ids(values: object) -> list[int]:
    # A str is iterable but never a list of ids; a dict (e.g. a get_tasks
    # chunk) is an Iterable[int] of its keys, as the type says.
    if isinstance(values, str | bytes | bytearray) or not isinstance(values, Iterable):
        raise InvalidRequestError(
            f"task_ids must be an iterable of positive ints, got {type(values).__name__}"
        )
    # Keep the caller's order and duplicates: the server decides what they mean.
    ids = list(values)
    # The common case, plain ints, in one pass (100k ids for a DAG load).
    if all(type(value) is int and 0 < value <= MAX_ID for value in ids):
        return ids
    for index, value in enumerate(ids):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID:
            raise InvalidRequestError(
                f"task_ids[{index}] must be a positive int up to 2**63-1, got"
                f" {type(value).__name__} {_shown(value)}"
            )
    # int subclasses (numpy ints are not, IntEnum is) go on the wire as plain ints.
    return [int(value) for value in ids]


_STATUS_LETTER = re.compile(r"[A-Z]")


def _run_status(value: object) -> str:
    if isinstance(value, WorkflowRunStatus):
        return value.value
    if isinstance(value, str) and _STATUS_LETTER.fullmatch(value):
        return value
    raise InvalidRequestError(
        "status must be a WorkflowRunStatus or one upper-case letter"
        f" (e.g. 'R'), got {type(value).__name__} {_shown(value)}"
    )


def _report_increment(value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, int) and value.bit_length() > 64)  # math.isfinite would overflow
        or not math.isfinite(value)
        or not 0 < value <= _MAX_SECONDS
    ):
        raise InvalidRequestError(
            f"next_report_increment must be a positive number of seconds up to"
            f" {_MAX_SECONDS:g}, got {_shown(value)}"
        )
    return float(value)


_MAX_SECONDS = 1e6


def _since(value: object) -> str:
    if isinstance(value, str):
        try:
            value = datetime.strptime(value, SERVER_TIME_FORMAT)
        except ValueError:
            raise InvalidRequestError(
                f"since must be a datetime or a 'YYYY-MM-DD HH:MM:SS' string, got {_shown(value)}"
            ) from None
    if not isinstance(value, datetime):
        raise InvalidRequestError(f"since must be a datetime, got {type(value).__name__}")
    if value.tzinfo is not None:
        # The server's clock has no zone; converting would be a guess.
        raise InvalidRequestError(
            "since must be a naive datetime on the server's clock (e.g. the `time` of a"
            f" previous TaskStatusUpdatesResponse), got an aware one: {value.isoformat()}"
        )
    # The wire format has whole seconds; rounding down never skips an update.
    return value.strftime(SERVER_TIME_FORMAT)


# ---------------------------------------------------------------------------
# The routes, in PROTOCOL.md's order.


def log_heartbeat(
    workflow_run_id: int, status: WorkflowRunStatus | str, next_report_increment: float
) -> Call[HeartbeatResponse]:
    """POST ``/workflow_run/{wfr}/log_heartbeat``."""
    run = positive_id("workflow_run_id", workflow_run_id)
    return Call(
        "POST",
        f"/workflow_run/{run}/log_heartbeat",
        HeartbeatResponse.model_validate_json,
        body={
            "status": _run_status(status),
            "next_report_increment": _report_increment(next_report_increment),
        },
    )


def update_status(
    workflow_run_id: int, status: WorkflowRunStatus | str
) -> Call[StatusUpdateResponse]:
    """PUT ``/workflow_run/{wfr}/update_status``."""
    run = positive_id("workflow_run_id", workflow_run_id)
    return Call(
        "PUT",
        f"/workflow_run/{run}/update_status",
        StatusUpdateResponse.model_validate_json,
        body={"status": _run_status(status)},
    )


def terminate_task_instances(workflow_run_id: int) -> Call[TerminateTaskInstancesResponse]:
    """PUT ``/workflow_run/{wfr}/terminate_task_instances``."""
    run = positive_id("workflow_run_id", workflow_run_id)

    def decode(content: bytes) -> TerminateTaskInstancesResponse:
        # 3.2 answers `null` after doing the work: the run is ours, the count unknown.
        return TerminateTaskInstancesResponse.from_answer(content, run)

    return Call("PUT", f"/workflow_run/{run}/terminate_task_instances", decode, body={})


def _nothing(content: bytes) -> None:
    NullOrEmptyObject.validate_json(content)


def request_triage(workflow_run_id: int) -> Call[None]:
    """POST ``/workflow_run/{wfr}/set_status_for_triaging``."""
    run = positive_id("workflow_run_id", workflow_run_id)
    return Call("POST", f"/workflow_run/{run}/set_status_for_triaging", _nothing, body={})


def get_task_status_updates(
    workflow_id: int, since: datetime | str | None = None
) -> Call[TaskStatusUpdatesResponse]:
    """POST ``/workflow/{wf}/task_status_updates`` (full snapshot without ``since``)."""
    workflow = positive_id("workflow_id", workflow_id)
    return Call(
        "POST",
        f"/workflow/{workflow}/task_status_updates",
        decode_task_status_updates,
        body={} if since is None else {"last_sync": _since(since)},
    )


def _max_concurrently_running(content: bytes) -> int:
    return WorkflowConcurrencyResponse.model_validate_json(content).max_concurrently_running


def get_workflow_concurrency(workflow_id: int) -> Call[int]:
    """GET ``/workflow/{wf}/get_max_concurrently_running``."""
    workflow = positive_id("workflow_id", workflow_id)
    return Call(
        "GET", f"/workflow/{workflow}/get_max_concurrently_running", _max_concurrently_running
    )


def get_array_concurrency(array_id: int) -> Call[int]:
    """GET ``/array/{array_id}/get_array_max_concurrently_running``."""
    array = positive_id("array_id", array_id)
    return Call(
        "GET", f"/array/{array}/get_array_max_concurrently_running", _max_concurrently_running
    )


def queue_task_batch(
    array_id: int,
    task_ids: Iterable[int],
    task_resources_id: int,
    workflow_run_id: int,
    cluster_id: int,
) -> Call[QueueResponse]:
    """POST ``/array/{array_id}/queue_task_batch`` (repeat-safe on 3.4+ servers only)."""
    array = positive_id("array_id", array_id)
    return Call(
        "POST",
        f"/array/{array}/queue_task_batch",
        QueueResponse.model_validate_json,
        body={
            "task_ids": _task_ids(task_ids),
            "task_resources_id": positive_id("task_resources_id", task_resources_id),
            "workflow_run_id": positive_id("workflow_run_id", workflow_run_id),
            "cluster_id": positive_id("cluster_id", cluster_id),
        },
        repeat_safe=False,
    )


def get_workflow_metadata(workflow_id: int) -> Call[WorkflowMetadata]:
    """GET ``/workflow/{wf}/fetch_workflow_metadata``; unknown workflow raises."""
    workflow = positive_id("workflow_id", workflow_id)

    def decode(content: bytes) -> WorkflowMetadata:
        answer = WorkflowMetadataResponse.model_validate_json(content)
        if answer.workflow is None:
            raise WorkflowNotFoundError(f"workflow {workflow} not found on the server")
        return answer.workflow

    return Call("GET", f"/workflow/{workflow}/fetch_workflow_metadata", decode)


def get_tasks(
    workflow_id: int, max_task_id: int = 0, chunk_size: int = 500
) -> Call[dict[int, TaskMetadata]]:
    """GET ``/workflow/get_tasks/{wf}``: not-done tasks with ids above ``max_task_id``."""
    return _tasks_page(decode_tasks, workflow_id, max_task_id, chunk_size)


def get_task_rows(
    workflow_id: int, max_task_id: int = 0, chunk_size: int = 500
) -> Call[dict[int, TaskRow]]:
    """:func:`get_tasks`, each task a :class:`~jobmon_gateway.TaskRow` (a named tuple)."""
    return _tasks_page(decode_task_rows, workflow_id, max_task_id, chunk_size)


def _tasks_page(
    decode: Callable[[bytes], dict[int, T]], workflow_id: int, max_task_id: int, chunk_size: int
) -> Call[dict[int, T]]:
    workflow = positive_id("workflow_id", workflow_id)
    return Call(
        "GET",
        f"/workflow/get_tasks/{workflow}",
        decode,
        query={
            "max_task_id": _non_negative_id("max_task_id", max_task_id),
            "chunk_size": positive_id("chunk_size", chunk_size),
        },
    )


def get_downstream_tasks(task_ids: Iterable[int], dag_id: int) -> Call[DownstreamTasksResponse]:
    """POST ``/task/get_downstream_tasks``."""
    return Call(
        "POST",
        "/task/get_downstream_tasks",
        decode_downstream_tasks,
        body={"task_ids": _task_ids(task_ids), "dag_id": positive_id("dag_id", dag_id)},
    )


def _time(content: bytes) -> datetime:
    return ServerTimeResponse.model_validate_json(content).time


def get_server_time() -> Call[datetime]:
    """GET ``/time``."""
    return Call("GET", "/time", _time)
