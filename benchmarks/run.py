"""The gateway SDK against the reference-style baseline and raw httpx, in one command.

    .venv/bin/python benchmarks/run.py [--rounds N] [--quick] [--placement same|none|split]
                                       [--json OUT] [--strict]

Starts the canned loopback server (``server.py``), checks every answer once per side, then runs
each case for the three sides in interleaved rounds and prints one table:

* ``ours``: ``ServerGateway(Requester(url, route_prefix="/api/v3"), wf, wfr)`` methods, with
  whatever transport the SDK uses by default (validated pydantic models, retry wrapper on);
* ``baseline``: ``BaselineClient`` (``baseline.py``), written the way the reference client
  works: ``requests`` without a session for sync, one ``aiohttp`` session for async,
  ``json`` into dicts, client version 3.4.0;
* ``raw httpx``: a client from the same ``Requester.new_async_client()`` / ``new_client()``,
  the same requests built by hand (same URL, query, headers and body) and
  ``json.loads(response.content)``, no validation: the SDK's own overhead is ours/raw.

Every timed batch starts with ``gc.collect()``; within a round the sides run in A B C order,
then C B A, and so on, so drift hits all sides alike. The table shows the median time per
call (µs) or per operation (ms), ours/baseline and ours/raw with their goals, and PASS/MISS.
Peak memory of the large snapshot is measured in a fresh subprocess per side and round: the
peak resident set (``VmHWM``, reset just before the call through ``/proc/self/clear_refs``)
minus the resident set just before the call, so Rust allocations (pydantic-core) count too.
``ru_maxrss`` is not used: a child started by ``subprocess`` inherits its parent's peak.

``--quick`` runs tiny sizes and few iterations (a CI smoke run: no goal is enforced). With
``--strict`` a missed goal makes the exit status 1 (never with ``--quick``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

import httpx
from baseline import BaselineClient
from server import ServerHandle, start_server

from jobmon_gateway import Requester, ServerGateway, __version__

PREFIX = "/api/v3"
RUN_ID = 1  # heartbeats go to workflow run 1 (999 is the server's "missing" run)
STATUS = "R"
REPORT_INCREMENT = 30.0
OURS, BASE, RAW = "ours", "baseline", "raw httpx"
SIDES = (OURS, BASE, RAW)
RAW_GOAL = 1.2  # ours / raw httpx on the same transport, every row
CONCURRENCY = 50
US, MS = "us/call", "ms/op"


@dataclass(frozen=True)
class Sizes:
    """Workload sizes and batch lengths; ``full`` is the issue's, ``quick`` a CI smoke run."""

    snap_small: int
    snap_big: int
    downstream: int
    pages_n: int
    chunk: int
    memory: int
    memory_warm: int
    hb_sync_calls: int
    hb_async_calls: int
    conc_each: int  # calls per worker; CONCURRENCY workers
    snap_small_ops: int
    snap_big_ops: int
    repeats_light: int  # batches per side per round for the heartbeat cases
    repeats_heavy: int  # ... for the large answers

    @classmethod
    def full(cls) -> Sizes:
        return cls(
            100_000, 1_000_000, 100_000, 100_000, 500, 1_000_000, 1_000, 200, 1000, 40, 5, 1, 2, 2
        )

    @classmethod
    def quick(cls) -> Sizes:
        return cls(1_000, 10_000, 1_000, 2_000, 100, 10_000, 100, 10, 40, 2, 2, 1, 1, 1)


@dataclass
class Case:
    """One benchmark case: a batch per side, timed in interleaved rounds."""

    key: str
    title: str
    unit: str  # US or MS
    ops: int  # operations per batch
    repeats: int  # batches per side per round
    goal_base: float | None  # ours / baseline goal (None: no goal)
    why: str  # what differs between the sides
    batches: dict[str, Callable[[], object]]
    # Untimed call on the same pool just before each batch: every batch starts on a live
    # connection (an idle one expires after 5 s, and ours idle while the other sides run).
    prime: dict[str, Callable[[], object]] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    wire: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    @property
    def scale(self) -> float:
        return 1e6 if self.unit == US else 1e3


def count_label(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


# --------------------------------------------------------------------------- machine info


def machine_info(requester: Requester | None = None) -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    packages: dict[str, str] = {}
    for dist in (
        "jobmon-gateway",
        "httpx",
        "httpcore",
        "httpx-aiohttp",
        "aiohttp",
        "requests",
        "pydantic",
        "pydantic-core",
        "stamina",
    ):
        try:
            packages[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            packages[dist] = "-"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "packages": packages,
    }
    if requester is not None:
        info["sdk_async_transport"] = _transport_name(requester.new_async_client())
        info["sdk_sync_transport"] = _transport_name(requester.new_client())
    return info


def _transport_name(client: httpx.AsyncClient | httpx.Client) -> str:
    transport = getattr(client, "_transport", None)  # for the record only
    if isinstance(client, httpx.Client):
        client.close()
    else:
        asyncio.run(client.aclose())
    kind = type(transport)
    return f"{kind.__module__}.{kind.__qualname__}"


# --------------------------------------------------------------------------- raw httpx


class RawHttpx:
    """The SDK's requests by hand, on clients from the same Requester; ``json.loads`` only."""

    def __init__(self, requester: Requester) -> None:
        self.base_url = requester.base_url
        self.version = requester.client_jobmon_version
        self.aclient = requester.new_async_client()
        self.client = requester.new_client()
        self._headers: dict[int, dict[str, str]] = {}

    def headers(self, workflow_id: int) -> dict[str, str]:
        found = self._headers.get(workflow_id)
        if found is None:
            context = {"workflow_id": workflow_id, "workflow_run_id": RUN_ID}
            found = self._headers[workflow_id] = {
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": f"jobmon-gateway/{__version__}",
                "X-Server-Structlog-Context": json.dumps(context),
            }
        return found

    def build(
        self,
        client: httpx.AsyncClient | httpx.Client,
        method: str,
        route: str,
        workflow_id: int,
        query: dict[str, int] | None = None,
        body: dict[str, Any] | None = None,
    ) -> httpx.Request:
        params: dict[str, str | int] = dict(query or {})
        params["client_jobmon_version"] = self.version
        content = None if method == "GET" else json.dumps(body or {}, separators=(",", ":"))
        return client.build_request(
            method,
            self.base_url + route,
            params=params,
            content=None if content is None else content.encode(),
            headers=self.headers(workflow_id),
        )

    async def call(
        self,
        method: str,
        route: str,
        workflow_id: int,
        query: dict[str, int] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        request = self.build(self.aclient, method, route, workflow_id, query, body)
        response = await self.aclient.send(request)
        if response.status_code != 200:
            raise RuntimeError(f"{method} {route} -> {response.status_code}")
        return json.loads(response.content)

    def call_sync(
        self, method: str, route: str, workflow_id: int, body: dict[str, Any] | None = None
    ) -> Any:
        response = self.client.send(self.build(self.client, method, route, workflow_id, None, body))
        if response.status_code != 200:
            raise RuntimeError(f"{method} {route} -> {response.status_code}")
        return json.loads(response.content)

    async def log_heartbeat(self) -> str:
        body = {"status": STATUS, "next_report_increment": REPORT_INCREMENT}
        answer = await self.call("POST", f"/workflow_run/{RUN_ID}/log_heartbeat", 1, body=body)
        return str(answer["status"])

    def log_heartbeat_sync(self) -> str:
        body = {"status": STATUS, "next_report_increment": REPORT_INCREMENT}
        answer = self.call_sync("POST", f"/workflow_run/{RUN_ID}/log_heartbeat", 1, body)
        return str(answer["status"])

    async def snapshot(self, workflow_id: int) -> dict[str, Any]:
        route = f"/workflow/{workflow_id}/task_status_updates"
        answer: dict[str, Any] = await self.call("POST", route, workflow_id, body={})
        return answer

    async def downstream(self, task_ids: list[int], dag_id: int) -> dict[str, Any]:
        body = {"task_ids": task_ids, "dag_id": dag_id}
        answer: dict[str, Any] = await self.call("POST", "/task/get_downstream_tasks", 1, body=body)
        return answer

    async def all_tasks(self, workflow_id: int, chunk_size: int) -> dict[int, list[Any]]:
        tasks: dict[int, list[Any]] = {}
        max_task_id = 0
        while True:
            query = {"max_task_id": max_task_id, "chunk_size": chunk_size}
            answer = await self.call(
                "GET", f"/workflow/get_tasks/{workflow_id}", workflow_id, query=query
            )
            chunk = answer["tasks"]
            if not chunk:
                return tasks
            tasks.update((int(k), row) for k, row in chunk.items())
            max_task_id = max(int(k) for k in chunk)

    async def aclose(self) -> None:
        await self.aclient.aclose()
        self.client.close()


async def all_tasks_ours(gateway: ServerGateway, chunk_size: int) -> dict[int, Any]:
    tasks: dict[int, Any] = {}
    async for chunk in gateway.iter_tasks(chunk_size):
        tasks.update(chunk)
    return tasks


# --------------------------------------------------------------------------- checks


def _fail(message: str) -> NoReturn:
    raise SystemExit(f"benchmark check failed: {message}")


# HTTP/1.1 keeps connections alive by default: sending "Connection: keep-alive" or not is the same.
_KEEP_ALIVE = {None, "keep-alive"}
Seen = tuple[str, str, dict[str, str], bytes]  # method, target, headers (lower-cased), body


class _CaptureServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CaptureHandler)
        self.seen: list[Seen] = []


class _CaptureHandler(BaseHTTPRequestHandler):
    """Records each request as it arrives on the wire; answers what the calls expect."""

    protocol_version = "HTTP/1.1"

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        server = self.server
        assert isinstance(server, _CaptureServer)
        server.seen.append((self.command, self.path, headers, self._body()))
        payload = b'{"tasks":{}}' if "/get_tasks/" in self.path else b'{"status":"R"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def request_parity(chunk: int) -> list[str]:
    """Send the same calls through the SDK and by hand to a capture server; list differences.

    Compared on the wire (method, target, every header, body), so it holds whatever path the
    SDK takes inside its transport. Empty: the requests are identical.
    """
    capture = _CaptureServer()
    thread = threading.Thread(target=capture.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{capture.server_address[1]}"
    requester = Requester(url, route_prefix=PREFIX, retries_attempts=1)
    gateway = ServerGateway(requester, 1, RUN_ID)
    raw = RawHttpx(requester)

    async def calls() -> None:
        await gateway.log_heartbeat(STATUS, REPORT_INCREMENT)
        await raw.log_heartbeat()
        await gateway.get_tasks(0, chunk)
        await raw.call(
            "GET", "/workflow/get_tasks/1", 1, query={"max_task_id": 0, "chunk_size": chunk}
        )
        await gateway.close()
        await raw.aclose()

    try:
        gateway.log_heartbeat_sync(STATUS, REPORT_INCREMENT)
        raw.log_heartbeat_sync()
        asyncio.run(calls())
    finally:
        gateway.close_sync()
        capture.shutdown()
        capture.server_close()
    seen = capture.seen
    names = ["sync heartbeat", "async heartbeat", "async get_tasks"]
    if len(seen) != 2 * len(names):
        return [f"captured {len(seen)} requests, expected {2 * len(names)}"]
    problems: list[str] = []
    for name, ours, mine in zip(names, seen[::2], seen[1::2], strict=True):
        if ours[:2] != mine[:2]:
            problems.append(f"{name}: SDK {ours[0]} {ours[1]}, raw {mine[0]} {mine[1]}")
        for header in sorted(ours[2].keys() | mine[2].keys()):
            values = {ours[2].get(header), mine[2].get(header)}
            if len(values) > 1 and not (header == "connection" and values <= _KEEP_ALIVE):
                problems.append(
                    f"{name}: {header}: SDK {ours[2].get(header)!r}, raw {mine[2].get(header)!r}"
                )
        if ours[3] != mine[3]:
            problems.append(f"{name}: bodies differ: {ours[3][:80]!r} vs {mine[3][:80]!r}")
    return problems


# --------------------------------------------------------------------------- memory child


def _proc_status_kb(name: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


async def memory_child(side: str, url: str, n: int, warm: int) -> dict[str, Any]:
    """Run in a fresh process: peak RSS growth of one ``n``-task snapshot on ``side``."""
    requester = Requester(url, route_prefix=PREFIX)
    fetch: Callable[[], Awaitable[int]]
    closers: list[Callable[[], Awaitable[None]]] = []
    if side == OURS:
        big = ServerGateway(requester, n, RUN_ID)
        small = ServerGateway(requester, warm, RUN_ID)
        closers += [big.close, small.close]
        await big.log_heartbeat(STATUS, REPORT_INCREMENT)  # opens big's connection
        for _ in range(2):
            await small.get_task_status_updates()

        async def fetch_ours() -> int:
            answer = await big.get_task_status_updates()
            return sum(map(len, answer.tasks_by_status.values()))

        fetch = fetch_ours
    elif side == BASE:
        client = BaselineClient(url + PREFIX)
        await client.__aenter__()
        closers.append(client.__aexit__)
        for _ in range(2):
            await client.get_task_status_updates_async(warm)

        async def fetch_base() -> int:
            answer = await client.get_task_status_updates_async(n)
            return sum(map(len, answer["tasks_by_status"].values()))

        fetch = fetch_base
    else:
        raw = RawHttpx(requester)
        closers.append(raw.aclose)
        for _ in range(2):
            await raw.snapshot(warm)

        async def fetch_raw() -> int:
            answer = await raw.snapshot(n)
            return sum(map(len, answer["tasks_by_status"].values()))

        fetch = fetch_raw
    gc.collect()
    reset = _reset_peak()
    before = _proc_status_kb("VmRSS") or 0
    total = await fetch()
    peak = _proc_status_kb("VmHWM") or 0
    after = _proc_status_kb("VmRSS") or 0
    for close in closers:
        await close()
    if total != n:
        _fail(f"{side}: memory snapshot has {total} ids, expected {n}")
    return {
        "side": side,
        "method": "VmHWM-reset" if reset else "VmHWM",
        "rss_before_kb": before,
        "peak_delta_kb": max(peak - before, 0),
        "retained_kb": after - before,
    }


def run_memory_child(side: str, url: str, sizes: Sizes) -> dict[str, Any]:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--memory-child",
        side,
        "--url",
        url,
        "--memory-size",
        str(sizes.memory),
        "--memory-warm",
        str(sizes.memory_warm),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        _fail(f"memory child ({side}) exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --------------------------------------------------------------------------- the run


class Bench:
    def __init__(self, srv: ServerHandle, sizes: Sizes, loop: asyncio.AbstractEventLoop) -> None:
        self.srv = srv
        self.sizes = sizes
        self.loop = loop
        self.requester = Requester(srv.url, route_prefix=PREFIX)
        self.gw = ServerGateway(self.requester, 1, RUN_ID)
        self.gw_small = ServerGateway(self.requester, sizes.snap_small, RUN_ID)
        self.gw_big = ServerGateway(self.requester, sizes.snap_big, RUN_ID)
        self.gw_tasks = ServerGateway(self.requester, sizes.pages_n, RUN_ID)
        self.base = BaselineClient(srv.base_url)
        self.raw = RawHttpx(self.requester)
        self.ids = list(range(1, sizes.downstream + 1))
        loop.run_until_complete(self.base.__aenter__())

    def close(self) -> None:
        run = self.loop.run_until_complete
        for gateway in (self.gw, self.gw_small, self.gw_big, self.gw_tasks):
            run(gateway.close())
        run(self.base.__aexit__())
        run(self.raw.aclose())

    # ---- batches: each returns a no-argument callable that runs one batch

    def repeat(self, count: int, call: Callable[[], Awaitable[object]]) -> Callable[[], object]:
        async def batch() -> None:
            for _ in range(count):
                await call()

        return lambda: self.loop.run_until_complete(batch())

    def concurrent(self, each: int, call: Callable[[], Awaitable[object]]) -> Callable[[], object]:
        async def worker() -> None:
            for _ in range(each):
                await call()

        async def batch() -> None:
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

        return lambda: self.loop.run_until_complete(batch())

    def cases(self) -> list[Case]:
        s = self.sizes
        gw, base, raw = self.gw, self.base, self.raw
        repeat, concurrent = self.repeat, self.concurrent

        def sync_batch(call: Callable[[], object]) -> Callable[[], object]:
            def batch() -> None:
                for _ in range(s.hb_sync_calls):
                    call()

            return batch

        def ours_heartbeat() -> Awaitable[object]:
            return gw.log_heartbeat(STATUS, REPORT_INCREMENT)

        def base_heartbeat() -> Awaitable[object]:
            return base.log_heartbeat_async(RUN_ID)

        def ours_prime(gateway: ServerGateway) -> Callable[[], object]:
            return repeat(1, lambda: gateway.log_heartbeat(STATUS, REPORT_INCREMENT))

        async_prime = {
            OURS: ours_prime(gw),
            BASE: repeat(1, base_heartbeat),
            RAW: repeat(1, raw.log_heartbeat),
        }
        small, big = count_label(s.snap_small), count_label(s.snap_big)

        def snapshot_case(
            key: str, label: str, size: int, ops: int, gateway: ServerGateway
        ) -> Case:
            return Case(
                key=key,
                title=f"snapshot {label} (async)",
                unit=MS,
                ops=ops,
                repeats=s.repeats_heavy,
                goal_base=1.0,
                why="ours validates every id and status letter; the others json.loads",
                batches={
                    OURS: repeat(ops, gateway.get_task_status_updates),
                    BASE: repeat(ops, lambda: base.get_task_status_updates_async(size)),
                    RAW: repeat(ops, lambda: raw.snapshot(size)),
                },
                prime={**async_prime, OURS: ours_prime(gateway)},
            )

        pages = s.pages_n // s.chunk + 1
        return [
            Case(
                key="heartbeat_sync",
                title="heartbeat sync",
                unit=US,
                ops=s.hb_sync_calls,
                repeats=s.repeats_light,
                goal_base=0.5,
                why="baseline opens a new connection per call (requests, no session)",
                batches={
                    OURS: sync_batch(lambda: gw.log_heartbeat_sync(STATUS, REPORT_INCREMENT)),
                    BASE: sync_batch(lambda: base.log_heartbeat(RUN_ID)),
                    RAW: sync_batch(raw.log_heartbeat_sync),
                },
                prime={
                    OURS: lambda: gw.log_heartbeat_sync(STATUS, REPORT_INCREMENT),
                    RAW: raw.log_heartbeat_sync,
                },
            ),
            Case(
                key="heartbeat_async",
                title="heartbeat async sequential",
                unit=US,
                ops=s.hb_async_calls,
                repeats=s.repeats_light,
                goal_base=1.0,
                why="per-request cost of each async stack",
                batches={
                    OURS: repeat(s.hb_async_calls, ours_heartbeat),
                    BASE: repeat(s.hb_async_calls, base_heartbeat),
                    RAW: repeat(s.hb_async_calls, raw.log_heartbeat),
                },
                prime=async_prime,
            ),
            Case(
                key="heartbeat_concurrent",
                title=f"heartbeat async {CONCURRENCY} concurrent",
                unit=US,
                ops=CONCURRENCY * s.conc_each,
                repeats=s.repeats_light,
                goal_base=0.8,
                why="pools under load (ours and raw: the Requester's default limits)",
                batches={
                    OURS: concurrent(s.conc_each, ours_heartbeat),
                    BASE: concurrent(s.conc_each, base_heartbeat),
                    RAW: concurrent(s.conc_each, raw.log_heartbeat),
                },
                prime=async_prime,
            ),
            snapshot_case("snapshot_small", small, s.snap_small, s.snap_small_ops, self.gw_small),
            snapshot_case("snapshot_big", big, s.snap_big, s.snap_big_ops, self.gw_big),
            Case(
                key="downstream",
                title=f"downstream map {count_label(s.downstream)} (async)",
                unit=MS,
                ops=1,
                repeats=s.repeats_heavy,
                goal_base=0.3,
                why="ours and raw announce 3.6.0 (ids as JSON lists); baseline 3.4.0"
                " (ids as JSON strings, json.loads per row)",
                batches={
                    OURS: repeat(1, lambda: gw.get_downstream_tasks(self.ids, s.downstream)),
                    BASE: repeat(
                        1, lambda: base.get_downstream_tasks_async(self.ids, s.downstream)
                    ),
                    RAW: repeat(1, lambda: raw.downstream(self.ids, s.downstream)),
                },
                prime=async_prime,
            ),
            Case(
                key="paging",
                title=f"get_tasks paging {count_label(s.pages_n)} by {s.chunk} ({pages} req)",
                unit=MS,
                ops=1,
                repeats=1,
                goal_base=None,
                why="ours turns every row into a TaskMetadata (Python-literal fields parsed);"
                " the others keep the raw rows",
                batches={
                    OURS: repeat(1, lambda: all_tasks_ours(self.gw_tasks, s.chunk)),
                    BASE: repeat(1, lambda: base.get_tasks_async(s.pages_n, s.chunk)),
                    RAW: repeat(1, lambda: raw.all_tasks(s.pages_n, s.chunk)),
                },
                prime={**async_prime, OURS: ours_prime(self.gw_tasks)},
            ),
        ]

    # ---- one pass over every case and side, checking the answers (also warms the pools)

    def check(self) -> None:
        s, run = self.sizes, self.loop.run_until_complete
        gw, base, raw = self.gw, self.base, self.raw
        if str(gw.log_heartbeat_sync(STATUS, REPORT_INCREMENT).status) != STATUS:
            _fail("ours: sync heartbeat")
        if base.log_heartbeat(RUN_ID) != STATUS or raw.log_heartbeat_sync() != STATUS:
            _fail("baseline/raw: sync heartbeat")
        if str(run(gw.log_heartbeat(STATUS, REPORT_INCREMENT)).status) != STATUS:
            _fail("ours: async heartbeat")
        if run(base.log_heartbeat_async(RUN_ID)) != STATUS or run(raw.log_heartbeat()) != STATUS:
            _fail("baseline/raw: async heartbeat")
        for n, ours_gw in ((s.snap_small, self.gw_small), (s.snap_big, self.gw_big)):
            got = run(ours_gw.get_task_status_updates())
            counts = {
                OURS: sum(map(len, got.tasks_by_status.values())),
                BASE: sum(
                    map(len, run(base.get_task_status_updates_async(n))["tasks_by_status"].values())
                ),
                RAW: sum(map(len, run(raw.snapshot(n))["tasks_by_status"].values())),
            }
            if set(counts.values()) != {n}:
                _fail(f"snapshot {n}: ids per side {counts}")
        ours_dn = run(gw.get_downstream_tasks(self.ids, s.downstream)).downstream_tasks
        base_dn = run(base.get_downstream_tasks_async(self.ids, s.downstream))
        raw_dn = run(raw.downstream(self.ids, s.downstream))["downstream_tasks"]
        if not (len(ours_dn) == len(base_dn) == len(raw_dn) == s.downstream):
            _fail("downstream sizes")
        if (
            tuple(ours_dn[1]) != (101, [102, 103])
            or base_dn[1] != [101, [102, 103]]
            or raw_dn["1"] != [101, [102, 103]]
        ):
            _fail(f"downstream row 1: {ours_dn[1]} / {base_dn[1]} / {raw_dn['1']}")
        pages = s.pages_n // s.chunk + 1
        for side, job in (
            (OURS, lambda: all_tasks_ours(self.gw_tasks, s.chunk)),
            (BASE, lambda: base.get_tasks_async(s.pages_n, s.chunk)),
            (RAW, lambda: raw.all_tasks(s.pages_n, s.chunk)),
        ):
            self.srv.reset()
            tasks = run(job())
            requests = self.srv.stats()["requests"]
            if len(tasks) != s.pages_n or min(tasks) != 1 or requests != pages:
                _fail(f"{side}: paging got {len(tasks)} tasks in {requests} requests")
        for case in self.cases():  # open the concurrent pools
            if case.key == "heartbeat_concurrent":
                for batch in case.batches.values():
                    batch()


def measure(bench: Bench, cases: list[Case], rounds: int) -> list[dict[str, Any]]:
    srv = bench.srv
    memory: list[dict[str, Any]] = []
    for case in cases:
        case.samples = {side: [] for side in SIDES}
        case.wire = {side: [] for side in SIDES}
    for round_no in range(rounds):
        for case in cases:
            for rep in range(case.repeats):
                order = SIDES if (round_no + rep) % 2 == 0 else SIDES[::-1]
                for side in order:
                    batch = case.batches[side]
                    prime = case.prime.get(side)
                    if prime is not None:
                        prime()
                    srv.reset()
                    gc.collect()
                    start = time.perf_counter()
                    batch()
                    elapsed = time.perf_counter() - start
                    stats = srv.stats()
                    case.samples[side].append(elapsed / case.ops * case.scale)
                    case.wire[side].append((stats["requests"], stats["connections"]))
        order = SIDES if round_no % 2 == 0 else SIDES[::-1]
        for side in order:
            memory.append(run_memory_child(side, srv.url, bench.sizes))
        print(f"  round {round_no + 1}/{rounds} done", file=sys.stderr, flush=True)
    return memory


# --------------------------------------------------------------------------- report


def verdict(ratio: float, goal: float | None, quick: bool) -> str:
    if goal is None:
        return "-"
    if quick:
        return "skip"
    if ratio <= goal:
        return "PASS"
    return f"MISS +{(ratio / goal - 1) * 100:.0f}%"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right_from: int = 1) -> str:
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        out = [
            str(cell).ljust(width) if i < right_from else str(cell).rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def spread(ratios: Sequence[float]) -> str:
    return f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"


def summarize(
    cases: list[Case], memory: list[dict[str, Any]], sizes: Sizes, quick: bool
) -> tuple[list[dict[str, Any]], list[list[str]]]:
    results: list[dict[str, Any]] = []
    rows: list[list[str]] = []
    for case in cases:
        med = {side: statistics.median(case.samples[side]) for side in SIDES}
        results.append(
            {
                "key": case.key,
                "title": case.title,
                "unit": case.unit,
                "median": med,
                "samples": case.samples,
                "goal_base": case.goal_base,
                "goal_raw": RAW_GOAL,
                "ratio_base": med[OURS] / med[BASE],
                "ratio_raw": med[OURS] / med[RAW],
                "wire": {side: [list(pair) for pair in case.wire[side]] for side in SIDES},
                "why": case.why,
            }
        )
    mem = {side: [m["peak_delta_kb"] / 1024 for m in memory if m["side"] == side] for side in SIDES}
    mem_med = {side: statistics.median(values) for side, values in mem.items()}
    results.append(
        {
            "key": "memory",
            "title": f"peak RSS, snapshot {count_label(sizes.memory)}",
            "unit": "MB",
            "median": mem_med,
            "samples": mem,
            "goal_base": 1.0,
            "goal_raw": RAW_GOAL,
            "ratio_base": mem_med[OURS] / mem_med[BASE] if mem_med[BASE] else float("nan"),
            "ratio_raw": mem_med[OURS] / mem_med[RAW] if mem_med[RAW] else float("nan"),
            "children": memory,
            "why": "fresh process per side and round; VmHWM minus RSS before the call",
        }
    )
    for result in results:
        med, samples = result["median"], result["samples"]
        ratio_base, ratio_raw = result["ratio_base"], result["ratio_raw"]
        # Samples of one slot (round, repeat) ran back to back: their ratios show the spread.
        for other, name in ((BASE, "pairs_base"), (RAW, "pairs_raw")):
            result[name] = [a / b for a, b in zip(samples[OURS], samples[other], strict=True) if b]
        result["verdict_base"] = verdict(ratio_base, result["goal_base"], quick)
        result["verdict_raw"] = verdict(ratio_raw, RAW_GOAL, quick)
        goal_base = result["goal_base"]
        rows.append(
            [
                result["title"],
                result["unit"],
                fmt(med[OURS]),
                fmt(med[BASE]),
                fmt(med[RAW]),
                f"{ratio_base:.2f}",
                spread(result["pairs_base"]),
                "-" if goal_base is None else f"<= {goal_base:g}",
                result["verdict_base"],
                f"{ratio_raw:.2f}",
                spread(result["pairs_raw"]),
                f"<= {RAW_GOAL:g}",
                result["verdict_raw"],
            ]
        )
    return results, rows


def wire_rows(cases: list[Case], sizes: Sizes, quick: bool) -> tuple[list[list[str]], bool]:
    rows: list[list[str]] = []
    paging_ok = True
    for case in cases:
        per_op: dict[str, tuple[float, float]] = {}
        for side in SIDES:
            pairs = case.wire[side]
            requests = statistics.median(p[0] for p in pairs) / case.ops
            connections = statistics.median(p[1] for p in pairs) / case.ops
            per_op[side] = (requests, connections)
        note = ""
        if case.key == "paging":
            expected = sizes.pages_n // sizes.chunk + 1
            paging_ok = all(r == expected for r, _ in per_op.values())
            note = ("equal " if paging_ok else "UNEQUAL ") + f"(expected {expected})"
            if not quick:
                note += " PASS" if paging_ok else " MISS"
        rows.append(
            [
                case.title,
                " / ".join(f"{per_op[side][0]:g}" for side in SIDES),
                " / ".join(f"{per_op[side][1]:.3g}" for side in SIDES),
                note,
            ]
        )
    return rows, paging_ok


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3, quick 1)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, no goal enforcement")
    parser.add_argument(
        "--placement",
        choices=("none", "same", "split"),
        default="none",
        help="same: server and client on CPU 0; split: server on CPU 1",
    )
    parser.add_argument("--json", metavar="OUT", help="write every sample and ratio here")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    parser.add_argument("--memory-child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--memory-size", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--memory-warm", type=int, default=1000, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        found = asyncio.run(
            memory_child(args.memory_child, args.url, args.memory_size, args.memory_warm)
        )
        print(json.dumps(found))
        return 0

    began = time.perf_counter()
    parity = request_parity(Sizes.full().chunk)
    sizes = Sizes.quick() if args.quick else Sizes.full()
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    if rounds < 1:
        parser.error("--rounds must be >= 1")
    server_cpu = {"none": None, "same": 0, "split": 1}[args.placement]
    if server_cpu is not None:
        os.sched_setaffinity(0, {0})
    info = machine_info(Requester("http://127.0.0.1:1", route_prefix=PREFIX))
    packages = ", ".join(f"{name} {version}" for name, version in info["packages"].items())
    print(
        f"machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable),"
        f" {info['python']}, {info['platform']}"
    )
    print(f"packages: {packages}")
    print(f"SDK transports: async {info['sdk_async_transport']}, sync {info['sdk_sync_transport']}")
    print(
        f"mode: {'quick' if args.quick else 'full'}, rounds {rounds}, placement {args.placement}",
        flush=True,
    )

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    with start_server(
        prefix=PREFIX,
        cpu=server_cpu,
        snapshots=(sizes.snap_small, sizes.snap_big, sizes.memory, sizes.memory_warm),
        downstream=(sizes.downstream,),
        pages=((sizes.pages_n, sizes.chunk),),
    ) as srv:
        bench = Bench(srv, sizes, loop)
        try:
            bench.check()
            cases = bench.cases()
            memory = measure(bench, cases, rounds)
        finally:
            bench.close()
    loop.close()

    results, rows = summarize(cases, memory, sizes, args.quick)
    print()
    print(
        "request parity, SDK vs raw httpx: "
        + ("identical" if not parity else "DIFFERENT\n  " + "\n  ".join(parity))
    )
    print()
    headers = [
        "case",
        "unit",
        OURS,
        BASE,
        RAW,
        "ours/base",
        "pairs",
        "goal",
        "verdict",
        "ours/raw",
        "pairs",
        "goal",
        "verdict",
    ]
    print(table(headers, rows, right_from=2))
    print()
    wire, paging_ok = wire_rows(cases, sizes, args.quick)
    print(
        table(
            [
                "wire per op",
                "requests (ours / base / raw)",
                "new connections (ours / base / raw)",
                "paging",
            ],
            wire,
            right_from=99,
        )
    )
    print()
    print("what differs:")
    for result in results:
        print(f"  {result['title']}: {result['why']}")
    total = time.perf_counter() - began
    print(
        f"\nunits: us/call and ms/op are medians over {rounds} round(s); a ratio is ours' median"
        " over the other's (lower is better); pairs: lowest-highest ratio of batches run"
        f" back to back. total {total:.1f} s"
    )
    missed = [
        r["title"]
        for r in results
        if r["verdict_base"].startswith("MISS") or r["verdict_raw"].startswith("MISS")
    ]
    if args.json:
        report = {
            "machine": info,
            "mode": "quick" if args.quick else "full",
            "rounds": rounds,
            "placement": args.placement,
            "sizes": sizes.__dict__,
            "parity": parity,
            "cases": results,
            "paging_requests_equal": paging_ok,
            "missed": missed,
            "seconds": total,
        }
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    if args.strict and not args.quick and (missed or not paging_ok):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
