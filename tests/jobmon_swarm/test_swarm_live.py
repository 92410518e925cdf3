"""Live: Jobmon 3.6's own swarm on the drop-in, a subset of Jobmon's swarm tests and a workflow.

All of Jobmon's ``tests/integration/swarm`` take about five minutes here (and
seven on a busy machine), too long for CI; ``run_swarm_tests.sh`` beside this
file runs them all. CI runs this subset instead: three of Jobmon's tests (a
run through ``run_workflow()`` on the session ``run.py`` lends, a resume built
from the database with the sync calls and a full sync after the session was
closed and forgotten, and swarm tasks' resources bound and scaled) and a
31-task workflow through ``workflow.run()``, about two minutes in all. The Jobmon 3.6 venv is built
once from the shared tarball (about a minute) and cached under ``.live/``.
Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("JOBMON_SHARED", REPO.parent / "shared")) / "jobmon-3.6"
VENV = Path(os.environ.get("JOBMON36_VENV", REPO / ".live" / "venv-3.6-swarm"))
HERE = Path(__file__).resolve().parent

# Chosen to wait on the swarm, not on the clock (test_sync_statuses, for one,
# sleeps two seconds and expects the distributor to be done by then), and to
# be quick (test_callable_returns_valid_object takes three minutes).
SUBSET = [
    "tests/integration/swarm/test_swarm.py::test_propagate_result",
    "tests/integration/swarm/test_swarm.py::test_build_swarm_from_workflow_id",
    "tests/integration/swarm/test_swarm_task.py::test_swarmtask_resources_integration_no_scales",
]
SUBSET_CASES = 4
"""The subset's test cases: the last test is parametrized twice."""
TEST_DEPENDENCIES = ["pytest", "pytest-asyncio>=1.0.0", "mock", "filelock", "pytest-mock"]

pytestmark = [pytest.mark.live, pytest.mark.timeout(900)]


def run(
    command: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, check=False, cwd=cwd, env=env, timeout=timeout
    )


@pytest.fixture(scope="module")
def swarm_venv() -> Path:
    """A Jobmon 3.6 venv with this repo's SDK (editable) and Jobmon's test dependencies."""
    if not (SHARED / "jobmon-3.6-src.tar.gz").exists():
        pytest.skip(f"no Jobmon 3.6 source tarball in {SHARED} (set JOBMON_SHARED)")
    built = run(["bash", str(SHARED / "install.sh"), str(VENV)], timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    python = str(VENV / "bin" / "python")
    probe = "import jobmon_gateway.jobmon, pytest_asyncio, mock, filelock, pytest_mock"
    if run([python, "-c", probe]).returncode != 0:
        installed = run(
            [python, "-m", "pip", "install", "-q", "-e", str(REPO), *TEST_DEPENDENCIES],
            timeout=600,
        )
        assert installed.returncode == 0, installed.stdout + installed.stderr
    return VENV


@pytest.fixture(scope="module")
def jobmon_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unpacked Jobmon 3.6 source tree (its tests run from its root)."""
    root = tmp_path_factory.mktemp("jobmon-3.6-src")
    with tarfile.open(SHARED / "jobmon-3.6-src.tar.gz") as tarball:
        # The "data" filter (no links out, no device files) is in 3.10.12+ and 3.11.4+.
        if hasattr(tarfile, "data_filter"):
            tarball.extractall(root, filter="data")
        else:
            tarball.extractall(root)
    return root


def venv_env(venv: Path, *pythonpath: Path) -> dict[str, str]:
    # This checkout's SDK first, whatever the venv has installed.
    path = os.pathsep.join(str(p) for p in (REPO / "src", *pythonpath))
    return {
        **os.environ,
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": path,
    }


def test_jobmon_swarm_tests_pass_on_the_dropin(swarm_venv: Path, jobmon_source: Path) -> None:
    done = run(
        [
            str(swarm_venv / "bin" / "python"),
            "-m",
            "pytest",
            "-p",
            "loopback_plugin",
            "-p",
            "dropin_plugin",
            "-p",
            "no:cacheprovider",
            # aiohttp reports an unclosed session as a ResourceWarning (hidden by
            # default) and an asyncio log line (captured): show the warnings.
            "-W",
            "always::ResourceWarning",
            *SUBSET,
        ],
        cwd=jobmon_source,
        env=venv_env(swarm_venv, SHARED, HERE),
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "jobmon-gateway drop-in installed: jobmon.client.swarm.builder.ServerGateway" in output
    # Only passes (warnings aside): no failure, error or skip.
    summary = re.search(r"=+ (\d+) passed(, \d+ warnings?)? in [0-9.]+s", output)
    assert summary is not None, output[-4000:]
    assert int(summary.group(1)) == SUBSET_CASES
    assert "Unclosed client session" not in output


def test_a_workflow_runs_to_done_on_the_dropin(swarm_venv: Path) -> None:
    done = run(
        [
            str(swarm_venv / "bin" / "python"),
            str(HERE / "run_workflow.py"),
            "--tasks",
            "30",
            "--gateways",
            "dropin",
        ],
        env={**venv_env(swarm_venv), "JOBMON36_SERVE": str(SHARED / "serve.py")},
        timeout=600,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(results) == 1, done.stdout[-4000:]
    result = json.loads(results[0].removeprefix("RESULT "))
    assert result["gateway"] == "dropin"
    assert result["run_status"] == "D"
    assert result["tasks_by_status"] == {"D": 31}
    assert result["unclosed_client_sessions"] == 0
