"""The three big answers decoded at a typed decoder's pace, with the models' verdict.

A workflow driver reads a few answers in bulk: every task page by page at
start-up (``get_tasks``), full status snapshots of up to millions of ids, the
downstream map. Through the models, each ``get_tasks`` row costs five Python
validators and four tracked objects, and a snapshot's ids are validated into
new lists while the parsed ones still exist. Here each answer's usual wire form
is checked in Rust (pydantic-core, with the models' own types), with at most one
Python step per row, and built into the very objects the models would give
(for ``get_task_rows``, into :class:`~.models.TaskRow` tuples of the same values).

The models in :mod:`.models` stay the definition: an answer this path does not
take (a malformed one, or an unusual form the models accept, such as a resource
field sent as a JSON object or an id sent as ``"7"``) is decoded again by its
model, so every result and every error is the model's (a ``TaskRow`` is then
made from the model's values). The property tests compare both on generated
answers. One difference is kept on purpose: a ``get_tasks`` page that repeats
a task id (``"7"`` twice, or ``"7"`` and ``"07"``) keeps the last row, as the
model does, but only that row's literal fields are parsed here, so a replaced
row whose literal is malformed fails the model and not this path. Counting a
page's members to catch it would cost a second pass over every page, and
nothing unchecked reaches the caller: the row kept is checked in full.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import pydantic_core
from pydantic import BaseModel
from pydantic_core import SchemaValidator, core_schema

from .models import (
    MAX_ID,
    DownstreamTasksResponse,
    TaskMetadata,
    TaskRow,
    TasksResponse,
    TaskStatus,
    TaskStatusUpdatesResponse,
    _evaluate,
    _fresh,
)

__all__ = [
    "decode_downstream_tasks",
    "decode_task_rows",
    "decode_task_status_updates",
    "decode_tasks",
]


class _UnusualFormError(ValueError):
    """The answer is not in the usual form: its model decodes it instead."""


# How pydantic itself builds a model without validating it (model_construct
# sets the same four slots), through the slots' own descriptors: about 40 %
# less than object.__setattr__ by name, per task.
_new = object.__new__
_set_dict = vars(BaseModel)["__dict__"].__set__
_set_fields_set = vars(BaseModel)["__pydantic_fields_set__"].__set__
_set_extra = vars(BaseModel)["__pydantic_extra__"].__set__
_set_private = vars(BaseModel)["__pydantic_private__"].__set__
_ModelT = TypeVar("_ModelT", bound=BaseModel)


class _FasterFields(Generic[_ModelT]):
    """A model's own fields validator with one field's schema replaced.

    pydantic-core reuses a model class's prebuilt validator for any schema
    naming the class, so the fields (the model's config, its other fields,
    extras included) are validated here and the instance is built as
    pydantic-core builds it from their output.
    """

    def __init__(self, model: type[_ModelT], field: str, replace: Callable[[Any], Any]) -> None:
        schema = model.__pydantic_core_schema__
        fields_schema = schema.get("schema", {})
        if schema.get("type") != "model" or fields_schema.get("type") != "model-fields":
            raise RuntimeError(f"unexpected core schema for {model.__name__}")  # pragma: no cover
        if model.__pydantic_post_init__ or model.__private_attributes__:
            raise RuntimeError(f"{model.__name__} needs model_post_init")  # pragma: no cover
        fields = dict(fields_schema["fields"])
        fields[field] = {**fields[field], "schema": replace(fields[field]["schema"])}
        self._model = model
        self._fields = SchemaValidator(
            {**fields_schema, "fields": fields},
            schema.get("config"),
        )

    def validate(self, fields: Any, *, json: bool) -> _ModelT:
        """The model from ``fields``: JSON bytes, or the Python value they were parsed to."""
        validate = self._fields.validate_json if json else self._fields.validate_python
        values, extra, fields_set = validate(fields)
        answer: _ModelT = _new(self._model)
        _set_dict(answer, values)
        _set_extra(answer, extra)
        _set_fields_set(answer, fields_set)
        _set_private(answer, None)
        return answer


# ---------------------------------------------------------------------------
# get_tasks: rows as positional tuples, each TaskMetadata built once.

_LITERAL_TEXT = core_schema.nullable_schema(core_schema.str_schema())
# A row as the servers send it (the nine fields of TaskMetadata, in order);
# the int and str checks are the model fields' own.
_ROW = core_schema.tuple_schema(
    [
        core_schema.int_schema(),  # array_id
        core_schema.str_schema(),  # status
        core_schema.int_schema(),  # max_attempts
        _LITERAL_TEXT,  # resource_scales
        _LITERAL_TEXT,  # fallback_queues
        _LITERAL_TEXT,  # requested_resources
        core_schema.str_schema(),  # cluster_name
        core_schema.str_schema(),  # queue_name
        core_schema.int_schema(),  # array_max_concurrently_running
    ]
)
_PAGE = SchemaValidator(
    core_schema.typed_dict_schema(
        {
            "tasks": core_schema.typed_dict_field(
                core_schema.dict_schema(
                    core_schema.int_schema(gt=0, le=MAX_ID), _ROW, fail_fast=True
                )
            )
        }
    )
)

_TASK_STATUSES: dict[str, TaskStatus] = {status.value: status for status in TaskStatus}

# A parsed literal is kept once and copied for every task (no two tasks share
# a container): `text -> a callable giving a fresh copy`. null and "None" are
# the empty value, as in the model.
_Copy = Callable[[], Any]
_DICT_LITERALS: dict[str | None, _Copy] = {None: dict, "None": dict}
_LIST_LITERALS: dict[str | None, _Copy] = {None: list, "None": list}
_LITERALS_KEPT = 1024
"""Most literals kept per kind (a workflow repeats a few strings)."""
_LITERAL_KEPT_CHARS = 256
"""Only literals this short are kept: the usual few strings repeated across rows."""


def _literal_copy(kept: dict[str | None, _Copy], text: str | None, kind: type) -> _Copy:
    # A literal not seen yet: parsed by the model's bounded parser, and of the
    # exact type the field holds (a tuple for a list, say, goes to the model,
    # which converts it).
    if text is None or text == "None":  # seeded, unless another thread is refilling
        return kind
    try:
        value, flat = _evaluate(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise _UnusualFormError("not a Python literal") from None
    container: dict[str, Any] | list[Any] = value
    if type(container) is not kind:
        raise _UnusualFormError(f"not a {kind.__name__}")
    copy: _Copy = container.copy if flat else functools.partial(_fresh, container)
    if len(text) <= _LITERAL_KEPT_CHARS:
        if len(kept) >= _LITERALS_KEPT:
            kept.clear()  # bounded, whatever a server sends
            kept.update({None: kind, "None": kind})
        kept[text] = copy
    return copy


def _dict_literal(text: str | None) -> _Copy:
    return _literal_copy(_DICT_LITERALS, text, dict)


def _list_literal(text: str | None) -> _Copy:
    return _literal_copy(_LIST_LITERALS, text, list)


# Every row sets all nine fields: one set for all of them, as model_construct
# shares the `_fields_set` it is given (model_copy copies it before adding).
_ALL_TASK_FIELDS = set(TaskMetadata.model_fields)
# extra="allow" gives every validated instance its own (empty) extras dict.
_TASK_EXTRAS = TaskMetadata.model_config.get("extra") == "allow"
if TaskMetadata.__pydantic_post_init__ or TaskMetadata.__private_attributes__:
    raise RuntimeError("TaskMetadata needs model_post_init")  # pragma: no cover


def _tasks(content: bytes) -> dict[int, TaskMetadata]:
    rows: dict[int, Any] = _PAGE.validate_json(content)["tasks"]
    statuses, dicts, lists = _TASK_STATUSES, _DICT_LITERALS, _LIST_LITERALS
    task_fields, extras = _ALL_TASK_FIELDS, _TASK_EXTRAS
    # One loop, no call per field: this runs for every task of a workflow.
    for task_id, row in rows.items():
        (array_id, status, attempts, scales, queues, resources, cluster, queue, limit) = row
        task = _new(TaskMetadata)
        _set_dict(
            task,
            {
                "array_id": array_id,
                "status": statuses.get(status, status),
                "max_attempts": attempts,
                "resource_scales": (dicts.get(scales) or _dict_literal(scales))(),
                "fallback_queues": (lists.get(queues) or _list_literal(queues))(),
                "requested_resources": (dicts.get(resources) or _dict_literal(resources))(),
                "cluster_name": cluster,
                "queue_name": queue,
                "array_max_concurrently_running": limit,
            },
        )
        _set_fields_set(task, task_fields)
        _set_extra(task, {} if extras else None)
        _set_private(task, None)
        rows[task_id] = task  # a value replaced in place: the dict keeps its size
    return rows


def decode_tasks(content: bytes) -> dict[int, TaskMetadata]:
    """A ``get_tasks`` answer's tasks by id, as :class:`~.models.TasksResponse` gives them."""
    try:
        return _tasks(content)
    except ValueError:
        # Not the usual form, or not valid: the model decides, and says why.
        return TasksResponse.model_validate_json(content).tasks


_tuple_new = tuple.__new__


def _task_rows(content: bytes) -> dict[int, TaskRow]:
    rows: dict[int, Any] = _PAGE.validate_json(content)["tasks"]
    statuses, dicts, lists = _TASK_STATUSES, _DICT_LITERALS, _LIST_LITERALS
    # _tasks' loop with a tuple for a model, inlined for the same reason:
    # tuple.__new__ skips the named tuple's own __new__, a Python call.
    for task_id, row in rows.items():
        (array_id, status, attempts, scales, queues, resources, cluster, queue, limit) = row
        rows[task_id] = _tuple_new(
            TaskRow,
            (
                array_id,
                statuses.get(status, status),
                attempts,
                (dicts.get(scales) or _dict_literal(scales))(),
                (lists.get(queues) or _list_literal(queues))(),
                (dicts.get(resources) or _dict_literal(resources))(),
                cluster,
                queue,
                limit,
            ),
        )
    return rows


def decode_task_rows(content: bytes) -> dict[int, TaskRow]:
    """A ``get_tasks`` answer's tasks by id as :class:`~.models.TaskRow`: the models' values."""
    try:
        return _task_rows(content)
    except ValueError:
        tasks = TasksResponse.model_validate_json(content).tasks
        return {task_id: TaskRow.from_metadata(task) for task_id, task in tasks.items()}


# ---------------------------------------------------------------------------
# task_status_updates: the parsed id lists checked where they are.

_BIG_SNAPSHOT_BYTES = 64 * 1024
"""From this size on (about 10k ids) a snapshot is parsed to Python first, then checked in place.

Below it, validating the JSON in one pass is faster (measured).
"""

# Every JSON array of the answer holds nothing but digits, commas and JSON
# whitespace: with the digits and commas deleted (a C loop over the bytes, a
# few ms for a million ids), no array has anything left in it. Then every
# item of every parsed array is a plain non-negative int (no sign, fraction,
# exponent, string, true/false or null), and the parser has checked the rest.
_DIGITS_AND_COMMAS = b"0123456789,"
_ARRAY_NOT_EMPTY = re.compile(rb"\[(?![ \t\n\r]*\])")


def _arrays_hold_plain_ints(content: bytes) -> bool:
    return _ARRAY_NOT_EMPTY.search(content.translate(None, _DIGITS_AND_COMMAS)) is None


_IDS_AT_ONCE = 1 << 16
"""Ids checked per step when the bytes did not tell: each step's copies stay small (0.5 MiB)."""
_PLAIN_INTS = SchemaValidator(core_schema.list_schema(core_schema.int_schema(strict=True)))


def _ids_shown_plain(value: Any) -> Any:
    if type(value) is not list:
        raise _UnusualFormError("not a list")
    return value


def _ids_checked_in_place(value: Any) -> Any:
    # The parsed list is the result: it is checked a slice at a time (the
    # slice and its checked copy are dropped at once), never copied whole.
    # Plain ints only; anything the model would convert ("7", 7.0, true) or
    # refuse goes to the model.
    if type(value) is not list:
        raise _UnusualFormError("not a list")
    check = _PLAIN_INTS.validate_python
    for start in range(0, len(value), _IDS_AT_ONCE):
        check(value[start : start + _IDS_AT_ONCE])
    return value


def _id_lists(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def replace(schema: Any) -> Any:
        return {**schema, "values_schema": core_schema.no_info_plain_validator_function(check)}

    return replace


_SNAPSHOT_SHOWN_PLAIN = _FasterFields(
    TaskStatusUpdatesResponse, "tasks_by_status", _id_lists(_ids_shown_plain)
)
_SNAPSHOT = _FasterFields(
    TaskStatusUpdatesResponse, "tasks_by_status", _id_lists(_ids_checked_in_place)
)


def decode_task_status_updates(content: bytes) -> TaskStatusUpdatesResponse:
    """A ``task_status_updates`` answer, as :class:`~.models.TaskStatusUpdatesResponse` gives it."""
    if len(content) < _BIG_SNAPSHOT_BYTES:
        return TaskStatusUpdatesResponse.model_validate_json(content)
    # A snapshot of up to millions of ids. Validating the JSON in one pass
    # keeps pydantic's parse tree and the lists alive together, validating
    # parsed lists into new ones keeps both lists: for 1M ids the decode peaks
    # at 69 and 47 MB (json.loads: 44 MB). Parsed once and checked in place,
    # the parsed lists are the result: 38.5 MB, and a third less time.
    parsed = pydantic_core.from_json(content)
    try:
        if _arrays_hold_plain_ints(content):
            return _SNAPSHOT_SHOWN_PLAIN.validate(parsed, json=False)
        return _SNAPSHOT.validate(parsed, json=False)
    except ValueError:
        return TaskStatusUpdatesResponse.model_validate(parsed)


# ---------------------------------------------------------------------------
# get_downstream_tasks: the three forms of ids told apart in Rust.


def _no_ids(_: None) -> list[int]:
    return []


_IDS = core_schema.list_schema(core_schema.int_schema())
# A JSON list, a JSON-encoded string (3.2 servers, older clients) or null:
# only the null rows reach Python.
_NODE_IDS = core_schema.union_schema(
    [
        _IDS,
        core_schema.json_schema(_IDS),
        core_schema.no_info_after_validator_function(_no_ids, core_schema.none_schema()),
    ],
    mode="left_to_right",
)


def _row_ids_in_rust(schema: Any) -> Any:
    row = schema["values_schema"]
    node, _ = row["items_schema"]
    return {**schema, "values_schema": {**row, "items_schema": [node, _NODE_IDS]}}


_DOWNSTREAM = _FasterFields(DownstreamTasksResponse, "downstream_tasks", _row_ids_in_rust)


def decode_downstream_tasks(content: bytes) -> DownstreamTasksResponse:
    """A ``get_downstream_tasks`` answer, as :class:`~.models.DownstreamTasksResponse` gives it."""
    try:
        return _DOWNSTREAM.validate(content, json=True)
    except ValueError:
        return DownstreamTasksResponse.model_validate_json(content)
