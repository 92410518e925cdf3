"""An in-memory fake Jobmon server for testing code that talks to Jobmon.

It depends on the standard library and httpx only, never on the SDK's own
client modules, so it cannot share their bugs. Seed workflows, tasks and
runs, then take a ready-wired SDK ``Requester`` from
:meth:`FakeJobmonServer.requester` (sync and async), point an
``httpx.Client`` or ``httpx.AsyncClient`` at
:meth:`FakeJobmonServer.transport` / :meth:`FakeJobmonServer.async_transport`,
or run it on a real loopback socket with ``with server.serve() as url:`` for
clients that cannot take a transport (a command line, a subprocess). It speaks
as a Jobmon 3.6 server, or as a 3.2.2 one with ``server_version="3.2.2"``.
With pytest, the ``jobmon_server`` fixture (from
:mod:`jobmon_gateway.testing.pytest_plugin`) hands each test a fresh server.
"""

from .routes import ERROR_CONTENT_TYPE, JSON_CONTENT_TYPE, sends_downstream_as_list
from .server import (
    SERVER_VERSIONS,
    FakeJobmonAsyncTransport,
    FakeJobmonServer,
    FakeJobmonTransport,
    RecordedRequest,
)
from .state import (
    ACTIVE_TASK_STATUSES,
    ARRAY_MAX_CONCURRENTLY_RUNNING,
    IGNORED_WORKFLOW_RUN_TRANSITIONS,
    NO_SERVER_TIME,
    SERVER_TIME_FORMAT,
    TASK_STATUSES,
    WORKFLOW_MAX_CONCURRENTLY_RUNNING,
    WORKFLOW_RUN_STATUSES,
    WORKFLOW_RUN_TRANSITIONS,
    FakeArray,
    FakeClock,
    FakeTask,
    FakeWorkflow,
    FakeWorkflowRun,
    JobmonDatabase,
    format_server_time,
    parse_server_time,
)

__all__ = [
    "ACTIVE_TASK_STATUSES",
    "ARRAY_MAX_CONCURRENTLY_RUNNING",
    "ERROR_CONTENT_TYPE",
    "IGNORED_WORKFLOW_RUN_TRANSITIONS",
    "JSON_CONTENT_TYPE",
    "NO_SERVER_TIME",
    "SERVER_TIME_FORMAT",
    "SERVER_VERSIONS",
    "TASK_STATUSES",
    "WORKFLOW_MAX_CONCURRENTLY_RUNNING",
    "WORKFLOW_RUN_STATUSES",
    "WORKFLOW_RUN_TRANSITIONS",
    "FakeArray",
    "FakeClock",
    "FakeJobmonAsyncTransport",
    "FakeJobmonServer",
    "FakeJobmonTransport",
    "FakeTask",
    "FakeWorkflow",
    "FakeWorkflowRun",
    "JobmonDatabase",
    "RecordedRequest",
    "format_server_time",
    "parse_server_time",
    "sends_downstream_as_list",
]
