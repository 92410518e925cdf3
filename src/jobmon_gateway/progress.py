"""Live progress of a workflow: every task's last known status, drawn as bars."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from .models import TaskStatus, TaskStatusUpdatesResponse

__all__ = ["ACTIVE", "FINISHED", "STATUS_NAMES", "ProgressView", "StatusTally"]

FINISHED = frozenset({TaskStatus.DONE.value, TaskStatus.ERROR_FATAL.value})
"""Task statuses a workflow run does not move out of."""

ACTIVE = frozenset({"Q", "I", "O", "R", "E", "A"})
"""Task statuses of work under way or about to be retried by the distributor."""

STATUS_NAMES: dict[str, str] = {
    status.value: status.name.lower().replace("_", " ") for status in TaskStatus
}
"""Readable name of each task status letter."""
# The order bars are drawn in: from finished, through active, to waiting.
_STATUS_ORDER = ["D", "F", "R", "O", "I", "Q", "E", "A", "G"]


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
    """A live bar per task status, redrawn from a :class:`StatusTally`."""

    def __init__(self, console: Console, title: str) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description:>22}"),
            BarColumn(bar_width=40),
            MofNCompleteColumn(),
            console=console,
        )
        self.title = title
        self.bars: dict[str, TaskID] = {}

    def show(self, tally: StatusTally) -> None:
        """Redraw the bars from ``tally``'s counts."""
        counts = tally.counts()
        total = len(tally.status_of)
        letters = sorted(
            set(counts) | set(self.bars),
            key=lambda s: _STATUS_ORDER.index(s) if s in _STATUS_ORDER else len(_STATUS_ORDER),
        )
        for letter in letters:
            if letter not in self.bars:
                name = STATUS_NAMES.get(letter, "unknown")
                self.bars[letter] = self.progress.add_task(f"{letter} {name}", total=total)
            self.progress.update(self.bars[letter], completed=counts.get(letter, 0), total=total)
