"""pytest plugin of jobmon-gateway: the ``jobmon_server`` fixture.

Registered through the ``pytest11`` entry point, so any project that installs
jobmon-gateway can ask for ``jobmon_server`` in a test::

    from jobmon_gateway import ServerGateway
    from jobmon_gateway.testing import FakeJobmonServer

    def test_heartbeat(jobmon_server: FakeJobmonServer) -> None:
        run = jobmon_server.add_workflow_run(status="R")
        requester = jobmon_server.requester()  # sync and async both go to the fake
        with ServerGateway(requester, run.workflow_id, run.workflow_run_id) as gateway:
            assert gateway.log_heartbeat_sync("R", 30.0).status == "R"

See docs/testing.md for seeding, time, recorded requests and ``serve()``.
"""

from __future__ import annotations

import pytest

from .server import FakeJobmonServer

__all__ = ["jobmon_server"]


@pytest.fixture
def jobmon_server() -> FakeJobmonServer:
    """A fresh, empty :class:`~jobmon_gateway.testing.FakeJobmonServer` for one test.

    A Jobmon 3.6 server mounted under ``/api/v3``; build a
    ``FakeJobmonServer(...)`` yourself for other options
    (``server_version="3.2.2"``, a frozen clock, simulated failures, ...).
    """
    return FakeJobmonServer()
