"""The fake server's database: workflows, DAG edges, arrays, tasks, workflow runs, clock.

Everything here is plain stdlib. :class:`JobmonDatabase` holds the rows and
applies Jobmon's rules to them (workflow-run transitions, queueing, killing,
a toy distributor that moves tasks forward); the HTTP side lives in
:mod:`jobmon_gateway.testing.routes` and :mod:`jobmon_gateway.testing.server`.
"""

from __future__ import annotations

import copy
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, TypeAlias

__all__ = [
    "ACTIVE_TASK_STATUSES",
    "ARRAY_MAX_CONCURRENTLY_RUNNING",
    "IGNORED_WORKFLOW_RUN_TRANSITIONS",
    "NO_SERVER_TIME",
    "SERVER_TIME_FORMAT",
    "TASK_STATUSES",
    "WORKFLOW_MAX_CONCURRENTLY_RUNNING",
    "WORKFLOW_RUN_STATUSES",
    "WORKFLOW_RUN_TRANSITIONS",
    "ArrayRef",
    "FakeArray",
    "FakeClock",
    "FakeTask",
    "FakeWorkflow",
    "FakeWorkflowRun",
    "JobmonDatabase",
    "PythonLiteral",
    "TaskRef",
    "WorkflowRef",
    "WorkflowRunRef",
    "format_server_time",
    "parse_server_time",
]

SERVER_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
"""How the server writes times: database clock, no zone, no fraction."""

NO_SERVER_TIME = "0000-00-00 00:00:00"
"""What the server sends when its database returns no clock."""

ARRAY_MAX_CONCURRENTLY_RUNNING = 2_147_483_647
"""An array's concurrency limit when none was set (the database's INT maximum)."""

WORKFLOW_MAX_CONCURRENTLY_RUNNING = 10_000
"""A workflow's concurrency limit when none was set (Jobmon's client default)."""

TASK_STATUSES: Mapping[str, str] = MappingProxyType(
    {
        "G": "REGISTERING",
        "Q": "QUEUED",
        "I": "INSTANTIATING",
        "O": "LAUNCHED",
        "R": "RUNNING",
        "D": "DONE",
        "E": "ERROR_RECOVERABLE",
        "A": "ADJUSTING_RESOURCES",
        "F": "ERROR_FATAL",
    }
)
"""Task status letters and their Jobmon names."""

WORKFLOW_RUN_STATUSES: Mapping[str, str] = MappingProxyType(
    {
        "G": "REGISTERED",
        "L": "LINKING",
        "B": "BOUND",
        "A": "ABORTED",
        "R": "RUNNING",
        "D": "DONE",
        "S": "STOPPED",
        "E": "ERROR",
        "C": "COLD_RESUME",
        "H": "HOT_RESUME",
        "T": "TERMINATED",
        "I": "INSTANTIATED",
        "O": "LAUNCHED",
    }
)
"""Workflow-run status letters and their Jobmon names."""

WORKFLOW_RUN_TRANSITIONS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "G": frozenset({"L"}),
        "L": frozenset({"B", "A"}),
        "B": frozenset({"I", "E", "C", "H"}),
        "I": frozenset({"O", "E"}),
        "O": frozenset({"R", "E"}),
        "R": frozenset({"D", "S", "E", "C", "H"}),
        "C": frozenset({"T"}),
        "H": frozenset({"T"}),
    }
)
"""Legal workflow-run transitions, from status to the statuses it may move to.

The same table as the Jobmon server's ``WorkflowRun.valid_transitions``:
G→L; L→B|A; B→I|E|C|H; I→O|E; O→R|E; R→D|S|E|C|H; C→T; H→T. A, D, S, E and
T are final. Any other request leaves the run as it is and the route answers
the unchanged status with HTTP 200.
"""

IGNORED_WORKFLOW_RUN_TRANSITIONS: frozenset[tuple[str, str]] = frozenset({("R", "R"), ("L", "L")})
"""Repeats the server accepts as no-ops (a heartbeat saying ``R`` while running)."""

ACTIVE_TASK_STATUSES = frozenset({"I", "O", "R"})
"""Task statuses that use a slot of a workflow's or array's concurrency limit."""

_QUEUEABLE_TASK_STATUSES = frozenset({"G", "A"})
_DEFAULT_RESOURCE_SCALES: dict[str, float] = {"memory": 0.5, "runtime": 0.5}

PythonLiteral: TypeAlias = "dict[str, Any] | list[Any] | str | None"
"""A task column the server sends as Python-literal text: a dict or list is
sent as its ``repr()``, a str as given, None as JSON null."""


def format_server_time(moment: datetime) -> str:
    """Write ``moment`` the way the server does: ``"YYYY-MM-DD HH:MM:SS"``."""
    return moment.strftime(SERVER_TIME_FORMAT)


def parse_server_time(text: str) -> datetime:
    """Read a server time string (ISO forms with ``T`` or a fraction are accepted too).

    Raises:
        ValueError: ``text`` is no datetime.
    """
    try:
        return datetime.strptime(text, SERVER_TIME_FORMAT)
    except ValueError:
        return datetime.fromisoformat(text)


def _to_datetime(moment: datetime | str) -> datetime:
    if isinstance(moment, str):
        return parse_server_time(moment)
    return moment


def _whole_seconds(moment: datetime) -> datetime:
    # The database stores whole seconds; comparing finer times would make
    # `last_sync` filtering disagree with the times the server hands out.
    return moment.replace(microsecond=0)


class FakeClock:
    """A clock that only moves when told to, so tests control every time the server sends.

    Call it to read the time. :meth:`FakeJobmonServer.advance` moves it by the
    server's ``step_seconds`` on each step.
    """

    def __init__(self, start: datetime | str | None = None) -> None:
        """Start at ``start`` (a datetime or ``"YYYY-MM-DD HH:MM:SS"``); default: now."""
        self._now = _whole_seconds(_to_datetime(start) if start is not None else datetime.now())

    def __call__(self) -> datetime:
        """Return the current time."""
        return self._now

    def set(self, moment: datetime | str) -> None:
        """Jump to ``moment``."""
        self._now = _to_datetime(moment)

    def advance(self, seconds: float = 1.0) -> datetime:
        """Move forward by ``seconds`` and return the new time."""
        self._now += timedelta(seconds=seconds)
        return self._now


@dataclass
class FakeWorkflow:
    """A workflow row: ``[workflow_id, dag_id, max_concurrently_running]`` on the wire."""

    workflow_id: int
    dag_id: int
    max_concurrently_running: int = WORKFLOW_MAX_CONCURRENTLY_RUNNING


@dataclass
class FakeArray:
    """An array row: tasks of one task template in one workflow, with its own limit."""

    array_id: int
    workflow_id: int
    max_concurrently_running: int = ARRAY_MAX_CONCURRENTLY_RUNNING


@dataclass
class FakeTask:
    """A task row, as get_tasks, task_status_updates and the distributor see it.

    ``resource_scales``, ``fallback_queues`` and ``requested_resources`` are
    kept as Python values and sent as their ``repr()`` (see
    :data:`PythonLiteral`). ``workflow_run_id`` is the run whose
    queue_task_batch created the task's current task instance;
    ``task_instances`` counts the task instances this fake created for the
    task (each queueing makes one, and on a 3.2.2 fake so does every repeat of
    a queue_task_batch that lists the task while it is queued). Seeded rows
    start at 0 whatever their status.
    """

    task_id: int
    workflow_id: int
    array_id: int
    node_id: int
    status: str
    status_date: datetime
    max_attempts: int = 3
    num_attempts: int = 0
    resource_scales: PythonLiteral = field(default_factory=lambda: dict(_DEFAULT_RESOURCE_SCALES))
    fallback_queues: PythonLiteral = field(default_factory=list)
    requested_resources: PythonLiteral = field(default_factory=dict)
    cluster_name: str | None = "sequential"
    queue_name: str | None = "null.q"
    workflow_run_id: int | None = None
    task_instances: int = 0


@dataclass
class FakeWorkflowRun:
    """A workflow-run row and what its heartbeats left behind.

    ``heartbeat_date`` is the time the run promised its next heartbeat by (the
    last accepted heartbeat's time plus its ``next_report_increment``);
    ``heartbeats`` counts every heartbeat received, accepted or not.
    """

    workflow_run_id: int
    workflow_id: int
    status: str
    status_date: datetime
    heartbeat_date: datetime
    next_report_increment: float | None = None
    heartbeats: int = 0


WorkflowRef: TypeAlias = "int | FakeWorkflow"
"""A workflow given by id or by row."""
ArrayRef: TypeAlias = "int | FakeArray"
"""An array given by id or by row."""
TaskRef: TypeAlias = "int | FakeTask"
"""A task given by id or by row."""
WorkflowRunRef: TypeAlias = "int | FakeWorkflowRun"
"""A workflow run given by id or by row."""


def _next_id(used: Iterable[int]) -> int:
    return max(used, default=0) + 1


def _check_status(status: str, known: Mapping[str, str], kind: str) -> str:
    if status not in known:
        raise ValueError(f"unknown {kind} status {status!r}; known: {''.join(known)}")
    return status


class JobmonDatabase:
    """The rows of a fake Jobmon server and the rules that change them.

    All public methods are thread-safe (one re-entrant lock). Rows returned to
    the caller are live: change them between requests, or through
    :meth:`set_task_status` / :meth:`set_workflow_run_status`. The tables are
    the dicts ``workflows``, ``arrays``, ``tasks``, ``workflow_runs`` (keyed by
    id) and ``edges`` (``(dag_id, node_id)`` → downstream node ids). Set
    ``time_unavailable`` to make every time the server sends
    :data:`NO_SERVER_TIME`, as a server whose database returns no clock does.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        failure_rate: float = 0.0,
        seed: int = 0,
        step_seconds: float = 1.0,
        auto_queue: bool = False,
        advance_on_heartbeat: bool = False,
    ) -> None:
        """Create an empty database.

        Args:
            clock: Returns the database's "now"; default a :class:`FakeClock`
                started at the current wall time.
            failure_rate: Chance (0..1) that a running task fails on a step
                of :meth:`advance`.
            seed: Seed of the random generator behind ``failure_rate``.
            step_seconds: How far each :meth:`advance` step moves a
                :class:`FakeClock`.
            auto_queue: Let :meth:`advance` queue registered tasks whose
                upstream tasks are all done (what a Jobmon swarm would do).
            advance_on_heartbeat: Run one :meth:`advance` step before
                answering each log_heartbeat.
        """
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError(f"failure_rate must be within 0..1, got {failure_rate}")
        self._lock = threading.RLock()
        self.clock: Callable[[], datetime] = clock if clock is not None else FakeClock()
        self.failure_rate = failure_rate
        self.step_seconds = step_seconds
        self.auto_queue = auto_queue
        self.advance_on_heartbeat = advance_on_heartbeat
        self.time_unavailable = False
        # Seeded for repeatable simulated failures; nothing here is security.
        self._random = random.Random(seed)  # noqa: S311
        self.workflows: dict[int, FakeWorkflow] = {}
        self.arrays: dict[int, FakeArray] = {}
        self.tasks: dict[int, FakeTask] = {}
        self.workflow_runs: dict[int, FakeWorkflowRun] = {}
        # (dag_id, node_id) -> downstream node ids in the order they were added;
        # the server keeps the order it was given, so [3, 2] stays [3, 2].
        self.edges: dict[tuple[int, int], list[int]] = {}

    # -- time ---------------------------------------------------------------

    def now(self) -> datetime:
        """Return the database's current time, in whole seconds."""
        with self._lock:
            return _whole_seconds(self.clock())

    def server_time(self) -> str:
        """Return "now" as the server writes it (or :data:`NO_SERVER_TIME`)."""
        with self._lock:
            if self.time_unavailable:
                return NO_SERVER_TIME
            return format_server_time(self.now())

    # -- seeding ------------------------------------------------------------

    def add_workflow(
        self,
        workflow_id: int | None = None,
        *,
        dag_id: int | None = None,
        max_concurrently_running: int = WORKFLOW_MAX_CONCURRENTLY_RUNNING,
    ) -> FakeWorkflow:
        """Add a workflow; ``workflow_id`` and ``dag_id`` default to the next free ids."""
        with self._lock:
            if workflow_id is None:
                workflow_id = _next_id(self.workflows)
            elif workflow_id in self.workflows:
                raise ValueError(f"workflow {workflow_id} exists already")
            if dag_id is None:
                dag_id = _next_id(w.dag_id for w in self.workflows.values())
            workflow = FakeWorkflow(workflow_id, dag_id, max_concurrently_running)
            self.workflows[workflow_id] = workflow
            return workflow

    def add_array(
        self,
        workflow: WorkflowRef | None = None,
        *,
        array_id: int | None = None,
        max_concurrently_running: int = ARRAY_MAX_CONCURRENTLY_RUNNING,
    ) -> FakeArray:
        """Add an array to ``workflow`` (default: the latest workflow, made if none)."""
        with self._lock:
            owner = self._workflow_or_latest(workflow)
            if array_id is None:
                array_id = _next_id(self.arrays)
            elif array_id in self.arrays:
                raise ValueError(f"array {array_id} exists already")
            array = FakeArray(array_id, owner.workflow_id, max_concurrently_running)
            self.arrays[array_id] = array
            return array

    def add_task(
        self,
        workflow: WorkflowRef | None = None,
        *,
        task_id: int | None = None,
        array: ArrayRef | None = None,
        node_id: int | None = None,
        status: str = "G",
        status_date: datetime | str | None = None,
        max_attempts: int = 3,
        num_attempts: int = 0,
        resource_scales: PythonLiteral = _DEFAULT_RESOURCE_SCALES,
        fallback_queues: PythonLiteral = None,
        requested_resources: PythonLiteral = None,
        cluster_name: str | None = "sequential",
        queue_name: str | None = "null.q",
        workflow_run: WorkflowRunRef | None = None,
    ) -> FakeTask:
        """Add one task.

        Args:
            workflow: Owner (default: the latest workflow, made if none).
            task_id: Default: the next free id.
            array: Default: the workflow's latest array, made if none.
            node_id: The task's DAG node (default: the next free node id).
            status: Task status letter.
            status_date: When the status was set (default: now).
            max_attempts: Attempts before the task fails for good.
            num_attempts: Attempts made so far.
            resource_scales: Sent as ``repr()``; default ``{'memory': 0.5, 'runtime': 0.5}``.
            fallback_queues: Sent as ``repr()``; None (the default) means ``[]``.
            requested_resources: Sent as ``repr()``; None (the default) means ``{}``.
            cluster_name: Cluster of the task's queue.
            queue_name: Name of the task's queue.
            workflow_run: The run that queued the task's current instance.
        """
        with self._lock:
            owner = self._workflow_or_latest(workflow)
            if task_id is None:
                task_id = _next_id(self.tasks)
            elif task_id in self.tasks:
                raise ValueError(f"task {task_id} exists already")
            chosen_array = self._array_for(owner, array)
            if node_id is None:
                node_id = _next_id(t.node_id for t in self.tasks.values())
            task = FakeTask(
                task_id=task_id,
                workflow_id=owner.workflow_id,
                array_id=chosen_array.array_id,
                node_id=node_id,
                status=_check_status(status, TASK_STATUSES, "task"),
                status_date=(
                    _whole_seconds(_to_datetime(status_date))
                    if status_date is not None
                    else self.now()
                ),
                max_attempts=max_attempts,
                num_attempts=num_attempts,
                resource_scales=copy.deepcopy(resource_scales),
                fallback_queues=[] if fallback_queues is None else copy.deepcopy(fallback_queues),
                requested_resources=(
                    {} if requested_resources is None else copy.deepcopy(requested_resources)
                ),
                cluster_name=cluster_name,
                queue_name=queue_name,
                workflow_run_id=None if workflow_run is None else self._run_id(workflow_run),
            )
            self.tasks[task_id] = task
            return task

    def add_tasks(
        self,
        count: int,
        workflow: WorkflowRef | None = None,
        *,
        array: ArrayRef | None = None,
        status: str = "G",
        max_attempts: int = 3,
        resource_scales: PythonLiteral = _DEFAULT_RESOURCE_SCALES,
        fallback_queues: PythonLiteral = None,
        requested_resources: PythonLiteral = None,
        cluster_name: str | None = "sequential",
        queue_name: str | None = "null.q",
    ) -> list[FakeTask]:
        """Add ``count`` tasks with the next free ids; see :meth:`add_task`."""
        with self._lock:
            return [
                self.add_task(
                    workflow,
                    array=array,
                    status=status,
                    max_attempts=max_attempts,
                    resource_scales=resource_scales,
                    fallback_queues=fallback_queues,
                    requested_resources=requested_resources,
                    cluster_name=cluster_name,
                    queue_name=queue_name,
                )
                for _ in range(count)
            ]

    def add_edge(self, upstream: TaskRef, downstream: TaskRef) -> None:
        """Make ``downstream`` depend on ``upstream`` (both tasks of one workflow).

        Adding the same edge twice has no effect.
        """
        with self._lock:
            up = self._task(upstream)
            down = self._task(downstream)
            if up.workflow_id != down.workflow_id:
                raise ValueError(
                    f"tasks {up.task_id} and {down.task_id} belong to different workflows"
                )
            dag_id = self.workflows[up.workflow_id].dag_id
            downstream_nodes = self.edges.setdefault((dag_id, up.node_id), [])
            if down.node_id not in downstream_nodes:
                downstream_nodes.append(down.node_id)

    def add_dag(
        self,
        n_tasks: int,
        edges: Iterable[tuple[int, int]] = (),
        *,
        chain: bool = False,
        workflow: WorkflowRef | None = None,
        array: ArrayRef | None = None,
        status: str = "G",
        max_attempts: int = 3,
    ) -> list[FakeTask]:
        """Add ``n_tasks`` tasks and the edges between them.

        Args:
            n_tasks: How many tasks to make.
            edges: ``(upstream, downstream)`` pairs of 0-based positions in
                the returned list.
            chain: Also link each task to the next one (0→1→2→…).
            workflow: Owner (default: the latest workflow, made if none).
            array: Default: the workflow's latest array, made if none.
            status: Status letter of every new task.
            max_attempts: Attempts before a task fails for good.
        """
        with self._lock:
            tasks = self.add_tasks(
                n_tasks, workflow, array=array, status=status, max_attempts=max_attempts
            )
            pairs = list(edges)
            if chain:
                pairs.extend((i, i + 1) for i in range(n_tasks - 1))
            for upstream, downstream in pairs:
                self.add_edge(tasks[upstream], tasks[downstream])
            return tasks

    def add_workflow_run(
        self,
        workflow: WorkflowRef | None = None,
        *,
        status: str = "R",
        workflow_run_id: int | None = None,
    ) -> FakeWorkflowRun:
        """Add a run of ``workflow`` (default: the latest workflow, made if none)."""
        with self._lock:
            owner = self._workflow_or_latest(workflow)
            if workflow_run_id is None:
                workflow_run_id = _next_id(self.workflow_runs)
            elif workflow_run_id in self.workflow_runs:
                raise ValueError(f"workflow run {workflow_run_id} exists already")
            now = self.now()
            run = FakeWorkflowRun(
                workflow_run_id=workflow_run_id,
                workflow_id=owner.workflow_id,
                status=_check_status(status, WORKFLOW_RUN_STATUSES, "workflow-run"),
                status_date=now,
                heartbeat_date=now,
            )
            self.workflow_runs[workflow_run_id] = run
            return run

    # -- lookups and direct changes -------------------------------------------

    def workflow(self, workflow: WorkflowRef) -> FakeWorkflow:
        """Return the workflow row; KeyError if absent."""
        with self._lock:
            return self.workflows[workflow if isinstance(workflow, int) else workflow.workflow_id]

    def array(self, array: ArrayRef) -> FakeArray:
        """Return the array row; KeyError if absent."""
        with self._lock:
            return self.arrays[array if isinstance(array, int) else array.array_id]

    def task(self, task: TaskRef) -> FakeTask:
        """Return the task row; KeyError if absent."""
        with self._lock:
            return self._task(task)

    def workflow_run(self, workflow_run: WorkflowRunRef) -> FakeWorkflowRun:
        """Return the workflow-run row; KeyError if absent."""
        with self._lock:
            return self.workflow_runs[self._run_id(workflow_run)]

    def set_task_status(self, task: TaskRef, status: str) -> FakeTask:
        """Force a task's status (no rules applied) and stamp its status_date with now."""
        with self._lock:
            row = self._task(task)
            self._move_task(row, _check_status(status, TASK_STATUSES, "task"), self.now())
            return row

    def set_workflow_run_status(self, workflow_run: WorkflowRunRef, status: str) -> None:
        """Force a run's status, no rules applied (e.g. a resume set by another process)."""
        with self._lock:
            run = self.workflow_run(workflow_run)
            run.status = _check_status(status, WORKFLOW_RUN_STATUSES, "workflow-run")
            run.status_date = self.now()

    def request_resume(self, workflow: WorkflowRef, *, reset_running_jobs: bool = True) -> None:
        """Ask the workflow's bound or running runs to stop, as ``jobmon resume`` does.

        They move to ``C`` (cold resume) or, with ``reset_running_jobs=False``,
        ``H`` (hot resume); their next heartbeat answers that status.
        """
        with self._lock:
            workflow_id = self.workflow(workflow).workflow_id
            target = "C" if reset_running_jobs else "H"
            for run in self.workflow_runs.values():
                if run.workflow_id == workflow_id and run.status in ("B", "R"):
                    self.transition_workflow_run(run, target)

    def tasks_by_status(
        self, workflow: WorkflowRef, since: datetime | None = None
    ) -> dict[str, list[int]]:
        """Return the workflow's task ids grouped by status letter, as the server does.

        Only tasks whose status_date is at or after ``since`` count when it is
        given. Letters in order, ids ascending; statuses with no task absent.
        """
        with self._lock:
            workflow_id = workflow if isinstance(workflow, int) else workflow.workflow_id
            return _group_by_status(
                task
                for task in self._tasks_of(workflow_id)
                if since is None or task.status_date >= since
            )

    def downstream_node_ids(self, dag_id: int, node_id: int) -> list[int] | None:
        """Return the node's downstream node ids in the DAG, or None when it has none."""
        with self._lock:
            nodes = self.edges.get((dag_id, node_id))
            return list(nodes) if nodes else None

    # -- Jobmon's rules -----------------------------------------------------

    def transition_workflow_run(self, run: FakeWorkflowRun, status: str) -> bool:
        """Move ``run`` to ``status`` if :data:`WORKFLOW_RUN_TRANSITIONS` allows it.

        Returns True when the request was accepted, which includes the
        no-op repeats of :data:`IGNORED_WORKFLOW_RUN_TRANSITIONS`.
        """
        with self._lock:
            if (run.status, status) in IGNORED_WORKFLOW_RUN_TRANSITIONS:
                return True
            if status not in WORKFLOW_RUN_TRANSITIONS.get(run.status, frozenset()):
                return False
            run.status = status
            run.status_date = self.now()
            return True

    def log_heartbeat(self, run: FakeWorkflowRun, status: str, next_report_increment: float) -> str:
        """Record a heartbeat of ``run`` reporting ``status``; return the run's status after.

        As on the server, the heartbeat carries a transition: when it is
        illegal the whole heartbeat is dropped (``heartbeat_date`` unchanged)
        and the run's current status is answered.
        """
        with self._lock:
            if self.advance_on_heartbeat:
                self.advance()
            run.heartbeats += 1
            if self.transition_workflow_run(run, status):
                run.heartbeat_date = self.now() + timedelta(seconds=next_report_increment)
                run.next_report_increment = next_report_increment
            return run.status

    def queue_tasks(
        self, task_ids: Iterable[int], workflow_run_id: int, *, repeat_safe: bool = True
    ) -> dict[str, list[int]]:
        """Queue the listed tasks that are registering or adjusting resources.

        Each queued task gets a new attempt and a new task instance owned by
        ``workflow_run_id``. The answer groups *every* listed task that exists
        by its status now, so repeating a call answers the same.

        Args:
            task_ids: The tasks to queue; unknown ids are skipped.
            workflow_run_id: The run the new task instances belong to (not
                checked, as on the server).
            repeat_safe: True (Jobmon 3.6): a task that is queued already
                gets nothing more. False (Jobmon 3.2.2): every listed task
                that is queued after the call gets one more task instance,
                so a repeated call adds instances (its attempt count stays).
        """
        with self._lock:
            now = self.now()
            listed = [self.tasks[i] for i in dict.fromkeys(task_ids) if i in self.tasks]
            for task in listed:
                if task.status in _QUEUEABLE_TASK_STATUSES:
                    self._queue(task, workflow_run_id, now)
                elif not repeat_safe and task.status == "Q":
                    # 3.2.2 inserts a task instance for every listed task in Q,
                    # whether this call queued it or an earlier one did.
                    task.task_instances += 1
                    task.workflow_run_id = workflow_run_id
            return _group_by_status(listed)

    def terminate_task_instances(self, run: FakeWorkflowRun) -> int:
        """Kill the task instances of ``run``'s workflow that are launched or running.

        A hot-resuming run (``H``) keeps its running tasks and kills only the
        launched ones. Killed tasks end ``F`` (error-fatal), as the server's
        distributor leaves them. Returns how many were killed.
        """
        with self._lock:
            killable = {"O"} if run.status == "H" else {"O", "R"}
            now = self.now()
            killed = [t for t in self._tasks_of(run.workflow_id) if t.status in killable]
            for task in killed:
                self._move_task(task, "F", now)
            return len(killed)

    def advance(self, steps: int = 1) -> int:
        """Let the fake distributor work for ``steps`` steps; return how many tasks moved.

        Each step first moves a :class:`FakeClock` by ``step_seconds``, then:

        1. every running task (``R``) finishes: ``D``, or with probability
           ``failure_rate`` it fails: back to ``G`` for a retry while attempts
           remain, else ``F``;
        2. instantiating and launched tasks (``I``, ``O``) start running;
        3. queued tasks (``Q``) start running, lowest id first, while their
           workflow's and array's ``max_concurrently_running`` leave room
           (tasks in ``I``, ``O``, ``R`` hold a slot);
        4. with ``auto_queue``, registered or adjusting tasks (``G``, ``A``)
           whose upstream tasks are all done are queued.

        A task queued in step 4 starts on the next step, and a task started in
        step 3 finishes on the next step.
        """
        with self._lock:
            moved = 0
            for _ in range(steps):
                moved += self._advance_once()
            return moved

    def advance_until_settled(self, max_steps: int = 10_000) -> int:
        """Call :meth:`advance` until a step moves nothing; return the steps taken.

        Raises:
            RuntimeError: still moving after ``max_steps`` steps.
        """
        with self._lock:
            for step in range(1, max_steps + 1):
                if self.advance() == 0:
                    return step
            raise RuntimeError(f"tasks still moving after {max_steps} steps")

    # -- internals ------------------------------------------------------------

    def _advance_once(self) -> int:
        if isinstance(self.clock, FakeClock) and self.step_seconds:
            self.clock.advance(self.step_seconds)
        now = self.now()
        moved = 0
        ordered = sorted(self.tasks.values(), key=lambda t: t.task_id)
        for task in ordered:
            if task.status == "R":
                self._finish(task, now)
                moved += 1
            elif task.status in ("I", "O"):
                self._move_task(task, "R", now)
                moved += 1
        moved += self._launch_queued(ordered, now)
        if self.auto_queue:
            moved += self._queue_ready(ordered, now)
        return moved

    def _finish(self, task: FakeTask, now: datetime) -> None:
        failed = self.failure_rate > 0 and self._random.random() < self.failure_rate
        if not failed:
            self._move_task(task, "D", now)
        elif task.num_attempts >= task.max_attempts:
            self._move_task(task, "F", now)
        else:
            # Jobmon passes a failed attempt through E and hands the task back
            # to the swarm as G; the fake skips the instant in E.
            self._move_task(task, "G", now)

    def _launch_queued(self, ordered: list[FakeTask], now: datetime) -> int:
        busy_workflows = Counter(t.workflow_id for t in ordered if t.status in ACTIVE_TASK_STATUSES)
        busy_arrays = Counter(t.array_id for t in ordered if t.status in ACTIVE_TASK_STATUSES)
        moved = 0
        for task in ordered:
            if task.status != "Q":
                continue
            workflow_limit = self.workflows[task.workflow_id].max_concurrently_running
            array_limit = self.arrays[task.array_id].max_concurrently_running
            if busy_workflows[task.workflow_id] >= workflow_limit:
                continue
            if busy_arrays[task.array_id] >= array_limit:
                continue
            self._move_task(task, "R", now)
            busy_workflows[task.workflow_id] += 1
            busy_arrays[task.array_id] += 1
            moved += 1
        return moved

    def _queue_ready(self, ordered: list[FakeTask], now: datetime) -> int:
        moved = 0
        for workflow in self.workflows.values():
            own = [t for t in ordered if t.workflow_id == workflow.workflow_id]
            by_node = {t.node_id: t for t in own}
            upstream: dict[int, list[FakeTask]] = {}
            for task in own:
                for node in self.edges.get((workflow.dag_id, task.node_id), ()):
                    if node in by_node:
                        upstream.setdefault(by_node[node].task_id, []).append(task)
            for task in own:
                if task.status not in _QUEUEABLE_TASK_STATUSES:
                    continue
                if all(up.status == "D" for up in upstream.get(task.task_id, ())):
                    self._queue(task, self._latest_run_id(workflow.workflow_id), now)
                    moved += 1
        return moved

    def _queue(self, task: FakeTask, workflow_run_id: int | None, now: datetime) -> None:
        self._move_task(task, "Q", now)
        task.num_attempts += 1
        task.workflow_run_id = workflow_run_id
        task.task_instances += 1

    def _latest_run_id(self, workflow_id: int) -> int | None:
        runs = [
            r.workflow_run_id for r in self.workflow_runs.values() if r.workflow_id == workflow_id
        ]
        return max(runs, default=None)

    @staticmethod
    def _move_task(task: FakeTask, status: str, now: datetime) -> None:
        task.status = status
        task.status_date = now

    def _tasks_of(self, workflow_id: int) -> list[FakeTask]:
        return sorted(
            (t for t in self.tasks.values() if t.workflow_id == workflow_id),
            key=lambda t: t.task_id,
        )

    def _task(self, task: TaskRef) -> FakeTask:
        return self.tasks[task if isinstance(task, int) else task.task_id]

    @staticmethod
    def _run_id(workflow_run: WorkflowRunRef) -> int:
        if isinstance(workflow_run, int):
            return workflow_run
        return workflow_run.workflow_run_id

    def _workflow_or_latest(self, workflow: WorkflowRef | None) -> FakeWorkflow:
        if workflow is not None:
            return self.workflow(workflow)
        if self.workflows:
            return next(reversed(self.workflows.values()))
        return self.add_workflow()

    def _array_for(self, workflow: FakeWorkflow, array: ArrayRef | None) -> FakeArray:
        if array is not None:
            chosen = self.array(array)
            if chosen.workflow_id != workflow.workflow_id:
                raise ValueError(
                    f"array {chosen.array_id} belongs to workflow {chosen.workflow_id}, "
                    f"not {workflow.workflow_id}"
                )
            return chosen
        own = [a for a in self.arrays.values() if a.workflow_id == workflow.workflow_id]
        return own[-1] if own else self.add_array(workflow)


def _group_by_status(tasks: Iterable[FakeTask]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = {}
    for task in sorted(tasks, key=lambda t: (t.status, t.task_id)):
        grouped.setdefault(task.status, []).append(task.task_id)
    return grouped
