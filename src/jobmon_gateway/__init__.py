"""jobmon-gateway: a typed Python SDK for the Jobmon server's workflow-run API.

Quick start::

    from jobmon_gateway import Requester, ServerGateway

    requester = Requester.from_env()  # JOBMON__HTTP__SERVICE_URL, ...
    async with ServerGateway(requester, workflow_id=1, workflow_run_id=1) as gateway:
        answer = await gateway.log_heartbeat("R", 30.0)

Every call has a sync twin named ``<call>_sync``.
"""

from ._version import __version__
from .config import HttpSettings
from .errors import (
    BadRequestError,
    ConfigurationError,
    GatewayError,
    InvalidRequestError,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    RequestTimeoutError,
    ResourceLockedError,
    ResponseTooLargeError,
    RetryBudgetExhaustedError,
    ServerError,
    ServerStatusError,
    TransportError,
    UnprocessableEntityError,
    WorkflowNotFoundError,
)
from .gateway import ServerGateway
from .models import (
    DownstreamTasksResponse,
    HeartbeatResponse,
    QueueResponse,
    ServerErrorBody,
    ServerTimeResponse,
    StatusUpdateResponse,
    TaskMetadata,
    TaskRow,
    TasksResponse,
    TaskStatus,
    TaskStatusLetter,
    TaskStatusUpdatesResponse,
    TerminateTaskInstancesResponse,
    WorkflowConcurrencyResponse,
    WorkflowMetadata,
    WorkflowMetadataResponse,
    WorkflowRunStatus,
    WorkflowRunStatusLetter,
)
from .routes import Call
from .schemas import RESPONSE_MODELS, export_schemas
from .transport import CLIENT_JOBMON_VERSION, Requester
from .transports import AsyncGatewayTransport, GatewayTransport

__all__ = [
    "CLIENT_JOBMON_VERSION",
    "RESPONSE_MODELS",
    "AsyncGatewayTransport",
    "BadRequestError",
    "Call",
    "ConfigurationError",
    "DownstreamTasksResponse",
    "GatewayError",
    "GatewayTransport",
    "HeartbeatResponse",
    "HttpSettings",
    "InvalidRequestError",
    "InvalidResponseError",
    "NotFoundError",
    "QueueResponse",
    "RateLimitedError",
    "RequestTimeoutError",
    "Requester",
    "ResourceLockedError",
    "ResponseTooLargeError",
    "RetryBudgetExhaustedError",
    "ServerError",
    "ServerErrorBody",
    "ServerGateway",
    "ServerStatusError",
    "ServerTimeResponse",
    "StatusUpdateResponse",
    "TaskMetadata",
    "TaskRow",
    "TaskStatus",
    "TaskStatusLetter",
    "TaskStatusUpdatesResponse",
    "TasksResponse",
    "TerminateTaskInstancesResponse",
    "TransportError",
    "UnprocessableEntityError",
    "WorkflowConcurrencyResponse",
    "WorkflowMetadata",
    "WorkflowMetadataResponse",
    "WorkflowNotFoundError",
    "WorkflowRunStatus",
    "WorkflowRunStatusLetter",
    "__version__",
    "export_schemas",
]
