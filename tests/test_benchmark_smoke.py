"""Smoke run of ``benchmarks/run.py --quick``: it starts, checks, measures and reports.

Tiny sizes on the loopback server; no timing is asserted, only that the run ends cleanly
and prints its tables.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"

# The baseline side needs the reference client's libraries.
pytest.importorskip("aiohttp")
pytest.importorskip("requests")


@pytest.mark.timeout(120)
def test_quick_benchmark_runs_and_prints_its_tables(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for header in ("case", "unit", "ours", "baseline", "raw httpx", "ours/base", "ours/raw"):
        assert header in out
    assert "goal" in out
    assert "verdict" in out
    assert "requests (ours / base / raw)" in out
    for row in (
        "heartbeat sync",
        "heartbeat async sequential",
        "50 concurrent",
        "snapshot",
        "downstream map",
        "get_tasks paging",
        "peak RSS",
    ):
        assert row in out
    assert "machine:" in out
    assert "request parity" in out
    data = json.loads(report.read_text())
    assert data["mode"] == "quick"
    assert data["paging_requests_equal"] is True
    assert {case["key"] for case in data["cases"]} >= {"heartbeat_sync", "paging", "memory"}
