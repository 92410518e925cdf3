# Stubs for the part of psutil the test-suite uses (psutil ships no types).
from typing import NamedTuple

class _Address(NamedTuple):
    ip: str
    port: int

class _Connection(NamedTuple):
    fd: int
    family: int
    type: int
    laddr: _Address | tuple[()]
    raddr: _Address | tuple[()]
    status: str

class Process:
    def __init__(self, pid: int | None = ...) -> None: ...
    def num_fds(self) -> int: ...
    def net_connections(self, kind: str = ...) -> list[_Connection]: ...
