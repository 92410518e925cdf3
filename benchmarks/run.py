"""The gateway SDK against the reference-style baseline and the floor, in one command.

    .venv/bin/python benchmarks/run.py [--rounds N] [--quick] [--placement same|none|split]
                                       [--json OUT] [--strict] [--cases KEY,...]

Starts the canned loopback server (``server.py``), checks every answer once per side, then runs
each case for the four sides in interleaved rounds and prints one table:

* ``ours``: ``ServerGateway(Requester(url, route_prefix="/api/v3"), wf, wfr)`` methods, with
  whatever transport the SDK uses by default (validated pydantic models, retry course on);
* ``baseline``: ``BaselineClient`` (``baseline.py``), written the way the reference client
  works: ``requests`` without a session for sync, one ``aiohttp`` session for async,
  ``json`` into dicts, client version 3.4.0;
* ``floor``: ``Floor`` (``floor.py``), the SDK's own requests (same target, headers and body)
  on the bare libraries: one kept-alive ``http.client.HTTPConnection`` for sync, one
  ``aiohttp.ClientSession`` for async, ``json.loads`` for the small answers and msgspec's
  typed decoders (``msgspec_models.py``, the same checks as the SDK's models) for the big
  ones. Without msgspec the big answers have no floor, and the run says so;
* ``stock httpx``: ``StockHttpx`` (``stock.py``), the SDK's own requests on a kept-alive
  ``httpx.Client`` (sync) or ``httpx.AsyncClient`` (async) with httpx's defaults, one per
  case, ``json.loads`` for every answer (no validation). Without ``sniffio`` httpcore's async
  pool is slow (it retries ``import sniffio`` on every request), and the run says so.

The baseline's and the floor's async sides need aiohttp; without it they are skipped (with a
note), and so are the memory rows of those two sides. Their sync sides do not need it.

Every timed batch starts with ``gc.collect()``; within a round the sides run in A B C order,
then C B A, and so on, so drift hits all sides alike. The table shows the median time per
call (µs) or per operation (ms), ours/baseline, ours/floor and ours/stock httpx with their
goals, and PASS/MISS.
Peak memory of the large snapshot is measured in a fresh subprocess per side and round: the
peak resident set (``VmHWM``, reset just before the call through ``/proc/self/clear_refs``)
minus the resident set just before the call, so Rust allocations (pydantic-core) count too.
``ru_maxrss`` is not used: a child started by ``subprocess`` inherits its parent's peak.

``--quick`` runs tiny sizes and few iterations (a CI smoke run: no goal is enforced). With
``--strict`` a missed goal makes the exit status 1 (never with ``--quick``). ``--cases`` times
only the named cases (``memory`` is the peak-memory row); every answer is still checked.
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
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

from baseline import BaselineClient
from floor import Floor, TypedDecoders, have_aiohttp, typed_decoders
from server import ServerHandle, start_server
from stock import StockHttpx, have_sniffio

from jobmon_gateway import Requester, ServerGateway

PREFIX = "/api/v3"
RUN_ID = 1  # heartbeats go to workflow run 1 (999 is the server's "missing" run)
STATUS = "R"
REPORT_INCREMENT = 30.0
OURS, BASE, FLOOR, STOCK = "ours", "baseline", "floor", "stock"
SIDES = (OURS, BASE, FLOOR, STOCK)
LABEL = {OURS: "ours", BASE: "baseline", FLOOR: "floor", STOCK: "stock httpx"}
CONCURRENCY = 50
US, MS = "us/call", "ms/op"
NO_MSGSPEC = "msgspec is not installed: no floor for the big answers (pip install msgspec)"
NO_AIOHTTP = (
    "aiohttp is not installed: the baseline's and the floor's async sides (and their memory"
    " rows) are skipped; their sync heartbeats still run (pip install aiohttp)"
)
NO_SNIFFIO = (
    "sniffio is not installed: httpcore retries the failing 'import sniffio' on every async"
    " request, so the stock httpx async column is slower than stock httpx with sniffio"
    " (pip install sniffio)"
)
SKIP_MSGSPEC, SKIP_AIOHTTP = "skip: no msgspec", "skip: no aiohttp"
CASE_KEYS = (
    "heartbeat_sync",
    "heartbeat_async",
    "heartbeat_concurrent",
    "snapshot_small",
    "snapshot_big",
    "downstream",
    "paging",
    "paging_rows",
    "memory",
)


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
    goal_floor: float | None  # ours / floor goal (None: no goal)
    goal_stock: float | None  # ours / stock httpx goal (None: no goal)
    why: str  # what differs between the sides
    # A side without a batch is not run (the floor of a big answer without msgspec, the
    # async baseline and floor without aiohttp); ``missing`` says why (the verdict's text).
    batches: dict[str, Callable[[], object]]
    missing: dict[str, str] = field(default_factory=dict)
    # Untimed call on the same pool just before each batch: every batch starts on a live
    # connection (an idle one expires after 4-5 s, and each side idles while the others run).
    prime: dict[str, Callable[[], object]] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    # The client process's CPU time per operation (user + system, this process only): the
    # waits for a CPU that the other processes on the machine cause do not count in it.
    cpu: dict[str, list[float]] = field(default_factory=dict)
    wire: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    @property
    def scale(self) -> float:
        return 1e6 if self.unit == US else 1e3

    @property
    def sides(self) -> tuple[str, ...]:
        return tuple(side for side in SIDES if side in self.batches)


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
        "h11",
        "httpx",
        "httpcore",
        "sniffio",
        "aiohttp",
        "requests",
        "pydantic",
        "pydantic-core",
        "stamina",
        "msgspec",
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
    # An older SDK (run side by side from a checkout of it) may have no transports to name.
    for key, maker in (
        ("sdk_sync_transport", "new_transport"),
        ("sdk_async_transport", "new_async_transport"),
    ):
        make = getattr(requester, maker, None)
        info[key] = type(make()).__name__ if make is not None else "none (an older SDK)"
    return info


async def all_tasks_ours(pages: AsyncIterator[Mapping[int, Any]]) -> dict[int, Any]:
    """Every page of ``iter_tasks`` or ``iter_task_rows`` kept in one dict, as a driver does."""
    tasks: dict[int, Any] = {}
    async for chunk in pages:
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


@dataclass
class Parity:
    """What the request-parity check compared for one side, and what differed."""

    calls: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def line(self, side: str, expected: int) -> str:
        head = f"request parity, SDK vs {LABEL[side]}: "
        if self.problems:
            return head + "DIFFERENT\n  " + "\n  ".join(self.problems)
        if len(self.calls) < expected:
            return head + f"identical ({', '.join(self.calls)} only: {NO_AIOHTTP.split(':')[0]})"
        return head + "identical"


PARITY_CALLS = ("sync heartbeat", "async heartbeat", "async get_tasks")


def request_parity(chunk: int, aio: bool) -> dict[str, Parity]:
    """Send the same calls through the SDK and another side to a capture server; compare.

    The floor and stock httpx are each compared with the SDK on the wire (method, target,
    every header, body), so it holds whatever path the SDK takes inside its transport. Without
    aiohttp the floor's async calls cannot be made: only its sync heartbeat is compared.
    """
    capture = _CaptureServer()
    thread = threading.Thread(target=capture.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{capture.server_address[1]}"
    requester = Requester(url, route_prefix=PREFIX, retries_attempts=1)
    gateway = ServerGateway(requester, 1, RUN_ID)
    floor = Floor(url, PREFIX, RUN_ID)
    stock = StockHttpx(url, PREFIX, RUN_ID)
    query = {"max_task_id": 0, "chunk_size": chunk}
    order: list[tuple[str, str]] = []  # (side, call) of each pair of captured requests

    async def async_calls() -> None:
        if aio:
            async with floor:
                await gateway.log_heartbeat(STATUS, REPORT_INCREMENT)
                await floor.log_heartbeat(STATUS, REPORT_INCREMENT)
                order.append((FLOOR, PARITY_CALLS[1]))
                await gateway.get_tasks(0, chunk)
                await floor.call("GET", floor.route("/workflow/get_tasks/1", query), 1)
                order.append((FLOOR, PARITY_CALLS[2]))
        await gateway.log_heartbeat(STATUS, REPORT_INCREMENT)
        await stock.log_heartbeat(STATUS, REPORT_INCREMENT)
        order.append((STOCK, PARITY_CALLS[1]))
        await gateway.get_tasks(0, chunk)
        await stock.call("GET", stock.route("/workflow/get_tasks/1", query), 1)
        order.append((STOCK, PARITY_CALLS[2]))
        await gateway.close()
        await stock.aclose()

    try:
        gateway.log_heartbeat_sync(STATUS, REPORT_INCREMENT)
        floor.log_heartbeat_sync(STATUS, REPORT_INCREMENT)
        order.append((FLOOR, PARITY_CALLS[0]))
        gateway.log_heartbeat_sync(STATUS, REPORT_INCREMENT)
        stock.log_heartbeat_sync(STATUS, REPORT_INCREMENT)
        order.append((STOCK, PARITY_CALLS[0]))
        asyncio.run(async_calls())
    finally:
        gateway.close_sync()
        floor.close_sync()
        stock.close_sync()
        capture.shutdown()
        capture.server_close()
    seen = capture.seen
    found = {FLOOR: Parity(), STOCK: Parity()}
    if len(seen) != 2 * len(order):
        for parity in found.values():
            parity.problems.append(f"captured {len(seen)} requests, expected {2 * len(order)}")
        return found
    for (side, name), ours, theirs in zip(order, seen[::2], seen[1::2], strict=True):
        found[side].calls.append(name)
        problems, other = found[side].problems, LABEL[side]
        if ours[:2] != theirs[:2]:
            problems.append(f"{name}: SDK {ours[0]} {ours[1]}, {other} {theirs[0]} {theirs[1]}")
        for header in sorted(ours[2].keys() | theirs[2].keys()):
            values = {_without_id(header, ours[2]), _without_id(header, theirs[2])}
            if len(values) > 1 and not (header == "connection" and values <= _KEEP_ALIVE):
                problems.append(
                    f"{name}: {header}: SDK {ours[2].get(header)!r},"
                    f" {other} {theirs[2].get(header)!r}"
                )
        if ours[3] != theirs[3]:
            problems.append(f"{name}: bodies differ: {ours[3][:80]!r} vs {theirs[3][:80]!r}")
    return found


def _without_id(header: str, headers: dict[str, str]) -> str | None:
    """A header's value; the log context's without its per-call ``client_request_id``."""
    value = headers.get(header)
    if header != "x-server-structlog-context" or value is None:
        return value
    context = json.loads(value)
    if not isinstance(context.pop("client_request_id", None), str):
        return f"{value} (no client_request_id)"
    return json.dumps(context, sort_keys=True)


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
    fetch: Callable[[], Awaitable[int]]
    closers: list[Callable[[], Awaitable[None]]] = []
    if side == OURS:
        requester = Requester(url, route_prefix=PREFIX)
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
    elif side == FLOOR:
        floor = Floor(url, PREFIX, RUN_ID, typed=typed_decoders())
        await floor.__aenter__()
        closers.append(floor.__aexit__)
        for _ in range(2):
            await floor.snapshot(warm)

        async def fetch_floor() -> int:
            answer = await floor.snapshot(n)
            return sum(map(len, answer.tasks_by_status.values()))

        fetch = fetch_floor
    else:
        stock = StockHttpx(url, PREFIX, RUN_ID)
        closers.append(stock.aclose)
        for _ in range(2):
            await stock.snapshot(warm)

        async def fetch_stock() -> int:
            answer = await stock.snapshot(n)
            return sum(map(len, answer["tasks_by_status"].values()))

        fetch = fetch_stock
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
    def __init__(
        self,
        srv: ServerHandle,
        sizes: Sizes,
        loop: asyncio.AbstractEventLoop,
        typed: TypedDecoders | None,
        aio: bool,
    ) -> None:
        self.srv = srv
        self.sizes = sizes
        self.loop = loop
        self.typed = typed
        self.aio = aio  # aiohttp importable: the baseline's and the floor's async sides run
        self.requester = Requester(srv.url, route_prefix=PREFIX)
        self.gw = ServerGateway(self.requester, 1, RUN_ID)
        self.gw_small = ServerGateway(self.requester, sizes.snap_small, RUN_ID)
        self.gw_big = ServerGateway(self.requester, sizes.snap_big, RUN_ID)
        self.gw_tasks = ServerGateway(self.requester, sizes.pages_n, RUN_ID)
        self.base = BaselineClient(srv.base_url)
        self.floor = Floor(srv.url, PREFIX, RUN_ID, typed=typed)
        # Stock httpx: one client per case, made once (cases() is called more than once).
        self._stock: dict[str, StockHttpx] = {}
        self.ids = list(range(1, sizes.downstream + 1))
        if aio:
            loop.run_until_complete(self.base.__aenter__())
            loop.run_until_complete(self.floor.__aenter__())

    def stock(self, case_key: str) -> StockHttpx:
        found = self._stock.get(case_key)
        if found is None:
            found = self._stock[case_key] = StockHttpx(self.srv.url, PREFIX, RUN_ID)
        return found

    def close(self) -> None:
        run = self.loop.run_until_complete
        for gateway in (self.gw, self.gw_small, self.gw_big, self.gw_tasks):
            run(gateway.close())
        run(self.base.__aexit__())
        run(self.floor.__aexit__())
        self.floor.close_sync()
        for stock in self._stock.values():
            stock.close_sync()
            run(stock.aclose())

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
        gw, base, floor = self.gw, self.base, self.floor
        repeat, concurrent = self.repeat, self.concurrent
        typed, aio = self.typed is not None, self.aio
        stock_sync = self.stock("heartbeat_sync")
        stock_hb, stock_conc = self.stock("heartbeat_async"), self.stock("heartbeat_concurrent")
        stock_small, stock_big = self.stock("snapshot_small"), self.stock("snapshot_big")
        stock_dn, stock_pages = self.stock("downstream"), self.stock("paging")

        def async_sides(
            batches: dict[str, Callable[[], object]], *, big: bool = False
        ) -> tuple[dict[str, Callable[[], object]], dict[str, str]]:
            # Without aiohttp the baseline and the floor have no async side; the big answers'
            # floor decodes with msgspec: none without it.
            missing: dict[str, str] = {}
            if not aio:
                missing = {BASE: SKIP_AIOHTTP, FLOOR: SKIP_AIOHTTP}
            elif big and not typed:
                missing = {FLOOR: SKIP_MSGSPEC}
            return {k: v for k, v in batches.items() if k not in missing}, missing

        def sync_batch(call: Callable[[], object]) -> Callable[[], object]:
            def batch() -> None:
                for _ in range(s.hb_sync_calls):
                    call()

            return batch

        def ours_heartbeat() -> Awaitable[object]:
            return gw.log_heartbeat(STATUS, REPORT_INCREMENT)

        def base_heartbeat() -> Awaitable[object]:
            return base.log_heartbeat_async(RUN_ID)

        def floor_heartbeat() -> Awaitable[object]:
            return floor.log_heartbeat(STATUS, REPORT_INCREMENT)

        def stock_heartbeat(stock: StockHttpx) -> Callable[[], Awaitable[object]]:
            return lambda: stock.log_heartbeat(STATUS, REPORT_INCREMENT)

        def ours_prime(gateway: ServerGateway) -> Callable[[], object]:
            return repeat(1, lambda: gateway.log_heartbeat(STATUS, REPORT_INCREMENT))

        def async_prime(
            stock: StockHttpx, gateway: ServerGateway
        ) -> dict[str, Callable[[], object]]:
            return {
                OURS: ours_prime(gateway),
                BASE: repeat(1, base_heartbeat),
                FLOOR: repeat(1, floor_heartbeat),
                STOCK: repeat(1, stock_heartbeat(stock)),
            }

        small_label, big_label = count_label(s.snap_small), count_label(s.snap_big)
        if not aio:
            typed_why = f"; baseline, floor: none ({NO_AIOHTTP.split(':')[0]})"
        elif typed:
            typed_why = "; floor: aiohttp + msgspec typed decoder (the same checks)"
        else:
            typed_why = f"; floor: none ({NO_MSGSPEC})"
        stock_why = "; stock httpx: its own AsyncClient for this case, json.loads"

        def snapshot_case(
            key: str, label: str, size: int, ops: int, gateway: ServerGateway, stock: StockHttpx
        ) -> Case:
            batches, missing = async_sides(
                {
                    OURS: repeat(ops, gateway.get_task_status_updates),
                    BASE: repeat(ops, lambda: base.get_task_status_updates_async(size)),
                    FLOOR: repeat(ops, lambda: floor.snapshot(size)),
                    STOCK: repeat(ops, lambda: stock.snapshot(size)),
                },
                big=True,
            )
            return Case(
                key=key,
                title=f"snapshot {label} (async)",
                unit=MS,
                ops=ops,
                repeats=s.repeats_heavy,
                goal_base=1.0,
                goal_floor=1.3,
                goal_stock=None,
                why="ours validates every id, status letter and the time; baseline json.loads"
                + typed_why
                + stock_why,
                batches=batches,
                missing=missing,
                prime=async_prime(stock, gateway),
            )

        def heartbeat_async_case() -> Case:
            batches, missing = async_sides(
                {
                    OURS: repeat(s.hb_async_calls, ours_heartbeat),
                    BASE: repeat(s.hb_async_calls, base_heartbeat),
                    FLOOR: repeat(s.hb_async_calls, floor_heartbeat),
                    STOCK: repeat(s.hb_async_calls, stock_heartbeat(stock_hb)),
                }
            )
            return Case(
                key="heartbeat_async",
                title="heartbeat async sequential",
                unit=US,
                ops=s.hb_async_calls,
                repeats=s.repeats_light,
                goal_base=1.0,
                goal_floor=1.1,
                goal_stock=0.5,
                why="per-request cost of each async stack; floor: one aiohttp session, json.loads;"
                " stock httpx: one AsyncClient, json.loads",
                batches=batches,
                missing=missing,
                prime=async_prime(stock_hb, gw),
            )

        def heartbeat_concurrent_case() -> Case:
            batches, missing = async_sides(
                {
                    OURS: concurrent(s.conc_each, ours_heartbeat),
                    BASE: concurrent(s.conc_each, base_heartbeat),
                    FLOOR: concurrent(s.conc_each, floor_heartbeat),
                    STOCK: concurrent(s.conc_each, stock_heartbeat(stock_conc)),
                }
            )
            return Case(
                key="heartbeat_concurrent",
                title=f"heartbeat async {CONCURRENCY} concurrent",
                unit=US,
                ops=CONCURRENCY * s.conc_each,
                repeats=s.repeats_light,
                goal_base=0.8,
                goal_floor=1.2,
                goal_stock=0.5,
                why="pools under load (ours: the Requester's default limits; floor and"
                " baseline: aiohttp's, the floor keeping idle connections 4 s as ours does,"
                " the baseline 15 s; stock httpx: httpx's, which keep 20 idle connections)",
                batches=batches,
                missing=missing,
                prime=async_prime(stock_conc, gw),
            )

        def downstream_case() -> Case:
            label = count_label(s.downstream)
            batches, missing = async_sides(
                {
                    OURS: repeat(1, lambda: gw.get_downstream_tasks(self.ids, s.downstream)),
                    BASE: repeat(
                        1, lambda: base.get_downstream_tasks_async(self.ids, s.downstream)
                    ),
                    FLOOR: repeat(1, lambda: floor.downstream(self.ids, s.downstream)),
                    STOCK: repeat(1, lambda: stock_dn.downstream(self.ids, s.downstream)),
                },
                big=True,
            )
            return Case(
                key="downstream",
                title=f"downstream map {label} (async)",
                unit=MS,
                ops=1,
                repeats=s.repeats_heavy,
                goal_base=0.3,
                goal_floor=1.2,
                goal_stock=None,
                why="ours, floor and stock httpx announce 3.6.0 (ids as JSON lists); baseline"
                " 3.4.0 (ids as JSON strings, json.loads per row)" + typed_why + stock_why,
                batches=batches,
                missing=missing,
                prime=async_prime(stock_dn, gw),
            )

        def paging_case(rows: bool) -> Case:
            pages = s.pages_n // s.chunk + 1
            pages_of = self.gw_tasks.iter_task_rows if rows else self.gw_tasks.iter_tasks
            batches, missing = async_sides(
                {
                    OURS: repeat(1, lambda: all_tasks_ours(pages_of(s.chunk))),
                    BASE: repeat(1, lambda: base.get_tasks_async(s.pages_n, s.chunk)),
                    FLOOR: repeat(1, lambda: floor.all_tasks(s.pages_n, s.chunk)),
                    STOCK: repeat(1, lambda: stock_pages.all_tasks(s.pages_n, s.chunk)),
                },
                big=True,
            )
            return Case(
                key="paging_rows" if rows else "paging",
                title=f"{'get_task_rows' if rows else 'get_tasks'} paging"
                f" {count_label(s.pages_n)} by {s.chunk} ({pages} req)",
                unit=MS,
                ops=1,
                repeats=1,
                goal_base=0.25,
                goal_floor=1.3,
                goal_stock=None,
                why=f"ours turns every row into a {'TaskRow' if rows else 'TaskMetadata'}"
                " (Python-literal fields parsed);"
                " baseline: json, then ast.literal_eval of each row's three literal fields as"
                " the reference swarm's builder does; stock httpx keeps the raw rows"
                + typed_why
                + (", literal fields parsed (cached) and copied" if typed and aio else ""),
                batches=batches,
                missing=missing,
                prime=async_prime(stock_pages, self.gw_tasks),
            )

        return [
            Case(
                key="heartbeat_sync",
                title="heartbeat sync",
                unit=US,
                ops=s.hb_sync_calls,
                repeats=s.repeats_light,
                goal_base=0.5,
                goal_floor=1.5,
                goal_stock=0.5,
                why="baseline opens a new connection per call (requests, no session);"
                " floor: one kept-alive http.client connection, json.loads;"
                " stock httpx: one httpx.Client, json.loads",
                batches={
                    OURS: sync_batch(lambda: gw.log_heartbeat_sync(STATUS, REPORT_INCREMENT)),
                    BASE: sync_batch(lambda: base.log_heartbeat(RUN_ID)),
                    FLOOR: sync_batch(lambda: floor.log_heartbeat_sync(STATUS, REPORT_INCREMENT)),
                    STOCK: sync_batch(
                        lambda: stock_sync.log_heartbeat_sync(STATUS, REPORT_INCREMENT)
                    ),
                },
                prime={
                    OURS: lambda: gw.log_heartbeat_sync(STATUS, REPORT_INCREMENT),
                    FLOOR: lambda: floor.log_heartbeat_sync(STATUS, REPORT_INCREMENT),
                    STOCK: lambda: stock_sync.log_heartbeat_sync(STATUS, REPORT_INCREMENT),
                },
            ),
            heartbeat_async_case(),
            heartbeat_concurrent_case(),
            snapshot_case(
                "snapshot_small",
                small_label,
                s.snap_small,
                s.snap_small_ops,
                self.gw_small,
                stock_small,
            ),
            snapshot_case(
                "snapshot_big", big_label, s.snap_big, s.snap_big_ops, self.gw_big, stock_big
            ),
            downstream_case(),
            paging_case(rows=False),
            paging_case(rows=True),
        ]

    # ---- one pass over every case and side, checking the answers (also warms the pools)

    def check(self) -> None:
        s, run = self.sizes, self.loop.run_until_complete
        gw, base, floor = self.gw, self.base, self.floor
        typed, aio = self.typed is not None, self.aio
        if str(gw.log_heartbeat_sync(STATUS, REPORT_INCREMENT).status) != STATUS:
            _fail("ours: sync heartbeat")
        if (
            base.log_heartbeat(RUN_ID) != STATUS
            or floor.log_heartbeat_sync(STATUS, REPORT_INCREMENT) != STATUS
            or self.stock("heartbeat_sync").log_heartbeat_sync(STATUS, REPORT_INCREMENT) != STATUS
        ):
            _fail("baseline/floor/stock httpx: sync heartbeat")
        if str(run(gw.log_heartbeat(STATUS, REPORT_INCREMENT)).status) != STATUS:
            _fail("ours: async heartbeat")
        if run(self.stock("heartbeat_async").log_heartbeat(STATUS, REPORT_INCREMENT)) != STATUS:
            _fail("stock httpx: async heartbeat")
        if aio and (
            run(base.log_heartbeat_async(RUN_ID)) != STATUS
            or run(floor.log_heartbeat(STATUS, REPORT_INCREMENT)) != STATUS
        ):
            _fail("baseline/floor: async heartbeat")
        for key, n, ours_gw in (
            ("snapshot_small", s.snap_small, self.gw_small),
            ("snapshot_big", s.snap_big, self.gw_big),
        ):
            got = run(ours_gw.get_task_status_updates())
            stock_got = run(self.stock(key).snapshot(n))["tasks_by_status"]
            counts = {
                OURS: sum(map(len, got.tasks_by_status.values())),
                STOCK: sum(map(len, stock_got.values())),
            }
            if aio:
                base_got = run(base.get_task_status_updates_async(n))["tasks_by_status"]
                counts[BASE] = sum(map(len, base_got.values()))
            if aio and typed:
                floor_got = run(floor.snapshot(n))
                counts[FLOOR] = sum(map(len, floor_got.tasks_by_status.values()))
                if floor_got.time != got.time or floor_got.tasks_by_status != got.tasks_by_status:
                    _fail(f"snapshot {n}: floor and ours decode differently")
            if set(counts.values()) != {n}:
                _fail(f"snapshot {n}: ids per side {counts}")
        ours_dn = run(gw.get_downstream_tasks(self.ids, s.downstream)).downstream_tasks
        stock_dn = run(self.stock("downstream").downstream(self.ids, s.downstream))
        stock_dn = stock_dn["downstream_tasks"]
        if not (len(ours_dn) == len(stock_dn) == s.downstream):
            _fail("downstream sizes (ours / stock httpx)")
        if tuple(ours_dn[1]) != (101, [102, 103]) or stock_dn["1"] != [101, [102, 103]]:
            _fail(f"downstream row 1: {ours_dn[1]} / {stock_dn['1']}")
        if aio:
            base_dn = run(base.get_downstream_tasks_async(self.ids, s.downstream))
            if len(base_dn) != s.downstream or base_dn[1] != [101, [102, 103]]:
                _fail(f"baseline downstream: {len(base_dn)} rows, row 1 {base_dn.get(1)}")
        if aio and typed:
            floor_dn = run(floor.downstream(self.ids, s.downstream))
            if floor_dn != {task: tuple(row) for task, row in ours_dn.items()}:
                _fail("downstream: floor and ours decode differently")
        pages = s.pages_n // s.chunk + 1
        stock_pages = self.stock("paging")
        jobs: list[tuple[str, Callable[[], Awaitable[dict[int, Any]]]]] = [
            (OURS, lambda: all_tasks_ours(self.gw_tasks.iter_tasks(s.chunk))),
            ("rows", lambda: all_tasks_ours(self.gw_tasks.iter_task_rows(s.chunk))),
            (STOCK, lambda: stock_pages.all_tasks(s.pages_n, s.chunk)),
        ]
        if aio:
            jobs.append((BASE, lambda: base.get_tasks_async(s.pages_n, s.chunk)))
        if aio and typed:
            jobs.append((FLOOR, lambda: floor.all_tasks(s.pages_n, s.chunk)))
        found: dict[str, dict[int, Any]] = {}
        for side, job in jobs:
            self.srv.reset()
            tasks = found[side] = run(job())
            requests = self.srv.stats()["requests"]
            if len(tasks) != s.pages_n or min(tasks) != 1 or requests != pages:
                _fail(f"{side}: paging got {len(tasks)} tasks in {requests} requests")
        ours_row = found[OURS][1]
        fields = type(ours_row).model_fields
        for side in ("rows", FLOOR):
            if side in found:
                other = found[side][1]
                if [getattr(ours_row, name) for name in fields] != [
                    getattr(other, name) for name in fields
                ]:
                    _fail(f"paging: row 1 differs: {ours_row!r} / {other!r}")
        for case in self.cases():  # open the concurrent pools
            if case.key == "heartbeat_concurrent":
                for batch in case.batches.values():
                    batch()


def measure(
    bench: Bench, cases: list[Case], rounds: int, memory_sides: tuple[str, ...]
) -> list[dict[str, Any]]:
    srv = bench.srv
    memory: list[dict[str, Any]] = []
    for case in cases:
        case.samples = {side: [] for side in case.sides}
        case.cpu = {side: [] for side in case.sides}
        case.wire = {side: [] for side in case.sides}
    for round_no in range(rounds):
        for case in cases:
            for rep in range(case.repeats):
                order = case.sides if (round_no + rep) % 2 == 0 else case.sides[::-1]
                for side in order:
                    batch = case.batches[side]
                    prime = case.prime.get(side)
                    if prime is not None:
                        prime()
                    srv.reset()
                    gc.collect()
                    start, cpu_start = time.perf_counter(), time.process_time()
                    batch()
                    elapsed = time.perf_counter() - start
                    cpu = time.process_time() - cpu_start
                    stats = srv.stats()
                    case.samples[side].append(elapsed / case.ops * case.scale)
                    case.cpu[side].append(cpu / case.ops * case.scale)
                    case.wire[side].append((stats["requests"], stats["connections"]))
        for side in memory_sides if round_no % 2 == 0 else memory_sides[::-1]:
            memory.append(run_memory_child(side, srv.url, bench.sizes))
        print(f"  round {round_no + 1}/{rounds} done", file=sys.stderr, flush=True)
    return memory


# --------------------------------------------------------------------------- report


def verdict(ratio: float | None, goal: float | None, quick: bool, missing: str = "-") -> str:
    if goal is None:
        return "-"
    if ratio is None:
        return missing
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


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def spread(ratios: Sequence[float]) -> str:
    return f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"


def _ratio(med: dict[str, float], other: str) -> float | None:
    value = med.get(other)
    return med[OURS] / value if value else None


RATIOS = ((BASE, "base"), (FLOOR, "floor"), (STOCK, "stock"))  # side, suffix of the keys


def summarize(
    cases: list[Case],
    memory: list[dict[str, Any]],
    memory_missing: dict[str, str],
    sizes: Sizes,
    quick: bool,
) -> tuple[list[dict[str, Any]], list[list[str]]]:
    results: list[dict[str, Any]] = []
    rows: list[list[str]] = []
    for case in cases:
        med = {side: statistics.median(case.samples[side]) for side in case.sides}
        cpu = {side: statistics.median(case.cpu[side]) for side in case.sides}
        results.append(
            {
                "key": case.key,
                "title": case.title,
                "unit": case.unit,
                "median": med,
                "samples": case.samples,
                "goal_base": case.goal_base,
                "goal_floor": case.goal_floor,
                "goal_stock": case.goal_stock,
                "ratio_base": _ratio(med, BASE),
                "ratio_floor": _ratio(med, FLOOR),
                "ratio_stock": _ratio(med, STOCK),
                "cpu_median": cpu,
                "cpu_samples": case.cpu,
                "cpu_ratio_base": _ratio(cpu, BASE),
                "cpu_ratio_floor": _ratio(cpu, FLOOR),
                "cpu_ratio_stock": _ratio(cpu, STOCK),
                "wire": {side: [list(pair) for pair in pairs] for side, pairs in case.wire.items()},
                "missing": case.missing,
                "why": case.why,
            }
        )
    mem = {
        side: values
        for side in SIDES
        if (values := [m["peak_delta_kb"] / 1024 for m in memory if m["side"] == side])
    }
    mem_med = {side: statistics.median(values) for side, values in mem.items()}
    if memory:  # not with --cases leaving the memory row out
        results.append(
            {
                "key": "memory",
                "title": f"peak RSS, snapshot {count_label(sizes.memory)}",
                "unit": "MB",
                "median": mem_med,
                "samples": mem,
                "goal_base": 1.0,
                "goal_floor": None,
                "goal_stock": None,
                "ratio_base": _ratio(mem_med, BASE),
                "ratio_floor": _ratio(mem_med, FLOOR),
                "ratio_stock": _ratio(mem_med, STOCK),
                "children": memory,
                "missing": memory_missing,
                "why": "fresh process per side and round; VmHWM minus RSS before the call"
                " (growth of the resident set while the answer is read and decoded)",
            }
        )
    for result in results:
        med, samples = result["median"], result["samples"]
        row = [result["title"], result["unit"], *(fmt(med.get(side)) for side in SIDES)]
        for other, suffix in RATIOS:
            # Samples of one slot (round, repeat) ran back to back: their ratios show the spread.
            pairs = result[f"pairs_{suffix}"] = [
                a / b for a, b in zip(samples[OURS], samples.get(other, []), strict=False) if b
            ]
            ratio, goal = result[f"ratio_{suffix}"], result[f"goal_{suffix}"]
            missing = result["missing"].get(other, "-")
            result[f"verdict_{suffix}"] = found = verdict(ratio, goal, quick, missing=missing)
            row += [
                "-" if ratio is None else f"{ratio:.2f}",
                spread(pairs),
                "-" if goal is None else f"<= {goal:g}",
                found,
            ]
        rows.append(row)
    return results, rows


def cpu_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    rows: list[list[str]] = []
    for result in results:
        cpu = result.get("cpu_median")
        if cpu is None:
            continue
        ratios = [result[f"cpu_ratio_{suffix}"] for _, suffix in RATIOS]
        rows.append(
            [
                result["title"],
                result["unit"],
                *(fmt(cpu.get(side)) for side in SIDES),
                *("-" if ratio is None else f"{ratio:.2f}" for ratio in ratios),
            ]
        )
    return rows


def wire_rows(cases: list[Case], sizes: Sizes, quick: bool) -> tuple[list[list[str]], bool]:
    rows: list[list[str]] = []
    paging_ok = True
    for case in cases:
        per_op: dict[str, tuple[float, float]] = {}
        for side in case.sides:
            pairs = case.wire[side]
            requests = statistics.median(p[0] for p in pairs) / case.ops
            connections = statistics.median(p[1] for p in pairs) / case.ops
            per_op[side] = (requests, connections)
        note = ""
        if case.key in ("paging", "paging_rows"):
            expected = sizes.pages_n // sizes.chunk + 1
            paging_ok = all(r == expected for r, _ in per_op.values())
            note = ("equal " if paging_ok else "UNEQUAL ") + f"(expected {expected})"
            if not quick:
                note += " PASS" if paging_ok else " MISS"
        old = (OURS, BASE, FLOOR)
        stock = per_op.get(STOCK)
        rows.append(
            [
                case.title,
                " / ".join(f"{per_op[side][0]:g}" if side in per_op else "-" for side in old),
                " / ".join(f"{per_op[side][1]:.3g}" if side in per_op else "-" for side in old),
                "-" if stock is None else f"{stock[0]:g} / {stock[1]:.3g}",
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
    parser.add_argument(
        "--cases",
        metavar="KEY,...",
        help=f"time only these cases, of: {', '.join(CASE_KEYS)} (default: all)",
    )
    parser.add_argument("--memory-child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--memory-size", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--memory-warm", type=int, default=1000, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    chosen = set(CASE_KEYS if args.cases is None else args.cases.split(","))
    if unknown := chosen - set(CASE_KEYS):
        parser.error(f"--cases: unknown {', '.join(sorted(unknown))}")
    if args.memory_child:
        found = asyncio.run(
            memory_child(args.memory_child, args.url, args.memory_size, args.memory_warm)
        )
        print(json.dumps(found))
        return 0

    began = time.perf_counter()
    aio, sniffio = have_aiohttp(), have_sniffio()
    parity = request_parity(Sizes.full().chunk, aio)
    sizes = Sizes.quick() if args.quick else Sizes.full()
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    if rounds < 1:
        parser.error("--rounds must be >= 1")
    server_cpu = {"none": None, "same": 0, "split": 1}[args.placement]
    if server_cpu is not None:
        os.sched_setaffinity(0, {0})
    typed = typed_decoders()
    info = machine_info(Requester("http://127.0.0.1:1", route_prefix=PREFIX))
    packages = ", ".join(f"{name} {version}" for name, version in info["packages"].items())
    print(
        f"machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable),"
        f" {info['python']}, {info['platform']}"
    )
    print(f"packages: {packages}")
    print(
        f"SDK transports: sync {info.get('sdk_sync_transport')},"
        f" async {info.get('sdk_async_transport')}"
    )
    print(
        f"mode: {'quick' if args.quick else 'full'}, rounds {rounds}, placement {args.placement}",
        flush=True,
    )
    notes = [
        note
        for note, shown in (
            (NO_MSGSPEC, typed is None),
            (NO_AIOHTTP, not aio),
            (NO_SNIFFIO, not sniffio),
        )
        if shown
    ]
    for note in notes:
        print(f"note: {note}", flush=True)
    memory_missing: dict[str, str] = {}
    if not aio:
        memory_missing = {BASE: SKIP_AIOHTTP, FLOOR: SKIP_AIOHTTP}
    elif typed is None:
        memory_missing = {FLOOR: SKIP_MSGSPEC}
    memory_sides = tuple(side for side in SIDES if side not in memory_missing)
    if "memory" not in chosen:
        memory_sides = ()

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    with start_server(
        prefix=PREFIX,
        cpu=server_cpu,
        snapshots=(sizes.snap_small, sizes.snap_big, sizes.memory, sizes.memory_warm),
        downstream=(sizes.downstream,),
        pages=((sizes.pages_n, sizes.chunk),),
    ) as srv:
        bench = Bench(srv, sizes, loop, typed, aio)
        try:
            bench.check()
            cases = [case for case in bench.cases() if case.key in chosen]
            memory = measure(bench, cases, rounds, memory_sides)
        finally:
            bench.close()
    loop.close()

    results, rows = summarize(cases, memory, memory_missing, sizes, args.quick)
    print()
    for side in (FLOOR, STOCK):
        print(parity[side].line(side, len(PARITY_CALLS)))
    print()
    headers = ["case", "unit", *(LABEL[side] for side in SIDES)]
    for other, _ in RATIOS:
        ratio = "ours/base" if other == BASE else f"ours/{LABEL[other]}"
        headers += [ratio, "pairs", "goal", "verdict"]
    print(table(headers, rows, right_from=2))
    print()
    ratio_headers = ["ours/base", *(f"ours/{LABEL[side]}" for side in (FLOOR, STOCK))]
    print(
        table(
            ["client CPU per op", "unit", *(LABEL[side] for side in SIDES), *ratio_headers],
            cpu_rows(results),
            right_from=2,
        )
    )
    print()
    wire, paging_ok = wire_rows(cases, sizes, args.quick)
    print(
        table(
            [
                "wire per op",
                "requests (ours / base / floor)",
                "new connections (ours / base / floor)",
                "stock httpx (requests / new conns)",
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
    if notes:
        print()
    for note in notes:
        print(f"note: {note}")
    total = time.perf_counter() - began
    print(
        f"\nunits: us/call and ms/op are medians over {rounds} round(s); a ratio is ours' median"
        " over the other's (lower is better); pairs: lowest-highest ratio of batches run"
        " back to back; client CPU: user + system time of this process (the server's and"
        f" other processes' are not in it), medians. total {total:.1f} s"
    )
    missed = [
        r["title"]
        for r in results
        if any(r[f"verdict_{suffix}"].startswith("MISS") for _, suffix in RATIOS)
    ]
    if args.json:
        report = {
            "machine": info,
            "mode": "quick" if args.quick else "full",
            "rounds": rounds,
            "placement": args.placement,
            "sizes": sizes.__dict__,
            "parity": {LABEL[side]: found.__dict__ for side, found in parity.items()},
            "aiohttp": aio,
            "sniffio": sniffio,
            "typed_floor": None if typed is None else f"msgspec {typed.version}",
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
