"""The drop-in for Jobmon's swarm: run ``jobmon.client.swarm`` on jobmon-gateway.

Jobmon 3.6's swarm (the driver of every workflow run) talks to the server
through its own ``jobmon.client.swarm.gateway.ServerGateway``. This module
provides a :class:`ServerGateway` that the swarm can use in its place, and
:func:`install` / :func:`uninstall` to swap it in and out::

    import jobmon_gateway.jobmon

    jobmon_gateway.jobmon.install()   # before workflow.run()
    workflow.run()                    # the swarm now sends through jobmon-gateway

What the swarm needs from its gateway, and what this one does about it:

* It is built as ``ServerGateway(requester, workflow_id, workflow_run_id)``
  with a Jobmon ``jobmon.core.requester.Requester``: any object with
  ``service_url`` (route prefix inside), ``request_timeout``,
  ``retries_attempts`` and ``retries_timeout`` is turned into a
  :class:`jobmon_gateway.Requester` with ``Requester.from_jobmon`` (Jobmon is
  never imported for that).
* ``run.py`` lends it an ``aiohttp.ClientSession`` with ``set_session`` and
  closes that session itself; the scheduler asks for it back with the
  private ``_ensure_session()`` to bind task resources on it.
* It never calls ``close()``. So this gateway keeps nothing open between
  calls: the async calls send on the lent session (or, with none lent, on a
  session that is closed when the last call in flight ends), and each sync
  call closes the sync client it opened before it returns.
* It reads the results as the reference's: status letters (our enum members
  compare and hash equal to the letters), ``tasks_by_status.items()``, the
  ``time`` of a status sync handed back as ``since``, ``int`` concurrency
  limits.

This module imports aiohttp (the swarm's own HTTP library) and nothing of
Jobmon's until :func:`install` is called.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from types import ModuleType
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import aiohttp
import httpx

from . import gateway as _gateway
from .errors import ConfigurationError
from .transport import Requester

__all__ = [
    "PATCHED_MODULES",
    "JobmonRequester",
    "ServerGateway",
    "install",
    "installed",
    "uninstall",
]

P = ParamSpec("P")
T = TypeVar("T")

PATCHED_MODULES = (
    "jobmon.client.swarm.gateway",
    "jobmon.client.swarm.builder",
    "jobmon.client.swarm.run",
)
"""The swarm modules that hold the gateway class at import time (3.6).

The services (heartbeat, scheduler, synchronizer, orchestrator) import it
only for type checking and get their gateway handed in, so they need no patch.
"""

_REFERENCE_MODULE = PATCHED_MODULES[0]
_REFERENCE_NAME = "ServerGateway"


class JobmonRequester(Protocol):
    """What this module reads of a Jobmon ``jobmon.core.requester.Requester``."""

    @property
    def service_url(self) -> str:
        """Scheme, host, port and route prefix, e.g. ``"http://127.0.0.1:5000/api/v3"``."""

    @property
    def request_timeout(self) -> float:
        """Seconds for one request."""

    @property
    def retries_attempts(self) -> int:
        """Most requests for one call."""

    @property
    def retries_timeout(self) -> float:
        """Most seconds for one call's retries; 0 means one attempt, then RuntimeError."""


_AsyncClient = aiohttp.ClientSession | httpx.AsyncClient


def _is_open(client: _AsyncClient | None) -> bool:
    if client is None:
        return False
    if isinstance(client, aiohttp.ClientSession):
        return not client.closed
    return not client.is_closed


class _AsyncSessions:
    """The async clients of one drop-in gateway (shared by its views).

    ``lent`` is the caller's (an aiohttp session, as the swarm lends, or an
    ``httpx.AsyncClient``; never closed here); ``owned`` is the aiohttp
    session ``_ensure_session()`` made when none was lent (closed by
    ``close()``); ``transient`` (a client the requester makes, with its TLS
    and pool settings) serves calls made with neither and is closed when the
    last of them ends; ``in_core`` is what the core gateway was last given.
    """

    def __init__(self) -> None:
        self.lent: _AsyncClient | None = None
        self.owned: aiohttp.ClientSession | None = None
        self.transient: httpx.AsyncClient | None = None
        self.in_flight = 0
        self.in_core: _AsyncClient | None = None

    def for_calls(self) -> _AsyncClient | None:
        """The open client calls go on: the lent one, else the owned session."""
        for client in (self.lent, self.owned):
            if _is_open(client):
                return client
        return None

    def aiohttp_session(self) -> aiohttp.ClientSession | None:
        """The open aiohttp session the swarm may bind resources on, if any."""
        for client in (self.lent, self.owned):
            if isinstance(client, aiohttp.ClientSession) and not client.closed:
                return client
        return None


def _on_session(
    call: Callable[Concatenate[_gateway.ServerGateway, P], Awaitable[T]],
) -> Callable[Concatenate[ServerGateway, P], Coroutine[Any, Any, T]]:
    # An async call of the core gateway, sent on the session chosen for it.
    @functools.wraps(call)
    async def send(self: ServerGateway, /, *args: P.args, **kwargs: P.kwargs) -> T:
        async with self._call_session():
            return await call(self, *args, **kwargs)

    return send


def _closing_sync(
    call: Callable[Concatenate[_gateway.ServerGateway, P], T],
) -> Callable[Concatenate[ServerGateway, P], T]:
    # A sync call of the core gateway that closes the client it opened: the
    # swarm never calls close(), and these calls are few (building the swarm).
    @functools.wraps(call)
    def send(self: ServerGateway, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return call(self, *args, **kwargs)
        finally:
            self.close_sync()

    return send


class ServerGateway(_gateway.ServerGateway):
    """A :class:`jobmon_gateway.ServerGateway` that Jobmon's swarm can use as its own.

    Built the way the swarm builds its gateway, from either kind of requester::

        gateway = ServerGateway(jobmon_requester, workflow_id, workflow_run_id)
        gateway.set_session(aiohttp.ClientSession())   # as run.py does

    Every call and result is the SDK's (typed rows, naive datetimes, status
    enums that equal their letters). What differs from the SDK's gateway:

    * ``set_session`` also takes an ``aiohttp.ClientSession``; the async
      calls send on it, and it is never closed here.
    * ``_ensure_session()`` answers that session, as the swarm's scheduler
      expects; with none lent it makes one this gateway owns (closed by
      :meth:`close`).
    * Nothing stays open between calls: an async call with no session lent
      sends on one that is closed when the last call in flight ends, and a
      sync call closes the client it opened.

    Args:
        requester: A :class:`jobmon_gateway.Requester`, or a Jobmon requester,
            read by :meth:`jobmon_gateway.Requester.from_jobmon` (``service_url``
            with the route prefix inside, ``request_timeout``, ``retries_attempts``,
            ``retries_timeout``; ``retries_timeout=0`` is one attempt, then
            :class:`~jobmon_gateway.RetryBudgetExhaustedError`, a ``RuntimeError``).
        workflow_id: The workflow (positive int).
        workflow_run_id: The workflow run (positive int).

    Raises:
        ConfigurationError: a Jobmon requester's settings are malformed.
        InvalidRequestError: an id is not a positive int.
    """

    def __init__(
        self,
        requester: Requester | JobmonRequester,
        workflow_id: int,
        workflow_run_id: int,
    ) -> None:
        ours = requester if isinstance(requester, Requester) else Requester.from_jobmon(requester)
        super().__init__(ours, workflow_id, workflow_run_id)
        self._async = _AsyncSessions()

    # -- sessions -------------------------------------------------------------

    def set_session(self, client: aiohttp.ClientSession | httpx.AsyncClient | httpx.Client) -> None:
        """Lend a session: an ``aiohttp.ClientSession`` (as the swarm does) or an httpx client.

        A lent client is never closed here. An aiohttp session or an
        ``httpx.AsyncClient`` replaces the async client lent before.

        Raises:
            InvalidRequestError: ``client`` is none of these.
        """
        if isinstance(client, aiohttp.ClientSession | httpx.AsyncClient):
            self._async.lent = client
            self._give_core(client)
            return
        super().set_session(client)

    @property
    def _session(self) -> aiohttp.ClientSession | None:
        # The reference's attribute; Jobmon's swarm tests set it to None
        # after closing the session they lent, to forget it.
        return self._async.aiohttp_session()

    @_session.setter
    def _session(self, session: aiohttp.ClientSession | None) -> None:
        if session is None:
            self._async.lent = None
        else:
            self.set_session(session)

    async def _ensure_session(self) -> aiohttp.ClientSession:
        """The aiohttp session calls are sent on (the swarm's scheduler binds resources on it).

        The lent session if it is open; otherwise one this gateway makes and
        owns, closed by :meth:`close`.
        """
        sessions = self._async
        session = sessions.aiohttp_session()
        if session is None:
            session = sessions.owned = aiohttp.ClientSession()
        return session

    def _give_core(self, session: _AsyncClient) -> None:
        sessions = self._async
        if sessions.in_core is not session:
            super().set_session(session)
            sessions.in_core = session

    @contextlib.asynccontextmanager
    async def _call_session(self) -> AsyncIterator[None]:
        sessions = self._async
        client = sessions.for_calls()
        if client is not None:
            self._give_core(client)
            yield
            return
        if sessions.transient is None or sessions.transient.is_closed:
            sessions.transient = self.requester.new_async_client()
        transient = sessions.transient
        self._give_core(transient)
        sessions.in_flight += 1
        try:
            yield
        finally:
            sessions.in_flight -= 1
            if sessions.in_flight == 0 and sessions.transient is transient:
                sessions.transient = None
                await transient.aclose()

    async def close(self) -> None:
        """Close what this gateway opened (a lent session stays open)."""
        sessions = self._async
        owned, sessions.owned = sessions.owned, None
        if owned is not None and not owned.closed:
            await owned.close()
        await super().close()

    # -- the calls: async ones on the chosen session, sync ones closing up ------

    log_heartbeat = _on_session(_gateway.ServerGateway.log_heartbeat)
    update_status = _on_session(_gateway.ServerGateway.update_status)
    terminate_task_instances = _on_session(_gateway.ServerGateway.terminate_task_instances)
    request_triage = _on_session(_gateway.ServerGateway.request_triage)
    get_task_status_updates = _on_session(_gateway.ServerGateway.get_task_status_updates)
    get_workflow_concurrency = _on_session(_gateway.ServerGateway.get_workflow_concurrency)
    get_array_concurrency = _on_session(_gateway.ServerGateway.get_array_concurrency)
    queue_task_batch = _on_session(_gateway.ServerGateway.queue_task_batch)
    get_workflow_metadata = _on_session(_gateway.ServerGateway.get_workflow_metadata)
    get_tasks = _on_session(_gateway.ServerGateway.get_tasks)
    get_downstream_tasks = _on_session(_gateway.ServerGateway.get_downstream_tasks)
    get_server_time = _on_session(_gateway.ServerGateway.get_server_time)

    log_heartbeat_sync = _closing_sync(_gateway.ServerGateway.log_heartbeat_sync)
    update_status_sync = _closing_sync(_gateway.ServerGateway.update_status_sync)
    terminate_task_instances_sync = _closing_sync(
        _gateway.ServerGateway.terminate_task_instances_sync
    )
    request_triage_sync = _closing_sync(_gateway.ServerGateway.request_triage_sync)
    get_task_status_updates_sync = _closing_sync(
        _gateway.ServerGateway.get_task_status_updates_sync
    )
    get_workflow_concurrency_sync = _closing_sync(
        _gateway.ServerGateway.get_workflow_concurrency_sync
    )
    get_array_concurrency_sync = _closing_sync(_gateway.ServerGateway.get_array_concurrency_sync)
    queue_task_batch_sync = _closing_sync(_gateway.ServerGateway.queue_task_batch_sync)
    get_workflow_metadata_sync = _closing_sync(_gateway.ServerGateway.get_workflow_metadata_sync)
    get_tasks_sync = _closing_sync(_gateway.ServerGateway.get_tasks_sync)
    get_downstream_tasks_sync = _closing_sync(_gateway.ServerGateway.get_downstream_tasks_sync)
    get_server_time_sync = _closing_sync(_gateway.ServerGateway.get_server_time_sync)
    # iter_tasks and iter_tasks_sync page through get_tasks / get_tasks_sync
    # above, so each page is sent the same way and needs nothing of its own.


# -- install / uninstall --------------------------------------------------------

_originals: dict[tuple[str, str], object] = {}
"""(module, name) -> what it held before install(): the reference gateway."""


def _swarm_modules() -> list[ModuleType]:
    try:
        return [importlib.import_module(name) for name in PATCHED_MODULES]
    except ImportError as exc:
        raise ConfigurationError(
            f"Jobmon's swarm cannot be imported ({exc}); install jobmon_client 3.6 first"
        ) from exc


def install() -> list[str]:
    """Point Jobmon's swarm at the drop-in :class:`ServerGateway`; return what was patched.

    Every name in ``jobmon.client.swarm.gateway``, ``.builder`` and ``.run``
    that holds the reference ``ServerGateway`` (whatever it was imported as)
    is pointed at the drop-in. Calling it again changes nothing and returns
    the same names. Undo it with :func:`uninstall`.

    Returns:
        The patched names, e.g. ``["jobmon.client.swarm.builder.ServerGateway", ...]``.

    Raises:
        ConfigurationError: Jobmon's swarm is not importable, or its gateway
            module has no ``ServerGateway``.
    """
    modules = _swarm_modules()
    reference = _originals.get((_REFERENCE_MODULE, _REFERENCE_NAME))
    if reference is None:
        reference = getattr(modules[0], _REFERENCE_NAME, None)
        if reference is None or reference is ServerGateway:
            raise ConfigurationError(
                f"{_REFERENCE_MODULE} has no {_REFERENCE_NAME} of its own to replace"
            )
    for module in modules:
        for name, value in list(vars(module).items()):
            if value is reference:
                _originals[(module.__name__, name)] = reference
                setattr(module, name, ServerGateway)
    return sorted(f"{module}.{name}" for module, name in _originals)


def uninstall() -> list[str]:
    """Give Jobmon's swarm its own gateway back; return the names restored.

    Without a previous :func:`install` it restores nothing and returns ``[]``.
    """
    restored = []
    for (module_name, name), original in sorted(_originals.items()):
        module = importlib.import_module(module_name)
        if getattr(module, name, None) is ServerGateway:
            setattr(module, name, original)
        restored.append(f"{module_name}.{name}")
    _originals.clear()
    return restored


def installed() -> bool:
    """Whether :func:`install` is in effect."""
    return bool(_originals)
