"""Quick timing of the reference-style baseline against the loopback server.

    .venv/bin/python benchmarks/smoke_baseline.py [--rounds 5] [--placement none|same|split]

Cases run in interleaved rounds (every case once per round) so drift hits all of them alike;
the table shows the median and the best round. ``--placement`` pins processes on a 2-CPU box:
``same`` puts server and client on CPU 0, ``split`` the server on CPU 1 and the client on 0.
The async cases need aiohttp: without it only the raw socket and the sync heartbeat run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import time
from collections.abc import Awaitable, Callable

from baseline import BaselineClient
from floor import have_aiohttp
from server import ServerHandle, start_server

HEARTBEAT_BODY = b'{"status": "R", "next_report_increment": 30.0}'


def raw_heartbeats(port: int, calls: int) -> None:
    """Server floor: keep-alive heartbeats over a bare blocking socket."""
    request = (
        b"POST /api/v3/workflow_run/1/log_heartbeat?client_jobmon_version=3.4.0 HTTP/1.1\r\n"
        b"Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(HEARTBEAT_BODY)
    ) + HEARTBEAT_BODY
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(calls):
            sock.sendall(request)
            answer = sock.recv(65536)
            while not answer.endswith(b"}"):
                answer += sock.recv(65536)


def check(
    server: ServerHandle,
    client: BaselineClient,
    new_client: BaselineClient,
    loop: asyncio.AbstractEventLoop,
    aio: bool,
) -> None:
    """One pass over every case, asserting the answers look right."""
    assert client.log_heartbeat(1) == "R"
    if not aio:
        server.reset()
        return
    assert loop.run_until_complete(client.log_heartbeat_async(1)) == "R"
    for n in (100_000, 1_000_000):
        snap = loop.run_until_complete(client.get_task_status_updates_async(n))
        assert sum(map(len, snap["tasks_by_status"].values())) == n, n
    ids = list(range(1, 100_001))
    old = loop.run_until_complete(client.get_downstream_tasks_async(ids, 100_000))
    new = loop.run_until_complete(new_client.get_downstream_tasks_async(ids, 100_000))
    assert len(old) == 100_000
    assert old == new
    assert old[1] == [101, [102, 103]], old[1]
    server.reset()
    tasks = loop.run_until_complete(client.get_tasks_async(100_000, 500))
    assert len(tasks) == 100_000
    assert (min(tasks), max(tasks)) == (1, 100_000)
    assert server.stats()["requests"] == 201, server.stats()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--placement", choices=("none", "same", "split"), default="none")
    args = parser.parse_args()
    server_cpu = {"none": None, "same": 0, "split": 1}[args.placement]
    if server_cpu is not None:
        os.sched_setaffinity(0, {0})
    aio = have_aiohttp()
    if not aio:
        print("note: aiohttp is not installed: only the sync cases run (pip install aiohttp)")
    loop = asyncio.new_event_loop()
    with start_server(cpu=server_cpu) as server:
        client = BaselineClient(server.base_url)
        new_client = BaselineClient(server.base_url, client_version="3.6.0")
        if aio:
            loop.run_until_complete(client.__aenter__())
            loop.run_until_complete(new_client.__aenter__())
        ids = list(range(1, 100_001))

        async def concurrent_heartbeats(workers: int, each: int) -> None:
            async def worker() -> None:
                for _ in range(each):
                    await client.log_heartbeat_async(1)

            await asyncio.gather(*(worker() for _ in range(workers)))

        def times(count: int, call: Callable[[], Awaitable[object]]) -> Callable[[], object]:
            async def batch() -> None:
                for _ in range(count):
                    await call()

            return lambda: loop.run_until_complete(batch())

        # name, unit, scale to unit, ops per batch, batch
        cases: list[tuple[str, str, float, int, Callable[[], object]]] = [
            (
                "server floor: raw socket heartbeat",
                "us/call",
                1e6,
                2000,
                lambda: raw_heartbeats(server.port, 2000),
            ),
            (
                "heartbeat sync (requests, no session)",
                "us/call",
                1e6,
                200,
                lambda: [client.log_heartbeat(1) for _ in range(200)],
            ),
            (
                "heartbeat async sequential",
                "us/call",
                1e6,
                1000,
                times(1000, lambda: client.log_heartbeat_async(1)),
            ),
            (
                "heartbeat async 50 concurrent",
                "us/call",
                1e6,
                2000,
                lambda: loop.run_until_complete(concurrent_heartbeats(50, 40)),
            ),
            (
                "snapshot 100k (async)",
                "ms/snap",
                1e3,
                10,
                times(10, lambda: client.get_task_status_updates_async(100_000)),
            ),
            (
                "snapshot 1M (async)",
                "ms/snap",
                1e3,
                2,
                times(2, lambda: client.get_task_status_updates_async(1_000_000)),
            ),
            (
                "downstream 100k, string form (3.4.0)",
                "ms/call",
                1e3,
                4,
                times(4, lambda: client.get_downstream_tasks_async(ids, 100_000)),
            ),
            (
                "downstream 100k, list form (3.6.0)",
                "ms/call",
                1e3,
                4,
                times(4, lambda: new_client.get_downstream_tasks_async(ids, 100_000)),
            ),
            (
                "get_tasks 100k by 500 (201 pages)",
                "ms/all",
                1e3,
                3,
                times(3, lambda: client.get_tasks_async(100_000, 500)),
            ),
        ]
        if not aio:
            del cases[2:]  # the raw socket and the sync heartbeat
        check(server, client, new_client, loop, aio)
        results: dict[str, list[float]] = {name: [] for name, *_ in cases}
        for _ in range(args.rounds):
            for name, _unit, scale, ops, batch in cases:
                start = time.perf_counter()
                batch()
                results[name].append((time.perf_counter() - start) / ops * scale)
        loop.run_until_complete(client.__aexit__())
        loop.run_until_complete(new_client.__aexit__())
    loop.close()
    print(f"placement={args.placement} rounds={args.rounds}")
    for name, unit, *_ in cases:
        values = results[name]
        print(
            f"  {name:40s} median {statistics.median(values):9.1f}  best {min(values):9.1f}  {unit}"
        )


if __name__ == "__main__":
    main()
