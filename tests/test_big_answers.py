"""The big answers decode through the gateway exactly as their public models decode them.

``get_tasks`` pages, status snapshots (from 64 KiB on, the size of a snapshot
of about 10k ids) and downstream maps take a faster path inside the gateway
than the models' own validators. Whatever the bytes, the gateway's result
must be the model's, to the type of every value (a ``TaskStatus`` member is
not the letter ``"R"`` here, though they compare equal), with the same
fields set, and an answer the model refuses must be refused. The answers are
generated: the usual wire form, the unusual forms the models accept (a
resource field as a JSON object, an id as ``"7"`` or ``7.0``, ``true`` in an
id list), and broken ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from jobmon_gateway import (
    DownstreamTasksResponse,
    InvalidResponseError,
    ServerGateway,
    TaskMetadata,
    TaskRow,
    TasksResponse,
    TaskStatus,
    TaskStatusUpdatesResponse,
)
from test_model_properties import (
    PROPERTY,
    Served,
    downstream_entries,
    ints,
    json_values,
    literal_dicts,
    literal_lists,
    mutated,
    server_datetimes,
    status_letters,
    task_ids,
    task_rows,
    wire_time,
)

BIG = 64 * 1024
"""A snapshot at least this long takes the gateway's path for big snapshots."""

JsonValue = Any


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    serving = Served()
    yield serving
    serving.gateway.close_sync()


def shape(value: Any) -> Any:
    """``value`` with the type of every part spelled out, so that == compares types too."""
    if isinstance(value, BaseModel):
        return (
            type(value),
            shape(vars(value)),
            sorted(value.model_fields_set),
            shape(value.model_extra),
            value.__pydantic_private__,
        )
    if isinstance(value, dict):
        return (dict, [(shape(key), shape(item)) for key, item in value.items()])
    if isinstance(value, list | tuple):
        return (type(value), [shape(item) for item in value])
    return (type(value), value)


def decodes_like_the_model(
    served: Served,
    body: bytes,
    call: Callable[[ServerGateway], Any],
    model: Callable[[bytes], Any],
) -> Any:
    """The gateway's result for ``body`` is the model's, or both refuse it."""
    try:
        expected = model(body)
    except (ValueError, RecursionError):  # a too deeply nested JSON string in json.loads
        expected = None
    served.body = body
    try:
        got = call(served.gateway)
    except InvalidResponseError:
        assert expected is None, "the model takes what the gateway refused"
        return None
    assert expected is not None, "the gateway takes what the model refuses"
    assert shape(got) == shape(expected)
    return got


# ---------------------------------------------------------------------------
# get_tasks


def model_tasks(body: bytes) -> dict[int, TaskMetadata]:
    return TasksResponse.model_validate_json(body).tasks


def gateway_tasks(gateway: ServerGateway) -> dict[int, TaskMetadata]:
    return gateway.get_tasks_sync(0, 500)


@st.composite
def unusual_rows(draw: st.DrawFn) -> list[Any]:
    """A usual row with some of its fields in a form the model takes (or refuses)."""
    row, _ = draw(task_rows())
    for index in draw(st.sets(st.integers(0, 8), max_size=3)):
        row[index] = draw(
            st.one_of(
                json_values,
                literal_dicts,  # a resource field as a JSON object
                literal_lists,
                literal_lists.map(lambda items: repr(tuple(items))),  # a tuple literal
                literal_dicts.map(repr),
                literal_lists.map(repr),
                ints.map(str),  # "7"
                ints.map(float).filter(lambda number: abs(number) < 2**53),  # 7.0
                st.sampled_from([True, False, "None", None, "", "[", "{1, 2}", "{1: 2}"]),
            )
        )
    if draw(st.integers(0, 9)) == 0:
        row.append(draw(json_values))  # a tenth field
    return row


@st.composite
def pages(draw: st.DrawFn) -> JsonValue:
    rows = draw(
        st.dictionaries(
            task_ids.map(str) | st.text(max_size=4),
            st.one_of(task_rows().map(lambda sample: sample[0]), unusual_rows()),
            max_size=4,
        )
    )
    page: JsonValue = {"tasks": rows}
    if draw(st.booleans()):
        page = draw(mutated(page))
    return page


@settings(PROPERTY, max_examples=300)
@given(page=pages())
@example(page={"tasks": {"1": [1, "Q", 3, {"memory": 1}, ["a.q"], None, "c", "q", 5]}})
@example(page={"tasks": {"1": [1, "Q", 3, "{}", "(1, 2)", "{}", "c", "q", 5]}})
@example(page={"tasks": {"1": [1, "Q", 3, "['a list']", "[]", "{}", "c", "q", 5]}})
@example(page={"tasks": {"1": [1, "Q", 3, "{}", "{'a': 1}", "{}", "c", "q", 5]}})
@example(page={"tasks": {"1": ["7", "R", 3.0, "{}", "[]", "{}", "c", "q", True]}})
@example(page={"tasks": {"1": [1, "Z", 3, "None", "None", None, "c", "q", 5]}})
@example(page={"tasks": {"1": [1, "Q", 3, "{'a': [1, (2, [3])]}", "[[1]]", "{}", "c", "q", 5]}})
@example(page={"tasks": {"1": [1, "Q", 3, "{'a': true}", "[null]", "{}", "c", "q", 5]}})
@example(page={"tasks": {"0": [1, "Q", 3, "{}", "[]", "{}", "c", "q", 5]}})
@example(page={"tasks": {str(2**63): [1, "Q", 3, "{}", "[]", "{}", "c", "q", 5]}})
@example(page={"tasks": {"1": {"array_id": 1}}})
@example(page={"tasks": {}, "more": 1})
def test_a_page_of_tasks_decodes_as_its_model_does(served: Served, page: JsonValue) -> None:
    body = json.dumps(page).encode()
    tasks = decodes_like_the_model(served, body, gateway_tasks, model_tasks)
    # get_task_rows: the same verdict, and each row the model's values, type for type.
    rows = decodes_like_the_model(served, body, gateway_task_rows, model_task_rows)
    assert (rows is None) == (tasks is None)


def model_task_rows(body: bytes) -> dict[int, TaskRow]:
    return {task_id: TaskRow.from_metadata(task) for task_id, task in model_tasks(body).items()}


def gateway_task_rows(gateway: ServerGateway) -> dict[int, TaskRow]:
    return gateway.get_task_rows_sync(0, 500)


def test_a_row_holds_what_the_model_holds(served: Served) -> None:
    row = [7, "R", 3, "{'memory': 0.5, 'q': ['a.q']}", "['b.q']", None, "c", "q", 5]
    served.body = json.dumps({"tasks": {"11": row}}).encode()
    (task,) = served.gateway.get_task_rows_sync().values()
    assert type(task) is TaskRow
    assert task.status is TaskStatus.RUNNING
    assert task.resource_scales == {"memory": 0.5, "q": ["a.q"]}
    assert task.fallback_queues == ["b.q"]
    assert task.requested_resources == {}
    assert task.to_metadata() == TaskMetadata.model_validate(row)
    assert TaskRow.from_metadata(task.to_metadata()) == task
    # to_metadata copies all the way down: the model and the row share no container.
    model = task.to_metadata()
    model.resource_scales["q"].append("changed")
    model.fallback_queues.append("changed")
    assert task.resource_scales == {"memory": 0.5, "q": ["a.q"]}
    assert task.fallback_queues == ["b.q"]


@pytest.mark.parametrize(
    "row",
    [
        [1, "R", 3, "{'memory': 0.5, 'q': ['a.q']}", "['b.q']", "{}", "c", "q", 5],
        [1, "R", 3, None, None, None, "c", "q", 5],
        [1, "R", 3, "None", "None", "None", "c", "q", 5],
    ],
    ids=["literals", "null", "None"],
)
@pytest.mark.parametrize("rows", [False, True], ids=["models", "rows"])
def test_tasks_share_no_container_with_each_other_or_with_later_pages(
    served: Served, row: list[Any], rows: bool
) -> None:
    served.body = json.dumps({"tasks": {"1": row, "2": row}}).encode()
    page = served.gateway.get_task_rows_sync if rows else served.gateway.get_tasks_sync
    first, second = page().values()
    assert first.status is TaskStatus.RUNNING
    for nested in first.resource_scales.values():
        if isinstance(nested, list):
            nested.append("changed")
    first.resource_scales["memory"] = 99
    first.fallback_queues.append("changed")
    first.requested_resources["new"] = 1
    expected = TaskMetadata.model_validate(row)
    if rows:
        assert second == TaskRow.from_metadata(expected)
        assert page()[1] == TaskRow.from_metadata(expected)
    else:
        assert second == expected
        assert page()[1] == expected


@pytest.mark.parametrize("page", ["get_tasks_sync", "get_task_rows_sync"])
def test_a_repeated_task_id_keeps_the_last_row_checked_in_full(served: Served, page: str) -> None:
    # The model refuses this page (it parses the replaced row's literal too);
    # the gateway keeps the last row, as the model would, checked in full
    # (the module docstring of _big_answers says why).
    first = [1, "Q", 3, "{'broken'", "[]", "{}", "c", "q", 5]
    last = [1, "G", 3, "{'memory': 0.5}", "[]", "{}", "c", "q", 5]
    served.body = b'{"tasks": {"7": %s, "07": %s}}' % (
        json.dumps(first).encode(),
        json.dumps(last).encode(),
    )
    (task,) = getattr(served.gateway, page)().values()
    assert (task.status, task.resource_scales) == (TaskStatus.REGISTERING, {"memory": 0.5})
    # Every other field of a replaced row is still checked: a bad one refuses the page.
    served.body = served.body.replace(b'[1, "Q", 3', b'["x", "Q", 3')
    with pytest.raises(InvalidResponseError):
        getattr(served.gateway, page)()


def test_copying_a_task_with_changes_leaves_the_other_tasks_alone(served: Served) -> None:
    row = [1, "R", 3, "{}", "[]", "{}", "c", "q", 5]
    served.body = json.dumps({"tasks": {"1": row, "2": row}}).encode()
    first, second = served.gateway.get_tasks_sync().values()
    changed = first.model_copy(update={"queue_name": "other.q"})
    assert changed.queue_name == "other.q"
    assert first.queue_name == second.queue_name == "q"
    assert first.model_fields_set == second.model_fields_set == set(TaskMetadata.model_fields)
    assert first.model_dump() == TaskMetadata.model_validate(row).model_dump()


# ---------------------------------------------------------------------------
# task_status_updates


def model_snapshot(body: bytes) -> TaskStatusUpdatesResponse:
    return TaskStatusUpdatesResponse.model_validate_json(body)


def gateway_snapshot(gateway: ServerGateway) -> TaskStatusUpdatesResponse:
    return gateway.get_task_status_updates_sync()


id_items = st.one_of(
    ints,
    ints,
    ints,
    st.booleans(),
    ints.map(float).filter(lambda number: abs(number) < 2**53),
    ints.map(str),
    st.integers(min_value=2**63, max_value=2**70),
    json_values,
)


@st.composite
def snapshots(draw: st.DrawFn) -> JsonValue:
    lists = st.lists(ints, max_size=8) | st.lists(id_items, max_size=8) | json_values
    snapshot: dict[str, JsonValue] = {
        "tasks_by_status": draw(st.dictionaries(status_letters, lists, max_size=5)),
        "time": draw(server_datetimes.map(wire_time) | json_values),
    }
    if draw(st.integers(0, 4)) == 0:
        snapshot[draw(st.text(max_size=8))] = draw(json_values)
    if draw(st.integers(0, 4)) == 0:
        return draw(mutated(snapshot))
    return snapshot


def big(payload: JsonValue) -> bytes:
    """``payload`` as JSON padded with whitespace to the size of a big snapshot."""
    body = json.dumps(payload).encode()
    return body + b" " * max(0, BIG - len(body))


@settings(PROPERTY, max_examples=200)
@given(snapshot=snapshots())
@example(snapshot={"tasks_by_status": {"Q": [True, 1.0, "7"]}, "time": "2026-11-28 17:56:34"})
@example(snapshot={"tasks_by_status": {"Q": [1, 2], "Z": []}, "time": "2026-11-28 17:56:34"})
@example(snapshot={"tasks_by_status": {"Q": [2**64]}, "time": "2026-11-28T17:56:34+05:00"})
@example(snapshot={"tasks_by_status": {"Q": [1]}, "time": "0000-00-00 00:00:00"})
@example(snapshot={"tasks_by_status": {"Q": [1]}, "time": "2026-11-28 17:56:34", "new": [1]})
@example(snapshot={"tasks_by_status": {"Q": None}, "time": "2026-11-28 17:56:34"})
@example(snapshot={"tasks_by_status": [], "time": "2026-11-28 17:56:34"})
def test_a_big_snapshot_decodes_as_its_model_does(served: Served, snapshot: JsonValue) -> None:
    decodes_like_the_model(served, big(snapshot), gateway_snapshot, model_snapshot)


def test_a_big_snapshot_with_one_bad_id_far_down_is_refused(served: Served) -> None:
    ids: list[Any] = list(range(1, 300_001))
    for bad in ("x", 1.5, None, [1]):
        ids[-1] = bad
        snapshot = {"tasks_by_status": {"R": ids}, "time": "2026-11-28 17:56:34"}
        served.body = json.dumps(snapshot).encode()
        with pytest.raises(InvalidResponseError, match=r"tasks_by_status\.R\.299999"):
            served.gateway.get_task_status_updates_sync()


def test_a_big_snapshot_keeps_every_id_in_order(served: Served) -> None:
    by_status = {"D": list(range(1, 200_001)), "Q": [2**63 - 1, 1, 1], "Z": []}
    snapshot = {"tasks_by_status": by_status, "time": "2026-11-28 17:56:34"}
    got = decodes_like_the_model(served, big(snapshot), gateway_snapshot, model_snapshot)
    assert list(got.tasks_by_status) == [TaskStatus.DONE, TaskStatus.QUEUED, "Z"]
    assert got.tasks_by_status == by_status


# ---------------------------------------------------------------------------
# get_downstream_tasks


def model_downstream(body: bytes) -> DownstreamTasksResponse:
    return DownstreamTasksResponse.model_validate_json(body)


def gateway_downstream(gateway: ServerGateway) -> DownstreamTasksResponse:
    return gateway.get_downstream_tasks_sync([1], 1)


@st.composite
def downstream_maps(draw: st.DrawFn) -> JsonValue:
    entry = st.one_of(
        downstream_entries().map(lambda sample: sample[0]),
        st.tuples(ints, st.lists(id_items, max_size=4)).map(list),
        st.tuples(ints, st.lists(id_items, max_size=4).map(json.dumps)).map(list),
        st.tuples(ints, json_values.map(json.dumps)).map(list),
        st.tuples(ints, st.text(max_size=6)).map(list),
        st.lists(json_values, max_size=3),
    )
    downstream: JsonValue = {
        "downstream_tasks": draw(
            st.dictionaries(task_ids.map(str) | st.text(max_size=4), entry, max_size=5)
        )
    }
    if draw(st.integers(0, 4)) == 0:
        downstream[draw(st.text(max_size=8))] = draw(json_values)
    if draw(st.integers(0, 4)) == 0:
        return draw(mutated(downstream))
    return downstream


@settings(PROPERTY, max_examples=300)
@given(downstream=downstream_maps())
@example(downstream={"downstream_tasks": {"1": [4, '[1.0, "2", true]'], "2": [5, None]}})
@example(downstream={"downstream_tasks": {"1": [4, "[1, [2]]"], "2": [5, "NaN"]}})
@example(downstream={"downstream_tasks": {"1": [4, "null"], "2": [5, " [3] "]}})
@example(downstream={"downstream_tasks": {"1": ["4", [1.0, "2", True]]}})
@example(downstream={"downstream_tasks": {"1": [4, "[" * 10_000 + "]" * 10_000]}})
@example(downstream={"downstream_tasks": {"1": [4, [1]]}, "new": {"a": 1}})
def test_a_downstream_map_decodes_as_its_model_does(served: Served, downstream: JsonValue) -> None:
    decodes_like_the_model(
        served, json.dumps(downstream).encode(), gateway_downstream, model_downstream
    )


def test_a_null_downstream_is_a_new_empty_list_for_every_task(served: Served) -> None:
    served.body = b'{"downstream_tasks": {"1": [4, null], "2": [5, null]}}'
    rows = served.gateway.get_downstream_tasks_sync([1, 2], 1).downstream_tasks
    rows[1][1].append(7)
    assert rows[2] == (5, [])
    assert served.gateway.get_downstream_tasks_sync([1, 2], 1).downstream_tasks[1] == (4, [])
