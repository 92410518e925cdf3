"""ServerGateway: the calls a workflow run makes to the Jobmon server, async and sync."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from typing_extensions import Self

from . import routes
from ._sender import AsyncSender, Sender
from .errors import InvalidRequestError, InvalidResponseError
from .models import (
    DownstreamTasksResponse,
    HeartbeatResponse,
    QueueResponse,
    StatusUpdateResponse,
    TaskMetadata,
    TaskRow,
    TaskStatusUpdatesResponse,
    TerminateTaskInstancesResponse,
    WorkflowMetadata,
    WorkflowRunStatus,
)
from .routes import Call, positive_id
from .transport import CONTEXT_HEADER, Requester
from .transports import AsyncGatewayTransport

if TYPE_CHECKING:
    import httpx

__all__ = ["ServerGateway"]

T = TypeVar("T")


class _Sessions:
    """The gateway's senders (one sync, one async) and which of them it must close."""

    def __init__(self, requester: Requester) -> None:
        self.requester = requester
        self.async_sender: AsyncSender | None = None
        self.sync_sender: Sender | None = None
        # Owned async senders replaced by set_session; closed by close().
        self.retired: list[AsyncSender] = []
        # Threads making their first sync call at once must share one transport.
        self.lock = threading.Lock()

    def for_async(self) -> AsyncSender:
        sender = self.async_sender
        if sender is None:
            with self.lock:
                if self.async_sender is None:
                    self.async_sender = self.requester.new_async_sender()
                sender = self.async_sender
        return sender

    def for_sync(self) -> Sender:
        sender = self.sync_sender
        if sender is None:
            with self.lock:
                if self.sync_sender is None:
                    self.sync_sender = self.requester.new_sender()
                sender = self.sync_sender
        return sender


class ServerGateway:
    """The workflow-run API of one workflow run, as typed async and sync calls.

    Every call exists twice: ``await gateway.log_heartbeat(...)`` and
    ``gateway.log_heartbeat_sync(...)``. Both go through the same
    :class:`~jobmon_gateway.Requester`, so they build, retry and decode alike.

    Every request goes through httpx's transport API. The gateway opens its
    own pooled connections the first time it needs them (the SDK's
    :class:`~jobmon_gateway.transports.GatewayTransport` and its async twin,
    whose async connections belong to their event loop and close when it
    shuts down) and closes them in :meth:`close` / :meth:`close_sync` (or on
    leaving ``async with`` / ``with``). It is safe to use from several threads and
    from successive event loops (``asyncio.run`` per call). A client handed
    in with :meth:`set_session` belongs to the caller and is never closed
    by the gateway.

    Args:
        requester: Connection settings and the transport.
        workflow_id: The workflow this run belongs to (positive int).
        workflow_run_id: The workflow run (positive int).

    Raises:
        InvalidRequestError: an id is not a positive int.

    Example::

        requester = Requester.from_env()
        async with ServerGateway(requester, workflow_id=12, workflow_run_id=34) as gateway:
            answer = await gateway.log_heartbeat(WorkflowRunStatus.RUNNING, 30.0)
            if answer.status in (WorkflowRunStatus.COLD_RESUME, WorkflowRunStatus.HOT_RESUME):
                ...  # asked to resume elsewhere: stop

        with ServerGateway(requester, 12, 34) as gateway:
            now = gateway.get_server_time_sync()
    """

    def __init__(self, requester: Requester, workflow_id: int, workflow_run_id: int) -> None:
        if not isinstance(requester, Requester):
            raise InvalidRequestError(
                f"requester must be a Requester, got {type(requester).__name__}"
            )
        self.requester = requester
        self.workflow_id = positive_id("workflow_id", workflow_id)
        self.workflow_run_id = positive_id("workflow_run_id", workflow_run_id)
        self._retry = True
        self._sessions = _Sessions(requester)
        # Lets the server's logs tie each request to this run (the requester
        # adds each call's request id).
        self._context_headers = {
            CONTEXT_HEADER: json.dumps(
                {"workflow_id": self.workflow_id, "workflow_run_id": self.workflow_run_id}
            )
        }

    def __repr__(self) -> str:
        return (
            f"ServerGateway({self.requester.base_url!r}, workflow_id={self.workflow_id},"
            f" workflow_run_id={self.workflow_run_id}{'' if self._retry else ', retry=False'})"
        )

    def without_retries(self) -> ServerGateway:
        """Return a view of this gateway whose calls are sent exactly once.

        It shares this gateway's clients; use it for calls where a late
        answer is worth less than a quick failure::

            await gateway.without_retries().log_heartbeat("R", 30.0)
        """
        view = copy.copy(self)
        view._retry = False
        return view

    def with_options(
        self,
        *,
        request_timeout: float | None = None,
        retries_attempts: int | None = None,
        retries_timeout: float | None = None,
    ) -> Self:
        """Return a view of this gateway whose calls use these settings instead.

        The view shares this gateway's connections (and any client lent with
        :meth:`set_session`); this gateway's own settings do not change. An
        option left out (``None``) keeps the gateway's value::

            quick = gateway.with_options(request_timeout=2, retries_attempts=2)
            await quick.log_heartbeat("R", 30.0)

        Args:
            request_timeout: Seconds for one request, to the last byte of the answer.
            retries_attempts: Most requests sent for one call, the first included.
            retries_timeout: Most seconds one call may spend across its
                retries (``0``: one attempt).

        Raises:
            ConfigurationError: a value is malformed (as for ``Requester``).
        """
        changes: dict[str, float] = {}
        if request_timeout is not None:
            changes["request_timeout"] = request_timeout
        if retries_attempts is not None:
            changes["retries_attempts"] = retries_attempts
        if retries_timeout is not None:
            changes["retries_timeout"] = retries_timeout
        view = copy.copy(self)
        if changes:
            # Only how calls are sent changes: the senders (and their pools)
            # stay in the shared sessions, made by the gateway's own requester.
            view.requester = self.requester.with_options(**changes)
        return view

    # -- sessions ---------------------------------------------------------------

    def set_session(self, client: httpx.AsyncClient | httpx.Client) -> None:
        """Use a caller-owned httpx client for the async (or sync) calls; it is never closed here.

        Takes an ``httpx.AsyncClient`` for the async calls, an
        ``httpx.Client`` for the sync ones. The client's own settings (auth,
        cookies, proxies, event hooks, transport) apply; the deadline, the
        size limit and the retries stay the requester's. A closed client is
        not replaced: the next call raises :class:`InvalidRequestError`.

        Raises:
            InvalidRequestError: ``client`` is neither.
        """
        sessions = self._sessions
        sender = self.requester.lend(client)
        if isinstance(sender, Sender):
            with sessions.lock:
                old, sessions.sync_sender = sessions.sync_sender, sender
            if old is not None:
                old.close()
            return
        with sessions.lock:
            if sessions.async_sender is not None and sessions.async_sender.owned:
                sessions.retired.append(sessions.async_sender)
            sessions.async_sender = sender

    async def close(self) -> None:
        """Close what this gateway opened (async and sync); borrowed clients stay open.

        Connections it opened on event loops that have since closed are closed too.
        """
        sessions = self._sessions
        with sessions.lock:
            retired, sessions.retired = sessions.retired, []
            owned = sessions.async_sender
            if owned is not None and owned.owned:
                sessions.async_sender = None
                retired.append(owned)
        for sender in retired:
            await sender.aclose()
        self.close_sync()

    def close_sync(self) -> None:
        """Close the sync connections this gateway opened; a borrowed client stays open.

        Async connections it opened on event loops that are closed (or no
        longer running) are closed as well; ones on a running loop need :meth:`close`.
        """
        sessions = self._sessions
        with sessions.lock:
            owned = sessions.sync_sender
            if owned is not None and owned.owned:
                sessions.sync_sender = None
            else:
                owned = None
            abandoned = [*sessions.retired]
            if sessions.async_sender is not None and sessions.async_sender.owned:
                abandoned.append(sessions.async_sender)
        if owned is not None:
            owned.close()
        for sender in abandoned:
            if isinstance(sender.via, AsyncGatewayTransport):
                sender.via.close_abandoned()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close_sync()

    async def _send(self, call: Call[T]) -> T:
        return await self.requester.send_async(
            call, self._sessions.for_async(), retry=self._retry, headers=self._context_headers
        )

    def _send_sync(self, call: Call[T]) -> T:
        return self.requester.send(
            call, self._sessions.for_sync(), retry=self._retry, headers=self._context_headers
        )

    # -- the calls ----------------------------------------------------------------

    async def log_heartbeat(
        self, status: WorkflowRunStatus | str, next_report_increment: float
    ) -> HeartbeatResponse:
        """Report that the run is alive; answers the run's status after the heartbeat.

        Args:
            status: The status the driver believes the run has (e.g. ``"R"``).
            next_report_increment: Seconds until the next heartbeat; the server
                treats the run as lost when it does not come.

        Returns:
            The run's status on the server, which may differ from ``status``:
            ``"H"``/``"C"`` mean a resume was requested and the driver should stop.
        """
        return await self._send(
            routes.log_heartbeat(self.workflow_run_id, status, next_report_increment)
        )

    def log_heartbeat_sync(
        self, status: WorkflowRunStatus | str, next_report_increment: float
    ) -> HeartbeatResponse:
        """Sync form of :meth:`log_heartbeat`."""
        return self._send_sync(
            routes.log_heartbeat(self.workflow_run_id, status, next_report_increment)
        )

    async def update_status(self, status: WorkflowRunStatus | str) -> StatusUpdateResponse:
        """Ask to move the run to ``status``; answers the status it now has.

        An illegal transition is not an error: the current status comes back
        unchanged, so compare ``answer.status`` with what you asked for.
        """
        return await self._send(routes.update_status(self.workflow_run_id, status))

    def update_status_sync(self, status: WorkflowRunStatus | str) -> StatusUpdateResponse:
        """Sync form of :meth:`update_status`."""
        return self._send_sync(routes.update_status(self.workflow_run_id, status))

    async def terminate_task_instances(self) -> TerminateTaskInstancesResponse:
        """Mark the run's active task instances for termination; answers how many."""
        return await self._send(routes.terminate_task_instances(self.workflow_run_id))

    def terminate_task_instances_sync(self) -> TerminateTaskInstancesResponse:
        """Sync form of :meth:`terminate_task_instances`."""
        return self._send_sync(routes.terminate_task_instances(self.workflow_run_id))

    async def request_triage(self) -> None:
        """Ask the server to triage the run's task instances whose heartbeats stopped."""
        await self._send(routes.request_triage(self.workflow_run_id))

    def request_triage_sync(self) -> None:
        """Sync form of :meth:`request_triage`."""
        self._send_sync(routes.request_triage(self.workflow_run_id))

    async def get_task_status_updates(
        self, since: datetime | str | None = None
    ) -> TaskStatusUpdatesResponse:
        """Task ids by status: all of them, or only those changed since ``since``.

        Args:
            since: A naive datetime on the server's clock, normally the
                ``time`` of the previous answer; ``None`` asks for a full snapshot.
        """
        return await self._send(routes.get_task_status_updates(self.workflow_id, since))

    def get_task_status_updates_sync(
        self, since: datetime | str | None = None
    ) -> TaskStatusUpdatesResponse:
        """Sync form of :meth:`get_task_status_updates`."""
        return self._send_sync(routes.get_task_status_updates(self.workflow_id, since))

    async def get_workflow_concurrency(self) -> int:
        """How many of the workflow's tasks may run at once.

        Raises:
            NotFoundError: the server does not know the workflow.
        """
        return await self._send(routes.get_workflow_concurrency(self.workflow_id))

    def get_workflow_concurrency_sync(self) -> int:
        """Sync form of :meth:`get_workflow_concurrency`."""
        return self._send_sync(routes.get_workflow_concurrency(self.workflow_id))

    async def get_array_concurrency(self, array_id: int) -> int:
        """How many tasks of array ``array_id`` may run at once (2147483647: no limit).

        Servers before 3.4 lack the route and answer :class:`NotFoundError`.
        A 3.6 server answers an unknown array with a 500 (``NoResultFound``),
        which is retried like any 500: use :meth:`without_retries` to fail fast.
        """
        return await self._send(routes.get_array_concurrency(array_id))

    def get_array_concurrency_sync(self, array_id: int) -> int:
        """Sync form of :meth:`get_array_concurrency`."""
        return self._send_sync(routes.get_array_concurrency(array_id))

    async def queue_task_batch(
        self,
        array_id: int,
        task_ids: Iterable[int],
        task_resources_id: int,
        cluster_id: int,
    ) -> QueueResponse:
        """Queue a batch of one array's tasks for this run; safe to repeat.

        Args:
            array_id: The array the tasks belong to.
            task_ids: The tasks to queue (positive ints; order and duplicates kept).
            task_resources_id: The resources the tasks are queued with.
            cluster_id: The cluster they run on.

        Returns:
            The tasks' ids by their new status (empty for an empty batch).
        """
        return await self._send(
            routes.queue_task_batch(
                array_id, task_ids, task_resources_id, self.workflow_run_id, cluster_id
            )
        )

    def queue_task_batch_sync(
        self,
        array_id: int,
        task_ids: Iterable[int],
        task_resources_id: int,
        cluster_id: int,
    ) -> QueueResponse:
        """Sync form of :meth:`queue_task_batch`."""
        return self._send_sync(
            routes.queue_task_batch(
                array_id, task_ids, task_resources_id, self.workflow_run_id, cluster_id
            )
        )

    async def get_workflow_metadata(self) -> WorkflowMetadata:
        """The workflow's id, DAG id and concurrency limit.

        Raises:
            WorkflowNotFoundError: the server does not know the workflow
                (also a ``ValueError``).
        """
        return await self._send(routes.get_workflow_metadata(self.workflow_id))

    def get_workflow_metadata_sync(self) -> WorkflowMetadata:
        """Sync form of :meth:`get_workflow_metadata`."""
        return self._send_sync(routes.get_workflow_metadata(self.workflow_id))

    async def get_tasks(
        self, max_task_id: int = 0, chunk_size: int = 500
    ) -> dict[int, TaskMetadata]:
        """One chunk of the workflow's tasks that are not done, keyed by task id.

        Args:
            max_task_id: Only tasks with a greater id come back; 0 starts at the first.
            chunk_size: Most tasks in the answer.

        Returns:
            Up to ``chunk_size`` tasks in ascending id order; empty at the end.
            :meth:`iter_tasks` pages through all of them.
        """
        return await self._send(routes.get_tasks(self.workflow_id, max_task_id, chunk_size))

    def get_tasks_sync(
        self, max_task_id: int = 0, chunk_size: int = 500
    ) -> dict[int, TaskMetadata]:
        """Sync form of :meth:`get_tasks`."""
        return self._send_sync(routes.get_tasks(self.workflow_id, max_task_id, chunk_size))

    def iter_tasks(self, chunk_size: int = 500) -> AsyncIterator[dict[int, TaskMetadata]]:
        """Page through every task that is not done, one chunk at a time::

            async for chunk in gateway.iter_tasks(chunk_size=1000):
                for task_id, task in chunk.items():
                    ...

        Raises:
            InvalidRequestError: ``chunk_size`` is not a positive int (at once).
            InvalidResponseError: the server did not move past the last id.
        """
        positive_id("chunk_size", chunk_size)
        return self._pages(self.get_tasks, chunk_size)

    def iter_tasks_sync(self, chunk_size: int = 500) -> Iterator[dict[int, TaskMetadata]]:
        """Sync form of :meth:`iter_tasks`."""
        positive_id("chunk_size", chunk_size)
        return self._pages_sync(self.get_tasks_sync, chunk_size)

    async def get_task_rows(
        self, max_task_id: int = 0, chunk_size: int = 500
    ) -> dict[int, TaskRow]:
        """:meth:`get_tasks` with each task a :class:`~jobmon_gateway.TaskRow`, a named tuple.

        The same request, checks, values and errors; only the row type
        differs. A row has the model's attributes but not its methods, and
        costs less to build and to keep: for drivers that page through
        workflows of many thousands of tasks (docs/performance.md, "Paging
        and the row type").
        """
        return await self._send(routes.get_task_rows(self.workflow_id, max_task_id, chunk_size))

    def get_task_rows_sync(self, max_task_id: int = 0, chunk_size: int = 500) -> dict[int, TaskRow]:
        """Sync form of :meth:`get_task_rows`."""
        return self._send_sync(routes.get_task_rows(self.workflow_id, max_task_id, chunk_size))

    def iter_task_rows(self, chunk_size: int = 500) -> AsyncIterator[dict[int, TaskRow]]:
        """:meth:`iter_tasks` with each task a :class:`~jobmon_gateway.TaskRow`.

        Raises:
            InvalidRequestError: ``chunk_size`` is not a positive int (at once).
            InvalidResponseError: the server did not move past the last id.
        """
        positive_id("chunk_size", chunk_size)
        return self._pages(self.get_task_rows, chunk_size)

    def iter_task_rows_sync(self, chunk_size: int = 500) -> Iterator[dict[int, TaskRow]]:
        """Sync form of :meth:`iter_task_rows`."""
        positive_id("chunk_size", chunk_size)
        return self._pages_sync(self.get_task_rows_sync, chunk_size)

    async def _pages(
        self, page: Callable[[int, int], Awaitable[dict[int, T]]], chunk_size: int
    ) -> AsyncIterator[dict[int, T]]:
        # Through the public page call, so that a subclass's (the Jobmon
        # drop-in closes each sync call's connection) sends every page.
        max_task_id = 0
        while chunk := await page(max_task_id, chunk_size):
            max_task_id = self._next_page(chunk, max_task_id)
            yield chunk

    def _pages_sync(
        self, page: Callable[[int, int], dict[int, T]], chunk_size: int
    ) -> Iterator[dict[int, T]]:
        max_task_id = 0
        while chunk := page(max_task_id, chunk_size):
            max_task_id = self._next_page(chunk, max_task_id)
            yield chunk

    def _next_page(self, chunk: Mapping[int, object], max_task_id: int) -> int:
        # Keys are ints already (the model coerced them), so max() compares
        # numbers: as strings "99" > "500" and paging would loop or skip.
        highest = max(chunk)
        if highest <= max_task_id:
            raise InvalidResponseError(
                f"get_tasks did not move past task {max_task_id} (highest id {highest});"
                " stopping instead of asking again forever",
                method="GET",
                route=routes.get_tasks(self.workflow_id).route,
                status=200,
            )
        return highest

    async def get_downstream_tasks(
        self, task_ids: Iterable[int], dag_id: int
    ) -> DownstreamTasksResponse:
        """Each task's DAG node and the nodes downstream of it.

        Args:
            task_ids: The tasks to look up.
            dag_id: The workflow's DAG (``get_workflow_metadata().dag_id``).
        """
        return await self._send(routes.get_downstream_tasks(task_ids, dag_id))

    def get_downstream_tasks_sync(
        self, task_ids: Iterable[int], dag_id: int
    ) -> DownstreamTasksResponse:
        """Sync form of :meth:`get_downstream_tasks`."""
        return self._send_sync(routes.get_downstream_tasks(task_ids, dag_id))

    async def get_server_time(self) -> datetime:
        """The server's database clock, as a naive datetime (the server sends no zone)."""
        return await self._send(routes.get_server_time())

    def get_server_time_sync(self) -> datetime:
        """Sync form of :meth:`get_server_time`."""
        return self._send_sync(routes.get_server_time())
