"""Loopback HTTP/1.1 server with canned Jobmon-shaped answers, for benchmarks.

The server runs in its own process (``start_server`` spawns ``python server.py`` with
``subprocess``) on 127.0.0.1 with an OS-chosen port. It is a bare ``asyncio.Protocol``:
keep-alive, pipelining, Content-Length or chunked request bodies, and every large answer is
pre-rendered once (headers + body, plain and gzipped) so a request costs a dict lookup and one
``transport.write``.

Sizes are chosen by ids in the request, so one server serves every benchmark case:

* ``POST /workflow/{wf}/task_status_updates``: snapshot of tasks ``1..wf`` (``{}`` body), or a
  10-task delta when the body holds ``last_sync``.
* ``POST /task/get_downstream_tasks``: rows for tasks ``1..dag_id`` (the ``task_ids`` sent are
  not read). Ids come as JSON lists when ``client_jobmon_version`` is above 3.4.23 (or a
  dev/stage version), as JSON-encoded strings otherwise; every 10th task has ``null``.
* ``GET /workflow/get_tasks/{wf}?max_task_id=&chunk_size=``: pages through tasks ``1..wf``.
* Id 999 mimics the recordings' missing objects: heartbeat of run 999 answers 500 and then
  drops the connection unannounced (like uvicorn); concurrency of workflow 999 answers 404.

``GET /__stats`` returns ``{"requests": n, "connections": c}`` (the two ``/__`` routes are not
counted); ``/__reset`` zeroes both. Both work with or without the route prefix.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import http.client
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs

HOST = "127.0.0.1"
DEFAULT_PREFIX = "/api/v3"
SERVER_TIME = "2026-11-28 17:56:39"
GZIP_MIN_SIZE = 1000  # like the real server (Starlette GZipMiddleware, minimum_size=1000)
GZIP_LEVEL = 9  # Starlette's default compresslevel
MAX_TASKS = 5_000_000  # refuse bigger workflows instead of eating the machine's memory
DEFAULT_CHUNK_SIZE = 500
MISSING_ID = 999
_MAX_HEAD = 65536

# Share of each status in a snapshot, in percent (statuses with no tasks would be absent).
_STATUS_MIX = (("D", 60), ("R", 15), ("Q", 10), ("G", 5), ("I", 3), ("O", 3), ("E", 2), ("A", 1),
               ("F", 1))
_ROW_TAIL = (b"3,\"{'memory': 0.5, 'runtime': 0.5}\",\"[]\",\"{}\",\"sequential\",\"null.q\","
             b"2147483647]")
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 422: "Unprocessable Entity",
            431: "Request Header Fields Too Large", 500: "Internal Server Error"}
_VERSION_RE = re.compile(r"\d+(?:\.\d+)*")
_DAG_ID_RE = re.compile(rb'"dag_id"\s*:\s*(\d+)')


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _head(status: int, content_type: bytes, length: int, gzipped: bool) -> bytes:
    extra = b"content-encoding: gzip\r\nvary: Accept-Encoding\r\n" if gzipped else b""
    return (f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n".encode()
            + b"content-type: " + content_type + b"\r\ncontent-length: "
            + str(length).encode() + b"\r\n" + extra + b"\r\n")


class Canned:
    """One full HTTP response (head + body), plain and gzipped, rendered once."""

    __slots__ = ("gzipped", "plain")

    def __init__(self, body: bytes, status: int = 200, *, gzip_level: int = GZIP_LEVEL,
                 content_type: bytes = b"application/json") -> None:
        self.plain = _head(status, content_type, len(body), False) + body
        if len(body) >= GZIP_MIN_SIZE:
            packed = gzip.compress(body, compresslevel=gzip_level, mtime=0)
            self.gzipped = _head(status, content_type, len(packed), True) + packed
        else:
            self.gzipped = self.plain

    def pick(self, gz: bool) -> bytes:
        return self.gzipped if gz else self.plain


def wants_list_form(client_version: str | None) -> bool:
    """True when the real server would send downstream ids as JSON lists (see PROTOCOL.md)."""
    if not client_version:
        return False
    if "dev" in client_version or "stage" in client_version:
        return True
    match = _VERSION_RE.match(client_version.strip())
    if match is None:
        return False
    parts = [int(p) for p in match.group().split(".")]
    return tuple(parts + [0] * (3 - len(parts))) > (3, 4, 23)


class CannedStore:
    """All answers, rendered lazily and cached; ``warm`` renders the big ones up front."""

    def __init__(self, gzip_level: int = GZIP_LEVEL) -> None:
        self.level = gzip_level
        self.snapshots: dict[int, Canned] = {}
        self.deltas: dict[int, Canned] = {}
        self.downstream: dict[tuple[int, bool], Canned] = {}
        self.rows: dict[int, list[bytes]] = {}
        self.pages: dict[tuple[int, int, int], Canned] = {}
        self.heartbeat = self.canned(b'{"status":"R"}')
        self.empty_object = self.canned(b"{}")
        self.time = self.canned(_dumps({"time": SERVER_TIME}))
        self.concurrency = self.canned(b'{"max_concurrently_running":37}')
        self.array_concurrency = self.canned(b'{"max_concurrently_running":2147483647}')
        self.no_tasks = self.canned(b'{"tasks":{}}')
        self.not_found = self.canned(b'{"detail":"Not Found"}', 404)
        self.no_workflow = self.canned(b'{"error":"Workflow with ID 999 not found in database."}',
                                       404)
        self.run_missing = self.canned(_dumps({"error": {
            "type": "<class 'sqlalchemy.exc.NoResultFound'>",
            "exception_message": "No row was found when one was required",
            "status_code": "500"}}), 500, content_type=b"application/custom+json")

    def canned(self, body: bytes, status: int = 200, *,
               content_type: bytes = b"application/json") -> Canned:
        return Canned(body, status, gzip_level=self.level, content_type=content_type)

    def snapshot(self, n: int) -> Canned:
        found = self.snapshots.get(n)
        if found is None:
            buckets: dict[str, list[int]] = {status: [] for status, _ in _STATUS_MIX}
            wheel = [status for status, share in _STATUS_MIX for _ in range(share)]
            for task_id in range(1, n + 1):
                buckets[wheel[task_id % 100]].append(task_id)
            by_status = {status: ids for status, ids in buckets.items() if ids}
            found = self.canned(_dumps({"tasks_by_status": by_status, "time": SERVER_TIME}))
            self.snapshots[n] = found
        return found

    def delta(self, n: int) -> Canned:
        found = self.deltas.get(n)
        if found is None:
            body = {"tasks_by_status": {"D": list(range(1, min(n, 10) + 1))}, "time": SERVER_TIME}
            found = self.deltas[n] = self.canned(_dumps(body))
        return found

    def downstream_tasks(self, n: int, list_form: bool) -> Canned:
        found = self.downstream.get((n, list_form))
        if found is None:
            rows: dict[str, list[Any]] = {}
            for task_id in range(1, n + 1):
                node_id = task_id + 100
                ids: list[int] | str | None = None
                if task_id % 10:
                    targets = [node_id + k for k in range(1, task_id % 3 + 2)]
                    ids = targets if list_form else json.dumps(targets)  # "[102, 103]"
                rows[str(task_id)] = [node_id, ids]
            found = self.canned(_dumps({"downstream_tasks": rows}))
            self.downstream[(n, list_form)] = found
        return found

    def task_page(self, n: int, max_task_id: int, chunk_size: int) -> Canned:
        start = min(max(max_task_id, 0), n)
        stop = min(start + max(chunk_size, 0), n)
        if start >= stop:
            return self.no_tasks
        key = (n, start, stop)
        found = self.pages.get(key)
        if found is None:
            rows = self.rows.get(n)
            if rows is None:
                statuses = (b'"R",', b'"Q",', b'"G",')
                rows = self.rows[n] = [b'"%d":[1,%s' % (i, statuses[i % 3]) + _ROW_TAIL
                                       for i in range(1, n + 1)]
            found = self.pages[key] = self.canned(
                b'{"tasks":{' + b",".join(rows[start:stop]) + b"}}")
        return found

    def warm(self, snapshots: Sequence[int] = (), downstream: Sequence[int] = (),
             pages: Sequence[tuple[int, int]] = ()) -> None:
        for n in snapshots:
            self.snapshot(n)
        for n in downstream:
            self.downstream_tasks(n, True)
            self.downstream_tasks(n, False)
        for n, chunk in pages:
            for start in range(0, n + 1, max(chunk, 1)):
                self.task_page(n, start, chunk)


class App:
    """Routing and counters; ``handle`` returns (response bytes, close connection after)."""

    def __init__(self, store: CannedStore, prefix: str = DEFAULT_PREFIX) -> None:
        self.store = store
        self.prefix = prefix.rstrip("/")
        self.requests = 0
        self.connections = 0

    def handle(self, method: bytes, target: bytes, body: bytes, gz: bool) -> tuple[bytes, bool]:
        store = self.store
        raw_path, _, raw_query = target.partition(b"?")
        path = raw_path.decode("latin-1")
        if self.prefix and path.startswith(self.prefix + "/"):
            path = path[len(self.prefix):]
        elif path.startswith("/__"):
            pass
        elif self.prefix:
            self.requests += 1
            return store.not_found.pick(gz), False
        if path.startswith("/__"):
            if path == "/__reset":
                self.requests = self.connections = 0
            elif path != "/__stats":
                return store.not_found.pick(gz), False
            stats = {"requests": self.requests, "connections": self.connections}
            return store.canned(_dumps(stats)).plain, False
        self.requests += 1
        parts = path.split("/")
        head = parts[1] if len(parts) > 1 else ""
        if len(parts) == 4 and parts[1:3] == ["workflow", "get_tasks"] and method == b"GET":
            n = int(parts[3]) if parts[3].isdigit() else -1
            if n < 0:
                return self._invalid_id("workflow_id", parts[3]), False
            if n > MAX_TASKS:
                return store.no_tasks.pick(gz), False
            query = _query(raw_query)
            max_task_id = int(query.get("max_task_id") or 0)
            chunk_size = int(query.get("chunk_size") or DEFAULT_CHUNK_SIZE)
            return store.task_page(n, max_task_id, chunk_size).pick(gz), False
        if len(parts) == 4 and head in ("workflow_run", "workflow", "array"):
            obj_id = int(parts[2]) if parts[2].isdigit() else -1
            if obj_id < 0:
                name = "array_id" if head == "array" else f"{head}_id"
                return self._invalid_id(name, parts[2]), False
            return self._object_route(method, head, obj_id, parts[3], body, gz)
        if path == "/task/get_downstream_tasks" and method == b"POST":
            match = _DAG_ID_RE.search(body, max(body.rfind(b'"dag_id"'), 0))
            n = int(match.group(1)) if match else 0
            if n > MAX_TASKS:
                return store.not_found.pick(gz), False
            version = _query(raw_query).get("client_jobmon_version")
            return store.downstream_tasks(n, wants_list_form(version)).pick(gz), False
        if path == "/time" and method == b"GET":
            return store.time.pick(gz), False
        return store.not_found.pick(gz), False

    def _object_route(self, method: bytes, head: str, obj_id: int, action: str, body: bytes,
                      gz: bool) -> tuple[bytes, bool]:
        store = self.store
        if head == "workflow_run":
            if action == "log_heartbeat" and method == b"POST":
                if obj_id == MISSING_ID:  # 500, then drop the connection unannounced
                    return store.run_missing.plain, True
                return store.heartbeat.pick(gz), False
            if action == "update_status" and method == b"PUT":
                status = json.loads(body or b"{}").get("status", "R")
                return store.canned(_dumps({"status": status})).pick(gz), False
            if action == "terminate_task_instances" and method == b"PUT":
                answer = {"workflow_run_id": obj_id, "num_terminated": 0}
                return store.canned(_dumps(answer)).pick(gz), False
            if action == "set_status_for_triaging" and method == b"POST":
                return store.empty_object.pick(gz), False
        elif head == "workflow":
            if action == "task_status_updates" and method == b"POST":
                if obj_id > MAX_TASKS:
                    return store.not_found.pick(gz), False
                if b"last_sync" in body:
                    return store.delta(obj_id).pick(gz), False
                return store.snapshot(obj_id).pick(gz), False
            if action == "get_max_concurrently_running" and method == b"GET":
                found = store.no_workflow if obj_id == MISSING_ID else store.concurrency
                return found.pick(gz), False
            if action == "fetch_workflow_metadata" and method == b"GET":
                meta = [] if obj_id == MISSING_ID else [obj_id, obj_id, 37]
                return store.canned(_dumps({"workflow": meta})).pick(gz), False
        elif action == "get_array_max_concurrently_running" and method == b"GET":
            return store.array_concurrency.pick(gz), False
        elif action == "queue_task_batch" and method == b"POST":
            task_ids = json.loads(body or b"{}").get("task_ids", [])
            answer = {"tasks_by_status": {"Q": task_ids} if task_ids else {}}
            return store.canned(_dumps(answer)).pick(gz), False
        return store.not_found.pick(gz), False

    def _invalid_id(self, name: str, value: str) -> bytes:
        detail = [{"type": "int_parsing", "loc": ["path", name],
                   "msg": "Input should be a valid integer, unable to parse string as an integer",
                   "input": value}]
        return self.store.canned(_dumps({"detail": detail}), 422).plain


def _query(raw: bytes) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(raw.decode("latin-1")).items()}


def _dechunk(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    """Decode a chunked body starting at ``pos``; None while incomplete."""
    out = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)  # skip trailers
            return (bytes(out), end + 4) if end >= 0 else None
        if len(buf) < pos + size + 2:
            return None
        out += buf[pos:pos + size]
        pos += size + 2


class _HttpConnection(asyncio.Protocol):
    def __init__(self, app: App) -> None:
        self.app = app
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        # parsed head of the request whose body is still arriving
        self.pending: tuple[bytes, bytes, int, int, bool, bool] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.app.connections += 1

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        transport = self.transport
        assert transport is not None
        while buf:
            if self.pending is None:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > _MAX_HEAD:
                        transport.write(_head(431, b"text/plain", 0, False))
                        transport.close()
                        buf.clear()
                    return
                self.pending = _parse_head(bytes(buf[:end]), end + 4)
            method, target, body_start, length, gz, close = self.pending
            if length == -2:  # chunked
                decoded = _dechunk(buf, body_start)
                if decoded is None:
                    return
                body, used = decoded
            else:
                used = body_start + max(length, 0)
                if len(buf) < used:
                    return
                body = bytes(buf[body_start:used])
            del buf[:used]
            self.pending = None
            response, drop = self.app.handle(method, target, body, gz)
            transport.write(response)
            if close or drop:
                transport.close()
                buf.clear()
                return


def _parse_head(head: bytes, body_start: int) -> tuple[bytes, bytes, int, int, bool, bool]:
    request_line, _, fields = head.partition(b"\r\n")
    method, target, version = request_line.split(b" ", 2)
    lowered = b"\r\n" + fields.lower()
    length = 0
    gz = close = False
    at = lowered.find(b"\r\ncontent-length:")
    if at >= 0:
        stop = lowered.find(b"\r\n", at + 2)
        length = int(lowered[at + 17:stop if stop >= 0 else None])
    if b"\r\ntransfer-encoding:" in lowered and b"chunked" in lowered:
        length = -2
    at = lowered.find(b"\r\naccept-encoding:")
    if at >= 0:
        stop = lowered.find(b"\r\n", at + 2)
        gz = b"gzip" in lowered[at:stop if stop >= 0 else None]
    if version == b"HTTP/1.0":
        close = b"\r\nconnection: keep-alive" not in lowered
    else:
        close = b"\r\nconnection: close" in lowered
    return method, target, body_start, length, gz, close


# ----------------------------------------------------------------------------- process side


async def serve(app: App, port: int = 0, *, on_ready: Any = None,
                stop_on_stdin_eof: bool = False) -> None:
    """Serve on 127.0.0.1 until SIGTERM/SIGINT (or stdin EOF); ``on_ready(port)`` once bound."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _HttpConnection(app), HOST, port, backlog=1024)
    stopped = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    if stop_on_stdin_eof:  # the launching process died or closed the pipe: exit with it
        def on_stdin() -> None:
            if not os.read(0, 4096):
                loop.remove_reader(0)
                stopped.set()
        loop.add_reader(0, on_stdin)
    if on_ready is not None:
        on_ready(server.sockets[0].getsockname()[1])
    async with server:
        await stopped.wait()


def _pairs(text: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in (p.split(":") for p in text.split(",") if p)]


def _ints(text: str) -> list[int]:
    return [int(p) for p in text.split(",") if p]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--prefix", default=DEFAULT_PREFIX)
    parser.add_argument("--snapshots", default="100000,1000000", help="workflow sizes to warm")
    parser.add_argument("--downstream", default="100000", help="dag sizes to warm")
    parser.add_argument("--pages", default="100000:500", help="get_tasks wf:chunk pairs to warm")
    parser.add_argument("--gzip-level", type=int, default=GZIP_LEVEL)
    parser.add_argument("--cpu", type=int, default=None, help="pin the server to this CPU")
    parser.add_argument("--stop-on-stdin-eof", action="store_true")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    store = CannedStore(args.gzip_level)
    store.warm(_ints(args.snapshots), _ints(args.downstream), _pairs(args.pages))
    gc.collect()
    gc.freeze()  # the canned answers never die: keep the collector off them

    def ready(port: int) -> None:
        print(f"READY {port}", flush=True)

    asyncio.run(serve(App(store, args.prefix), args.port, on_ready=ready,
                      stop_on_stdin_eof=args.stop_on_stdin_eof))


# ----------------------------------------------------------------------------- launcher side


class ServerHandle:
    """A running server process. ``url`` is the origin, ``base_url`` adds the route prefix."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, prefix: str) -> None:
        self.process = process
        self.port = port
        self.prefix = prefix.rstrip("/")
        self.url = f"http://{HOST}:{port}"
        self.base_url = self.url + self.prefix
        self._control: http.client.HTTPConnection | None = None

    def _get(self, route: str) -> dict[str, int]:
        # one kept-alive control connection, so stats calls do not add to "connections"
        if self._control is None:
            self._control = http.client.HTTPConnection(HOST, self.port, timeout=10)
        try:
            self._control.request("GET", route)
            return cast(dict[str, int], json.loads(self._control.getresponse().read()))
        except BaseException:
            self._control.close()
            self._control = None
            raise

    def stats(self) -> dict[str, int]:
        """``{"requests": n, "connections": c}`` since start or the last ``reset``."""
        return self._get("/__stats")

    def reset(self) -> None:
        self._get("/__reset")

    def stop(self, timeout: float = 5.0) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_server(*, prefix: str = DEFAULT_PREFIX,
                 snapshots: Sequence[int] = (100_000, 1_000_000),
                 downstream: Sequence[int] = (100_000,),
                 pages: Sequence[tuple[int, int]] = ((100_000, DEFAULT_CHUNK_SIZE),),
                 gzip_level: int = GZIP_LEVEL, cpu: int | None = None,
                 startup_timeout: float = 120.0) -> ServerHandle:
    """Start the server in a child process and wait until it listens (after warming)."""
    command = [sys.executable, os.path.abspath(__file__), "--port", "0", "--prefix", prefix,
               "--snapshots", ",".join(map(str, snapshots)),
               "--downstream", ",".join(map(str, downstream)),
               "--pages", ",".join(f"{n}:{c}" for n, c in pages),
               "--gzip-level", str(gzip_level), "--stop-on-stdin-eof"]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout is not None
    deadline = time.monotonic() + startup_timeout
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        readable, _, _ = select.select([process.stdout], [], [], max(remaining, 0))
        chunk = os.read(process.stdout.fileno(), 256) if readable else b""
        if not chunk:
            process.kill()
            process.wait()
            raise RuntimeError(f"benchmark server did not start (exit code {process.returncode})")
        line += chunk
    return ServerHandle(process, int(line.split()[1]), prefix)


if __name__ == "__main__":
    main()
