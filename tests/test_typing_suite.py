"""The consumer typing suite covers every status field of every response model.

``tests/typing/consumer_usage.py`` is only type-checked; this test makes sure
it has an ``assert_type`` line for each field whose type holds a task or
workflow-run status letter, nested models included, so a new status field
cannot go unpinned.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from jobmon_gateway import RESPONSE_MODELS, TaskStatus, WorkflowRunStatus

CONSUMER_USAGE = Path(__file__).parent / "typing" / "consumer_usage.py"


def _mentions(annotation: object, wanted: type) -> bool:
    if annotation is wanted:
        return True
    return any(_mentions(argument, wanted) for argument in typing.get_args(annotation))


def _models(annotation: object) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for argument in typing.get_args(annotation):
        yield from _models(argument)


def status_fields() -> dict[tuple[str, str], str]:
    """(model, field) -> the type the suite must pin, for every reachable response model."""
    found: dict[tuple[str, str], str] = {}
    pending: list[type[BaseModel]] = list(RESPONSE_MODELS)
    seen: set[type[BaseModel]] = set()
    while pending:
        model = pending.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            pending.extend(_models(field.annotation))
            for status, pinned in (
                (WorkflowRunStatus, "WorkflowRunStatus | str"),
                (TaskStatus, "TaskStatus | str"),
            ):
                if _mentions(field.annotation, status):
                    if typing.get_origin(field.annotation) is dict:
                        pinned = f"dict[{pinned}, list[int]]"
                    found[(model.__name__, name)] = pinned
    return found


def test_the_walk_finds_the_known_status_fields() -> None:
    assert set(status_fields()) >= {
        ("HeartbeatResponse", "status"),
        ("StatusUpdateResponse", "status"),
        ("TaskMetadata", "status"),
        ("QueueResponse", "tasks_by_status"),
        ("TaskStatusUpdatesResponse", "tasks_by_status"),
    }


def test_every_status_field_is_pinned_in_the_consumer_suite() -> None:
    text = " ".join(CONSUMER_USAGE.read_text(encoding="utf-8").split())
    missing = []
    for (model, name), pinned in sorted(status_fields().items()):
        line = re.escape(f"assert_type( {model}.model_validate_json(raw).{name}, {pinned} )")
        # ruff format may or may not break the call over lines.
        pattern = (
            line.replace(r"\(\ ", r"\(\s*").replace(r",\ ", r",\s*").replace(r"\ \)", r",?\s*\)")
        )
        if not re.search(pattern, text):
            missing.append(f"assert_type({model}.model_validate_json(raw).{name}, {pinned})")
    assert missing == [], "add to status_fields() in tests/typing/consumer_usage.py"
