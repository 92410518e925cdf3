"""JSON Schemas of the server's 2xx answers, one per response model.

A schema here is the model's JSON Schema in *validation* mode, and it
describes the **wire payload**: what the server sends, quirks included
(positional rows, Python-literal strings, task ids as string keys, the three
forms of downstream node ids). It is not the shape of the Python object the
model hands back, nor of ``model_dump()``.

Write them all as files::

    from pathlib import Path
    from jobmon_gateway.schemas import export_schemas

    for path in export_schemas(Path("schemas")):
        print(path)  # schemas/HeartbeatResponse.json, ...

or from a shell: ``python -m jobmon_gateway schema --out schemas``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .models import (
    DownstreamTasksResponse,
    HeartbeatResponse,
    QueueResponse,
    ServerTimeResponse,
    StatusUpdateResponse,
    TasksResponse,
    TaskStatusUpdatesResponse,
    TerminateTaskInstancesResponse,
    WorkflowConcurrencyResponse,
    WorkflowMetadataResponse,
)
from .routes import HttpMethod

__all__ = [
    "JSON_SCHEMA_DIALECT",
    "RESPONSE_MODELS",
    "WIRE_ROUTES",
    "WireRoute",
    "export_schemas",
    "model_for_route",
    "schema_of",
    "schema_text",
]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
"""The JSON Schema dialect of every exported schema (``$schema``)."""

RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    HeartbeatResponse,
    StatusUpdateResponse,
    TerminateTaskInstancesResponse,
    TaskStatusUpdatesResponse,
    WorkflowConcurrencyResponse,
    QueueResponse,
    WorkflowMetadataResponse,
    TasksResponse,
    DownstreamTasksResponse,
    ServerTimeResponse,
)
"""Every model that decodes a whole 2xx body, in the order of the server's routes.

``set_status_for_triaging`` has none: its body is ``{}`` (``null`` from 3.2)
and the gateway returns ``None``.
"""


@dataclass(frozen=True)
class WireRoute:
    """A route of the server and the response model of its 2xx body.

    Attributes:
        method: HTTP method of the route.
        template: The route below the base URL with ``{placeholders}`` for
            ids, e.g. ``"/workflow_run/{workflow_run_id}/log_heartbeat"``.
        gateway_call: The :class:`~jobmon_gateway.ServerGateway` method that
            sends it (its ``*_sync`` twin sends it too).
        model: The model that validates the route's 2xx body.
    """

    method: HttpMethod
    template: str
    gateway_call: str
    model: type[BaseModel]

    def matches(self, method: str, route: str) -> bool:
        """Whether a concrete request is one of this route's.

        Example: ``matches("POST", "/workflow_run/7/log_heartbeat")`` is true
        for the ``log_heartbeat`` route. Placeholders match decimal ids only.
        """
        return method.upper() == self.method and bool(_route_pattern(self.template).match(route))


@cache
def _route_pattern(template: str) -> re.Pattern[str]:
    literal_parts = re.split(r"\{[a-z_]+\}", template)
    return re.compile("^" + "[0-9]+".join(re.escape(part) for part in literal_parts) + "$")


WIRE_ROUTES: tuple[WireRoute, ...] = (
    WireRoute(
        "POST", "/workflow_run/{workflow_run_id}/log_heartbeat", "log_heartbeat", HeartbeatResponse
    ),
    WireRoute(
        "PUT",
        "/workflow_run/{workflow_run_id}/update_status",
        "update_status",
        StatusUpdateResponse,
    ),
    WireRoute(
        "PUT",
        "/workflow_run/{workflow_run_id}/terminate_task_instances",
        "terminate_task_instances",
        TerminateTaskInstancesResponse,
    ),
    WireRoute(
        "POST",
        "/workflow/{workflow_id}/task_status_updates",
        "get_task_status_updates",
        TaskStatusUpdatesResponse,
    ),
    WireRoute(
        "GET",
        "/workflow/{workflow_id}/get_max_concurrently_running",
        "get_workflow_concurrency",
        WorkflowConcurrencyResponse,
    ),
    WireRoute(
        "GET",
        "/array/{array_id}/get_array_max_concurrently_running",
        "get_array_concurrency",
        WorkflowConcurrencyResponse,
    ),
    WireRoute("POST", "/array/{array_id}/queue_task_batch", "queue_task_batch", QueueResponse),
    WireRoute(
        "GET",
        "/workflow/{workflow_id}/fetch_workflow_metadata",
        "get_workflow_metadata",
        WorkflowMetadataResponse,
    ),
    WireRoute("GET", "/workflow/get_tasks/{workflow_id}", "get_tasks", TasksResponse),
    WireRoute(
        "POST", "/task/get_downstream_tasks", "get_downstream_tasks", DownstreamTasksResponse
    ),
    WireRoute("GET", "/time", "get_server_time", ServerTimeResponse),
)
"""Each route whose 2xx body a model of :data:`RESPONSE_MODELS` describes."""


def model_for_route(method: str, route: str) -> type[BaseModel] | None:
    """The response model of a concrete request's 2xx body, or ``None`` if it has none.

    Args:
        method: HTTP method, e.g. ``"GET"``.
        route: The route below the base URL, e.g. ``"/workflow/get_tasks/1"``.
    """
    for wire_route in WIRE_ROUTES:
        if wire_route.matches(method, route):
            return wire_route.model
    return None


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of ``model``'s wire payload, with its ``$schema`` dialect.

    It is ``model.model_json_schema(mode="validation")``: the models describe
    the server's raw forms there, so the schema accepts exactly what was
    recorded on the wire. Titles and descriptions are Markdown: the
    docstrings' reST literals and roles become single-backtick code.
    """
    schema = _plain_texts(model.model_json_schema(mode="validation"))
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


# Titles and descriptions come from the models' reST docstrings; a schema is
# read as plain text or Markdown (by tools, on its docs page), where
# ``literal`` and :class:`~x.Name` would show as raw markup.
_REST_ROLE = re.compile(r":[a-z]+:`~?(?:[\w.]*\.)?([^`]+)`")
_REST_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)
_TEXT_KEYS = frozenset({"title", "description"})
# Values, not schemas: an example or default is kept exactly as written.
_VALUE_KEYS = frozenset({"examples", "default", "const", "enum"})


def _markdown(text: str) -> str:
    return _REST_LITERAL.sub(r"`\1`", _REST_ROLE.sub(r"`\1`", text))


def _plain_texts(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {
            key: _markdown(value)
            if key in _TEXT_KEYS and isinstance(value, str)
            else value
            if key in _VALUE_KEYS
            else _plain_texts(value)
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [_plain_texts(item) for item in schema]
    return schema


def schema_text(model: type[BaseModel]) -> str:
    """``schema_of(model)`` as stable JSON text: sorted keys, two-space indent, final newline.

    The same model always gives the same bytes, so exported files diff cleanly.
    """
    return json.dumps(schema_of(model), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def export_schemas(
    out_dir: str | os.PathLike[str], models: Iterable[type[BaseModel]] = RESPONSE_MODELS
) -> list[Path]:
    """Write one ``<ModelName>.json`` JSON Schema per model into ``out_dir``.

    The directory is created if needed; existing files of the same name are
    replaced and other files are left alone.

    Args:
        out_dir: Where to write the schemas.
        models: The models to export; by default :data:`RESPONSE_MODELS`.

    Returns:
        The paths written, in the order of ``models``.
    """
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for model in models:
        path = directory / f"{model.__name__}.json"
        path.write_text(schema_text(model), encoding="utf-8", newline="\n")
        written.append(path)
    return written
