"""The floor: the least a client can do to send the SDK's requests and decode its answers.

``run.py`` divides ours by it, so ours/floor is what the SDK costs over the bare libraries:

* sync: one kept-alive ``http.client.HTTPConnection`` (the standard library; no pool, no
  deadline per read, no size limit), ``json.loads`` of the answer;
* async: one ``aiohttp.ClientSession`` with its defaults (aiohttp decompresses), ``json.loads``
  (only the async side needs aiohttp, imported on first use: see ``have_aiohttp()``), but for
  one: an idle connection is kept as long as the SDK keeps one (4 s), not aiohttp's 15 s. The
  Jobmon server (uvicorn) closes a connection idle for 5 s; a client that reuses one after
  that sends into a closing socket. With 15 s the floor skipped the reconnects the SDK makes
  when batches are more than 4 s apart, as they are in ``run.py``;
* the big answers: that session, and msgspec's typed decoders (``msgspec_models.py``),
  which check what the SDK's models check. Without msgspec ``typed`` is ``None`` and the big
  answers have no floor (``run.py`` says so).

Every request carries the SDK's bytes: the same target, the same headers (an
``X-Server-Structlog-Context`` per workflow with a request id per call, as each gateway
sends), the same compact JSON body. ``run.py``'s request-parity check compares them on the
wire (the ids aside: each side counts its own).
"""

from __future__ import annotations

import http.client
import importlib
import itertools
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from jobmon_gateway import CLIENT_JOBMON_VERSION, __version__

if TYPE_CHECKING:
    import aiohttp

__all__ = ["Floor", "SdkRequests", "TypedDecoders", "have_aiohttp", "typed_decoders"]


def have_aiohttp() -> bool:
    """Whether aiohttp imports: the async floor and the async baseline need it, nothing else."""
    try:
        importlib.import_module("aiohttp")
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class TypedDecoders:
    """msgspec's decoders of the big answers (see ``msgspec_models.py``)."""

    snapshot: Callable[[bytes], Any]
    downstream: Callable[[bytes], dict[int, tuple[int, list[int]]]]
    tasks: Callable[[bytes], dict[int, Any]]
    version: str


def typed_decoders() -> TypedDecoders | None:
    """msgspec's decoders, or ``None`` when msgspec is not installed."""
    try:
        import msgspec
        import msgspec_models
    except ModuleNotFoundError as exc:
        if exc.name != "msgspec":
            raise
        return None
    return TypedDecoders(
        msgspec_models.decode_snapshot,
        msgspec_models.decode_downstream,
        msgspec_models.decode_tasks,
        msgspec.__version__,
    )


class SdkRequests:
    """The SDK's requests (targets, headers, bodies), built the way ``Requester`` builds them.

    ``url`` is the service URL (scheme, host, port); ``prefix`` the route prefix.
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        workflow_run_id: int,
        *,
        client_version: str = CLIENT_JOBMON_VERSION,
    ) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.base_url = url.rstrip("/") + prefix
        self.prefix = prefix
        self.workflow_run_id = workflow_run_id
        self.version_query = urlencode({"client_jobmon_version": client_version})
        self._headers: dict[int, tuple[dict[str, str], str]] = {}
        # A request id per call, as the SDK makes them (a prefix and a counter).
        self._id_prefix = secrets.token_hex(6) + "-"
        self._ids = itertools.count(1)

    def headers(self, workflow_id: int) -> dict[str, str]:
        found = self._headers.get(workflow_id)
        if found is None:
            context = {"workflow_id": workflow_id, "workflow_run_id": self.workflow_run_id}
            found = self._headers[workflow_id] = (
                {
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                    "Accept-Encoding": "gzip, deflate",
                    "User-Agent": f"jobmon-gateway/{__version__}",
                },
                json.dumps(context)[:-1] + ', "client_request_id": "',
            )
        base, start = found
        return {
            **base,
            "X-Server-Structlog-Context": f'{start}{self._id_prefix}{next(self._ids):x}"}}',
        }

    def route(self, route: str, query: dict[str, int] | None = None) -> str:
        if query:
            return f"{route}?{urlencode(query)}&{self.version_query}"
        return f"{route}?{self.version_query}"

    @staticmethod
    def body(message: dict[str, Any]) -> bytes:
        return json.dumps(message, separators=(",", ":")).encode()


class Floor(SdkRequests):
    """Bare ``http.client`` (sync) and ``aiohttp`` (async) clients sending the SDK's requests.

    ``url`` is the service URL (scheme, host, port); ``prefix`` the route prefix. The async
    methods need ``async with Floor(...) as floor:`` (the session belongs to one loop) and
    aiohttp; the sync ones need only the standard library.
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        workflow_run_id: int,
        *,
        typed: TypedDecoders | None = None,
        client_version: str = CLIENT_JOBMON_VERSION,
    ) -> None:
        super().__init__(url, prefix, workflow_run_id, client_version=client_version)
        self.typed = typed
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=20.0)
        self.session: aiohttp.ClientSession | None = None

    # ---- sync: one kept-alive http.client connection

    def call_sync(
        self, method: str, route: str, workflow_id: int, message: dict[str, Any] | None = None
    ) -> bytes:
        conn = self.conn
        body = None if method == "GET" else self.body(message or {})
        conn.request(method, self.prefix + route, body, self.headers(workflow_id))
        response = conn.getresponse()
        content = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {route} -> {response.status}")
        return content

    def log_heartbeat_sync(self, status: str, next_report_increment: float) -> str:
        message = {"status": status, "next_report_increment": next_report_increment}
        route = self.route(f"/workflow_run/{self.workflow_run_id}/log_heartbeat")
        return str(json.loads(self.call_sync("POST", route, 1, message))["status"])

    # ---- async: one aiohttp session

    async def __aenter__(self) -> Floor:
        if self.session is None:
            import aiohttp

            from jobmon_gateway._settings import KEEPALIVE_EXPIRY

            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE_EXPIRY)
            )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    def close_sync(self) -> None:
        self.conn.close()

    async def call(
        self, method: str, route: str, workflow_id: int, message: dict[str, Any] | None = None
    ) -> bytes:
        if self.session is None:
            raise RuntimeError("use 'async with Floor(...)' for async calls")
        body = None if method == "GET" else self.body(message or {})
        async with self.session.request(
            method, self.base_url + route, data=body, headers=self.headers(workflow_id)
        ) as response:
            content = await response.read()
            if response.status != 200:
                raise RuntimeError(f"{method} {route} -> {response.status}")
        return content

    async def log_heartbeat(self, status: str, next_report_increment: float) -> str:
        message = {"status": status, "next_report_increment": next_report_increment}
        route = self.route(f"/workflow_run/{self.workflow_run_id}/log_heartbeat")
        return str(json.loads(await self.call("POST", route, 1, message))["status"])

    def _typed(self) -> TypedDecoders:
        if self.typed is None:
            raise RuntimeError("the typed floor needs msgspec (pip install msgspec)")
        return self.typed

    async def snapshot(self, workflow_id: int) -> Any:
        route = self.route(f"/workflow/{workflow_id}/task_status_updates")
        return self._typed().snapshot(await self.call("POST", route, workflow_id, {}))

    async def downstream(
        self, task_ids: list[int], dag_id: int
    ) -> dict[int, tuple[int, list[int]]]:
        message = {"task_ids": task_ids, "dag_id": dag_id}
        route = self.route("/task/get_downstream_tasks")
        return self._typed().downstream(await self.call("POST", route, 1, message))

    async def get_tasks(self, workflow_id: int, max_task_id: int, chunk_size: int) -> Any:
        query = {"max_task_id": max_task_id, "chunk_size": chunk_size}
        route = self.route(f"/workflow/get_tasks/{workflow_id}", query)
        return self._typed().tasks(await self.call("GET", route, workflow_id))

    async def all_tasks(self, workflow_id: int, chunk_size: int) -> dict[int, Any]:
        tasks: dict[int, Any] = {}
        max_task_id = 0
        while chunk := await self.get_tasks(workflow_id, max_task_id, chunk_size):
            tasks.update(chunk)
            max_task_id = max(chunk)
        return tasks
