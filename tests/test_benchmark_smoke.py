"""Smoke run of ``benchmarks/run.py --quick``: it starts, checks, measures and reports.

Tiny sizes on the loopback server; no timing is asserted, only that the run ends cleanly
and prints its tables, with msgspec (the typed floor of the big answers) and without it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"

# The baseline and the floor need the reference client's libraries.
pytest.importorskip("aiohttp")
pytest.importorskip("requests")

ROWS = (
    "heartbeat sync",
    "heartbeat async sequential",
    "50 concurrent",
    "snapshot",
    "downstream map",
    "get_tasks paging",
    "get_task_rows paging",
    "peak RSS",
)
BIG = {"snapshot_small", "snapshot_big", "downstream", "paging", "paging_rows"}


def run_quick(tmp_path: Path, *, without_msgspec: bool) -> tuple[str, dict[str, Any]]:
    report = tmp_path / "bench.json"
    argv = [str(RUN), "--quick", "--json", str(report)]
    if without_msgspec:
        # As on a machine without msgspec: importing it fails in the benchmark's process.
        code = (
            "import runpy, sys\n"
            "sys.modules['msgspec'] = None\n"
            f"sys.path.insert(0, {str(RUN.parent)!r})\n"
            f"sys.argv = {argv!r}\n"
            f"runpy.run_path({str(RUN)!r}, run_name='__main__')\n"
        )
        command = [sys.executable, "-c", code]
    else:
        command = [sys.executable, *argv]
    done = subprocess.run(command, capture_output=True, text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for header in ("case", "unit", "ours", "baseline", "floor", "ours/base", "ours/floor"):
        assert header in out
    assert "goal" in out
    assert "verdict" in out
    assert "requests (ours / base / floor)" in out
    assert "client CPU per op" in out
    for row in ROWS:
        assert row in out
    assert "machine:" in out
    assert "request parity, SDK vs floor: identical" in out
    data: dict[str, Any] = json.loads(report.read_text())
    assert data["mode"] == "quick"
    assert data["paging_requests_equal"] is True
    assert {case["key"] for case in data["cases"]} >= {
        "heartbeat_sync",
        "paging",
        "paging_rows",
        "memory",
    }
    return out, data


@pytest.mark.timeout(120)
def test_quick_benchmark_runs_and_prints_its_tables(tmp_path: Path) -> None:
    pytest.importorskip("msgspec")
    out, data = run_quick(tmp_path, without_msgspec=False)
    assert "msgspec is not installed" not in out
    assert data["typed_floor"].startswith("msgspec ")
    for case in data["cases"]:
        # Every case has a floor, the memory row included.
        assert case["ratio_floor"] is not None, case["key"]


@pytest.mark.timeout(120)
def test_quick_benchmark_without_msgspec_skips_the_typed_floor(tmp_path: Path) -> None:
    out, data = run_quick(tmp_path, without_msgspec=True)
    assert "note: msgspec is not installed: no floor for the big answers" in out
    assert data["typed_floor"] is None
    by_key = {case["key"]: case for case in data["cases"]}
    for key in BIG:
        assert by_key[key]["ratio_floor"] is None, key
        assert by_key[key]["verdict_floor"] == "skip: no msgspec", key
    # The heartbeats' floor needs only the standard library and aiohttp.
    for key in ("heartbeat_sync", "heartbeat_async", "heartbeat_concurrent"):
        assert by_key[key]["ratio_floor"] is not None, key


ROW_TYPES = Path(__file__).resolve().parents[1] / "benchmarks" / "row_types.py"


@pytest.mark.timeout(60)
def test_row_types_decode_alike_and_print_their_table() -> None:
    # Every row type is checked against the SDK's TaskMetadata, field by field, before
    # anything is timed: a row type that decoded differently would end the run.
    pytest.importorskip("msgspec")
    argv = [str(ROW_TYPES), "--rounds", "1", "--tasks", "1200", "--chunk", "500"]
    done = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=50, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "1,200 tasks in pages of 500, 1 rounds (medians), collector on"
    rows = {line.split("  ")[0].strip(): line.split() for line in lines[2:]}
    assert set(rows) == {"TaskMetadata", "slotted", "TaskRow", "msgspec"}
    assert rows["msgspec"][-2] == "1.00"
    # The objects the cycle collector tracks per kept task: a model, its __dict__ and
    # its fallback_queues list; a lighter row type has no __dict__.
    assert rows["TaskMetadata"][-1] == "3.00"
    assert rows["TaskRow"][-1] == "2.00"
