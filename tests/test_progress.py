"""The progress view of ``watch`` and ``demo``: order, title, width and colours of the bars."""

from __future__ import annotations

import io
import re

from rich.console import Console

from jobmon_gateway import TaskStatusUpdatesResponse
from jobmon_gateway.progress import ProgressView, StatusTally, follow

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
GREEN = "\x1b[32m"


def tally_of(**ids_by_status: list[int]) -> StatusTally:
    tally = StatusTally()
    tally.apply(
        TaskStatusUpdatesResponse.model_validate(
            {"tasks_by_status": ids_by_status, "time": "2026-11-28 17:56:34"}
        )
    )
    return tally


def render(view: ProgressView, width: int) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=True, color_system="standard")
    console.print(view)
    return out.getvalue()


def plain(text: str) -> list[str]:
    return [line.rstrip() for line in _ANSI.sub("", text).splitlines()]


def test_bars_keep_a_fixed_order_whatever_order_statuses_appear_in() -> None:
    view = ProgressView("workflow 7")
    view.show(tally_of(G=[1, 2, 3]))
    view.show(tally_of(G=[1], Q=[2], D=[3]))
    lines = plain(render(view, 60))
    assert [line.split()[0] for line in lines[1:]] == ["D", "Q", "G"]
    assert view.line() == "workflow 7: 3 tasks; D done 1, Q queued 1, G registering 1"


def test_a_bar_stays_at_zero_once_its_status_had_tasks() -> None:
    view = ProgressView("workflow 7")
    view.show(tally_of(Q=[1, 2]))
    view.show(tally_of(D=[1, 2]))
    assert view.line() == "workflow 7: 2 tasks; D done 2, Q queued 0"


def test_the_title_is_drawn_above_the_bars() -> None:
    view = ProgressView("workflow 7 (dag 3)")
    view.show(tally_of(R=[1]))
    assert plain(render(view, 60))[0] == "workflow 7 (dag 3): 1 tasks"


def test_labels_are_not_padded_and_fit_40_columns() -> None:
    view = ProgressView("workflow 7")
    view.show(tally_of(G=list(range(1, 102)), A=[200], D=[300]))
    lines = plain(render(view, 40))
    assert all(len(line) <= 40 for line in lines), lines
    assert lines[1].startswith("D done ")
    assert lines[-1].startswith("G registering ")
    assert lines[-1].endswith(" 101/103")


def test_only_a_full_done_bar_looks_finished() -> None:
    registering = ProgressView("w")
    registering.show(tally_of(G=list(range(1, 102))))
    done = ProgressView("w")
    done.show(tally_of(D=list(range(1, 102))))
    assert GREEN in render(done, 60)
    assert GREEN not in render(registering, 60)


def test_follow_without_a_terminal_prints_the_first_and_the_last_line() -> None:
    out = io.StringIO()
    console = Console(file=out, width=30)  # not a terminal, and narrow
    view = ProgressView("a title longer than thirty columns")
    with follow(console, view, every=3600) as progress:
        progress.show(tally_of(G=[1, 2]))
        progress.show(tally_of(Q=[1], G=[2]))
        progress.show(tally_of(D=[1, 2]))
    assert out.getvalue().splitlines() == [
        "a title longer than thirty columns: 2 tasks; G registering 2",
        "a title longer than thirty columns: 2 tasks; D done 2, Q queued 0, G registering 0",
    ]


def test_follow_quiet_without_a_terminal_prints_nothing() -> None:
    out = io.StringIO()
    view = ProgressView("w")
    with follow(Console(file=out), view, quiet=True) as progress:
        progress.show(tally_of(D=[1]))
    assert out.getvalue() == ""
