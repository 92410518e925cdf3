"""Live progress of a workflow: every task's last known status, drawn as bars.

On a terminal the bars are redrawn in place (rich's ``Live``); anywhere else
(a file, a pipe, CI logs) :func:`follow` prints a plain, complete line every
few seconds instead, so the output can be read while it is written.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

from .models import TaskStatus, TaskStatusUpdatesResponse

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

__all__ = [
    "ACTIVE",
    "FINISHED",
    "PLAIN_EVERY",
    "STATUS_NAMES",
    "Follower",
    "ProgressView",
    "StatusTally",
    "follow",
]

FINISHED = frozenset({TaskStatus.DONE.value, TaskStatus.ERROR_FATAL.value})
"""Task statuses a workflow run does not move out of."""

ACTIVE = frozenset({"Q", "I", "O", "R", "E", "A"})
"""Task statuses of work under way or about to be retried by the distributor."""

STATUS_NAMES: dict[str, str] = {
    status.value: status.name.lower().replace("_", " ") for status in TaskStatus
}
"""Readable name of each task status letter."""

PLAIN_EVERY = 2.0
"""Seconds between the plain progress lines printed when the output is not a terminal."""

# The order bars are drawn in: from finished, through active, to waiting.
# Letters this SDK does not know (a newer server's) come last, alphabetically.
_STATUS_ORDER = ("D", "F", "R", "O", "I", "Q", "E", "A", "G")
# Only "done" may look finished: a full bar of registering tasks is the
# start of a run, not its end, so every other bar keeps its own colour when full.
_BAR_STYLES = {
    "D": "green",
    "F": "red",
    "R": "blue",
    "O": "blue",
    "I": "blue",
    "Q": "yellow",
    "E": "magenta",
    "A": "magenta",
    "G": "bright_black",
}


def _order(letter: str) -> tuple[int, str]:
    index = _STATUS_ORDER.index(letter) if letter in _STATUS_ORDER else len(_STATUS_ORDER)
    return index, letter


class StatusTally:
    """Every task's last known status, fed by full and incremental status updates.

    ``get_task_status_updates(since=...)`` only sends what changed, so the
    counts are kept here, task by task, and each update moves its tasks.
    """

    def __init__(self) -> None:
        self.status_of: dict[int, str] = {}
        self.last_sync: datetime | None = None

    def apply(self, update: TaskStatusUpdatesResponse) -> None:
        """Record the statuses in ``update`` and remember its server time."""
        for status, task_ids in update.tasks_by_status.items():
            letter = str(status)
            for task_id in task_ids:
                self.status_of[task_id] = letter
        self.last_sync = update.time

    def counts(self) -> dict[str, int]:
        """Number of tasks per status letter (only statuses that have tasks)."""
        counts: dict[str, int] = {}
        for letter in self.status_of.values():
            counts[letter] = counts.get(letter, 0) + 1
        return counts

    @property
    def stuck(self) -> bool:
        """Whether some task failed and none is queued or running: nothing will move."""
        statuses = set(self.status_of.values())
        return TaskStatus.ERROR_FATAL.value in statuses and not statuses & ACTIVE

    @property
    def finished(self) -> bool:
        """Whether there are tasks and every one of them is done or failed."""
        return bool(self.status_of) and all(s in FINISHED for s in self.status_of.values())


class ProgressView:
    """A title and a bar per task status, drawn from a :class:`StatusTally`.

    The bars keep a fixed order (done, failed, active, queued, registering)
    and a bar stays, at zero, once its status has had tasks, so nothing jumps
    while a run moves. It is a rich renderable: hand it to ``Live`` or
    ``Console.print``; :meth:`line` is the same state as one plain line.
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self.counts: dict[str, int] = {}
        self.total = 0
        self._seen: set[str] = set()

    def show(self, tally: StatusTally) -> None:
        """Take the counts of ``tally``; the next drawing shows them."""
        self.counts = tally.counts()
        self.total = len(tally.status_of)
        self._seen.update(self.counts)

    def letters(self) -> list[str]:
        """The status letters drawn, in drawing order."""
        return sorted(self._seen, key=_order)

    def line(self) -> str:
        """The view as one plain line, e.g. ``workflow 1: 3 tasks; D done 1, R running 2``."""
        parts = [
            f"{letter} {STATUS_NAMES.get(letter, 'unknown')} {self.counts.get(letter, 0)}"
            for letter in self.letters()
        ]
        return f"{self.title}: {self.total} tasks" + (f"; {', '.join(parts)}" if parts else "")

    def __rich__(self) -> RenderableType:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 1), expand=True)
        grid.add_column(no_wrap=True)
        grid.add_column(ratio=1)
        grid.add_column(justify="right", no_wrap=True)
        for letter in self.letters():
            style = _BAR_STYLES.get(letter, "white")
            count = self.counts.get(letter, 0)
            grid.add_row(
                Text(f"{letter} {STATUS_NAMES.get(letter, 'unknown')}", style="bold"),
                ProgressBar(
                    total=max(self.total, 1),
                    completed=count,
                    complete_style=style,
                    finished_style=style,
                ),
                f"{count}/{self.total}",
            )
        title = Text(f"{self.title}: {self.total} tasks", style="bold", no_wrap=True)
        return Group(title, grid)


class _PlainLines:
    """Prints the view's line when it changed, at most every ``every`` seconds."""

    def __init__(self, console: Console, view: ProgressView, every: float) -> None:
        self.console = console
        self.view = view
        self.every = every
        self.printed: str | None = None
        self.printed_at = float("-inf")

    def update(self, *, final: bool = False) -> None:
        line = self.view.line()
        now = time.monotonic()
        if line == self.printed or (not final and now - self.printed_at < self.every):
            return
        # Straight to the file: rich would wrap a long line at its guessed width.
        self.console.file.write(line + "\n")
        self.console.file.flush()
        self.printed, self.printed_at = line, now


class Follower:
    """What :func:`follow` yields: call :meth:`show` after every poll."""

    def __init__(self, view: ProgressView, plain: _PlainLines | None) -> None:
        self.view = view
        self._plain = plain

    def show(self, tally: StatusTally) -> None:
        """Redraw (terminal) or maybe print a line (elsewhere) for ``tally``."""
        self.view.show(tally)
        if self._plain is not None:
            self._plain.update()


@contextmanager
def follow(
    console: Console,
    view: ProgressView,
    *,
    quiet: bool = False,
    transient: bool = False,
    every: float = PLAIN_EVERY,
) -> Iterator[Follower]:
    """Show ``view`` live while the block runs.

    On a terminal the bars are redrawn in place; otherwise a plain line is
    printed on the first update, then at most every ``every`` seconds while
    the counts change, and once more at the end. ``quiet`` prints nothing
    where there is no terminal (for ``--json``, whose lines say it all);
    ``transient`` clears the bars at the end.
    """
    if not console.is_terminal:
        plain = None if quiet else _PlainLines(console, view, every)
        yield Follower(view, plain)
        if plain is not None:
            plain.update(final=True)
        return
    from rich.live import Live

    with Live(view, console=console, transient=transient, refresh_per_second=8):
        yield Follower(view, None)
