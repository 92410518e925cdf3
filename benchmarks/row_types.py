"""What a lighter row type would change for paging ``get_tasks``: measured in one process.

    .venv/bin/python benchmarks/row_types.py [--rounds 5] [--tasks 100000] [--chunk 500]

Issue 15 asks for paging within 1.3x of the floor (msgspec's typed decoder). ``run.py``'s
paging case moves between 0.98 and 1.8 of it from run to run, because most of the
difference is the cycle collector, whose cost depends on what else the process holds. This
script takes the network out and decodes the same canned pages (the benchmark server's rows)
into a growing ``dict`` as a paging driver does, with the collector on between pages and off
during each decode (as the SDK and the floor both do), in four ways:

* ``TaskMetadata``: the SDK's path (``_big_answers.decode_tasks``), a pydantic model per row;
* ``slotted``: the same checks in Rust and the same literal caches, each row a plain class
  with ``__slots__`` (what a lighter row type behind the same attributes could be);
* ``TaskRow``: the SDK's ``get_task_rows`` path (``_big_answers.decode_task_rows``), the
  same checks, each row a named tuple;
* ``msgspec``: the floor's decoder (``msgspec_models.decode_tasks``).

For each: client CPU per 100k tasks (median of the rounds), the part of it spent in the cycle
collector (``gc.callbacks``), and how many objects the collector tracks per task once the
pages are kept. Nothing here is asserted; ``docs/performance.md`` quotes a run.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from floor import typed_decoders
from server import task_rows

from jobmon_gateway import _big_answers
from jobmon_gateway.models import TaskMetadata, TaskRow


def pages(tasks: int, chunk: int) -> list[bytes]:
    """The ``get_tasks`` answers of a workflow of ``tasks`` tasks, ``chunk`` a page."""
    rows = task_rows(tasks)
    return [
        b'{"tasks":{' + b",".join(rows[start : start + chunk]) + b"}}"
        for start in range(0, tasks, chunk)
    ]


class SlottedTask:
    """A ``get_tasks`` row as a plain slotted class: the attributes of ``TaskRow``."""

    __slots__ = TaskRow._fields


_new = object.__new__


def _setter(name: str) -> Callable[[SlottedTask, Any], None]:
    setter: Callable[[SlottedTask, Any], None] = vars(SlottedTask)[name].__set__
    return setter


_set_array_id = _setter("array_id")
_set_status = _setter("status")
_set_max_attempts = _setter("max_attempts")
_set_scales = _setter("resource_scales")
_set_queues = _setter("fallback_queues")
_set_resources = _setter("requested_resources")
_set_cluster = _setter("cluster_name")
_set_queue = _setter("queue_name")
_set_limit = _setter("array_max_concurrently_running")


def decode_slotted(content: bytes) -> dict[int, Any]:
    """The SDK's checks (pydantic-core's tuple schema), each row a ``SlottedTask``."""
    rows: dict[int, Any] = _big_answers._PAGE.validate_json(content)["tasks"]
    statuses = _big_answers._TASK_STATUSES
    dicts, lists = _big_answers._DICT_LITERALS, _big_answers._LIST_LITERALS
    for task_id, row in rows.items():
        (array_id, status, attempts, scales, queues, resources, cluster, queue, limit) = row
        task = _new(SlottedTask)
        _set_array_id(task, array_id)
        _set_status(task, statuses.get(status, status))
        _set_max_attempts(task, attempts)
        _set_scales(task, (dicts.get(scales) or _big_answers._dict_literal(scales))())
        _set_queues(task, (lists.get(queues) or _big_answers._list_literal(queues))())
        _set_resources(task, (dicts.get(resources) or _big_answers._dict_literal(resources))())
        _set_cluster(task, cluster)
        _set_queue(task, queue)
        _set_limit(task, limit)
        rows[task_id] = task
    return rows


class _CollectorClock:
    """Time spent in the cycle collector, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started


def page_through(decode: Callable[[bytes], dict[int, Any]], answers: list[bytes]) -> dict[int, Any]:
    """Every page decoded with the collector paused (as the SDK's decode does) and kept."""
    tasks: dict[int, Any] = {}
    for content in answers:
        paused = gc.isenabled()
        gc.disable()
        try:
            chunk = decode(content)
        finally:
            if paused:
                gc.enable()
        tasks.update(chunk)
        # The next request: a few new containers, as a call allocates, so that a collection
        # the decode left due runs between pages, where it runs in a real driver.
        _next_request = [{"max_task_id": max(chunk)}]
        del _next_request
    return tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument(
        "--collector",
        choices=("on", "off"),
        default="on",
        help="off: the cycle collector stays off for the whole paging (the decode alone)",
    )
    args = parser.parse_args()
    typed = typed_decoders()
    if typed is None:
        raise SystemExit("msgspec is needed for the floor: pip install -e '.[bench]'")
    answers = pages(args.tasks, args.chunk)
    sides: dict[str, Callable[[bytes], dict[int, Any]]] = {
        "TaskMetadata": _big_answers.decode_tasks,
        "slotted": decode_slotted,
        "TaskRow": _big_answers.decode_task_rows,
        "msgspec": typed.tasks,
    }
    # Every side decodes the same tasks into the same values, of the same types.
    fields = list(TaskMetadata.model_fields)
    for content in (answers[0], answers[-1]):
        models = _big_answers.decode_tasks(content)
        for name, decode in sides.items():
            rows = decode(content)
            for task_id, model in models.items():
                want = [(type(getattr(model, f)), getattr(model, f)) for f in fields]
                got = [(type(getattr(rows[task_id], f)), getattr(rows[task_id], f)) for f in fields]
                if got != want or list(rows) != list(models):
                    raise SystemExit(f"{name} decodes task {task_id} differently: {got}")
    clock = _CollectorClock()
    gc.callbacks.append(clock)
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    collector: dict[str, list[float]] = {name: [] for name in sides}
    tracked: dict[str, float] = {}
    for round_no in range(args.rounds):
        order = list(sides) if round_no % 2 == 0 else list(sides)[::-1]
        for name in order:
            gc.collect()
            before = len(gc.get_objects())
            clock.seconds = 0.0
            if args.collector == "off":
                gc.disable()
            start = time.process_time()
            tasks = page_through(sides[name], answers)
            cpu[name].append(time.process_time() - start)
            gc.enable()
            collector[name].append(clock.seconds)
            gc.collect()
            tracked[name] = (len(gc.get_objects()) - before) / len(tasks)
            del tasks
    gc.callbacks.remove(clock)
    floor = statistics.median(cpu["msgspec"])
    print(
        f"{args.tasks:,} tasks in pages of {args.chunk}, {args.rounds} rounds (medians),"
        f" collector {args.collector}"
    )
    print(f"{'row type':<14}{'CPU ms':>8}{'of it GC':>10}{'/ floor':>9}{'tracked/task':>14}")
    for name in sides:
        median = statistics.median(cpu[name])
        gc_ms = statistics.median(collector[name]) * 1000
        print(
            f"{name:<14}{median * 1000:>8.0f}{gc_ms:>10.0f}"
            f"{median / floor:>9.2f}{tracked[name]:>14.2f}"
        )


if __name__ == "__main__":
    main()
