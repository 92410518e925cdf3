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
* Its calls go on the SDK's own httpx transports, never on that session,
  which is left to the swarm (it needs aiohttp; the SDK does not).
* It never calls ``close()``. So the async connections belong to the
  swarm's event loop and close when that loop shuts down, and each sync
  call closes the connection it opened before it returns.
* It reads the results as the reference's: status letters (our enum members
  compare and hash equal to the letters), ``tasks_by_status.items()``, the
  ``time`` of a status sync handed back as ``since``, ``int`` concurrency
  limits.

This module imports neither aiohttp (only ``_ensure_session`` with no
session lent makes one) nor anything of Jobmon's until :func:`install` is called.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Concatenate, ParamSpec, Protocol, TypeGuard, TypeVar

from . import gateway as _gateway
from .errors import ConfigurationError
from .transport import Requester

if TYPE_CHECKING:
    import aiohttp
    import httpx

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


def _closing_sync(
    call: Callable[Concatenate[_gateway.ServerGateway, P], T],
) -> Callable[Concatenate[ServerGateway, P], T]:
    # A sync call of the core gateway that closes the connection it opened:
    # the swarm never calls close(), and these calls are few (building the swarm).
    @functools.wraps(call)
    def send(self: ServerGateway, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return call(self, *args, **kwargs)
        finally:
            self.close_sync()

    return send


def _is_aiohttp_session(client: object) -> TypeGuard[aiohttp.ClientSession]:
    # Looked up, not imported: nobody can hold a session of a library not imported.
    aiohttp_module = sys.modules.get("aiohttp")
    return aiohttp_module is not None and isinstance(client, aiohttp_module.ClientSession)


class ServerGateway(_gateway.ServerGateway):
    """A :class:`jobmon_gateway.ServerGateway` that Jobmon's swarm can use as its own.

    Built the way the swarm builds its gateway, from either kind of requester::

        gateway = ServerGateway(jobmon_requester, workflow_id, workflow_run_id)
        gateway.set_session(aiohttp.ClientSession())   # as run.py does

    Every call and result is the SDK's (typed rows, naive datetimes, status
    enums that equal their letters). What differs from the SDK's gateway:

    * ``set_session`` also takes an ``aiohttp.ClientSession``, kept for the
      swarm and never closed here; the calls go on the SDK's own transports.
    * ``_ensure_session()`` answers that session, as the swarm's scheduler
      expects; with none lent it makes one this gateway owns (closed by
      :meth:`close`).
    * A sync call closes the connection it opened; the async connections
      close with the event loop they were opened on.

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
        self._lent_aiohttp: aiohttp.ClientSession | None = None
        self._owned_aiohttp: aiohttp.ClientSession | None = None

    # -- sessions -------------------------------------------------------------

    def set_session(self, client: aiohttp.ClientSession | httpx.AsyncClient | httpx.Client) -> None:
        """Lend a session: an ``aiohttp.ClientSession`` (as the swarm does) or an httpx client.

        An aiohttp session is kept for the swarm (:meth:`_ensure_session`
        answers it) and never closed here; the gateway's own calls do not
        go on it but on the SDK's httpx transport, like every call of the
        SDK. An httpx client is used as :meth:`jobmon_gateway.ServerGateway.set_session` says.

        Raises:
            InvalidRequestError: ``client`` is none of these.
        """
        if _is_aiohttp_session(client):
            self._lent_aiohttp = client
            return
        super().set_session(client)  # type: ignore[arg-type]

    @property
    def _session(self) -> aiohttp.ClientSession | None:
        # The reference's attribute; Jobmon's swarm tests set it to None
        # after closing the session they lent, to forget it.
        for session in (self._lent_aiohttp, self._owned_aiohttp):
            if session is not None and not session.closed:
                return session
        return None

    @_session.setter
    def _session(self, session: aiohttp.ClientSession | None) -> None:
        if session is None:
            self._lent_aiohttp = None
        else:
            self.set_session(session)

    async def _ensure_session(self) -> aiohttp.ClientSession:
        """The aiohttp session the swarm's scheduler binds task resources on.

        The lent session if it is open; otherwise one this gateway makes and
        owns, closed by :meth:`close`.
        """
        session = self._session
        if session is None:
            import aiohttp

            session = self._owned_aiohttp = aiohttp.ClientSession()
        return session

    async def close(self) -> None:
        """Close what this gateway opened (a lent session stays open)."""
        owned, self._owned_aiohttp = self._owned_aiohttp, None
        if owned is not None and not owned.closed:
            await owned.close()
        await super().close()

    # -- the calls: async ones on the chosen session, sync ones closing up ------

    # The async calls are the core gateway's own: on the SDK's async
    # transport, whose connections close when the swarm's event loop shuts down.

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
    get_task_rows_sync = _closing_sync(_gateway.ServerGateway.get_task_rows_sync)
    get_downstream_tasks_sync = _closing_sync(_gateway.ServerGateway.get_downstream_tasks_sync)
    get_server_time_sync = _closing_sync(_gateway.ServerGateway.get_server_time_sync)
    # iter_tasks(_sync) and iter_task_rows(_sync) page through the get_*
    # calls above, so each page is sent the same way and needs nothing of its own.


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
