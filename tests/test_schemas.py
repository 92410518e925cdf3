"""The exported JSON Schemas: one file per response model, each describing the wire payload.

The recorded 2xx bodies in ``../shared/wire`` are the proof: every one that
belongs to a model must validate against that model's exported schema, raw
quirks and all (positional rows, Python-literal strings, string task-id keys,
string-encoded or null downstream ids).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from jobmon_gateway import ServerGateway, TerminateTaskInstancesResponse, routes
from jobmon_gateway.schemas import (
    JSON_SCHEMA_DIALECT,
    RESPONSE_MODELS,
    WIRE_ROUTES,
    export_schemas,
    model_for_route,
    schema_of,
    schema_text,
)

WIRE_DIR = Path(__file__).resolve().parents[2] / "shared" / "wire"


def _recorded_bodies() -> list[Any]:
    """One pytest param per recorded 2xx answer that a response model describes."""
    if not WIRE_DIR.is_dir():
        return [pytest.param(None, id="no-wire-dir")]
    params = []
    for path in sorted(WIRE_DIR.glob("*/*.json")):
        recording = json.loads(path.read_text(encoding="utf-8"))
        if 200 <= recording["status"] < 300:
            model = model_for_route(recording["method"], recording["route"])
            if model is not None:
                params.append(pytest.param(recording, id=f"{path.parent.name}/{path.stem}"))
    return params


RECORDED = _recorded_bodies()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The schemas as written by export_schemas, by model name."""
    out = tmp_path_factory.mktemp("schemas")
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in export_schemas(out)}


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


# -- the files ---------------------------------------------------------------------


def test_export_writes_one_file_per_model(tmp_path: Path) -> None:
    written = export_schemas(tmp_path / "new" / "dir")

    expected = [tmp_path / "new" / "dir" / f"{model.__name__}.json" for model in RESPONSE_MODELS]
    assert written == expected
    assert sorted((tmp_path / "new" / "dir").iterdir()) == sorted(expected)


def test_response_models_are_distinct_and_each_has_a_route() -> None:
    assert len(set(RESPONSE_MODELS)) == len(RESPONSE_MODELS)
    assert {route.model for route in WIRE_ROUTES} == set(RESPONSE_MODELS)


@pytest.mark.parametrize("model", RESPONSE_MODELS, ids=lambda model: model.__name__)
def test_file_is_stable_sorted_json_with_a_final_newline(tmp_path: Path, model: type) -> None:
    (path,) = export_schemas(tmp_path, [model])
    text = path.read_text(encoding="utf-8")

    assert text.endswith("}\n")
    assert not text.endswith("\n\n")
    assert "\r" not in text
    loaded = json.loads(text)
    assert text == json.dumps(loaded, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert text == schema_text(model)
    (again,) = export_schemas(tmp_path, [model])
    assert again.read_bytes() == text.encode("utf-8")


@pytest.mark.parametrize("model", RESPONSE_MODELS, ids=lambda model: model.__name__)
def test_schema_is_a_valid_draft_2020_12_schema(model: type[BaseModel]) -> None:
    schema = schema_of(model)

    assert schema["$schema"] == JSON_SCHEMA_DIALECT
    assert schema["title"] == model.__name__
    Draft202012Validator.check_schema(schema)


def _run_module(*arguments: str) -> subprocess.CompletedProcess[str]:
    # Through `python -m`, as a user runs it: whichever parser owns __main__.
    return subprocess.run(
        [sys.executable, "-m", "jobmon_gateway", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_module_command_writes_and_names_the_schemas(tmp_path: Path) -> None:
    completed = _run_module("schema", "--out", str(tmp_path / "out"))

    assert completed.returncode == 0, completed.stderr
    names = [f"{model.__name__}.json" for model in RESPONSE_MODELS]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == sorted(names)
    for name in names:
        assert str(tmp_path / "out" / name) in completed.stdout


def test_module_command_without_out_prints_every_schema() -> None:
    completed = _run_module("schema")

    assert completed.returncode == 0, completed.stderr
    printed = json.loads(completed.stdout)
    assert sorted(printed) == sorted(model.__name__ for model in RESPONSE_MODELS)


# -- the schemas describe the wire -------------------------------------------------------


@pytest.mark.parametrize("recording", RECORDED)
def test_recorded_body_validates_against_its_model_schema(
    recording: dict[str, Any] | None, exported: dict[str, dict[str, Any]]
) -> None:
    if recording is None:
        pytest.skip(f"no recorded wire pairs at {WIRE_DIR}")
    model = model_for_route(recording["method"], recording["route"])
    assert model is not None
    body = json.loads(recording["response_text"])

    errors = [error.message for error in _validator(exported[model.__name__]).iter_errors(body)]

    assert errors == []
    # The model takes the same bytes: schema and model agree on the wire form.
    model.model_validate_json(recording["response_text"])


@pytest.mark.skipif(not WIRE_DIR.is_dir(), reason="no recorded wire pairs")
def test_every_model_has_a_recorded_example() -> None:
    recorded = {
        model_for_route(param.values[0]["method"], param.values[0]["route"]) for param in RECORDED
    }

    assert recorded == set(RESPONSE_MODELS)


def _raw_forms() -> Iterator[Any]:
    # The quirks PROTOCOL.md lists, each as the server sends it.
    row = [1, "Q", 3, "{'memory': 0.5, 'runtime': 0.5}", "[]", "{}", "sequential", "null.q", 5]
    yield pytest.param("TasksResponse", {"tasks": {"11": row, "99": row}}, id="positional-rows")
    yield pytest.param(
        "TasksResponse",
        {"tasks": {"1": [*row[:3], None, None, None, *row[6:]]}},
        id="null-literals",
    )
    yield pytest.param("TasksResponse", {"tasks": {}}, id="no-more-tasks")
    yield pytest.param(
        "DownstreamTasksResponse",
        {"downstream_tasks": {"1": [4, [2, 9]], "2": [11, "[3, 2]"], "11": [6, None]}},
        id="downstream-three-forms",
    )
    yield pytest.param("WorkflowMetadataResponse", {"workflow": [1, 1, 37]}, id="metadata-row")
    yield pytest.param("WorkflowMetadataResponse", {"workflow": []}, id="metadata-unknown")
    yield pytest.param(
        "TaskStatusUpdatesResponse",
        {"tasks_by_status": {"Q": [1, 2], "Z": [3]}, "time": "2026-11-28 17:56:34"},
        id="unknown-status-letter",
    )
    yield pytest.param(
        "HeartbeatResponse", {"status": "R", "added_later": True}, id="extra-field-kept"
    )


@pytest.mark.parametrize(("name", "body"), list(_raw_forms()))
def test_raw_wire_forms_are_accepted_by_schema_and_model(
    name: str, body: Any, exported: dict[str, dict[str, Any]]
) -> None:
    assert list(_validator(exported[name]).iter_errors(body)) == []
    _model(name).model_validate_json(json.dumps(body))


@pytest.mark.parametrize(("name", "body"), list(_raw_forms()))
def test_a_field_a_newer_server_adds_is_allowed_by_schema_and_kept_by_model(
    name: str, body: Any, exported: dict[str, dict[str, Any]]
) -> None:
    newer = {**body, "added_later": {"any": ["json", 1]}}
    assert list(_validator(exported[name]).iter_errors(newer)) == []
    assert exported[name]["additionalProperties"] is True
    kept = _model(name).model_validate_json(json.dumps(newer)).model_extra
    assert kept == {"added_later": {"any": ["json", 1]}}


def _refused_forms() -> Iterator[Any]:
    row = [1, "Q", 3, "{}", "[]", "{}", "sequential", "null.q", 5]
    yield pytest.param(
        "TaskStatusUpdatesResponse",
        {"tasks_by_status": {}, "time": "0000-00-00 00:00:00"},
        id="no-clock",
    )
    yield pytest.param("TasksResponse", {"tasks": {"abc": row}}, id="task-id-not-a-number")
    yield pytest.param("TasksResponse", {"tasks": {"1": row[:8]}}, id="short-row")
    yield pytest.param(
        "DownstreamTasksResponse", {"downstream_tasks": {"x": [1, []]}}, id="downstream-key"
    )
    yield pytest.param("WorkflowMetadataResponse", {"workflow": [1, 2]}, id="metadata-short")
    yield pytest.param("TerminateTaskInstancesResponse", {"workflow_run_id": 1}, id="missing-field")


@pytest.mark.parametrize(("name", "body"), list(_refused_forms()))
def test_schema_refuses_what_the_model_refuses(
    name: str, body: Any, exported: dict[str, dict[str, Any]]
) -> None:
    assert list(_validator(exported[name]).iter_errors(body)) != []
    with pytest.raises(ValidationError):
        _model(name).model_validate_json(json.dumps(body))


def _model(name: str) -> type[BaseModel]:
    (model,) = (model for model in RESPONSE_MODELS if model.__name__ == name)
    return model


# -- descriptions -----------------------------------------------------------------------


def _models_within(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
    yield model
    for field in model.model_fields.values():
        for inner in _types_in(field.annotation):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                yield from _models_within(inner)


def _types_in(annotation: Any) -> Iterator[Any]:
    yield annotation
    for argument in getattr(annotation, "__args__", ()):
        yield from _types_in(argument)


ALL_MODELS = sorted(
    {inner for model in RESPONSE_MODELS for inner in _models_within(model)},
    key=lambda model: model.__name__,
)


def test_nested_models_are_found() -> None:
    names = {model.__name__ for model in ALL_MODELS}

    assert {"TaskMetadata", "WorkflowMetadata"} <= names


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda model: model.__name__)
def test_every_model_field_has_a_description(model: type[BaseModel]) -> None:
    assert (model.__doc__ or "").strip()
    for name, field in model.model_fields.items():
        assert (field.description or "").strip(), f"{model.__name__}.{name} has no description"


def _fields_in(schema: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """Every property and every positional item of every object or row in ``schema``."""
    if isinstance(schema, dict):
        for name, value in schema.get("properties", {}).items():
            yield f"{where}.{name}", value
        for index, value in enumerate(schema.get("prefixItems", [])):
            yield f"{where}[{index}]", value
        for key, value in schema.items():
            yield from _fields_in(value, f"{where}/{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            yield from _fields_in(value, f"{where}/{index}")


@pytest.mark.parametrize("model", RESPONSE_MODELS, ids=lambda model: model.__name__)
def test_every_field_in_the_schema_has_a_description(
    model: type[BaseModel], exported: dict[str, dict[str, Any]]
) -> None:
    schema = exported[model.__name__]
    fields = list(_fields_in(schema))

    assert fields
    assert (schema.get("description") or "").strip()
    for where, field in fields:
        assert isinstance(field, dict), where
        assert str(field.get("description") or "").strip(), f"{where} has no description"


def _texts_in(schema: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every ``title`` and ``description`` string of ``schema``, with where it is."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key in ("title", "description") and isinstance(value, str):
                yield f"{where}/{key}", value
            else:
                yield from _texts_in(value, f"{where}/{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            yield from _texts_in(value, f"{where}/{index}")


@pytest.mark.parametrize("model", RESPONSE_MODELS, ids=lambda model: model.__name__)
def test_schema_texts_carry_no_rest_markup(
    model: type[BaseModel], exported: dict[str, dict[str, Any]]
) -> None:
    # The docstrings are reST (``literal``, :class:`Name`); a schema is read as
    # plain text or Markdown, by tools and on its docs page, so none may be left.
    texts = list(_texts_in(exported[model.__name__]))

    assert any(where.endswith("description") for where, _ in texts)
    for where, text in texts:
        assert "``" not in text, f"{where}: {text!r}"
        assert not re.search(r":[a-z]+:`", text), f"{where}: {text!r}"
    assert "``" not in schema_text(model)


def test_rest_literals_become_markdown_code() -> None:
    # TerminateTaskInstancesResponse's docstring names the route in ``...``.
    description = schema_of(TerminateTaskInstancesResponse)["description"]

    assert description.startswith("Answer to `terminate_task_instances`.")
    assert "`null`" in description


def test_positional_rows_keep_field_names_as_titles(exported: dict[str, dict[str, Any]]) -> None:
    row = exported["TasksResponse"]["$defs"]["TaskMetadata"]
    titles = [item["title"] for item in row["prefixItems"]]

    assert row["type"] == "array"
    assert titles == [
        field.title or name.replace("_", " ").title()
        for name, field in _model_fields("TaskMetadata").items()
    ]


def _model_fields(name: str) -> dict[str, Any]:
    (model,) = (model for model in ALL_MODELS if model.__name__ == name)
    return dict(model.model_fields)


def test_serialization_schema_still_describes_the_python_side() -> None:
    # Only the validation schema is the wire form; model_dump(mode="json") is an object.
    task = _model("TasksResponse").model_json_schema(mode="serialization")["$defs"]["TaskMetadata"]

    assert task["type"] == "object"
    assert task["properties"]["resource_scales"]["type"] == "object"


# -- the route table ---------------------------------------------------------------------

SAMPLE_ARGUMENTS: dict[str, tuple[Any, ...]] = {
    "log_heartbeat": (7, "R", 30.0),
    "update_status": (7, "D"),
    "terminate_task_instances": (7,),
    "get_task_status_updates": (7,),
    "get_workflow_concurrency": (7,),
    "get_array_concurrency": (7,),
    "queue_task_batch": (7, [1, 2], 3, 4, 5),
    "get_workflow_metadata": (7,),
    "get_tasks": (7,),
    "get_downstream_tasks": ([1, 2], 7),
    "get_server_time": (),
}


@pytest.mark.parametrize("wire_route", WIRE_ROUTES, ids=lambda route: route.gateway_call)
def test_route_table_agrees_with_the_sdk(wire_route: Any) -> None:
    call = getattr(routes, wire_route.gateway_call)(*SAMPLE_ARGUMENTS[wire_route.gateway_call])

    assert wire_route.matches(call.method, call.route)
    assert model_for_route(call.method, call.route) is wire_route.model
    assert callable(getattr(ServerGateway, wire_route.gateway_call))
    assert callable(getattr(ServerGateway, f"{wire_route.gateway_call}_sync"))
    owner = getattr(call.decode, "__self__", None)
    if isinstance(owner, type):
        assert owner is wire_route.model


@pytest.mark.parametrize(
    ("method", "route", "expected"),
    [
        ("post", "/workflow_run/12/log_heartbeat", "HeartbeatResponse"),
        ("GET", "/workflow/get_tasks/5", "TasksResponse"),
        ("GET", "/array/3/get_array_max_concurrently_running", "WorkflowConcurrencyResponse"),
        ("GET", "/time", "ServerTimeResponse"),
        ("POST", "/workflow_run/1/set_status_for_triaging", None),
        ("GET", "/workflow_run/12/log_heartbeat", None),
        ("POST", "/workflow_run/abc/log_heartbeat", None),
        ("POST", "/workflow_run/1/log_heartbeat/extra", None),
        ("GET", "/no_such_route", None),
    ],
)
def test_model_for_route(method: str, route: str, expected: str | None) -> None:
    model = model_for_route(method, route)

    assert (None if model is None else model.__name__) == expected
