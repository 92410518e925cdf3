"""Response models: every payload the server sends, validated and coerced.

Each wire quirk documented in PROTOCOL.md is handled here, once:

* JSON object keys are strings (``"11"``); task-id keyed maps come out keyed
  by ``int``.
* ``get_tasks`` rows are positional lists whose resource fields are strings
  holding a *Python literal* (``"{'memory': 0.5}"``); they are parsed with
  :func:`ast.literal_eval` (never ``eval``) into dicts and lists.
* ``downstream_node_ids`` arrives as a JSON list, a JSON-encoded string or
  ``null``; it always comes out as ``list[int]``.
* ``fetch_workflow_metadata`` sends ``[workflow_id, dag_id, max_concurrently_running]``
  or ``[]`` for an unknown workflow.
* Times are ``"YYYY-MM-DD HH:MM:SS"`` (server database clock, no zone) and come
  out as naive :class:`~datetime.datetime`; ``"0000-00-00 00:00:00"`` is refused.
* Status letters a newer server may add are kept as plain ``str``; the known
  ones come out as :class:`TaskStatus` / :class:`WorkflowRunStatus` members.
* Fields a newer server adds to an answer object are kept, as they came
  (decoded JSON), in pydantic's ``model.model_extra``; a positional row
  (``get_tasks``, ``fetch_workflow_metadata``) of another length is refused.

The JSON Schema of a model in validation mode (``Model.model_json_schema()``)
describes the *wire* payload, quirks included: positional rows, Python-literal
strings, string task-id keys, the three forms of downstream ids. It is what
the server sends, not what the model hands back.
"""

from __future__ import annotations

import ast
import copy
import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, NamedTuple, TypeVar

import pydantic_core
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    FailFast,
    Field,
    GetJsonSchemaHandler,
    PlainSerializer,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

__all__ = [
    "DownstreamTasksResponse",
    "HeartbeatResponse",
    "QueueResponse",
    "ServerErrorBody",
    "ServerTimeResponse",
    "StatusUpdateResponse",
    "TaskMetadata",
    "TaskRow",
    "TaskStatus",
    "TaskStatusLetter",
    "TaskStatusUpdatesResponse",
    "TasksResponse",
    "TerminateTaskInstancesResponse",
    "WorkflowConcurrencyResponse",
    "WorkflowMetadata",
    "WorkflowMetadataResponse",
    "WorkflowRunStatus",
    "WorkflowRunStatusLetter",
]

SERVER_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SERVER_MESSAGE_LIMIT = 500
"""Most characters of a server's error message kept in an error."""


class _StatusLetter(str, Enum):
    """A status letter that prints as the letter itself, as on the wire."""

    def __str__(self) -> str:
        return str(self.value)


class TaskStatus(_StatusLetter):
    """Status letters of a task, as the server stores them."""

    REGISTERING = "G"
    QUEUED = "Q"
    INSTANTIATING = "I"
    LAUNCHED = "O"
    RUNNING = "R"
    DONE = "D"
    ERROR_RECOVERABLE = "E"
    ADJUSTING_RESOURCES = "A"
    ERROR_FATAL = "F"


class WorkflowRunStatus(_StatusLetter):
    """Status letters of a workflow run, as the server stores them."""

    REGISTERED = "G"
    LINKING = "L"
    BOUND = "B"
    ABORTED = "A"
    RUNNING = "R"
    DONE = "D"
    STOPPED = "S"
    ERROR = "E"
    COLD_RESUME = "C"
    HOT_RESUME = "H"
    TERMINATED = "T"
    INSTANTIATED = "I"
    LAUNCHED = "O"


_StatusT = TypeVar("_StatusT", TaskStatus, WorkflowRunStatus)


def _status_letter(enum: type[_StatusT]) -> Callable[[object], object]:
    known = {member.value: member for member in enum}

    def to_member(value: object) -> object:
        # A letter a newer server adds must not fail the call: keep it as str.
        return known.get(value, value) if type(value) is str else value

    return to_member


_STATUS_DESCRIPTION = (
    " Known letters come out as enum members (which compare equal to the letter);"
    " a letter this SDK does not know yet is kept as a plain string."
)

TaskStatusLetter = Annotated[
    TaskStatus | str,
    BeforeValidator(_status_letter(TaskStatus)),
    PlainSerializer(str, return_type=str),
]
"""A task status letter: a :class:`TaskStatus`, or ``str`` for a letter added later."""

WorkflowRunStatusLetter = Annotated[
    WorkflowRunStatus | str,
    BeforeValidator(_status_letter(WorkflowRunStatus)),
    PlainSerializer(str, return_type=str),
]
"""A workflow-run status letter: a :class:`WorkflowRunStatus`, or ``str`` for a new letter."""


def _server_time(value: object) -> object:
    # The server sends this when its database returned no clock; say so plainly
    # instead of pydantic's "month value is outside expected range".
    if isinstance(value, str) and value.startswith("0000-00-00"):
        raise ValueError(f"the server sent no clock ({value!r})")
    if not isinstance(value, str):
        # pydantic would read a number as unix seconds; the server never sends one.
        raise ValueError(f"a server time is a 'YYYY-MM-DD HH:MM:SS' string, got {value!r}")
    return value


def _naive(value: datetime) -> datetime:
    # The server's clock has no zone and `since` must be sent back the same
    # way; should a server ever add a zone, keep the instant, on UTC.
    if value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


ServerTime = Annotated[
    datetime,
    BeforeValidator(_server_time),
    AfterValidator(_naive),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$",
            # The server's "no clock" value is refused by the model.
            "not": {"const": "0000-00-00 00:00:00"},
        },
        mode="validation",
    ),
]
"""A server timestamp ``"YYYY-MM-DD HH:MM:SS"`` as a naive datetime."""

_TASK_ID_KEYS: dict[str, Any] = {"propertyNames": {"pattern": "^[0-9]+$"}}
"""Schema of a task-id keyed map's keys: JSON object keys are strings (``"11"``)."""


def _as_positional(object_schema: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    # The wire form of an object the server sends as a list: one item per
    # field, in order, each keeping the field's title and description.
    properties = object_schema["properties"]
    return {
        "type": "array",
        "prefixItems": [properties[name] for name in fields],
        "minItems": len(fields),
        "maxItems": len(fields),
    }


class _Response(BaseModel):
    # Newer servers may add fields: they must not fail an old SDK, and they
    # are kept (pydantic's `model_extra`) so that a user can read them before
    # the SDK knows them.
    model_config = ConfigDict(frozen=True, extra="allow")


class HeartbeatResponse(_Response):
    """Answer to ``log_heartbeat``: the run's status after the heartbeat."""

    status: WorkflowRunStatusLetter = Field(
        description="Status of the workflow run after the heartbeat. It may differ from the"
        " status sent: 'H' or 'C' mean the run was asked to resume and should stop."
        + _STATUS_DESCRIPTION,
        examples=["R"],
    )


class StatusUpdateResponse(_Response):
    """Answer to ``update_status``: the run's status after the request.

    An illegal transition is not an error on the server: the current status
    comes back unchanged, so compare it with the status you asked for.
    """

    status: WorkflowRunStatusLetter = Field(
        description="Status of the workflow run after the update (unchanged if the"
        " transition was illegal)." + _STATUS_DESCRIPTION,
        examples=["D"],
    )


class TerminateTaskInstancesResponse(_Response):
    """Answer to ``terminate_task_instances``.

    A 3.2 server answers ``null`` after doing the work: then
    ``workflow_run_id`` is the run the call named and ``num_terminated`` is
    ``None`` (the server did not say how many).
    """

    workflow_run_id: int = Field(description="The workflow run whose task instances were ended.")
    num_terminated: int | None = Field(
        description="How many task instances were set to terminate; null when the server"
        " did not say (3.2 answers null after doing the work)."
    )

    @classmethod
    def from_answer(cls, content: bytes, workflow_run_id: int) -> TerminateTaskInstancesResponse:
        """Decode the answer's bytes; ``null`` (3.2) gives ``num_terminated=None``."""
        if content.strip() == b"null":
            return cls(workflow_run_id=workflow_run_id, num_terminated=None)
        return cls.model_validate_json(content)


TaskIdsByStatus = dict[TaskStatusLetter, Annotated[list[int], FailFast()]]


class QueueResponse(_Response):
    """Answer to ``queue_task_batch``: the queued tasks' ids by their new status."""

    tasks_by_status: TaskIdsByStatus = Field(
        description="Task ids by status letter after queueing; statuses with no tasks are"
        " absent, and an empty batch gives an empty map." + _STATUS_DESCRIPTION,
        examples=[{"Q": [4, 5]}],
    )


class TaskStatusUpdatesResponse(_Response):
    """Answer to ``task_status_updates``: task ids by status, and the server's clock.

    Pass ``time`` as ``since`` to the next call to get only what changed.
    """

    tasks_by_status: TaskIdsByStatus = Field(
        description="Task ids by status letter (all tasks, or those changed since the"
        " given time); statuses with no tasks are absent." + _STATUS_DESCRIPTION,
        examples=[{"G": [4, 5], "Q": [1, 2, 3]}],
    )
    time: ServerTime = Field(
        description="The server's database clock when the snapshot was taken (no zone).",
        examples=["2026-11-28 17:56:34"],
    )


class WorkflowConcurrencyResponse(_Response):
    """Answer to ``get_max_concurrently_running`` (workflow or array)."""

    max_concurrently_running: int = Field(
        description="How many tasks may run at once (2147483647 means no limit).",
        examples=[37],
    )


class ServerTimeResponse(_Response):
    """Answer to ``/time``: the server's database clock."""

    time: ServerTime = Field(
        description="The server's database clock (no zone).", examples=["2026-11-28 17:56:34"]
    )


class WorkflowMetadata(_Response):
    """A workflow's identity and concurrency limit."""

    workflow_id: int = Field(description="The workflow's id.")
    dag_id: int = Field(description="The id of the workflow's DAG (for get_downstream_tasks).")
    max_concurrently_running: int = Field(
        description="How many of the workflow's tasks may run at once."
    )


_WORKFLOW_ROW_FIELDS = ("workflow_id", "dag_id", "max_concurrently_running")


class WorkflowMetadataResponse(_Response):
    """Answer to ``fetch_workflow_metadata``.

    The server sends ``{"workflow": [workflow_id, dag_id, max_concurrently_running]}``,
    or ``{"workflow": []}`` (status 200) for an unknown workflow, which comes
    out as ``workflow=None``.
    """

    workflow: WorkflowMetadata | None = Field(
        description="The workflow, or null when the server does not know it (it sends [])."
    )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(core_schema)
        if handler.mode == "validation":
            # On the wire `workflow` is [workflow_id, dag_id, max_concurrently_running] or [].
            response = handler.resolve_ref_schema(json_schema)
            workflow = response["properties"]["workflow"]
            metadata_ref = next(item for item in workflow.pop("anyOf") if "$ref" in item)
            metadata = handler.resolve_ref_schema(metadata_ref)
            row = _as_positional(metadata, _WORKFLOW_ROW_FIELDS)
            row["description"] = "The workflow as [workflow_id, dag_id, max_concurrently_running]."
            workflow["anyOf"] = [
                row,
                {"type": "array", "maxItems": 0, "description": "The server does not know it."},
            ]
            workflow["examples"] = [[1, 1, 37], []]
        return json_schema

    @model_validator(mode="before")
    @classmethod
    def _positional(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(row := data.get("workflow"), list):
            if not row:
                return {**data, "workflow": None}
            if len(row) != 3:
                raise ValueError(
                    "workflow must be [workflow_id, dag_id, max_concurrently_running],"
                    f" got a list of {len(row)}"
                )
            # Other keys (a newer server's) are kept beside it.
            return {**data, "workflow": dict(zip(_WORKFLOW_ROW_FIELDS, row, strict=True))}
        return data


def _fresh(value: Any) -> Any:
    # Parsed literals are cached; hand every task its own containers so that
    # mutating one task's dict can never change another's.
    if isinstance(value, dict):
        return {key: _fresh(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_fresh(item) for item in value]
    if isinstance(value, set):
        return set(value)  # a set's members are hashable, so immutable here
    if isinstance(value, tuple):
        return tuple(_fresh(item) for item in value)
    return value


_SCALARS = (str, int, float, bool, bytes, complex, type(None))

LITERAL_MAX_CHARS = 64 * 1024
"""Longest Python-literal string parsed (resource fields are a few dozen characters)."""
LITERAL_MAX_NODES = 10_000
"""Most syntax nodes in one literal."""
LITERAL_MAX_KEYS = 1_000
"""Most keys of one dict in a literal (keys must be strings; sets are refused)."""
_LITERAL_CACHED_CHARS = 256
"""Only literals this short are cached: the usual few strings repeated across rows."""


def _literal_tree(text: str) -> ast.Expression:
    # Parsed and inspected before it is evaluated, so that parsing costs at
    # most linear time and memory in its bounded length: a huge or deeply
    # nested literal, or a set of colliding ints, is refused first.
    tree = ast.parse(text, mode="eval")
    for nodes, node in enumerate(ast.walk(tree), start=1):
        if nodes > LITERAL_MAX_NODES:
            raise ValueError(f"more than {LITERAL_MAX_NODES} items")
        if isinstance(node, ast.Set):
            # No resource field holds a set, and hashing crafted members is quadratic.
            raise ValueError("a set")
        if isinstance(node, ast.Dict):
            if len(node.keys) > LITERAL_MAX_KEYS:
                raise ValueError(f"a dict of more than {LITERAL_MAX_KEYS} keys")
            # String keys only: their hashes are randomized, so no crafted collisions.
            if not all(
                isinstance(key, ast.Constant) and isinstance(key.value, str) for key in node.keys
            ):
                raise ValueError("a dict whose keys are not all strings")
    return tree


def _evaluate(text: str) -> tuple[Any, bool]:
    if len(text) > LITERAL_MAX_CHARS:
        raise ValueError(f"longer than {LITERAL_MAX_CHARS} characters")
    value: Any
    try:
        value = ast.literal_eval(_literal_tree(text))
    except (ValueError, SyntaxError) as exc:
        # Both servers store requested_resources with json.dumps, so a value
        # holding true, false or null is JSON, not a Python literal.
        try:
            value = pydantic_core.from_json(text)  # nesting-limited; its keys are strings
        except ValueError:
            raise exc from None
        if isinstance(value, list | dict) and len(value) > LITERAL_MAX_NODES:
            raise ValueError(f"more than {LITERAL_MAX_NODES} items") from None
    # pydantic validates the dict or list into a new one anyway, so a flat
    # value (the usual {'memory': 0.5}) can be handed over as it is.
    items = value.values() if isinstance(value, dict) else value
    flat = isinstance(value, dict | list) and all(isinstance(item, _SCALARS) for item in items)
    return value, flat


_LITERAL_CACHE: dict[str, tuple[Any, bool]] = {}
_LITERAL_CACHE_SIZE = 1024


def _evaluated_and_cached(text: str) -> tuple[Any, bool]:
    # Looked up in the cache by the caller, on the hot path; a miss comes here.
    parsed = _evaluate(text)
    if len(text) <= _LITERAL_CACHED_CHARS:
        if len(_LITERAL_CACHE) >= _LITERAL_CACHE_SIZE:
            # Bounded: the few strings a workflow repeats fit many times over.
            _LITERAL_CACHE.clear()
        _LITERAL_CACHE[text] = parsed
    return parsed


def _python_literal(expected: type[dict[str, Any]] | type[list[Any]]) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if type(value) is str:
            # The same few strings repeat across thousands of rows: parse once.
            hit = _LITERAL_CACHE.get(value)
            if hit is None:
                if value == "None":
                    return expected()
                try:
                    hit = _evaluated_and_cached(value)
                except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
                    raise ValueError(f"not a Python literal ({exc}): {value[:80]!r}") from None
            parsed, flat = hit
            return parsed if flat else _fresh(parsed)
        if value is None:
            return expected()
        return value

    return parse


def _literal_wire_schema(example: str) -> WithJsonSchema:
    # What the server sends for a resource field: a Python literal in a string
    # (null, or "None", for a missing value; both come out empty).
    return WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "description": "A Python literal (not JSON)."},
                {"type": "null"},
            ],
            "examples": [example],
        },
        mode="validation",
    )


_PythonLiteralDict = Annotated[
    dict[str, Any],
    BeforeValidator(_python_literal(dict)),
    _literal_wire_schema("{'memory': 0.5, 'runtime': 0.5}"),
]
_PythonLiteralList = Annotated[
    list[Any], BeforeValidator(_python_literal(list)), _literal_wire_schema("['long.q']")
]

_TASK_ROW_FIELDS = (
    "array_id",
    "status",
    "max_attempts",
    "resource_scales",
    "fallback_queues",
    "requested_resources",
    "cluster_name",
    "queue_name",
    "array_max_concurrently_running",
)


MAX_ID = 2**63 - 1
"""The largest id a database BIGINT holds; bigger "ids" are refused.

It also bounds how many int keys can share a hash (ints equal modulo
2**61 - 1 do), so a crafted map of ids cannot make building a dict quadratic.
"""

TaskId = Annotated[int, Field(gt=0, le=MAX_ID)]
"""A task id: a positive int up to 2**63 - 1 (on the wire, a string key such as ``"11"``)."""


class TaskMetadata(_Response):
    """One row of ``get_tasks``: what the driver needs to schedule a task.

    The server sends a positional list; its three resource fields are
    strings holding Python literals, parsed here into dicts and lists.
    """

    array_id: int = Field(description="The array (task template version batch) of the task.")
    status: TaskStatusLetter = Field(
        description="The task's status letter (never 'D': get_tasks skips done tasks)."
        + _STATUS_DESCRIPTION
    )
    max_attempts: int = Field(description="How many task instances may be tried.")
    resource_scales: _PythonLiteralDict = Field(
        description="Scaling factors applied to resources on retry, e.g."
        " {'memory': 0.5, 'runtime': 0.5}; sent as a Python-literal string."
    )
    fallback_queues: _PythonLiteralList = Field(
        description="Queues to fall back to when resources exceed the queue's limits;"
        " sent as a Python-literal string."
    )
    requested_resources: _PythonLiteralDict = Field(
        description="Resources requested for the task (memory, cores, runtime, ...);"
        " sent as a Python-literal string."
    )
    cluster_name: str = Field(description="Name of the cluster the task runs on.")
    queue_name: str = Field(description="Name of the queue the task is submitted to.")
    array_max_concurrently_running: int = Field(
        description="How many tasks of the task's array may run at once."
    )

    @model_validator(mode="before")
    @classmethod
    def _positional(cls, data: Any) -> Any:
        if isinstance(data, list | tuple):
            if len(data) != len(_TASK_ROW_FIELDS):
                raise ValueError(
                    f"a get_tasks row has {len(_TASK_ROW_FIELDS)} fields, got {len(data)}"
                )
            return dict(zip(_TASK_ROW_FIELDS, data, strict=True))
        return data

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(core_schema)
        if handler.mode == "validation":
            # On the wire a task is a positional list, not an object.
            row = handler.resolve_ref_schema(json_schema)
            positional = _as_positional(row, _TASK_ROW_FIELDS)
            for key in ("properties", "required", "additionalProperties"):
                row.pop(key, None)
            row.update(positional)
        return json_schema


class TaskRow(NamedTuple):
    """One row of ``get_task_rows``: :class:`TaskMetadata`'s fields in a named tuple.

    The same nine attributes, with the same names, types and values, made by
    the same checks; a row costs about two thirds of a model to build and
    holds one object fewer for the cycle collector, which is what paging a
    big workflow spends most on (docs/performance.md, "Paging and the row
    type"). What it lacks is the model's interface: no ``model_dump``,
    ``model_copy`` or ``model_fields_set``; it is a tuple, so it unpacks and
    compares equal to a tuple of the same values (never to a
    :class:`TaskMetadata`). :meth:`from_metadata` and :meth:`to_metadata`
    convert.
    """

    array_id: int
    """The array (task template version batch) of the task."""
    status: TaskStatus | str
    """The task's status letter: a :class:`TaskStatus`, or ``str`` for a letter added later."""
    max_attempts: int
    """How many task instances may be tried."""
    resource_scales: dict[str, Any]
    """Scaling factors applied to resources on retry, e.g. ``{'memory': 0.5}``."""
    fallback_queues: list[Any]
    """Queues to fall back to when resources exceed the queue's limits."""
    requested_resources: dict[str, Any]
    """Resources requested for the task (memory, cores, runtime, ...)."""
    cluster_name: str
    """Name of the cluster the task runs on."""
    queue_name: str
    """Name of the queue the task is submitted to."""
    array_max_concurrently_running: int
    """How many tasks of the task's array may run at once."""

    @classmethod
    def from_metadata(cls, task: TaskMetadata) -> TaskRow:
        """The row holding ``task``'s values (its containers, not copies)."""
        return cls(*[getattr(task, name) for name in cls._fields])

    def to_metadata(self) -> TaskMetadata:
        """This row's values validated into a :class:`TaskMetadata` (a row can be built by hand).

        The model gets deep copies of the row's dicts and lists: changing one
        never changes the other.

        Raises:
            pydantic.ValidationError: a value is not what the model's field takes.
        """
        return TaskMetadata.model_validate(copy.deepcopy(self._asdict()))


if TaskRow._fields != _TASK_ROW_FIELDS or tuple(TaskMetadata.model_fields) != _TASK_ROW_FIELDS:
    raise RuntimeError("TaskRow and TaskMetadata name different fields")  # pragma: no cover


class TasksResponse(_Response):
    """Answer to ``get_tasks``: one chunk of not-done tasks keyed by task id."""

    # FailFast: a huge invalid answer is refused at its first bad entry, not
    # after collecting (and rendering) an error for every one of them.
    tasks: Annotated[dict[TaskId, TaskMetadata], FailFast()] = Field(
        description="Tasks by id (ascending, only ids above max_task_id, not DONE);"
        " an empty map means there are no more.",
        json_schema_extra=_TASK_ID_KEYS,
    )


def _node_ids(value: Any) -> Any:
    # Three wire forms: a JSON list (clients above 3.4.23), a JSON-encoded
    # string (older or unknown clients) and null (no downstream edges).
    if value is None:
        return []
    if isinstance(value, str):
        return json.loads(value)
    return value


DownstreamNodeIds = Annotated[
    list[int],
    BeforeValidator(_node_ids),
    WithJsonSchema(
        {
            "title": "Downstream Node Ids",
            "description": "The downstream node ids.",
            "anyOf": [
                {
                    "type": "array",
                    "items": {"type": "integer"},
                    "description": "A JSON list (clients above 3.4.23).",
                },
                {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {"type": "array", "items": {"type": "integer"}},
                    "description": "A JSON-encoded list (older or unknown clients).",
                },
                {"type": "null", "description": "The node has no downstream edges."},
            ],
        },
        mode="validation",
    ),
]
"""Downstream node ids in any of their three wire forms, always a ``list[int]``."""

_DagNodeId = Annotated[int, Field(title="Node Id", description="The task's node in the DAG.")]


class DownstreamTasksResponse(_Response):
    """Answer to ``get_downstream_tasks``: each task's node and its downstream nodes."""

    downstream_tasks: Annotated[dict[TaskId, tuple[_DagNodeId, DownstreamNodeIds]], FailFast()] = (
        Field(
            description="For each task id: (node_id, downstream node ids). The ids arrive as a"
            " JSON list, a JSON-encoded string or null; they always come out as a list.",
            examples=[{"1": [4, [2, 9]], "11": [6, []]}],
            json_schema_extra=_TASK_ID_KEYS,
        )
    )


NullOrEmptyObject: TypeAdapter[dict[str, Any] | None] = TypeAdapter(dict[str, Any] | None)
"""The body of ``set_status_for_triaging``: ``{}`` (3.6) or ``null`` (3.2)."""


class ServerErrorBody(BaseModel):
    """What the server said in a non-2xx answer, from whichever envelope it used.

    Three shapes are seen on the wire: ``{"error": {"type": ..., "exception_message": ...}}``
    (400/423/500, content type ``application/custom+json``), ``{"error": "text"}``
    (404 from a handler) and ``{"detail": "Not Found" | [{"loc": ..., "msg": ...}]}``
    (FastAPI); 3.2 servers and proxies also answer with plain text or HTML.
    """

    model_config = ConfigDict(frozen=True)

    message: str | None = Field(default=None, description="The server's own message.")
    error_type: str | None = Field(
        default=None, description="The server-side exception type, when the envelope names one."
    )

    @property
    def route_missing(self) -> bool:
        """Whether a 404 with this body says the server has no such route (not no such row).

        FastAPI's ``{"detail": "Not Found"}`` (3.6), 3.6's "Route URL not
        found", 3.2's "This route does not exist: URL", a proxy's "404 Not
        Found" page, or no message at all; "Workflow with ID 9 not found in
        database." is about a row, on a route that exists.
        """
        return self.message is None or bool(_ROUTE_MISSING.search(self.message))

    @classmethod
    def from_body(cls, content: bytes) -> ServerErrorBody:
        """Parse any error body; never raises. The message is capped at 500 characters."""
        said = cls._from_body(content)
        message = said.message
        if message is not None and len(message) > SERVER_MESSAGE_LIMIT:
            # It lands in str(error) and in every retry's log line.
            message = message[:SERVER_MESSAGE_LIMIT] + "…"
            return cls(message=message, error_type=said.error_type)
        return said

    @classmethod
    def _from_body(cls, content: bytes) -> ServerErrorBody:
        # Only the start of a body is read: a message is at most 500
        # characters, and a huge or deeply nested body must cost nothing.
        text = content[:_ERROR_BODY_READ].decode("utf-8", errors="replace").strip()
        if not text:
            return cls()
        try:
            # pydantic-core's parser has a nesting limit (json's recursion would not).
            envelope = pydantic_core.from_json(text) if len(content) <= _ERROR_BODY_READ else None
        except ValueError:
            return cls(message=_plain_text(text))
        if envelope is None:
            return cls(message=_plain_text(text))
        if isinstance(envelope, dict):
            error = envelope.get("error")
            if isinstance(error, dict):
                message = error.get("exception_message")
                return cls(
                    message=None if message is None else str(message),
                    error_type=_exception_type(error.get("type")),
                )
            if isinstance(error, str):
                return cls(message=error)
            detail = envelope.get("detail")
            if isinstance(detail, str):
                return cls(message=detail)
            if isinstance(detail, list):
                return cls(message="; ".join(_validation_item(item) for item in detail))
        return cls(message=text[:500])


_ERROR_BODY_READ = 64 * 1024
_ROUTE_MISSING = re.compile(r"(?i)^\W*(404\W*)?not found\W*$|\broute\b")


def _exception_type(value: object) -> str | None:
    # The server sends str(type(exc)): "<class 'sqlalchemy.exc.NoResultFound'>".
    if not isinstance(value, str):
        return None
    if value.startswith("<class '") and value.endswith("'>"):
        return value[len("<class '") : -len("'>")]
    return value


def _validation_item(item: object) -> str:
    if isinstance(item, dict):
        loc = item.get("loc")
        where = ".".join(str(part) for part in loc) if isinstance(loc, list) else ""
        message = str(item.get("msg", item))
        return f"{where}: {message}" if where else message
    return str(item)


def _plain_text(text: str) -> str:
    # A proxy's HTML page: its <title> is the useful part.
    lowered = text.lower()
    start = lowered.find("<title>")
    if start != -1:
        end = lowered.find("</title>", start)
        if end != -1:
            return text[start + len("<title>") : end].strip()
    return text[:500]
