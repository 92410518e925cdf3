"""Response models, validated straight from JSON bytes as the server sends them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

import jobmon_gateway
from jobmon_gateway import (
    DownstreamTasksResponse,
    HeartbeatResponse,
    QueueResponse,
    ServerErrorBody,
    ServerTimeResponse,
    StatusUpdateResponse,
    TaskMetadata,
    TasksResponse,
    TaskStatus,
    TaskStatusUpdatesResponse,
    TerminateTaskInstancesResponse,
    WorkflowConcurrencyResponse,
    WorkflowMetadata,
    WorkflowMetadataResponse,
    WorkflowRunStatus,
)

ROW = '[1,"Q",3,"{\'memory\': 0.5, \'runtime\': 0.5}","[]","{}","sequential","null.q",2147483647]'


def _row(**fields: str) -> str:
    values = {
        "array_id": "1",
        "status": '"Q"',
        "max_attempts": "3",
        "resource_scales": "\"{'memory': 0.5, 'runtime': 0.5}\"",
        "fallback_queues": '"[]"',
        "requested_resources": '"{}"',
        "cluster_name": '"sequential"',
        "queue_name": '"null.q"',
        "array_max_concurrently_running": "2147483647",
    }
    values.update(fields)
    return "[" + ",".join(values.values()) + "]"


# -- keys and statuses ---------------------------------------------------------------


def test_task_id_keys_come_out_as_ints() -> None:
    tasks = TasksResponse.model_validate_json(
        f'{{"tasks": {{"99": {ROW}, "500": {ROW}}}}}'.encode()
    )
    assert list(tasks.tasks) == [99, 500]
    assert max(tasks.tasks) == 500  # numeric, not "99" > "500"
    downstream = DownstreamTasksResponse.model_validate_json(
        b'{"downstream_tasks": {"11": [6, null], "2": [11, [3, 2]]}}'
    )
    assert downstream.downstream_tasks == {11: (6, []), 2: (11, [3, 2])}
    assert all(type(key) is int for key in downstream.downstream_tasks)
    assert TasksResponse.model_validate_json(b'{"tasks": {}}').tasks == {}


def test_known_status_letters_are_enum_members_equal_to_the_letter() -> None:
    heartbeat = HeartbeatResponse.model_validate_json(b'{"status": "H"}')
    assert heartbeat.status == "H"
    assert str(heartbeat.status) == "H"
    assert heartbeat.status is WorkflowRunStatus.HOT_RESUME
    task = TaskMetadata.model_validate_json(_row(status='"R"'))
    assert task.status == "R"
    assert task.status is TaskStatus.RUNNING
    queued = QueueResponse.model_validate_json(b'{"tasks_by_status": {"Q": [4, 5]}}')
    assert list(queued.tasks_by_status) == [TaskStatus.QUEUED]
    assert queued.tasks_by_status["Q"] == [4, 5]


def test_unknown_status_letters_are_kept_as_plain_str() -> None:
    heartbeat = StatusUpdateResponse.model_validate_json(b'{"status": "X"}')
    assert heartbeat.status == "X"
    assert type(heartbeat.status) is str
    task = TaskMetadata.model_validate_json(_row(status='"Z"'))
    assert type(task.status) is str
    assert task.status == "Z"
    updates = TaskStatusUpdatesResponse.model_validate_json(
        b'{"tasks_by_status": {"Z": [1], "G": [2]}, "time": "2026-11-28 17:56:34"}'
    )
    assert updates.tasks_by_status == {"Z": [1], TaskStatus.REGISTERING: [2]}
    assert {type(letter) for letter in updates.tasks_by_status} == {str, TaskStatus}


def test_status_letters_serialize_as_letters() -> None:
    updates = TaskStatusUpdatesResponse.model_validate_json(
        b'{"tasks_by_status": {"Q": [1], "Z": [2]}, "time": "2026-11-28 17:56:34"}'
    )
    dumped = updates.model_dump(mode="json")
    assert dumped["tasks_by_status"] == {"Q": [1], "Z": [2]}
    assert HeartbeatResponse.model_validate_json(b'{"status": "R"}').model_dump(mode="json") == {
        "status": "R"
    }


def test_status_must_be_a_string() -> None:
    with pytest.raises(ValidationError):
        HeartbeatResponse.model_validate_json(b'{"status": 1}')
    with pytest.raises(ValidationError):
        HeartbeatResponse.model_validate_json(b"{}")


# -- times ---------------------------------------------------------------------------


def test_server_time_is_a_naive_datetime() -> None:
    answer = ServerTimeResponse.model_validate_json(b'{"time": "2026-11-28 17:56:34"}')
    assert answer.time == datetime(2026, 11, 28, 17, 56, 34)
    assert answer.time.tzinfo is None


def test_zero_time_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ValidationError) as refused:
        ServerTimeResponse.model_validate_json(b'{"time": "0000-00-00 00:00:00"}')
    assert "no clock" in str(refused.value)
    with pytest.raises(ValidationError) as refused_updates:
        TaskStatusUpdatesResponse.model_validate_json(
            b'{"tasks_by_status": {}, "time": "0000-00-00 00:00:00"}'
        )
    assert "no clock" in str(refused_updates.value)


def test_garbage_time_is_refused() -> None:
    with pytest.raises(ValidationError):
        ServerTimeResponse.model_validate_json(b'{"time": "yesterday"}')


def test_a_number_is_not_a_server_time() -> None:
    # pydantic alone would read it as unix seconds; the server never sends one.
    with pytest.raises(ValidationError):
        ServerTimeResponse.model_validate_json(b'{"time": 5}')


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("2026-11-28T17:56:34Z", datetime(2026, 11, 28, 17, 56, 34)),
        ("2026-11-28T17:56:34+02:00", datetime(2026, 11, 28, 15, 56, 34)),
    ],
)
def test_a_zoned_time_comes_out_naive_on_utc(wire: str, expected: datetime) -> None:
    # The time is passed back as `since`, which must be naive: keep the instant, on UTC.
    answer = ServerTimeResponse.model_validate_json(f'{{"time": "{wire}"}}')
    assert answer.time == expected
    assert answer.time.tzinfo is None


# -- python-literal fields -----------------------------------------------------------


def test_python_literal_fields_are_parsed() -> None:
    task = TaskMetadata.model_validate_json(
        _row(
            resource_scales="\"{'memory': 0.5, 'runtime': 0.5}\"",
            fallback_queues="\"['all.q', 'long.q']\"",
            requested_resources="\"{'cores': 1, 'memory': '1G', 'flag': True, 'x': None}\"",
        )
    )
    assert task.resource_scales == {"memory": 0.5, "runtime": 0.5}
    assert task.fallback_queues == ["all.q", "long.q"]
    assert task.requested_resources == {"cores": 1, "memory": "1G", "flag": True, "x": None}
    assert task.array_id == 1
    assert task.max_attempts == 3
    assert (task.cluster_name, task.queue_name) == ("sequential", "null.q")
    assert task.array_max_concurrently_running == 2147483647


def test_empty_and_none_literals() -> None:
    task = TaskMetadata.model_validate_json(
        _row(resource_scales='"{}"', fallback_queues='"None"', requested_resources="null")
    )
    assert task.resource_scales == {}
    assert task.fallback_queues == []
    assert task.requested_resources == {}


@pytest.mark.parametrize(
    "payload",
    [
        "__import__('os').system('x')",
        "open('/etc/passwd').read()",
        "(lambda: 1)()",
        "{'memory': 1 if True else 2}",
    ],
)
def test_code_in_a_literal_field_is_refused_not_run(
    payload: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []

    def fake_system(command: str) -> int:
        ran.append(command)
        return 0

    monkeypatch.setattr("os.system", fake_system)
    quoted = '"' + payload.replace('"', '\\"') + '"'
    with pytest.raises(ValidationError) as refused:
        TaskMetadata.model_validate_json(_row(requested_resources=quoted))
    assert "not a Python literal" in str(refused.value)
    assert ran == []


def test_a_literal_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValidationError):
        TaskMetadata.model_validate_json(_row(resource_scales="\"['a list']\""))
    with pytest.raises(ValidationError):
        TaskMetadata.model_validate_json(_row(fallback_queues="\"{'a': 1}\""))


def test_a_row_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        TaskMetadata.model_validate_json(b'[1, "Q", 3]')
    assert "9 fields" in str(refused.value)


def test_rows_do_not_share_parsed_containers() -> None:
    tasks = TasksResponse.model_validate_json(f'{{"tasks": {{"1": {ROW}, "2": {ROW}}}}}').tasks
    first, second = tasks[1], tasks[2]
    assert first.resource_scales is not second.resource_scales
    assert first.fallback_queues is not second.fallback_queues
    assert first.requested_resources is not second.requested_resources
    first.resource_scales["memory"] = 99
    first.fallback_queues.append("changed")
    first.requested_resources["new"] = 1
    assert second.resource_scales == {"memory": 0.5, "runtime": 0.5}
    assert second.fallback_queues == []
    assert second.requested_resources == {}
    # Later answers with the same strings are not affected either.
    later = TaskMetadata.model_validate_json(ROW)
    assert later.resource_scales == {"memory": 0.5, "runtime": 0.5}
    assert later.fallback_queues == []


def test_rows_do_not_share_nested_lists_or_lists_in_tuples() -> None:
    literal = "\"{'queues': ['a.q'], 'pair': ([1], 2)}\""
    first = TaskMetadata.model_validate_json(_row(requested_resources=literal))
    first.requested_resources["queues"].append("changed.q")
    first.requested_resources["pair"][0].append(9)
    second = TaskMetadata.model_validate_json(_row(requested_resources=literal))
    assert second.requested_resources == {"queues": ["a.q"], "pair": ([1], 2)}


@pytest.mark.parametrize(
    "literal",
    ["\"{'queues': {'a.q'}}\"", "\"{1: 'a'}\"", "\"{(1, 2): 'a'}\""],
    ids=["a-set", "int-keys", "tuple-keys"],
)
def test_literals_that_could_hash_badly_are_refused(literal: str) -> None:
    # No resource field holds a set or non-string keys; refusing them leaves
    # no way to make building the value quadratic.
    with pytest.raises(ValueError, match="not a Python literal"):
        TaskMetadata.model_validate_json(_row(requested_resources=literal))


# -- downstream ids: three wire forms ------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "expected"),
    [("[2, 9]", [2, 9]), ('"[2, 9]"', [2, 9]), ("null", []), ("[]", []), ('"[]"', [])],
)
def test_downstream_node_ids_always_come_out_as_a_list(wire: str, expected: list[int]) -> None:
    answer = DownstreamTasksResponse.model_validate_json(
        f'{{"downstream_tasks": {{"1": [4, {wire}]}}}}'
    )
    assert answer.downstream_tasks == {1: (4, expected)}


def test_malformed_downstream_node_ids_are_refused() -> None:
    with pytest.raises(ValidationError):
        DownstreamTasksResponse.model_validate_json(b'{"downstream_tasks": {"1": [4, "[2,"]}}')
    with pytest.raises(ValidationError):
        DownstreamTasksResponse.model_validate_json(b'{"downstream_tasks": {"x": [4, []]}}')


# -- workflow metadata ---------------------------------------------------------------


def test_workflow_metadata_positional_row() -> None:
    answer = WorkflowMetadataResponse.model_validate_json(b'{"workflow": [7, 3, 37]}')
    assert answer.workflow == WorkflowMetadata(workflow_id=7, dag_id=3, max_concurrently_running=37)
    assert WorkflowMetadataResponse.model_validate_json(b'{"workflow": []}').workflow is None
    with pytest.raises(ValidationError):
        WorkflowMetadataResponse.model_validate_json(b'{"workflow": [7, 3]}')


def test_other_small_answers() -> None:
    terminated = TerminateTaskInstancesResponse.model_validate_json(
        b'{"workflow_run_id": 1, "num_terminated": 3}'
    )
    assert (terminated.workflow_run_id, terminated.num_terminated) == (1, 3)
    concurrency = WorkflowConcurrencyResponse.model_validate_json(
        b'{"max_concurrently_running": 37}'
    )
    assert concurrency.max_concurrently_running == 37
    with pytest.raises(ValidationError):
        WorkflowConcurrencyResponse.model_validate_json(b'{"max_concurrently_running": "many"}')


# -- model behaviour -----------------------------------------------------------------


def test_models_are_frozen() -> None:
    heartbeat = HeartbeatResponse.model_validate_json(b'{"status": "R"}')
    with pytest.raises(ValidationError):
        heartbeat.status = "D"  # type: ignore[misc]
    task = TaskMetadata.model_validate_json(ROW)
    with pytest.raises(ValidationError):
        task.max_attempts = 9  # type: ignore[misc]
    assert heartbeat.status == "R"
    assert task.max_attempts == 3


def test_fields_a_newer_server_adds_are_kept_in_model_extra() -> None:
    heartbeat = HeartbeatResponse.model_validate_json(
        b'{"status": "R", "added_in_4_0": {"reason": ["x", 1]}}'
    )
    assert heartbeat.status is WorkflowRunStatus.RUNNING
    assert heartbeat.model_extra == {"added_in_4_0": {"reason": ["x", 1]}}
    terminated = TerminateTaskInstancesResponse.model_validate_json(
        b'{"workflow_run_id": 1, "num_terminated": 0, "extra": [1, 2]}'
    )
    assert terminated.num_terminated == 0
    assert terminated.model_extra == {"extra": [1, 2]}
    # Beside a positional row, and beside the empty row of an unknown workflow.
    for row, workflow in (
        (b"[1, 2, 37]", WorkflowMetadata(workflow_id=1, dag_id=2, max_concurrently_running=37)),
        (b"[]", None),
    ):
        metadata = WorkflowMetadataResponse.model_validate_json(
            b'{"workflow": ' + row + b', "owner": "me"}'
        )
        assert metadata.workflow == workflow
        assert metadata.model_extra == {"owner": "me"}
    snapshot = TaskStatusUpdatesResponse.model_validate_json(
        b'{"tasks_by_status": {"Z": [1]}, "time": "2026-11-28 17:56:34", "page": 2}'
    )
    assert snapshot.tasks_by_status == {"Z": [1]}
    assert snapshot.model_extra == {"page": 2}


def test_an_answer_without_new_fields_has_empty_model_extra() -> None:
    assert HeartbeatResponse.model_validate_json(b'{"status": "R"}').model_extra == {}
    assert TerminateTaskInstancesResponse.from_answer(b"null", 7).model_extra == {}
    (task,) = TasksResponse.model_validate_json('{"tasks": {"1": ' + ROW + "}}").tasks.values()
    assert task.model_extra == {}


def test_kept_fields_cannot_shadow_the_models_own_names() -> None:
    heartbeat = HeartbeatResponse.model_validate_json(
        b'{"status": "R", "model_extra": 1, "model_dump": 2, "__dict__": 3}'
    )
    assert heartbeat.model_extra == {"model_extra": 1, "model_dump": 2, "__dict__": 3}
    assert heartbeat.model_dump()["status"] == "R"


def test_a_positional_row_of_another_length_is_still_refused() -> None:
    with pytest.raises(ValidationError, match="a get_tasks row has 9 fields, got 10"):
        TasksResponse.model_validate_json('{"tasks": {"1": ' + ROW[:-1] + ', "new"]}}')
    with pytest.raises(ValidationError, match="got a list of 4"):
        WorkflowMetadataResponse.model_validate_json(b'{"workflow": [1, 2, 37, 4]}')


def _public_models() -> list[type[BaseModel]]:
    found = []
    for name in jobmon_gateway.__all__:
        item = getattr(jobmon_gateway, name)
        if isinstance(item, type) and issubclass(item, BaseModel):
            found.append(item)
    return found


def test_every_answer_model_is_public() -> None:
    names = {model.__name__ for model in _public_models()}
    assert names >= {
        "DownstreamTasksResponse",
        "HeartbeatResponse",
        "QueueResponse",
        "ServerErrorBody",
        "ServerTimeResponse",
        "StatusUpdateResponse",
        "TaskMetadata",
        "TaskStatusUpdatesResponse",
        "TasksResponse",
        "TerminateTaskInstancesResponse",
        "WorkflowConcurrencyResponse",
        "WorkflowMetadata",
        "WorkflowMetadataResponse",
    }


def _described_fields(schema: dict[str, Any]) -> list[tuple[str, str | None]]:
    # An object's fields are its properties; a positional row's are its prefixItems.
    if "properties" in schema:
        return [(name, prop.get("description")) for name, prop in schema["properties"].items()]
    return [(str(item.get("title")), item.get("description")) for item in schema["prefixItems"]]


@pytest.mark.parametrize("model", _public_models(), ids=lambda model: model.__name__)
def test_json_schema_describes_every_field(model: type[BaseModel]) -> None:
    for name, field in model.model_fields.items():
        assert field.description, f"{model.__name__}.{name} has no description"
    # Serialization mode: the object the model hands back.
    serialized = model.model_json_schema(mode="serialization")
    assert set(serialized["properties"]) == set(model.model_fields)
    for name, description in _described_fields(serialized):
        assert description, f"{model.__name__}.{name} has no description (serialization)"
    # Validation mode: the wire payload (an object, or a positional row).
    wire = model.model_json_schema(mode="validation")
    fields = _described_fields(wire)
    assert len(fields) == len(model.model_fields)
    for name, description in fields:
        assert description, f"{model.__name__}.{name} has no description (validation)"


def test_wire_schema_of_a_task_row_is_positional() -> None:
    schema = TaskMetadata.model_json_schema(mode="validation")
    assert schema["type"] == "array"
    assert len(schema["prefixItems"]) == len(TaskMetadata.model_fields) == 9


# -- error bodies ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message", "error_type"),
    [
        (
            b'{"error": {"type": "<class \'sqlalchemy.exc.NoResultFound\'>",'
            b' "exception_message": "No row", "status_code": "500"}}',
            "No row",
            "sqlalchemy.exc.NoResultFound",
        ),
        (b'{"error": "Workflow with ID 999 not found"}', "Workflow with ID 999 not found", None),
        (b'{"detail": "Not Found"}', "Not Found", None),
        (
            b'{"detail": [{"loc": ["query", "chunk_size"], "msg": "bad"}, {"msg": "worse"}]}',
            "query.chunk_size: bad; worse",
            None,
        ),
        (b"plain words", "plain words", None),
        (b"<html><title> 502 Bad Gateway </title><body>x</body></html>", "502 Bad Gateway", None),
        (b"", None, None),
        (b"\xff\xfe not utf-8", "\ufffd\ufffd not utf-8", None),
    ],
)
def test_server_error_body_parses_every_envelope(
    body: bytes, message: str | None, error_type: str | None
) -> None:
    said = ServerErrorBody.from_body(body)
    assert said.message == message
    assert said.error_type == error_type


def test_server_error_body_caps_long_text() -> None:
    said = ServerErrorBody.from_body(b"x" * 10_000)
    assert said.message is not None
    assert len(said.message) <= 500


def test_requested_resources_stored_as_json_are_read_too() -> None:
    # Both servers store requested_resources with json.dumps: true/false/null
    # make it JSON rather than a Python literal.
    row = [1, "G", 3, "{'memory': 0.5}", "[]", '{"exclusive": true, "q": null}', "c", "q", 10]
    task = TasksResponse.model_validate({"tasks": {"1": row}}).tasks[1]
    assert task.requested_resources == {"exclusive": True, "q": None}
    assert task.resource_scales == {"memory": 0.5}
