"""The request id of a call: one per call, the same on every attempt, sent to the server.

An id is this process's random prefix and a counter: ``"9f3c2a71b0de-1a"``.
It only has to tell one call from every other in a server's log for a while,
not be unguessable, so the prefix is drawn once per process (48 random bits)
and each call counts on: about 0.3 µs a call, where ``uuid.uuid4()`` reads
the operating system's randomness every time (about 3 µs, on every small
call). A forked child draws a prefix of its own, so parent and child never
hand out the same id.
"""

from __future__ import annotations

import itertools
import os
import secrets

__all__ = ["new_request_id"]

_prefix = ""
_counter = itertools.count(1)


def _start() -> None:
    global _prefix, _counter
    _prefix = secrets.token_hex(6) + "-"
    _counter = itertools.count(1)


_start()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_start)


def new_request_id() -> str:
    """A request id no other call of this process (or of another, very likely) has had."""
    # next() on itertools.count is one C call: threads never get the same number.
    return f"{_prefix}{next(_counter):x}"
