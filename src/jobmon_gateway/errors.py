"""The gateway's one exception tree.

Every failure of a public call is a :class:`GatewayError`. Catch it at the
level you care about::

    GatewayError
    ├── InvalidRequestError (also ValueError)        bad input; nothing was sent
    ├── ConfigurationError (also ValueError)          missing or malformed settings
    ├── TransportError                                no usable HTTP answer
    │   └── RequestTimeoutError                       connect/read/write/pool timeout
    ├── ServerStatusError                             the server answered non-2xx
    │   ├── BadRequestError (400)
    │   ├── NotFoundError (404)
    │   │   └── WorkflowNotFoundError (also ValueError)
    │   ├── UnprocessableEntityError (422)
    │   ├── ResourceLockedError (423, retried)
    │   ├── RateLimitedError (429, retried)
    │   └── ServerError (5xx, retried)
    ├── InvalidResponseError                          a 2xx answer that does not validate
    └── RetryBudgetExhaustedError (also RuntimeError) retries spent; ``last_error`` says why

Each error carries the HTTP ``method`` and ``route`` of the call, the
``status`` (when the server answered), the server's own ``server_message``
parsed from whichever envelope it used, and ``attempts``, the number of
requests sent for the call.
"""

from __future__ import annotations

__all__ = [
    "BadRequestError",
    "ConfigurationError",
    "GatewayError",
    "InvalidRequestError",
    "InvalidResponseError",
    "NotFoundError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ResourceLockedError",
    "RetryBudgetExhaustedError",
    "ServerError",
    "ServerStatusError",
    "TransportError",
    "UnprocessableEntityError",
    "WorkflowNotFoundError",
]


class GatewayError(Exception):
    """Root of every error a gateway call raises.

    Attributes:
        message: What went wrong, in one sentence.
        method: HTTP method of the call (``"GET"``, ``"POST"``, ``"PUT"``), or
            ``None`` when the call was refused before a request existed.
        route: The route of the call below the base URL, e.g.
            ``"/workflow_run/7/log_heartbeat"``, or ``None``.
        status: HTTP status of the last answer, if the server answered.
        server_message: The server's own message, parsed from its error
            envelope (``{"error": {...}}``, ``{"error": "..."}``,
            ``{"detail": ...}`` or plain text), if it sent one.
        server_error_type: The server-side exception type when the envelope
            names one, e.g. ``"sqlalchemy.exc.NoResultFound"``.
        body_excerpt: The start of the answer's body (at most 500
            characters), for answers that could not be understood.
        attempts: How many requests were sent for the call (0 when refused
            before sending).
        retry_after: Seconds the server asked us to wait (``Retry-After``), if any.
        retryable: Whether this kind of failure is retried when retries are on.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        route: str | None = None,
        status: int | None = None,
        server_message: str | None = None,
        server_error_type: str | None = None,
        body_excerpt: str | None = None,
        attempts: int = 0,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.route = route
        self.status = status
        self.server_message = server_message
        self.server_error_type = server_error_type
        self.body_excerpt = body_excerpt
        self.attempts = attempts
        self.retry_after: float | None = None

    def __str__(self) -> str:
        parts = [self.message]
        if self.method is not None and self.route is not None:
            parts.append(f"[{self.method} {self.route}")
            if self.status is not None:
                parts[-1] += f" -> {self.status}"
            parts[-1] += f", attempts={self.attempts}]"
        if self.server_message and self.server_message not in self.message:
            parts.append(f"server said: {self.server_message}")
        return " ".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, method={self.method!r}, "
            f"route={self.route!r}, status={self.status!r}, attempts={self.attempts})"
        )


class InvalidRequestError(GatewayError, ValueError):
    """The caller's input was refused before anything was sent.

    Raised for ids that are not positive ints (``bool`` and ``str`` included),
    malformed status letters, aware datetimes for ``since`` and the like.
    """


class ConfigurationError(GatewayError, ValueError):
    """The settings are missing or malformed; the message names the variable or key."""


class TransportError(GatewayError):
    """No usable HTTP answer: connection refused or reset, broken framing.

    Retried (with backoff) unless retries are off for the call.
    """

    retryable = True


class RequestTimeoutError(TransportError):
    """The request timed out (connect, write, read or waiting for the pool)."""


class ServerStatusError(GatewayError):
    """The server answered with a non-2xx status; ``status`` says which."""


class BadRequestError(ServerStatusError):
    """HTTP 400: the server refused the request body. Never retried."""


class NotFoundError(ServerStatusError):
    """HTTP 404: unknown route or unknown object. Never retried."""


class WorkflowNotFoundError(NotFoundError, ValueError):
    """The workflow does not exist on the server.

    ``get_workflow_metadata()`` raises it when the server answers 200 with an
    empty ``workflow`` list; it is also a :class:`ValueError`, as the
    reference client promised.
    """


class UnprocessableEntityError(ServerStatusError):
    """HTTP 422: the server's validation refused a path or query value."""


class ResourceLockedError(ServerStatusError):
    """HTTP 423: the server hit a database deadlock. Retried."""

    retryable = True


class RateLimitedError(ServerStatusError):
    """HTTP 429: slow down. Retried, honouring ``Retry-After``."""

    retryable = True


class ServerError(ServerStatusError):
    """HTTP 5xx from the server or a proxy in front of it. Retried."""

    retryable = True


class InvalidResponseError(GatewayError):
    """A 2xx answer whose body is not what the route promises.

    ``body_excerpt`` holds the start of the body; the pydantic or JSON error
    that caused it is chained as ``__cause__``.
    """


class RetryBudgetExhaustedError(GatewayError, RuntimeError):
    """Every retry of the call failed; the budget (attempts or time) is spent.

    Its ``status``, ``server_message`` and ``server_error_type`` are those of
    the last answer the server gave (even when the very last attempt failed
    on the connection), and ``last_error`` is the final failure itself. It is
    also a :class:`RuntimeError`, which is what the reference client raised.
    """

    def __init__(
        self,
        message: str,
        *,
        last_error: GatewayError,
        attempts: int,
        answer: GatewayError | None = None,
    ) -> None:
        source = answer if answer is not None else last_error
        super().__init__(
            message,
            method=last_error.method,
            route=last_error.route,
            status=source.status,
            server_message=source.server_message,
            server_error_type=source.server_error_type,
            body_excerpt=source.body_excerpt,
            attempts=attempts,
        )
        self.last_error = last_error
