"""After ``os.fork()`` the child never talks over the parent's pooled connection.

The parent makes a call (its keep-alive connection now idle in the pool),
then forks; the child makes a call and reports its result over a pipe. The
loopback server, which runs in the parent, records the client port of every
request: the child's request must come on a new connection, and the
parent's next call must still work on its own one (nothing the child did
closed or used it).

The child is kept minimal: one bounded call, one write to the pipe, and
``os._exit`` in a ``finally`` whatever happens. The parent waits on the pipe
(at most ``CHILD_TIMEOUT`` seconds, then kills the child by its pid).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import threading
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from hostile_server import HostileConnection, HostileServer
from jobmon_gateway import Requester, ServerGateway
from tls_servers import SERVER_TIME, time_answer

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is POSIX only")

CHILD_TIMEOUT = 15.0
OK = f"ok {SERVER_TIME.isoformat()}"


class PortRecorder:
    """Answers the time route with keep-alive; records the client port of every request."""

    def __init__(self) -> None:
        self.ports: list[int] = []
        self._lock = threading.Lock()
        self.server = HostileServer(self._serve)

    def _serve(self, conn: HostileConnection) -> None:
        port = int(conn.sock.getpeername()[1])
        while conn.read_request() is not None:
            with self._lock:
                self.ports.append(port)  # before answering: the caller sees it on return
            if not conn.send(time_answer()):
                return

    @property
    def connections(self) -> int:
        return self.server.connections


@contextlib.contextmanager
def port_recorder() -> Iterator[PortRecorder]:
    recorder = PortRecorder()
    with recorder.server:
        yield recorder


def requester(url: str, **options: Any) -> Requester:
    settings: dict[str, Any] = {
        "route_prefix": "/api/v3",
        "request_timeout": 2,
        "retries_attempts": 1,
        "wait_initial": 0,
        "wait_jitter": 0,
        "wait_max": 0,
        **options,
    }
    return Requester(url, **settings)


def outcome(call: Callable[[], datetime]) -> str:
    try:
        return f"ok {call().isoformat()}"
    except BaseException as exc:
        return f"error {type(exc).__name__}: {exc}"


def in_child(call: Callable[[], datetime]) -> str:
    """Run ``call`` in a forked child; return ``"ok <iso time>"`` or ``"error <what>"``."""
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a threaded process may deadlock the
        # child; that child is what this test is about, and it stays minimal.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover (the child; its coverage is never written)
        try:
            os.close(read_fd)
            os.write(write_fd, outcome(call).encode("utf-8", "replace")[:4000])
        finally:
            os._exit(0)
    os.close(write_fd)
    chunks: list[bytes] = []
    try:
        while True:
            ready, _, _ = select.select([read_fd], [], [], CHILD_TIMEOUT)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"the child gave no answer in {CHILD_TIMEOUT} s")
            chunk = os.read(read_fd, 4096)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    return b"".join(chunks).decode("utf-8")


def test_a_sync_call_in_a_forked_child_opens_its_own_connection() -> None:
    with port_recorder() as srv, ServerGateway(requester(srv.server.url), 1, 1) as gateway:
        assert gateway.get_server_time_sync() == SERVER_TIME
        [parent_port] = srv.ports

        assert in_child(gateway.without_retries().get_server_time_sync) == OK
        assert len(srv.ports) == 2
        assert srv.ports[1] != parent_port, "the child sent over the parent's connection"
        assert srv.connections == 2

        # The parent's pooled connection is intact and still its own.
        assert gateway.get_server_time_sync() == SERVER_TIME
        assert srv.ports[2] == parent_port, "the parent's next call left its pooled connection"
        assert srv.connections == 2


def test_an_async_call_in_a_forked_child_opens_its_own_connection() -> None:
    with port_recorder() as srv:
        gateway = ServerGateway(requester(srv.server.url), 1, 1)
        try:
            assert asyncio.run(gateway.get_server_time()) == SERVER_TIME
            parent_ports = set(srv.ports)

            child = in_child(lambda: asyncio.run(gateway.without_retries().get_server_time()))
            assert child == OK
            assert len(srv.ports) == 2
            assert srv.ports[1] not in parent_ports, "the child sent over the parent's connection"

            assert asyncio.run(gateway.get_server_time()) == SERVER_TIME
            assert len(srv.ports) == 3
            assert srv.ports[2] != srv.ports[1]
        finally:
            asyncio.run(gateway.close())


@pytest.mark.parametrize(
    "childs_loop",
    ["its-own", "its-parents"],
    ids=["child-runs-a-loop-of-its-own", "child-runs-its-parents-loop"],
)
def test_a_child_forked_beside_an_open_event_loop_opens_its_own_connection(
    childs_loop: str,
) -> None:
    # The parent's loop stays open across the fork, so its pooled connection
    # is alive and idle there. The child runs a loop of its own, or the very
    # loop that connection belongs to: without the fork reset, the pool would
    # hand the child that connection.
    with port_recorder() as srv:
        gateway = ServerGateway(requester(srv.server.url), 1, 1)
        loop = asyncio.new_event_loop()
        try:
            assert loop.run_until_complete(gateway.get_server_time()) == SERVER_TIME
            [parent_port] = srv.ports

            def child_call() -> datetime:
                call = gateway.without_retries().get_server_time()
                if childs_loop == "its-own":
                    return asyncio.run(call)
                return loop.run_until_complete(call)

            assert in_child(child_call) == OK
            assert len(srv.ports) == 2
            assert srv.ports[1] != parent_port, "the child sent over the parent's connection"

            assert loop.run_until_complete(gateway.get_server_time()) == SERVER_TIME
            assert srv.ports[2] == parent_port, "the parent's next call left its pooled connection"
            assert srv.connections == 2
            loop.run_until_complete(gateway.close())
        finally:
            loop.close()


@pytest.mark.parametrize(
    "closed_first", [False, True], ids=["loop-still-pooled", "after-close_sync"]
)
def test_requests_queued_for_the_loops_next_turn_are_sent_once_across_a_fork(
    closed_first: bool,
) -> None:
    # Three calls start in one turn of the parent's loop, which then stops: the
    # first request is written at once, the other two wait for the loop's next
    # turn. A child forked now and running that loop must not write them too:
    # the server would do their work twice. close_sync() from outside the loop
    # first makes the pool forget that loop, but not the queued requests.
    with port_recorder() as srv:
        gateway = ServerGateway(requester(srv.server.url), 1, 1)
        loop = asyncio.new_event_loop()
        try:

            async def warm() -> list[datetime]:
                return await asyncio.gather(*(gateway.get_server_time() for _ in range(3)))

            loop.run_until_complete(warm())  # three idle connections in the pool
            requests_before = len(srv.ports)

            async def start() -> list[asyncio.Task[datetime]]:
                return [asyncio.create_task(gateway.get_server_time()) for _ in range(3)]

            calls = loop.run_until_complete(start())
            if closed_first:
                gateway.close_sync()

            def one_turn_of_the_parents_loop() -> datetime:
                loop.run_until_complete(asyncio.sleep(0))
                return SERVER_TIME

            assert in_child(one_turn_of_the_parents_loop) == OK

            async def finish() -> list[datetime | BaseException]:
                # The child may have read an answer meant for the parent off their shared
                # socket (in-flight calls do not survive a fork): that call times out.
                return await asyncio.gather(*calls, return_exceptions=True)

            loop.run_until_complete(finish())
            loop.run_until_complete(gateway.close())
        finally:
            loop.close()
    # The server has read every request sent before the connections closed.
    assert len(srv.ports) - requests_before == 3
