"""pytest plugin: run Jobmon's own tests with jobmon-gateway's drop-in as the swarm's gateway.

Load it with ``-p dropin_plugin`` (this folder on ``PYTHONPATH``) when running
Jobmon 3.6's ``tests/integration/swarm`` from its source tree; see
``run_swarm_tests.sh`` beside it. It installs the drop-in after Jobmon's own
``conftest.py`` has set its test environment, and names what it patched in
the report header, so a run shows which gateway it used.
"""

from __future__ import annotations

import pytest

import jobmon_gateway.jobmon

_patched: list[str] = []


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    # trylast: Jobmon's conftest sets JOBMON__* before anything of Jobmon's is imported.
    _patched[:] = jobmon_gateway.jobmon.install()


def pytest_report_header(config: pytest.Config) -> str:
    return "jobmon-gateway drop-in installed: " + ", ".join(_patched)


def pytest_unconfigure(config: pytest.Config) -> None:
    jobmon_gateway.jobmon.uninstall()
