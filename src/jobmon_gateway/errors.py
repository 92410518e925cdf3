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
    ├── ResponseTooLargeError                         the body passed max_response_bytes
    └── RetryBudgetExhaustedError (also RuntimeError) retries spent; ``last_error`` says why

A call whose retries are spent raises an error that is both: an instance of
the last attempt's class (``ServerError``, ``TransportError``, ...) and of
:class:`RetryBudgetExhaustedError`, so ``except ServerError`` and ``except
RetryBudgetExhaustedError`` both catch it.

Each error carries the HTTP ``method``, ``route`` and full ``url`` of the
call, the ``status`` (when the server answered), the server's own
``server_message`` parsed from whichever envelope it used, ``attempts``, the
number of requests sent for the call, and the call's ``request_id``.
"""

from __future__ import annotations

import re
import threading
from typing import Any

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
    "ResponseTooLargeError",
    "RetryBudgetExhaustedError",
    "ServerError",
    "ServerStatusError",
    "TransportError",
    "UnprocessableEntityError",
    "WorkflowNotFoundError",
]

MESSAGE_LIMIT = 1000
"""Most characters of an error's message."""
SERVER_MESSAGE_LIMIT = 500
"""Most characters of the server's own message kept in an error."""

# C0 and C1 controls, line and paragraph separators, bidi overrides.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str, limit: int) -> str:
    """``text`` with control characters escaped and cut to ``limit`` characters.

    What a server sends lands in ``str(error)`` and in log lines: a line
    break or an ANSI escape there could forge a log record or repaint a
    terminal, and a huge value would make every message huge.
    """
    if len(text) > limit * 4:
        text = text[: limit * 4]
    if _CONTROL.search(text):
        text = _CONTROL.sub(_escape, text)
    return text if len(text) <= limit else text[:limit] + "…"


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(
        char, f"\\x{ord(char):02x}" if ord(char) < 256 else f"\\u{ord(char):04x}"
    )


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
        url: The full URL the request went to (scheme, host, port, prefix and
            route; no query), or ``None`` when nothing was sent.
        request_sent: ``False`` when the request surely never reached the
            server (refused, no connection); a retry of any call is then safe.
        retryable: Whether this kind of failure is retried when retries are on.
        request_id: The call's id, sent to the server in its
            ``X-Server-Structlog-Context`` header (as ``client_request_id``),
            the same on every attempt of the call; the 3.6 server binds it
            to its log records for the request. ``None`` for a call refused
            before it began (bad input).
        hint: What to check first, when the SDK can tell (e.g. the route
            prefix after a 404 for a route the server does not have), or ``None``.

    ``str(error)`` is one line: the message, then the method, full URL,
    status, attempts and request id, the server's message and the hint.
    Messages are at most 1,000 characters (the server's message 500) and
    control characters in them are escaped, so an error is always one line.
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
        url: str | None = None,
        retry_after: float | None = None,
        request_sent: bool = True,
        retryable: bool | None = None,
        request_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        message = printable(message, MESSAGE_LIMIT)
        super().__init__(message)
        self.message = message
        self.method = method
        self.route = route
        self.status = status
        self.server_message = (
            None if server_message is None else printable(server_message, SERVER_MESSAGE_LIMIT)
        )
        self.server_error_type = (
            None if server_error_type is None else printable(server_error_type, 200)
        )
        # Kept as sent (only capped): it is data to inspect, never part of str(error).
        self.body_excerpt = None if body_excerpt is None else body_excerpt[:501]
        self.attempts = attempts
        self.url = url
        self.retry_after = retry_after
        self.request_sent = request_sent
        if retryable is not None:
            self.retryable = retryable
        self.request_id = request_id
        self.hint = hint

    def __str__(self) -> str:
        parts = [self.message]
        # The full URL where one was sent (the README's promise; it never
        # holds credentials, a requester refuses them, nor the query).
        where = self.url or self.route
        if self.method is not None and where is not None:
            bracket = f"[{self.method} {where}"
            if self.status is not None:
                bracket += f" -> {self.status}"
            bracket += f", attempts={self.attempts}"
            if self.request_id is not None:
                bracket += f", request_id={self.request_id}"
            parts.append(bracket + "]")
        elif self.request_id is not None:
            parts.append(f"[request_id={self.request_id}]")
        if self.server_message and self.server_message not in self.message:
            parts.append(f"server said: {self.server_message}")
        if self.hint:
            parts[-1] += ";"
            parts.append(self.hint)
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


class ResponseTooLargeError(GatewayError):
    """The answer's body, decompressed, passed ``max_response_bytes``. Never retried.

    The read stops at the limit, so a compression bomb or an endless body
    costs at most that much memory.
    """


class InvalidResponseError(GatewayError):
    """A 2xx answer whose body is not what the route promises.

    ``body_excerpt`` holds the start of the body; the pydantic or JSON error
    that caused it is chained as ``__cause__``.
    """


class RetryBudgetExhaustedError(GatewayError, RuntimeError):
    """Every retry of the call failed; the budget (attempts or time) is spent.

    What a call raises is also an instance of its last attempt's class: a
    :class:`ServerError` after 5xx answers, a :class:`TransportError` (or
    :class:`RequestTimeoutError`) after failed connections, ... So both
    ``except ServerError`` and ``except RetryBudgetExhaustedError`` catch
    it; ``type(error)`` is made once per class, a subclass of both.

    Its ``status``, ``server_message`` and ``server_error_type`` are those of
    the last answer the server gave (even when the very last attempt failed
    on the connection), and ``last_error`` is the final failure itself. It is
    also a :class:`RuntimeError`, which is what the reference client raised.

    Attributes:
        last_error: The final attempt's own error.
        elapsed: Seconds the call spent, retries and waits included.
        retries_attempts: The attempts the call was allowed.
        retries_timeout: The seconds the call was allowed (``0``: one attempt).
    """

    last_error: GatewayError
    _kind: type[GatewayError] | None = None

    def __new__(cls, *args: Any, **kwargs: Any) -> RetryBudgetExhaustedError:
        last_error = kwargs.get("last_error")
        if cls is RetryBudgetExhaustedError and isinstance(last_error, GatewayError):
            cls = _exhausted_class(type(last_error))
        return super().__new__(cls, *args)

    def __init__(
        self,
        message: str,
        *,
        last_error: GatewayError,
        attempts: int,
        answer: GatewayError | None = None,
        request_sent: bool | None = None,
        elapsed: float | None = None,
        retries_attempts: int | None = None,
        retries_timeout: float | None = None,
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
            url=last_error.url,
            retry_after=source.retry_after,
            request_sent=last_error.request_sent if request_sent is None else request_sent,
            request_id=last_error.request_id,
            hint=last_error.hint,
        )
        self.last_error = last_error
        self.elapsed = elapsed
        self.retries_attempts = retries_attempts
        self.retries_timeout = retries_timeout

    def __reduce__(self) -> tuple[Any, ...]:
        # The class is made at run time, so pickle cannot name it: rebuild it
        # (an error may cross a process pool) from the class it wraps.
        return (_unpickled, (self._kind, self.args), self.__dict__)


_EXHAUSTED: dict[type[GatewayError], type[RetryBudgetExhaustedError]] = {}
_EXHAUSTED_LOCK = threading.Lock()


def _exhausted_class(kind: type[GatewayError]) -> type[RetryBudgetExhaustedError]:
    """The class of a spent call whose last attempt failed with ``kind``: a subclass of both.

    Made once per class (a class per raise would defeat ``is`` checks and
    leak), e.g. ``_exhausted_class(ServerError)`` is
    ``RetryBudgetExhaustedError[ServerError]``.
    """
    if issubclass(kind, RetryBudgetExhaustedError):
        return kind
    made = _EXHAUSTED.get(kind)
    if made is None:
        with _EXHAUSTED_LOCK:
            made = _EXHAUSTED.get(kind)
            if made is None:
                name = f"RetryBudgetExhaustedError[{kind.__name__}]"
                made = type(
                    name,
                    (kind, RetryBudgetExhaustedError),
                    {
                        "__module__": __name__,
                        "__qualname__": name,
                        "__doc__": f"A spent call whose last attempt failed with {kind.__name__}.",
                        # Whatever __init__ the kind might define, this one is ours.
                        "__init__": RetryBudgetExhaustedError.__init__,
                        "_kind": kind,
                    },
                )
                _EXHAUSTED[kind] = made
    return made


def _unpickled(kind: type[GatewayError] | None, args: tuple[Any, ...]) -> RetryBudgetExhaustedError:
    cls = RetryBudgetExhaustedError if kind is None else _exhausted_class(kind)
    error: RetryBudgetExhaustedError = Exception.__new__(cls, *args)
    return error
