"""Stock httpx: the SDK's requests on httpx's own client, as a user of httpx would send them.

``run.py`` divides ours by it, so ours/stock httpx is what the SDK costs (or saves) against
the obvious way to call the server with the library it is built on:

* sync: one ``httpx.Client()`` with httpx's defaults, kept alive and reused;
* async: one ``httpx.AsyncClient()`` with httpx's defaults (pool of 100 connections, 20 kept
  idle, 5 s timeouts), kept alive and reused;
* every answer, big ones included, is decoded with ``json.loads`` into plain dicts and not
  validated (httpx decompresses the gzipped ones).

Every request carries the SDK's bytes (``floor.SdkRequests``): the same URL with the
``client_jobmon_version`` query parameter, the same headers (given per request, so they
replace httpx's default ``Accept``, ``Accept-Encoding`` and ``User-Agent``), the same compact
JSON body. ``run.py``'s request-parity check compares them on the wire.

httpcore's async pool asks ``sniffio`` which async library runs it on every request; without
sniffio installed it retries the failing ``import sniffio`` each time, which makes stock
httpx's async calls slower than they are with it. ``have_sniffio()`` tells.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import httpx
from floor import SdkRequests

from jobmon_gateway import CLIENT_JOBMON_VERSION

__all__ = ["StockHttpx", "have_sniffio"]


def have_sniffio() -> bool:
    """Whether ``sniffio`` imports (httpcore's async pool is much slower without it)."""
    try:
        importlib.import_module("sniffio")
    except ImportError:
        return False
    return True


class StockHttpx(SdkRequests):
    """A stock ``httpx.Client`` (sync) and ``httpx.AsyncClient`` (async), made on first use.

    ``url`` is the service URL (scheme, host, port); ``prefix`` the route prefix. Close with
    ``close_sync()`` and ``await aclose()``.
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        workflow_run_id: int,
        *,
        client_version: str = CLIENT_JOBMON_VERSION,
    ) -> None:
        super().__init__(url, prefix, workflow_run_id, client_version=client_version)
        self._client: httpx.Client | None = None
        self._aclient: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client()
        return self._client

    @property
    def aclient(self) -> httpx.AsyncClient:
        if self._aclient is None:
            self._aclient = httpx.AsyncClient()
        return self._aclient

    def close_sync(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        if self._aclient is not None:
            await self._aclient.aclose()
            self._aclient = None

    # ---- sync: one httpx.Client

    def call_sync(
        self, method: str, route: str, workflow_id: int, message: dict[str, Any] | None = None
    ) -> bytes:
        body = None if method == "GET" else self.body(message or {})
        response = self.client.request(
            method, self.base_url + route, content=body, headers=self.headers(workflow_id)
        )
        if response.status_code != 200:
            raise RuntimeError(f"{method} {route} -> {response.status_code}")
        return response.content

    def log_heartbeat_sync(self, status: str, next_report_increment: float) -> str:
        message = {"status": status, "next_report_increment": next_report_increment}
        route = self.route(f"/workflow_run/{self.workflow_run_id}/log_heartbeat")
        return str(json.loads(self.call_sync("POST", route, 1, message))["status"])

    # ---- async: one httpx.AsyncClient

    async def call(
        self, method: str, route: str, workflow_id: int, message: dict[str, Any] | None = None
    ) -> bytes:
        body = None if method == "GET" else self.body(message or {})
        response = await self.aclient.request(
            method, self.base_url + route, content=body, headers=self.headers(workflow_id)
        )
        if response.status_code != 200:
            raise RuntimeError(f"{method} {route} -> {response.status_code}")
        return response.content

    async def log_heartbeat(self, status: str, next_report_increment: float) -> str:
        message = {"status": status, "next_report_increment": next_report_increment}
        route = self.route(f"/workflow_run/{self.workflow_run_id}/log_heartbeat")
        return str(json.loads(await self.call("POST", route, 1, message))["status"])

    async def snapshot(self, workflow_id: int) -> dict[str, Any]:
        route = self.route(f"/workflow/{workflow_id}/task_status_updates")
        answer: dict[str, Any] = json.loads(await self.call("POST", route, workflow_id, {}))
        return answer

    async def downstream(self, task_ids: list[int], dag_id: int) -> dict[str, Any]:
        message = {"task_ids": task_ids, "dag_id": dag_id}
        route = self.route("/task/get_downstream_tasks")
        answer: dict[str, Any] = json.loads(await self.call("POST", route, 1, message))
        return answer

    async def get_tasks(self, workflow_id: int, max_task_id: int, chunk_size: int) -> Any:
        query = {"max_task_id": max_task_id, "chunk_size": chunk_size}
        route = self.route(f"/workflow/get_tasks/{workflow_id}", query)
        return json.loads(await self.call("GET", route, workflow_id))["tasks"]

    async def all_tasks(self, workflow_id: int, chunk_size: int) -> dict[int, Any]:
        tasks: dict[int, Any] = {}
        max_task_id = 0
        while chunk := await self.get_tasks(workflow_id, max_task_id, chunk_size):
            tasks.update((int(task_id), row) for task_id, row in chunk.items())
            max_task_id = max(map(int, chunk))
        return tasks
