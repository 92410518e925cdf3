"""Loopback HTTP/1.1 server with canned Jobmon-shaped answers, for benchmarks.

The server runs in its own process (``start_server`` spawns ``python server.py`` with
``subprocess``) on 127.0.0.1 with an OS-chosen port. It is a bare selector loop: keep-alive,
pipelining, Content-Length or chunked request bodies, gzip for clients that accept it and
bodies of 1000+ bytes. Every large answer is rendered once (head + body, plain and gzipped), so
a request costs a few dict lookups and one ``send``.

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
import gc
import gzip
import http.client
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
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
_STATUS_MIX = (
    ("D", 60),
    ("R", 15),
    ("Q", 10),
    ("G", 5),
    ("I", 3),
    ("O", 3),
    ("E", 2),
    ("A", 1),
    ("F", 1),
)
_ROW_TAIL = b'3,"{\'memory\': 0.5, \'runtime\': 0.5}","[]","{}","sequential","null.q",2147483647]'
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    422: "Unprocessable Entity",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}
_VERSION_RE = re.compile(r"\d+(?:\.\d+)*")
_BODY_FREE = (b"/log_heartbeat", b"/set_status_for_triaging")  # POSTs whose answer ignores the body
_DAG_ID_RE = re.compile(rb'"dag_id"\s*:\s*(\d+)')


def task_rows(n: int) -> list[bytes]:
    """The ``get_tasks`` rows of tasks ``1..n`` as JSON object members (``"7":[...]``)."""
    statuses = (b'"R",', b'"Q",', b'"G",')
    return [b'"%d":[1,%s' % (i, statuses[i % 3]) + _ROW_TAIL for i in range(1, n + 1)]


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _head(status: int, content_type: bytes, length: int, gzipped: bool) -> bytes:
    extra = b"content-encoding: gzip\r\nvary: Accept-Encoding\r\n" if gzipped else b""
    return (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n".encode()
        + b"content-type: "
        + content_type
        + b"\r\ncontent-length: "
        + str(length).encode()
        + b"\r\n"
        + extra
        + b"\r\n"
    )


class Canned:
    """One full HTTP response (head + body), plain and gzipped, rendered once."""

    __slots__ = ("gzipped", "plain")

    def __init__(
        self,
        body: bytes,
        status: int = 200,
        *,
        gzip_level: int = GZIP_LEVEL,
        content_type: bytes = b"application/json",
    ) -> None:
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
        self.no_workflow = self.canned(
            b'{"error":"Workflow with ID 999 not found in database."}', 404
        )
        self.run_missing = self.canned(
            _dumps(
                {
                    "error": {
                        "type": "<class 'sqlalchemy.exc.NoResultFound'>",
                        "exception_message": "No row was found when one was required",
                        "status_code": "500",
                    }
                }
            ),
            500,
            content_type=b"application/custom+json",
        )

    def canned(
        self, body: bytes, status: int = 200, *, content_type: bytes = b"application/json"
    ) -> Canned:
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
                rows = self.rows[n] = task_rows(n)
            found = self.pages[key] = self.canned(
                b'{"tasks":{' + b",".join(rows[start:stop]) + b"}}"
            )
        return found

    def warm(
        self,
        snapshots: Sequence[int] = (),
        downstream: Sequence[int] = (),
        pages: Sequence[tuple[int, int]] = (),
    ) -> None:
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
        # answers that depend on nothing but (method, target, gzip): served by one lookup
        self.fast: dict[tuple[bytes, bytes, bool], bytes] = {}

    def handle(self, method: bytes, target: bytes, body: bytes, gz: bool) -> tuple[bytes, bool]:
        key = (method, target, gz)
        found = self.fast.get(key)
        if found is not None:
            self.requests += 1
            return found, False
        response, drop = self.route(method, target, body, gz)
        path = target.partition(b"?")[0]
        if not drop and b"/__" not in path and (method == b"GET" or path.endswith(_BODY_FREE)):
            if len(self.fast) > 100_000:
                self.fast.clear()
            self.fast[key] = response
        return response, drop

    def route(self, method: bytes, target: bytes, body: bytes, gz: bool) -> tuple[bytes, bool]:
        store = self.store
        raw_path, _, raw_query = target.partition(b"?")
        path = raw_path.decode("latin-1")
        if self.prefix and path.startswith(self.prefix + "/"):
            path = path[len(self.prefix) :]
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

    def _object_route(
        self, method: bytes, head: str, obj_id: int, action: str, body: bytes, gz: bool
    ) -> tuple[bytes, bool]:
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
            queued = {"tasks_by_status": {"Q": task_ids} if task_ids else {}}
            return store.canned(_dumps(queued)).pick(gz), False
        return store.not_found.pick(gz), False

    def _invalid_id(self, name: str, value: str) -> bytes:
        detail = [
            {
                "type": "int_parsing",
                "loc": ["path", name],
                "msg": "Input should be a valid integer, unable to parse string as an integer",
                "input": value,
            }
        ]
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
        out += buf[pos : pos + size]
        pos += size + 2


_Head = tuple[bytes, bytes, int, int, bool, bool]  # method, target, body start, length, gz, close


def _parse_head(head: bytes) -> _Head:
    request_line, _, fields = head.partition(b"\r\n")
    method, target, version = request_line.split(b" ", 2)
    lowered = b"\r\n" + fields.lower()
    length = 0
    at = lowered.find(b"\r\ncontent-length:")
    if at >= 0:
        stop = lowered.find(b"\r\n", at + 2)
        length = int(lowered[at + 17 : stop if stop >= 0 else None])
    if b"\r\ntransfer-encoding:" in lowered and b"chunked" in lowered:
        length = -1
    gz = False
    at = lowered.find(b"\r\naccept-encoding:")
    if at >= 0:
        stop = lowered.find(b"\r\n", at + 2)
        gz = b"gzip" in lowered[at : stop if stop >= 0 else None]
    if version == b"HTTP/1.0":
        close = b"\r\nconnection: keep-alive" not in lowered
    else:
        close = b"\r\nconnection: close" in lowered
    return method, target, len(head) + 4, length, gz, close


class _Conn:
    __slots__ = ("buf", "closed", "closing", "out", "pending", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.out: list[memoryview] = []  # unsent response bytes
        self.pending: _Head | None = None  # parsed head of a request whose body is arriving
        self.closing = False
        self.closed = False


class LoopbackServer:
    """Single-threaded selector loop (epoll on Linux) serving ``app`` on ``listener``.

    Measured against asyncio.Protocol and aiohttp.web on this 2-vCPU VM: the bare loop costs
    the least server CPU per request (see README.md), and client heads repeat, so parsed heads
    and body-independent answers are cached by their exact bytes.
    """

    def __init__(self, app: App, listener: socket.socket) -> None:
        self.app = app
        self.listener = listener
        listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ, None)
        self.heads: dict[bytes, _Head] = {}
        self.running = True

    def stop_on_eof(self, fd: int) -> None:
        """Stop serving once ``fd`` (e.g. the launcher's stdin pipe) reaches end of file."""
        self.selector.register(fd, selectors.EVENT_READ, fd)

    def run(self) -> None:
        select = self.selector.select
        while self.running:
            for key, events in select():
                conn = key.data
                if conn is None:
                    self._accept()
                elif isinstance(conn, int):
                    if not os.read(conn, 4096):
                        self.running = False
                else:
                    if events & selectors.EVENT_WRITE:
                        self._flush(conn)
                    if events & selectors.EVENT_READ and not conn.closed:
                        self._read(conn)

    def close(self) -> None:
        for key in list(self.selector.get_map().values()):
            if isinstance(key.data, _Conn):
                self._drop(key.data)
        self.selector.close()
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.selector.register(sock, selectors.EVENT_READ, _Conn(sock))
            self.app.connections += 1

    def _drop(self, conn: _Conn) -> None:
        if not conn.closed:
            conn.closed = True
            self.selector.unregister(conn.sock)
            conn.sock.close()

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        buf = conn.buf
        buf += data
        while buf:
            if conn.pending is None:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > _MAX_HEAD:
                        self._send(conn, _head(431, b"text/plain", 0, False), close=True)
                    return
                raw = bytes(buf[:end])
                head = self.heads.get(raw)
                if head is None:
                    if len(self.heads) > 10_000:
                        self.heads.clear()
                    head = self.heads[raw] = _parse_head(raw)
                conn.pending = head
            method, target, body_start, length, gz, close = conn.pending
            if length < 0:
                decoded = _dechunk(buf, body_start)
                if decoded is None:
                    return
                body, used = decoded
            else:
                used = body_start + length
                if len(buf) < used:
                    return
                body = bytes(buf[body_start:used])
            del buf[:used]
            conn.pending = None
            response, drop = self.app.handle(method, target, body, gz)
            self._send(conn, response, close or drop)
            if conn.closing:
                return

    def _send(self, conn: _Conn, data: bytes, close: bool) -> None:
        if close:
            conn.closing = True
            conn.buf.clear()
        if not conn.out:
            try:
                sent = conn.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._drop(conn)
                return
            if sent == len(data):
                if close:
                    self._drop(conn)
                return
            data = data[sent:] if sent else data
        conn.out.append(memoryview(data))
        events = selectors.EVENT_WRITE if close else selectors.EVENT_READ | selectors.EVENT_WRITE
        self.selector.modify(conn.sock, events, conn)

    def _flush(self, conn: _Conn) -> None:
        out = conn.out
        while out:
            try:
                sent = conn.sock.send(out[0])
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._drop(conn)
                return
            if sent < len(out[0]):
                out[0] = out[0][sent:]
                return
            out.pop(0)
        if conn.closing:
            self._drop(conn)
        else:
            self.selector.modify(conn.sock, selectors.EVENT_READ, conn)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(
    app: App,
    port: int = 0,
    *,
    on_ready: Callable[[int], None] | None = None,
    stop_fd: int | None = None,
) -> None:
    """Serve on 127.0.0.1 until SIGTERM/SIGINT (or EOF on ``stop_fd``); ``on_ready(port)``."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, port))
    listener.listen(1024)
    server = LoopbackServer(app, listener)
    if stop_fd is not None:
        server.stop_on_eof(stop_fd)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    if on_ready is not None:
        on_ready(listener.getsockname()[1])
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


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
    parser.add_argument(
        "--stop-on-stdin-eof",
        action="store_true",
        help="exit when stdin reaches EOF (the launcher is gone)",
    )
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    store = CannedStore(args.gzip_level)
    store.warm(_ints(args.snapshots), _ints(args.downstream), _pairs(args.pages))
    gc.collect()
    gc.freeze()  # the canned answers never die: keep the collector off them

    def ready(port: int) -> None:
        print(f"READY {port}", flush=True)

    serve(
        App(store, args.prefix),
        args.port,
        on_ready=ready,
        stop_fd=sys.stdin.fileno() if args.stop_on_stdin_eof else None,
    )


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

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_server(
    *,
    prefix: str = DEFAULT_PREFIX,
    snapshots: Sequence[int] = (100_000, 1_000_000),
    downstream: Sequence[int] = (100_000,),
    pages: Sequence[tuple[int, int]] = ((100_000, DEFAULT_CHUNK_SIZE),),
    gzip_level: int = GZIP_LEVEL,
    cpu: int | None = None,
    startup_timeout: float = 120.0,
) -> ServerHandle:
    """Start the server in a child process and wait until it listens (after warming)."""
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--port",
        "0",
        "--prefix",
        prefix,
        "--snapshots",
        ",".join(map(str, snapshots)),
        "--downstream",
        ",".join(map(str, downstream)),
        "--pages",
        ",".join(f"{n}:{c}" for n, c in pages),
        "--gzip-level",
        str(gzip_level),
        "--stop-on-stdin-eof",
    ]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout is not None
    deadline = time.monotonic() + startup_timeout
    line = b""
    with selectors.DefaultSelector() as waiter:
        waiter.register(process.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            ready = waiter.select(max(deadline - time.monotonic(), 0))
            chunk = os.read(process.stdout.fileno(), 256) if ready else b""
            if not chunk:
                process.kill()
                process.wait()
                raise RuntimeError(f"benchmark server did not start (exit {process.returncode})")
            line += chunk
    return ServerHandle(process, int(line.split()[1]), prefix)


if __name__ == "__main__":
    main()
