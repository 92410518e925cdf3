"""Reference-style Jobmon client: the baseline the gateway SDK is benchmarked against.

Written the way the reference Jobmon client talks to the server (Jobmon 3.6,
``jobmon/core/requester.py``), minus its structlog debug line per request and its tracing
span (so the baseline is, if anything, a little faster than the real thing):

* every call is wrapped in a tenacity retry decorator built for that call, with the
  reference's stop, wait and retry settings (``Requester._maybe_retry``/``_maybe_retry_async``);
* every request carries ``X-Server-Structlog-Context``, the client's context dumped to JSON
  per request, as the reference sends it;

* async calls share one pooled ``aiohttp.ClientSession`` (aiohttp is imported on first async
  use: the sync calls need only ``requests``);
* sync calls use ``requests.request(...)`` without a session: a new connection every call;
* every request has ``Content-Type: application/json`` and ``client_jobmon_version``; GET sends
  its message as query parameters, other methods as a JSON body;
* answers are decoded with ``json`` into plain dicts and not validated;
* downstream ids in the JSON-encoded-string form go through ``json.loads`` row by row;
* ``get_tasks`` pages with the int max of the returned keys, and each row's three resource
  fields go through ``ast.literal_eval``, as the reference swarm's builder does with every
  task it reads (``jobmon/client/swarm/builder.py``, ``_process_task_from_db``).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import requests
import tenacity  # stamina's own dependency: always installed with the SDK

if TYPE_CHECKING:
    import aiohttp

# The reference client sends its own version. "3.4.0" mimics an older reference client: the
# server sends downstream ids as JSON lists only to clients above 3.4.23, so this baseline gets
# the JSON-encoded string form ("[2, 9]") and pays one json.loads per row, as such a client did.
REFERENCE_CLIENT_VERSION = "3.4.0"
JSON_HEADERS = {"Content-Type": "application/json"}

Message = dict[str, Any]
T = TypeVar("T")

# The reference's defaults (JOBMON__HTTP__RETRIES_ATTEMPTS / RETRIES_TIMEOUT).
RETRIES_ATTEMPTS = 10
RETRIES_TIMEOUT = 300


class _InvalidResponseError(Exception):
    """A 5xx or 423 answer: the reference's InvalidResponse, which it retries."""


def _should_retry(exception: BaseException) -> bool:
    return isinstance(exception, _InvalidResponseError | TimeoutError | requests.ConnectionError)


def _raise_if_exceeded(state: tenacity.RetryCallState) -> Any:
    outcome = state.outcome
    if outcome is not None and outcome.exception() is not None:
        raise RuntimeError(f"Exceeded HTTP request retry budget due to: {outcome.exception()}")


def _retrying(func: Callable[..., T]) -> Callable[..., T]:
    """``func`` wrapped as the reference wraps every request: a decorator built per call."""
    wrapped: Callable[..., T] = tenacity.retry(
        stop=(
            tenacity.stop_after_attempt(RETRIES_ATTEMPTS)
            | tenacity.stop_after_delay(RETRIES_TIMEOUT)
        ),
        wait=tenacity.wait_exponential_jitter(initial=1, exp_base=2, jitter=1),
        retry=tenacity.retry_if_exception(_should_retry),
        retry_error_callback=_raise_if_exceeded,
    )(func)
    return wrapped


def _headers(context: Message) -> dict[str, str]:
    # Built per request, as the reference builds it.
    return {**JSON_HEADERS, "X-Server-Structlog-Context": json.dumps(dict(context))}


Downstream = dict[int, list[Any]]  # task_id -> [node_id, downstream node ids or None]


def _split(method: str, version: str, message: Message | None) -> tuple[Message, Message | None]:
    params: Message = {"client_jobmon_version": version}
    if method == "GET":
        params.update(message or {})
        return params, None
    return params, message if message is not None else {}


def parse_literals(chunk: dict[str, list[Any]]) -> dict[int, list[Any]]:
    """A get_tasks chunk by int id, each row's three Python-literal fields parsed (uncached)."""
    rows: dict[int, list[Any]] = {}
    for task_id, row in chunk.items():
        parsed = list(row)
        parsed[3:6] = [ast.literal_eval(text) for text in row[3:6]]
        rows[int(task_id)] = parsed
    return rows


def parse_downstream(answer: Message) -> Downstream:
    result: Downstream = {}
    for task_id, (node_id, ids) in answer["downstream_tasks"].items():
        result[int(task_id)] = [node_id, json.loads(ids) if isinstance(ids, str) else ids]
    return result


class BaselineClient:
    """Sync methods have no suffix; async ones end in ``_async`` and need ``async with``."""

    def __init__(
        self, base_url: str, client_version: str = REFERENCE_CLIENT_VERSION, timeout: float = 20.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_version = client_version
        self.timeout = timeout
        # What the reference swarm adds to its requester's server context.
        self.context: Message = {"workflow_run_id": 1}
        self._session: aiohttp.ClientSession | None = None
        self._client_timeout: type[aiohttp.ClientTimeout] | None = None

    # ---- sync: requests.request without a session (one new TCP connection per call) ----

    def request(self, method: str, route: str, message: Message | None = None) -> Any:
        def send() -> Any:
            params, body = _split(method, self.client_version, message)
            response = requests.request(
                method,
                self.base_url + route,
                params=params,
                json=body,
                headers=_headers(self.context),
                timeout=self.timeout,
            )
            status = response.status_code
            if status >= 500 or status == 423:
                raise _InvalidResponseError(f"{method} {route} -> {status}: {response.text}")
            if status != 200:
                raise RuntimeError(f"{method} {route} -> {status}: {response.text}")
            return json.loads(response.content)

        return _retrying(send)()

    def log_heartbeat(
        self, workflow_run_id: int, status: str = "R", next_report_increment: float = 30.0
    ) -> str:
        message = {"status": status, "next_report_increment": next_report_increment}
        answer = self.request("POST", f"/workflow_run/{workflow_run_id}/log_heartbeat", message)
        return str(answer["status"])

    def get_task_status_updates(self, workflow_id: int, last_sync: str | None = None) -> Message:
        message = {} if last_sync is None else {"last_sync": last_sync}
        answer: Message = self.request(
            "POST", f"/workflow/{workflow_id}/task_status_updates", message
        )
        return answer

    def get_downstream_tasks(self, task_ids: list[int], dag_id: int) -> Downstream:
        message = {"task_ids": task_ids, "dag_id": dag_id}
        return parse_downstream(self.request("POST", "/task/get_downstream_tasks", message))

    def get_tasks(self, workflow_id: int, chunk_size: int = 500) -> dict[int, list[Any]]:
        tasks: dict[int, list[Any]] = {}
        max_task_id = 0
        while True:
            query = {"max_task_id": max_task_id, "chunk_size": chunk_size}
            chunk = self.request("GET", f"/workflow/get_tasks/{workflow_id}", query)["tasks"]
            if not chunk:
                return tasks
            tasks.update(parse_literals(chunk))
            max_task_id = max(int(k) for k in chunk)

    # ---- async: one pooled aiohttp.ClientSession ----

    async def __aenter__(self) -> BaselineClient:
        if self._session is None:
            import aiohttp

            self._client_timeout = aiohttp.ClientTimeout
            self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request_async(self, method: str, route: str, message: Message | None = None) -> Any:
        if self._session is None or self._client_timeout is None:
            raise RuntimeError("use 'async with BaselineClient(...)' for async calls")
        session, client_timeout = self._session, self._client_timeout

        async def send() -> Any:
            params, body = _split(method, self.client_version, message)
            async with session.request(
                method,
                self.base_url + route,
                params=params,
                json=body,
                headers=_headers(self.context),
                timeout=client_timeout(total=self.timeout),
            ) as response:
                raw = await response.read()
                status = response.status
            if status >= 500 or status == 423:
                raise _InvalidResponseError(f"{method} {route} -> {status}: {raw!r}")
            if status != 200:
                raise RuntimeError(f"{method} {route} -> {status}: {raw!r}")
            return json.loads(raw)

        return await _retrying(send)()

    async def log_heartbeat_async(
        self, workflow_run_id: int, status: str = "R", next_report_increment: float = 30.0
    ) -> str:
        message = {"status": status, "next_report_increment": next_report_increment}
        route = f"/workflow_run/{workflow_run_id}/log_heartbeat"
        return str((await self.request_async("POST", route, message))["status"])

    async def get_task_status_updates_async(
        self, workflow_id: int, last_sync: str | None = None
    ) -> Message:
        message = {} if last_sync is None else {"last_sync": last_sync}
        route = f"/workflow/{workflow_id}/task_status_updates"
        answer: Message = await self.request_async("POST", route, message)
        return answer

    async def get_downstream_tasks_async(self, task_ids: list[int], dag_id: int) -> Downstream:
        message = {"task_ids": task_ids, "dag_id": dag_id}
        return parse_downstream(
            await self.request_async("POST", "/task/get_downstream_tasks", message)
        )

    async def get_tasks_async(
        self, workflow_id: int, chunk_size: int = 500
    ) -> dict[int, list[Any]]:
        tasks: dict[int, list[Any]] = {}
        max_task_id = 0
        while True:
            query = {"max_task_id": max_task_id, "chunk_size": chunk_size}
            route = f"/workflow/get_tasks/{workflow_id}"
            chunk = (await self.request_async("GET", route, query))["tasks"]
            if not chunk:
                return tasks
            tasks.update(parse_literals(chunk))
            max_task_id = max(int(k) for k in chunk)
