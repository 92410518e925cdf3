"""A deadline for sync sends on transports the SDK does not own (a lent ``httpx.Client``).

httpx bounds each socket read of a sync client, not the whole request: a
server trickling a byte per read timeout, or sending ``100 Continue``
forever, would hold a call past any ``request_timeout``. The SDK's own pool
checks its deadline before every wait; for any other sync transport, one
watchdog thread wakes at each send's deadline and shuts the socket the
sending thread is blocked on. It finds that socket on the thread's stack:
a network stream (httpcore's streams answer ``get_extra_info("socket")``)
or a plain socket. The send then fails at once, and the sender reports the
passed deadline. Nothing is done for a send that ends in time.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import sys
import threading
import time
from types import CodeType, FrameType, TracebackType

__all__ = ["watch"]

_STACK_DEPTH = 64
_AGAIN = 0.05  # seconds between looks at a send that outlived its deadline


class Watch:
    """One send being watched; leaving the ``with`` block ends the watch."""

    __slots__ = ("at", "boundary", "done", "lock", "order", "thread")

    def __init__(self, at: float, order: int, boundary: CodeType, lock: threading.Lock) -> None:
        self.at = at
        self.order = order
        self.boundary = boundary
        self.lock = lock
        self.thread = threading.get_ident()
        self.done = False

    def __lt__(self, other: Watch) -> bool:
        return (self.at, self.order) < (other.at, other.order)

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Under the watchdog's lock: once this returns, the watchdog cannot be
        # looking at this thread's stack any more (it would be someone else's code).
        with self.lock:
            self.done = True


class _Watchdog:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ready = threading.Condition(self.lock)
        self.heap: list[Watch] = []
        self.thread: threading.Thread | None = None
        self.order = itertools.count()

    def watch(self, at: float, boundary: CodeType) -> Watch:
        entry = Watch(at, next(self.order), boundary, self.lock)
        with self.ready:
            heapq.heappush(self.heap, entry)
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name="jobmon-gateway-deadlines", daemon=True
                )
                self.thread.start()
            elif self.heap[0] is entry:
                self.ready.notify()
        return entry

    def _run(self) -> None:
        while True:
            with self.ready:
                while self.heap and self.heap[0].done:
                    heapq.heappop(self.heap)
                if not self.heap:
                    self.ready.wait()
                    continue
                wait = self.heap[0].at - time.monotonic()
                if wait > 0:
                    self.ready.wait(wait)
                    continue
                due = heapq.heappop(self.heap)
                if not due.done:
                    # Still inside the send (its exit waits for this lock).
                    _shut_blocked_socket(due.thread, due.boundary)
                    # Again soon, until the send ends: at the deadline it may
                    # not have been on a socket yet (looking a name up, say).
                    due.at = time.monotonic() + _AGAIN
                    heapq.heappush(self.heap, due)


def _shut_blocked_socket(thread: int, boundary: CodeType) -> None:
    frame: FrameType | None = sys._current_frames().get(thread)
    for _ in range(_STACK_DEPTH):
        # Only the frames the send made: never the caller's own sockets.
        if frame is None or frame.f_code is boundary:
            return
        sock = _socket_in(frame)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            return
        frame = frame.f_back


def _socket_in(frame: FrameType) -> socket.socket | None:
    for value in list(frame.f_locals.values()):
        if isinstance(value, socket.socket):
            return value
        extra = getattr(type(value), "get_extra_info", None)
        if callable(extra):
            try:
                found = value.get_extra_info("socket")
            except Exception:  # noqa: S112 - a foreign object's own failure: look further
                continue
            if isinstance(found, socket.socket):
                return found
    return None


_WATCHDOG = _Watchdog()


def watch(deadline: float, boundary: CodeType) -> Watch:
    """Watch the calling thread's send until ``deadline`` (a ``time.monotonic()`` value).

    ``boundary`` is the code of the function that sends: only frames below
    it on the stack are searched for the socket.
    """
    return _WATCHDOG.watch(deadline, boundary)


def _after_fork_in_child() -> None:
    global _WATCHDOG
    _WATCHDOG = _Watchdog()  # the parent's thread does not exist here


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
