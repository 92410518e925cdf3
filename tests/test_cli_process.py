"""The ``jobmon-gateway`` command as a real process: Ctrl-C, pipes and a 60-column terminal.

Each test starts ``python -m jobmon_gateway`` with its output on a pipe (or
a pseudo-terminal), waits for a line it printed, and only then sends SIGINT:
the command must print ``stopped`` as its last line and exit 130, never
click's ``Aborted!`` or a traceback. The servers are the fake's ``serve()``
on a loopback port, or a loopback port that refuses connections.
"""

from __future__ import annotations

import os
import queue
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import IO

import pytest

from jobmon_gateway.testing import FakeClock, FakeJobmonServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and ptys")

WAIT = 60.0
"""Most seconds to wait for a line; a bound against hangs, not a timing claim."""


@pytest.fixture(autouse=True)
def sigint_reaches_the_command() -> Iterator[None]:
    # A test run started in the background by a shell without job control
    # ignores SIGINT, and an ignored signal stays ignored in every child: the
    # command would then rightly shrug Ctrl-C off (as under nohup). A handler
    # of our own is reset to the default in the child at exec.
    before = signal.getsignal(signal.SIGINT)
    if before == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if before == signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def cli_env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("JOBMON__")}
    env.update(extra)
    return env


class Lines:
    """The lines of a pipe, collected by a thread so that a test can wait on one."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, wanted: Callable[[str], bool]) -> str:
        """The first line (from now on) for which ``wanted`` is true."""
        while True:
            line = self._queue.get(timeout=WAIT)
            if line is None:
                raise AssertionError(f"the output ended without the line; saw {self.seen}")
            self.seen.append(line)
            if wanted(line):
                return line

    def rest(self) -> str:
        """Everything after the lines already seen, up to the end of the stream."""
        self._thread.join(timeout=WAIT)
        while (line := self._queue.get(timeout=WAIT)) is not None:
            self.seen.append(line)
        return "".join(self.seen)


def start(*args: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], Lines, Lines]:
    """Start the CLI with its stdout and stderr on pipes, each read by a :class:`Lines`."""
    process = subprocess.Popen(
        [sys.executable, "-m", "jobmon_gateway", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    return process, Lines(process.stdout), Lines(process.stderr)


def interrupt(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGINT)
    return process.wait(timeout=WAIT)


def assert_stopped(stderr: str) -> None:
    assert stderr.splitlines()[-1] == "stopped", stderr
    assert "Aborted" not in stderr
    assert "Traceback" not in stderr


@pytest.fixture
def dead_url() -> Iterator[str]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{holder.getsockname()[1]}"


@pytest.fixture
def busy_url() -> Iterator[str]:
    """A workflow that never finishes: its running tasks never move."""
    fake = FakeJobmonServer(clock=FakeClock("2026-11-28 17:56:34"))
    fake.add_workflow(1, dag_id=1)
    fake.add_tasks(3, status="R")
    fake.add_tasks(2, status="D")
    with fake.serve() as url:
        yield url


def test_watch_to_a_pipe_prints_lines_as_it_goes_and_stops_on_ctrl_c(busy_url: str) -> None:
    process, stdout, stderr = start(
        "--url", busy_url, "watch", "1", "--interval", "0.1", env=cli_env()
    )
    # Printed while the command still runs: nothing is held back to the end.
    first = stdout.wait_for(lambda line: True)
    assert first == "workflow 1 (dag 1): 5 tasks; D done 2, R running 3\n"
    assert interrupt(process) == 130
    assert "Traceback" not in stdout.rest()
    assert stderr.rest() == "stopped\n"


def test_demo_to_a_pipe_stops_on_ctrl_c() -> None:
    process, stdout, stderr = start("demo", "--delay", "0.2", env=cli_env())
    stdout.wait_for(lambda line: line.startswith("demo: workflow 1, run 1: 300 tasks"))
    assert interrupt(process) == 130
    assert "ended" not in stdout.rest()
    assert stderr.rest() == "stopped\n"


@pytest.mark.parametrize(
    "command",
    [["time"], ["workflow", "1"], ["heartbeat", "1", "--status", "R"], ["watch", "1"]],
    ids=["time", "workflow", "heartbeat", "watch"],
)
def test_ctrl_c_while_retrying_is_one_line_and_exit_130(command: list[str], dead_url: str) -> None:
    env = cli_env(JOBMON__HTTP__RETRIES_ATTEMPTS="20")
    process, stdout, stderr = start("--url", dead_url, *command, env=env)
    stderr.wait_for(lambda line: line.startswith("retrying "))
    assert interrupt(process) == 130
    assert stdout.rest() == ""
    assert_stopped(stderr.rest())


# -- a terminal of 60 columns -------------------------------------------------------------

_CSI = re.compile(r"\x1b\[([?0-9;]*)([A-Za-z])")
_OSC = re.compile(r"\x1b\][^\x07]*\x07")


def screen(output: bytes, width: int) -> list[str]:
    """What a terminal ``width`` columns wide shows after ``output`` (scrollback included).

    Enough of a VT100 for rich's live display: printable text with wrapping
    at the right margin, CR, LF, cursor up/down/column, erase line.
    """
    rows: list[list[str]] = [[]]
    row = col = 0
    text = _OSC.sub("", output.decode("utf-8", errors="replace"))
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\x1b":
            match = _CSI.match(text, index)
            if match is None:
                index += 1
                continue
            params, final = match.group(1), match.group(2)
            count = int(params) if params.isdigit() else 1
            if final == "A":
                row = max(0, row - count)
            elif final == "B":
                row += count
            elif final == "G":
                col = count - 1
            elif final == "K":
                line = rows[row]
                if params == "2":
                    line.clear()
                else:
                    del line[col:]
            index = match.end()
            continue
        if char == "\r":
            col = 0
        elif char == "\n":
            row += 1
        elif char >= " ":
            if col >= width:
                row, col = row + 1, 0
            while len(rows) <= row:
                rows.append([])
            line = rows[row]
            while len(line) < col:
                line.append(" ")
            if col < len(line):
                line[col] = char
            else:
                line.append(char)
            col += 1
        while len(rows) <= row:
            rows.append([])
        index += 1
    return ["".join(line).rstrip() for line in rows]


def run_in_terminal(args: list[str], width: int, until: bytes) -> tuple[int, bytes]:
    """Run the CLI on a pseudo-terminal; send SIGINT once ``until`` was printed."""
    import fcntl
    import termios

    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, width, 0, 0))
    env = cli_env(COLUMNS=str(width), LINES="30", TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "jobmon_gateway", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    output = b""
    interrupted = False
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], WAIT)
            if not ready:
                raise AssertionError(f"no output for {WAIT}s: {output[-500:]!r}")
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            output += chunk
            if not interrupted and until in output:
                process.send_signal(signal.SIGINT)
                interrupted = True
    finally:
        os.close(leader)
    return process.wait(timeout=WAIT), output


def test_ctrl_c_in_a_60_column_terminal_leaves_each_bar_drawn_once() -> None:
    code, output = run_in_terminal(
        ["demo", "--tasks", "300", "--delay", "0.3"], width=60, until=b"registering"
    )
    assert code == 130
    shown = [line for line in screen(output, 60) if line]
    assert shown[-1] == "stopped"
    assert all(len(line) <= 60 for line in shown)
    assert sum(line.startswith("demo: workflow 1, run 1:") for line in shown) == 1, shown
    for label in ("D done", "Q queued", "G registering"):
        assert sum(line.startswith(label) for line in shown) <= 1, shown
    assert sum(line.startswith("G registering") for line in shown) == 1, shown


def test_help_imports_neither_the_demo_nor_the_testing_kit_nor_the_progress_view() -> None:
    # What --help loads is start-up time: these are loaded by the commands that use them.
    probe = (
        "import sys\n"
        "from jobmon_gateway.cli import main\n"
        "main(['--help'], standalone_mode=False)\n"
        "lazy = ('jobmon_gateway.demo', 'jobmon_gateway.testing', 'jobmon_gateway.progress')\n"
        "print(sorted(name for name in lazy if name in sys.modules))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=True,
        env=cli_env(),
    )
    assert completed.stdout.splitlines()[-1] == "[]"
    assert "Usage: " in completed.stdout
