"""msgspec types for the big answers, equivalent to the SDK's models: the floor's decoders.

Imported only when msgspec is installed (``pip install msgspec``, or the project's ``bench``
extra); ``floor.py`` falls back to no typed floor without it. Each type checks what the SDK's
model checks, so ours/floor is the price of pydantic and of the SDK's decoding, not of work
the floor skips:

* task ids are ints in ``1..2**63-1`` (JSON object keys such as ``"11"`` come out as ``int``);
* status letters come out as ``TaskStatus`` members (the SDK also keeps unknown letters as
  ``str``; the canned server sends none);
* the snapshot's ``time`` comes out as a naive ``datetime``;
* downstream rows are ``(node_id, ids)``, ``null`` ids becoming ``[]``;
* a ``get_tasks`` row is a positional list; its three resource fields are Python-literal
  strings, parsed with ``ast.literal_eval`` (cached, as the SDK does) and copied per task so
  that no two tasks share a container.

Like the SDK (``_answers._decode``), each decoder pauses the cycle collector while it builds a
big answer: otherwise the collector scans the new containers again and again, and the floor
would measure that instead of decoding.
"""

from __future__ import annotations

import ast
import gc
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache, wraps
from typing import Annotated, Any, TypeVar

import msgspec

from jobmon_gateway.models import TaskStatus

__all__ = [
    "Downstream",
    "Snapshot",
    "TaskRow",
    "Tasks",
    "decode_downstream",
    "decode_snapshot",
    "decode_tasks",
]

T = TypeVar("T")
TaskId = Annotated[int, msgspec.Meta(gt=0, le=2**63 - 1)]


class Snapshot(msgspec.Struct, frozen=True):
    """``task_status_updates``: task ids by status letter, and the server's clock."""

    tasks_by_status: dict[TaskStatus, list[TaskId]]
    time: datetime


class Downstream(msgspec.Struct, frozen=True):
    """``get_downstream_tasks`` as sent to a 3.6 client: ids as JSON lists or ``null``."""

    downstream_tasks: dict[TaskId, tuple[int, list[int] | None]]


class TaskRow(msgspec.Struct, array_like=True):
    """One ``get_tasks`` row; the literal fields are strings until ``decode_tasks`` parses them."""

    array_id: int
    status: TaskStatus
    max_attempts: int
    resource_scales: str | dict[str, Any] | None
    fallback_queues: str | list[Any] | None
    requested_resources: str | dict[str, Any] | None
    cluster_name: str
    queue_name: str
    array_max_concurrently_running: int


class Tasks(msgspec.Struct, frozen=True):
    """``get_tasks``: one chunk of tasks keyed by id."""

    tasks: dict[TaskId, TaskRow]


_snapshot = msgspec.json.Decoder(Snapshot)
_downstream = msgspec.json.Decoder(Downstream)
_tasks = msgspec.json.Decoder(Tasks)


def _quiet(decode: Callable[[bytes], T]) -> Callable[[bytes], T]:
    @wraps(decode)
    def decode_quietly(content: bytes) -> T:
        if not gc.isenabled():
            return decode(content)
        gc.disable()
        try:
            return decode(content)
        finally:
            gc.enable()

    return decode_quietly


@_quiet
def decode_snapshot(content: bytes) -> Snapshot:
    """A snapshot, typed."""
    return _snapshot.decode(content)


@_quiet
def decode_downstream(content: bytes) -> dict[int, tuple[int, list[int]]]:
    """Each task's node and downstream nodes, ``null`` as ``[]``."""
    rows = _downstream.decode(content).downstream_tasks
    return {task: (node, ids or []) for task, (node, ids) in rows.items()}


@lru_cache(maxsize=1024)
def _literal(text: str) -> Any:
    return ast.literal_eval(text)


def _dict(value: str | dict[str, Any] | None) -> dict[str, Any]:
    if value is None or value == "None":
        return {}
    found = _literal(value) if isinstance(value, str) else value
    return dict(found)


def _list(value: str | list[Any] | None) -> list[Any]:
    if value is None or value == "None":
        return []
    found = _literal(value) if isinstance(value, str) else value
    return list(found)


@_quiet
def decode_tasks(content: bytes) -> dict[int, TaskRow]:
    """One chunk of tasks, the literal fields parsed into fresh dicts and lists."""
    rows = _tasks.decode(content).tasks
    for row in rows.values():
        row.resource_scales = _dict(row.resource_scales)
        row.fallback_queues = _list(row.fallback_queues)
        row.requested_resources = _dict(row.requested_resources)
    return rows
