"""pytest plugin of jobmon-gateway: the ``jobmon_server`` fixture.

Registered through the ``pytest11`` entry point, so any project that installs
jobmon-gateway can ask for ``jobmon_server`` in a test::

    def test_heartbeat(jobmon_server):
        run = jobmon_server.add_workflow_run(status="R")
        with httpx.Client(
            transport=jobmon_server.transport(), base_url=jobmon_server.base_url
        ) as client:
            answer = client.post(
                f"/workflow_run/{run.workflow_run_id}/log_heartbeat",
                json={"status": "R", "next_report_increment": 30.0},
            )
        assert answer.json() == {"status": "R"}
"""

from __future__ import annotations

import pytest

from .server import FakeJobmonServer

__all__ = ["jobmon_server"]


@pytest.fixture
def jobmon_server() -> FakeJobmonServer:
    """A fresh, empty :class:`~jobmon_gateway.testing.FakeJobmonServer` for one test.

    Mounted under ``/api/v3``; build a ``FakeJobmonServer(...)`` yourself for
    other options.
    """
    return FakeJobmonServer()
