"""The transport under faults, on real sockets: every fault, sync and async.

Each test points a real :class:`~jobmon_gateway.Requester` at a
:class:`fault_server.FaultServer` on 127.0.0.1 and goes through the public
API only (``ServerGateway`` calls). For every fault it pins down whether the
call is retried, how many requests reached the server (``srv.requests`` plus
the requests a dropped keep-alive connection swallowed), how long the call
took against its budget, and the final error's type and fields.

The backoff is tiny (``wait_initial=0.01``, no jitter) so the whole file runs
in a few seconds; the only deliberate waits are the ``Retry-After`` ones
(0.2-0.3 s) and the timeouts (0.2 s).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal, TypeGuard

import pytest

from fault_server import (
    ERROR_ENVELOPE_500,
    Action,
    FaultServer,
    refusing_url,
)
from jobmon_gateway import (
    BadRequestError,
    GatewayError,
    HeartbeatResponse,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    Requester,
    RequestTimeoutError,
    ResourceLockedError,
    RetryBudgetExhaustedError,
    ServerError,
    ServerGateway,
    ServerStatusError,
    TaskStatusUpdatesResponse,
    TransportError,
    UnprocessableEntityError,
)

Mode = Literal["sync", "async"]
MODES: list[Mode] = ["sync", "async"]

PREFIX = "/api/v3"
WORKFLOW_ID = 1
WORKFLOW_RUN_ID = 1
ATTEMPTS = 3
"""retries_attempts of the default requester: most requests per call."""
RETRIES_TIMEOUT = 3.0
REQUEST_TIMEOUT = 1.0
SHORT_TIMEOUT = 0.2
"""request_timeout of the cases that make the server too slow on purpose."""
SLACK = 0.5
"""Generous allowance for a loaded CI machine on every upper time bound."""

CUSTOM_JSON = "application/custom+json"
NO_ROW = "No row was found when one was required"
ENVELOPE_423 = json.dumps(
    {
        "error": {
            "type": "<class 'sqlalchemy.exc.OperationalError'>",
            "exception_message": "(sqlite3.OperationalError) database is locked",
            "status_code": "423",
        }
    },
    separators=(",", ":"),
).encode()

SERVER_TIME = "2026-11-28 17:56:34"
OK_BODIES: dict[str, dict[str, Any]] = {
    "get_server_time": {"time": SERVER_TIME},
    "log_heartbeat": {"status": "R"},
    "get_task_status_updates": {
        "tasks_by_status": {"G": [4, 5], "Q": [1, 2, 3]},
        "time": SERVER_TIME,
    },
    "get_workflow_concurrency": {"max_concurrently_running": 37},
    "update_status": {"status": "D"},
}
CALL_ARGS: dict[str, tuple[Any, ...]] = {
    "get_server_time": (),
    "log_heartbeat": ("R", 30.0),
    "get_task_status_updates": (),
    "get_workflow_concurrency": (),
    "update_status": ("D",),
}
CALL_ROUTES: dict[str, tuple[str, str]] = {
    "get_server_time": ("GET", "/time"),
    "log_heartbeat": ("POST", f"/workflow_run/{WORKFLOW_RUN_ID}/log_heartbeat"),
    "get_task_status_updates": ("POST", f"/workflow/{WORKFLOW_ID}/task_status_updates"),
    "get_workflow_concurrency": ("GET", f"/workflow/{WORKFLOW_ID}/get_max_concurrently_running"),
    "update_status": ("PUT", f"/workflow_run/{WORKFLOW_RUN_ID}/update_status"),
}


def ok(call: str) -> Action:
    """The server's 200 answer to `call`."""
    return Action.respond(200, OK_BODIES[call])


def check_ok_result(call: str, result: object) -> None:
    if call == "get_server_time":
        assert result == datetime(2026, 11, 28, 17, 56, 34)
    elif call == "log_heartbeat":
        assert isinstance(result, HeartbeatResponse)
        assert result.status == "R"
    elif call == "get_task_status_updates":
        assert isinstance(result, TaskStatusUpdatesResponse)
        assert result.tasks_by_status == {"G": [4, 5], "Q": [1, 2, 3]}
    elif call == "update_status":
        assert getattr(result, "status", None) == "D"
    else:
        assert result == 37


# One TLS context for every requester: the servers here speak plain HTTP, and
# loading the CA store for each new client would cost ~20 ms a test.
_TLS = ssl.create_default_context()


def make_requester(url: str, **changes: Any) -> Requester:
    options: dict[str, Any] = {
        "verify": _TLS,
        "route_prefix": PREFIX,
        "request_timeout": REQUEST_TIMEOUT,
        "retries_attempts": ATTEMPTS,
        "retries_timeout": RETRIES_TIMEOUT,
        "wait_initial": 0.01,
        "wait_max": 0.05,
        "wait_jitter": 0,
        "retry_after_max": 1.0,
        **changes,
    }
    return Requester(url, **options)


@dataclass
class Outcome:
    """What one gateway call did: its result or error, and how long it took."""

    result: Any
    error: GatewayError | None
    elapsed: float

    def failed(self) -> GatewayError:
        assert self.error is not None, f"the call succeeded with {self.result!r}"
        return self.error


def perform(mode: Mode, requester: Requester, call: str, *, retry: bool = True) -> Outcome:
    """Make `call` (a gateway method name) on a fresh gateway, sync or async."""
    args = CALL_ARGS[call]
    if mode == "sync":
        with ServerGateway(requester, WORKFLOW_ID, WORKFLOW_RUN_ID) as gateway:
            view = gateway if retry else gateway.without_retries()
            start = time.monotonic()
            try:
                result = getattr(view, f"{call}_sync")(*args)
            except GatewayError as exc:
                return Outcome(None, exc, time.monotonic() - start)
            return Outcome(result, None, time.monotonic() - start)

    async def run() -> Outcome:
        async with ServerGateway(requester, WORKFLOW_ID, WORKFLOW_RUN_ID) as gateway:
            view = gateway if retry else gateway.without_retries()
            start = time.monotonic()
            try:
                result = await getattr(view, call)(*args)
            except GatewayError as exc:
                return Outcome(None, exc, time.monotonic() - start)
            return Outcome(result, None, time.monotonic() - start)

    return asyncio.run(run())


def sent(srv: FaultServer) -> int:
    """Requests that reached the server: answered ones plus those a dropped connection ate."""
    return len(srv.requests) + len(srv.dropped_requests)


@pytest.fixture
def retry_log(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """The WARNING records of logger ``jobmon_gateway`` (one per retry), live."""
    caplog.set_level(logging.WARNING, logger="jobmon_gateway")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.WARNING)
    logger = logging.getLogger("jobmon_gateway")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def check_identity(error: GatewayError, call: str, attempts: int) -> None:
    method, route = CALL_ROUTES[call]
    assert (error.method, error.route, error.attempts) == (method, route, attempts)


def spent(error: GatewayError, kind: type[GatewayError]) -> TypeGuard[RetryBudgetExhaustedError]:
    """Whether ``error`` is a spent call's: a RetryBudgetExhaustedError and its last
    attempt's class (``kind`` itself, not a parent of it)."""
    return (
        isinstance(error, RetryBudgetExhaustedError)
        and isinstance(error, kind)
        and isinstance(error, RuntimeError)
        and type(error.last_error) is kind
        and type(error).__mro__[1] is kind
    )


# ---------------------------------------------------------------------------
# Faults that are retried: one fault, then the server answers 200.


@dataclass(frozen=True)
class Retried:
    """A fault that one retry mends."""

    name: str
    fault: Callable[[str], list[Action]]
    call: str = "get_server_time"
    answered: int = 2
    """Requests the server answered with an action (the fault's and the 200's)."""
    dropped: int = 0
    """Requests read and dropped unanswered (``*-on-next`` faults)."""
    connections: int = 1
    retries_logged: int = 1
    request_timeout: float = REQUEST_TIMEOUT
    min_elapsed: float = 0.0


def _status(status: int, body: bytes = ERROR_ENVELOPE_500) -> Callable[[str], list[Action]]:
    return lambda _call: [Action.respond(status, body, content_type=CUSTOM_JSON)]


RETRIED = [
    Retried("500-envelope", _status(500), call="log_heartbeat"),
    Retried("502-envelope", _status(502), call="get_task_status_updates"),
    Retried("503-envelope", _status(503), call="log_heartbeat"),
    Retried("504-envelope", _status(504)),
    Retried("423-deadlock", _status(423, ENVELOPE_423), call="log_heartbeat"),
    Retried("502-proxy-html", lambda _c: [Action.html_error_page(502)]),
    Retried("503-proxy-html", lambda _c: [Action.html_error_page(503)], call="log_heartbeat"),
    Retried("504-proxy-html", lambda _c: [Action.html_error_page(504)]),
    Retried("reset-before-response", lambda _c: [Action.reset_before_response()], connections=2),
    Retried(
        "reset-before-response-post",
        lambda _c: [Action.reset_before_response()],
        call="log_heartbeat",
        connections=2,
    ),
    Retried(
        "close-before-response",
        lambda _c: [Action.close_before_response()],
        call="log_heartbeat",
        connections=2,
    ),
    Retried("reset-mid-body", lambda _c: [Action.reset_mid_body()], connections=2),
    Retried(
        "close-mid-body",
        lambda _c: [Action.close_mid_body()],
        call="get_task_status_updates",
        connections=2,
    ),
    Retried(
        "slower-than-request-timeout",
        lambda _c: [Action.delay(1.0)],
        connections=2,
        request_timeout=SHORT_TIMEOUT,
        min_elapsed=SHORT_TIMEOUT,
    ),
    Retried(
        # Every gap (0.02 s) is far below request_timeout, the total (~0.6 s) is not.
        "trickle-past-request-timeout",
        lambda call: [Action.trickle(json.dumps(OK_BODIES[call]), chunk_size=1, interval=0.02)],
        connections=2,
        request_timeout=SHORT_TIMEOUT,
        min_elapsed=SHORT_TIMEOUT,
    ),
    Retried(
        # The 3.6 server (uvicorn) after a 500: the next request on the kept-alive
        # connection is read and answered with a FIN.
        "500-then-kept-alive-connection-closed",
        lambda _c: [Action.respond_then_close(500)],
        call="log_heartbeat",
        dropped=1,
        connections=2,
        retries_logged=1,
    ),
    Retried(
        # Byte for byte what the real 3.6 server does: it closes with the next
        # request unread in the socket, and the kernel answers with a RST.
        "500-then-closed-with-the-next-request-unread",
        lambda _c: [Action.respond_then_close_unread(500)],
        call="log_heartbeat",
        connections=2,
        retries_logged=1,
    ),
    Retried(
        "500-then-kept-alive-connection-reset",
        lambda _c: [Action.respond_then_reset(500)],
        dropped=1,
        connections=2,
        retries_logged=1,
    ),
]


def _matrix(cases: list[Any]) -> list[Any]:
    """(case, mode) pairs: every fault, sync and async."""
    return [pytest.param(case, mode, id=f"{case.name}-{mode}") for case in cases for mode in MODES]


@pytest.mark.parametrize(("case", "mode"), _matrix(RETRIED))
def test_fault_is_retried_then_the_call_succeeds(
    case: Retried, mode: Mode, retry_log: list[logging.LogRecord]
) -> None:
    with FaultServer(*case.fault(case.call), default=ok(case.call)) as srv:
        requester = make_requester(srv.url, request_timeout=case.request_timeout)
        outcome = perform(mode, requester, case.call)

        assert outcome.error is None, repr(outcome.error)
        check_ok_result(case.call, outcome.result)
        assert len(srv.requests) == case.answered
        assert len(srv.dropped_requests) == case.dropped
        assert srv.connections_accepted == case.connections
        # A request the server dropped unread on a reused connection is resent
        # at once on a fresh one: not an attempt, so not a logged retry.
        assert len(retry_log) == case.retries_logged == sent(srv) - 1 - case.dropped
        assert case.min_elapsed <= outcome.elapsed < RETRIES_TIMEOUT
        # Every resend is the same request: same route, query and body.
        method, route = CALL_ROUTES[case.call]
        seen = srv.requests + srv.dropped_requests
        assert {(r.method, r.path, r.body) for r in seen} == {
            (seen[0].method, seen[0].path, seen[0].body)
        }
        assert seen[0].route == PREFIX + route
        assert seen[0].method == method


# ---------------------------------------------------------------------------
# The same faults, every time: the retries run out.


@dataclass(frozen=True)
class Exhausted:
    """A fault the server repeats on every request."""

    name: str
    fault: Action
    last_error: type[GatewayError]
    status: int | None = None
    server_message: str | None = None
    server_error_type: str | None = None
    call: str = "get_server_time"
    request_timeout: float = REQUEST_TIMEOUT


def _always(status: int, body: bytes = ERROR_ENVELOPE_500) -> Action:
    return Action.respond(status, body, content_type=CUSTOM_JSON)


EXHAUSTED = [
    Exhausted(
        "500-envelope",
        _always(500),
        ServerError,
        500,
        NO_ROW,
        "sqlalchemy.exc.NoResultFound",
        call="log_heartbeat",
    ),
    Exhausted("502-envelope", _always(502), ServerError, 502, NO_ROW),
    Exhausted("503-envelope", _always(503), ServerError, 503, NO_ROW),
    Exhausted("504-envelope", _always(504), ServerError, 504, NO_ROW),
    Exhausted(
        "423-deadlock",
        _always(423, ENVELOPE_423),
        ResourceLockedError,
        423,
        "(sqlite3.OperationalError) database is locked",
        "sqlalchemy.exc.OperationalError",
        call="log_heartbeat",
    ),
    Exhausted("502-proxy-html", Action.html_error_page(502), ServerError, 502, "502 Bad Gateway"),
    Exhausted(
        "503-proxy-html", Action.html_error_page(503), ServerError, 503, "503 Service Unavailable"
    ),
    Exhausted(
        "504-proxy-html", Action.html_error_page(504), ServerError, 504, "504 Gateway Timeout"
    ),
    Exhausted("reset-before-response", Action.reset_before_response(), TransportError),
    Exhausted(
        "reset-before-response-post",
        Action.reset_before_response(),
        TransportError,
        call="log_heartbeat",
    ),
    Exhausted(
        "close-before-response",
        Action.close_before_response(),
        TransportError,
        call="log_heartbeat",
    ),
    Exhausted("reset-mid-body", Action.reset_mid_body(), TransportError),
    Exhausted(
        "close-mid-body", Action.close_mid_body(), TransportError, call="get_task_status_updates"
    ),
    Exhausted(
        "slower-than-request-timeout",
        Action.delay(1.0),
        RequestTimeoutError,
        request_timeout=SHORT_TIMEOUT,
    ),
    Exhausted(
        "trickle-past-request-timeout",
        Action.trickle(json.dumps(OK_BODIES["get_server_time"]), chunk_size=1, interval=0.02),
        RequestTimeoutError,
        request_timeout=SHORT_TIMEOUT,
    ),
]


@pytest.mark.parametrize(("case", "mode"), _matrix(EXHAUSTED))
def test_repeated_fault_exhausts_the_retries_within_the_budget(
    case: Exhausted, mode: Mode, retry_log: list[logging.LogRecord]
) -> None:
    with FaultServer(default=case.fault) as srv:
        requester = make_requester(srv.url, request_timeout=case.request_timeout)
        outcome = perform(mode, requester, case.call)
        error = outcome.failed()

        assert spent(error, case.last_error)
        check_identity(error, case.call, ATTEMPTS)
        assert sent(srv) == ATTEMPTS
        assert len(retry_log) == ATTEMPTS - 1
        assert (error.status, error.server_message) == (case.status, case.server_message)
        if case.server_error_type is not None:
            assert error.server_error_type == case.server_error_type
        last = error.last_error
        assert type(last) is case.last_error
        check_identity(last, case.call, ATTEMPTS)
        assert last.status == case.status
        assert isinstance(error.__cause__, GatewayError)
        # Waits are 0.01 + 0.02 s; each attempt is bounded by request_timeout.
        assert outcome.elapsed < ATTEMPTS * case.request_timeout + 0.03 + SLACK
        assert outcome.elapsed < RETRIES_TIMEOUT + case.request_timeout + SLACK


@pytest.mark.parametrize(
    ("call", "mode"),
    [
        pytest.param("get_server_time", "sync", id="GET-sync"),
        pytest.param("update_status", "sync", id="PUT-sync"),
        pytest.param("log_heartbeat", "sync", id="POST-sync"),
        pytest.param("get_server_time", "async", id="GET-async"),
        pytest.param("update_status", "async", id="PUT-async"),
        pytest.param("log_heartbeat", "async", id="POST-async"),
    ],
)
@pytest.mark.parametrize(
    "fault",
    [Action.reset_before_response(), Action.close_before_response()],
    ids=["reset", "close"],
)
def test_one_attempt_is_one_request(fault: Action, call: str, mode: Mode) -> None:
    # retries_attempts is "most requests sent for one call, the first included".
    with FaultServer(default=fault) as srv:
        error = perform(mode, make_requester(srv.url, retries_attempts=1), call).failed()
        assert error.attempts == 1
        assert sent(srv) == 1


@pytest.mark.parametrize("mode", MODES)
def test_without_retries_a_proxy_page_is_a_server_error_with_its_title(mode: Mode) -> None:
    with FaultServer(default=Action.html_error_page(502)) as srv:
        error = perform(mode, make_requester(srv.url), "get_server_time", retry=False).failed()
        assert type(error) is ServerError
        assert error.retryable
        check_identity(error, "get_server_time", 1)
        assert (error.status, error.server_message) == (502, "502 Bad Gateway")
        assert error.body_excerpt is not None
        assert error.body_excerpt.startswith("<html>")
        assert sent(srv) == 1


@pytest.mark.parametrize("mode", MODES)
def test_without_retries_a_slow_answer_is_a_request_timeout(mode: Mode) -> None:
    with FaultServer(default=Action.delay(1.0)) as srv:
        requester = make_requester(srv.url, request_timeout=SHORT_TIMEOUT)
        outcome = perform(mode, requester, "get_server_time", retry=False)
        error = outcome.failed()
        assert type(error) is RequestTimeoutError
        check_identity(error, "get_server_time", 1)
        assert error.status is None
        assert SHORT_TIMEOUT <= outcome.elapsed < SHORT_TIMEOUT + SLACK
        assert sent(srv) == 1


@pytest.mark.parametrize("mode", MODES)
def test_request_timeout_is_a_deadline_to_the_last_byte(mode: Mode) -> None:
    # 31 bytes, one every 0.02 s: no single read waits anywhere near 0.2 s, but
    # the whole answer takes ~0.6 s, so the call is cut off after ~0.2 s.
    body = json.dumps(OK_BODIES["get_server_time"])
    with FaultServer(default=Action.trickle(body, chunk_size=1, interval=0.02)) as srv:
        requester = make_requester(srv.url, request_timeout=SHORT_TIMEOUT)
        outcome = perform(mode, requester, "get_server_time", retry=False)
        error = outcome.failed()
        assert type(error) is RequestTimeoutError
        assert "request_timeout=0.2s" in error.message
        assert SHORT_TIMEOUT <= outcome.elapsed < SHORT_TIMEOUT + 0.02 + SLACK
        assert sent(srv) == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_trickle_that_ends_in_time_decodes(mode: Mode) -> None:
    body = json.dumps(OK_BODIES["get_server_time"])
    with FaultServer(default=Action.trickle(body, chunk_size=4, interval=0.01)) as srv:
        outcome = perform(mode, make_requester(srv.url), "get_server_time")
        check_ok_result("get_server_time", outcome.result)
        assert sent(srv) == 1


# ---------------------------------------------------------------------------
# The kept-alive connection dropped after a 500, and nothing better after it.


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("first", "then"),
    [
        (Action.respond_then_reset(500), Action.reset_before_response()),
        (Action.respond_then_close(500), Action.close_before_response()),
        (Action.respond_then_reset(500), Action.reset_mid_body()),
    ],
    ids=["reset", "close", "reset-mid-body"],
)
def test_dropped_connection_after_500_keeps_the_servers_message(
    first: Action, then: Action, mode: Mode, retry_log: list[logging.LogRecord]
) -> None:
    attempts = 4
    with FaultServer(first, default=then) as srv:
        requester = make_requester(srv.url, retries_attempts=attempts)
        error = perform(mode, requester, "log_heartbeat").failed()

        assert spent(error, TransportError)
        check_identity(error, "log_heartbeat", attempts)
        # The final failure was on the connection, but the error keeps what the
        # server itself said in its 500.
        assert error.status == 500
        assert error.server_message == NO_ROW
        assert error.server_error_type == "sqlalchemy.exc.NoResultFound"
        assert type(error.last_error) is TransportError
        assert error.last_error.status is None
        # The request dropped unread after the 500 is resent at once, uncounted:
        # the server answers (or fails) `attempts` requests besides it.
        assert len(srv.requests) == attempts
        assert len(srv.dropped_requests) == 1
        assert len(retry_log) == attempts - 1


# ---------------------------------------------------------------------------
# 429 and Retry-After.


def _gap(srv: FaultServer) -> float:
    first, second = srv.requests[:2]
    return second.received_at - first.received_at


@pytest.mark.parametrize("mode", MODES)
def test_retry_after_seconds_is_honoured(mode: Mode, retry_log: list[logging.LogRecord]) -> None:
    limited = Action.respond(429, {"detail": "slow down"}, retry_after=0.2)
    with FaultServer(limited, default=ok("get_server_time")) as srv:
        # The backoff alone would wait 0.01 s.
        outcome = perform(mode, make_requester(srv.url), "get_server_time")
        check_ok_result("get_server_time", outcome.result)
        assert sent(srv) == 2
        assert 0.2 <= _gap(srv) < 0.2 + SLACK
        [record] = retry_log
        assert getattr(record, "jobmon_gateway.wait") == pytest.approx(0.2)
        assert getattr(record, "jobmon_gateway.status") == 429


@pytest.mark.parametrize("mode", MODES)
def test_retry_after_http_date_is_parsed_and_capped(mode: Mode) -> None:
    # An HTTP-date has whole seconds: ask for ~5 s and cap it at 0.25 s.
    when = datetime.now(timezone.utc) + timedelta(seconds=5)
    limited = Action.respond(429, "slow down", content_type="text/plain", retry_after=when)
    with FaultServer(limited, default=ok("get_server_time")) as srv:
        requester = make_requester(srv.url, retry_after_max=0.25)
        outcome = perform(mode, requester, "get_server_time")
        check_ok_result("get_server_time", outcome.result)
        assert sent(srv) == 2
        assert 0.25 <= _gap(srv) < 0.25 + SLACK


@pytest.mark.parametrize("mode", MODES)
def test_retry_after_http_date_in_the_past_means_now(mode: Mode) -> None:
    when = datetime.now(timezone.utc) - timedelta(seconds=30)
    limited = Action.respond(429, "slow down", content_type="text/plain", retry_after=when)
    with FaultServer(limited, default=ok("get_server_time")) as srv:
        # The backoff alone would wait 0.3 s; the server said "now".
        requester = make_requester(srv.url, wait_initial=0.3, wait_max=0.3)
        outcome = perform(mode, requester, "get_server_time")
        check_ok_result("get_server_time", outcome.result)
        assert _gap(srv) < 0.2


@pytest.mark.parametrize("mode", MODES)
def test_retry_after_seconds_is_capped_by_retry_after_max(mode: Mode) -> None:
    limited = Action.respond(429, {"detail": "slow down"}, retry_after=30)
    with FaultServer(limited, default=ok("get_server_time")) as srv:
        requester = make_requester(srv.url, retry_after_max=0.2)
        outcome = perform(mode, requester, "get_server_time")
        check_ok_result("get_server_time", outcome.result)
        assert 0.2 <= _gap(srv) < 0.2 + SLACK
        assert outcome.elapsed < RETRIES_TIMEOUT


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_retry_after_beyond_the_budget_gives_up_at_once(
    form: str, mode: Mode, retry_log: list[logging.LogRecord]
) -> None:
    retry_after: float | datetime = 30
    if form == "http-date":
        retry_after = datetime.now(timezone.utc) + timedelta(seconds=30)
    limited = Action.respond(429, {"detail": "slow down"}, retry_after=retry_after)
    with FaultServer(limited, default=ok("get_server_time")) as srv:
        requester = make_requester(srv.url, retries_timeout=2.0, retry_after_max=60.0)
        outcome = perform(mode, requester, "get_server_time")
        error = outcome.failed()

        assert spent(error, RateLimitedError)
        check_identity(error, "get_server_time", 1)
        assert (error.status, error.server_message) == (429, "slow down")
        last = error.last_error
        assert type(last) is RateLimitedError
        assert last.retry_after is not None
        assert 25 <= last.retry_after <= 30
        assert outcome.elapsed < SLACK  # no sleep at all, let alone 30 s
        assert sent(srv) == 1
        assert retry_log == []


@pytest.mark.parametrize("mode", MODES)
def test_retry_after_beyond_the_remaining_budget_gives_up(mode: Mode) -> None:
    # 0.3 s fits a 1 s budget; after it, 0.8 s more does not.
    script = [
        Action.respond(429, {"detail": "first"}, retry_after=0.3),
        Action.respond(429, {"detail": "second"}, retry_after=0.8),
    ]
    with FaultServer(*script, default=ok("get_server_time")) as srv:
        requester = make_requester(srv.url, retries_timeout=1.0, retries_attempts=10)
        outcome = perform(mode, requester, "get_server_time")
        error = outcome.failed()
        assert spent(error, RateLimitedError)
        check_identity(error, "get_server_time", 2)
        assert (error.status, error.server_message) == (429, "second")
        assert 0.3 <= outcome.elapsed < 1.0
        assert sent(srv) == 2


@pytest.mark.parametrize("mode", MODES)
def test_repeated_429_exhausts_the_attempts(mode: Mode) -> None:
    limited = Action.respond(429, {"detail": "slow down"}, retry_after=0.05)
    with FaultServer(default=limited) as srv:
        outcome = perform(mode, make_requester(srv.url), "log_heartbeat")
        error = outcome.failed()
        assert spent(error, RateLimitedError)
        check_identity(error, "log_heartbeat", ATTEMPTS)
        assert (error.status, error.server_message) == (429, "slow down")
        assert sent(srv) == ATTEMPTS
        assert 0.05 * (ATTEMPTS - 1) <= outcome.elapsed < RETRIES_TIMEOUT


@pytest.mark.parametrize("mode", MODES)
def test_time_budget_stops_the_retries_before_the_attempts_run_out(mode: Mode) -> None:
    with FaultServer(default=_always(503)) as srv:
        requester = make_requester(
            srv.url, retries_attempts=100, retries_timeout=0.3, wait_initial=0.05, wait_max=0.05
        )
        outcome = perform(mode, requester, "get_server_time")
        error = outcome.failed()
        assert spent(error, ServerError)
        assert 2 <= error.attempts < 100
        assert error.attempts == sent(srv)
        assert outcome.elapsed < 0.3 + SLACK


# ---------------------------------------------------------------------------
# Answers that are never retried.

# The recorded wire bytes (PROTOCOL.md's wire/ folder), kept here so that the
# file runs without it; test_recorded_envelopes_match_the_wire_folder checks them.
RECORDED_4XX: list[dict[str, Any]] = [
    {
        "file": "jobmon-server-3.6/error_bad_body.json",
        "status": 400,
        "content_type": "application/custom+json",
        "response_text": '{"error":{"type":"<class \'jobmon.server.web.server_side_exception.'
        'InvalidUsage\'>","exception_message":"\\"\'next_report_increment\' in request to '
        '/api/v3/workflow_run/1/log_heartbeat\\"","status_code":"400"}}',
        "error": BadRequestError,
        "call": "log_heartbeat",
        "server_message": "\"'next_report_increment' in request to"
        ' /api/v3/workflow_run/1/log_heartbeat"',
        "server_error_type": "jobmon.server.web.server_side_exception.InvalidUsage",
    },
    {
        "file": "jobmon-server-3.2.2/error_bad_body.json",
        "status": 400,
        "content_type": "application/json",
        "response_text": '{"error":{"exception_message":"\\"\'next_report_increment\' in '
        'request to /workflow_run/1/log_heartbeat\\"","type":"<class '
        "'jobmon.server.web.server_side_exception.InvalidUsage'>\"}}\n",
        "error": BadRequestError,
        "call": "log_heartbeat",
        "server_message": "\"'next_report_increment' in request to /workflow_run/1/log_heartbeat\"",
        "server_error_type": "jobmon.server.web.server_side_exception.InvalidUsage",
    },
    {
        "file": "jobmon-server-3.6/error_unknown_route.json",
        "status": 404,
        "content_type": "application/json",
        "response_text": '{"detail":"Not Found"}',
        "error": NotFoundError,
        "call": "get_server_time",
        "server_message": "Not Found",
        "server_error_type": None,
    },
    {
        "file": "jobmon-server-3.6/get_max_concurrently_running_missing.json",
        "status": 404,
        "content_type": "application/json",
        "response_text": '{"error":"Workflow with ID 999 not found in database."}',
        "error": NotFoundError,
        "call": "get_workflow_concurrency",
        "server_message": "Workflow with ID 999 not found in database.",
        "server_error_type": None,
    },
    {
        "file": "jobmon-server-3.2.2/error_unknown_route.json",
        "status": 404,
        "content_type": "text/html; charset=utf-8",
        "response_text": "This route does not exist: http://127.0.0.1:18322/no_such_route",
        "error": NotFoundError,
        "call": "get_server_time",
        "server_message": "This route does not exist: http://127.0.0.1:18322/no_such_route",
        "server_error_type": None,
    },
    {
        "file": "jobmon-server-3.6/error_bad_path_id.json",
        "status": 422,
        "content_type": "application/json",
        "response_text": '{"detail":[{"type":"int_parsing","loc":["path","workflow_id"],'
        '"msg":"Input should be a valid integer, unable to parse string as an integer",'
        '"input":"abc"}]}',
        "error": UnprocessableEntityError,
        "call": "get_task_status_updates",
        "server_message": "path.workflow_id: Input should be a valid integer,"
        " unable to parse string as an integer",
        "server_error_type": None,
    },
]


def _wire_dir() -> Path | None:
    candidate = Path(__file__).resolve().parents[2] / "shared" / "wire"
    return candidate if candidate.is_dir() else None


def test_recorded_envelopes_match_the_wire_folder() -> None:
    wire = _wire_dir()
    if wire is None:
        pytest.skip("no recorded wire pairs beside the repo")
    for case in RECORDED_4XX:
        recorded = json.loads((wire / case["file"]).read_text(encoding="utf-8"))
        assert recorded["status"] == case["status"], case["file"]
        assert recorded["content_type"] == case["content_type"], case["file"]
        assert recorded["response_text"] == case["response_text"], case["file"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", RECORDED_4XX, ids=[case["file"] for case in RECORDED_4XX])
def test_client_errors_are_never_retried(
    case: dict[str, Any], mode: Mode, retry_log: list[logging.LogRecord]
) -> None:
    answer = Action.respond(
        case["status"], case["response_text"], content_type=case["content_type"]
    )
    # Were it retried, the second request would succeed.
    with FaultServer(answer, default=ok(case["call"])) as srv:
        outcome = perform(mode, make_requester(srv.url), case["call"])
        error = outcome.failed()

        assert type(error) is case["error"]
        assert not error.retryable
        check_identity(error, case["call"], 1)
        assert error.status == case["status"]
        assert error.server_message == case["server_message"]
        assert error.server_error_type == case["server_error_type"]
        assert error.body_excerpt == case["response_text"]
        assert sent(srv) == 1
        assert retry_log == []
        assert outcome.elapsed < SLACK


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("status", [401, 403, 409, 418])
def test_other_client_errors_are_plain_status_errors_never_retried(status: int, mode: Mode) -> None:
    answer = Action.respond(status, {"detail": "no"})
    with FaultServer(answer, default=ok("get_server_time")) as srv:
        error = perform(mode, make_requester(srv.url), "get_server_time").failed()
        assert type(error) is ServerStatusError
        assert (error.status, error.server_message, error.attempts) == (status, "no", 1)
        assert sent(srv) == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("call", ["get_server_time", "log_heartbeat"])
def test_truncated_json_is_an_invalid_response_never_retried(mode: Mode, call: str) -> None:
    with FaultServer(Action.truncated_json(), default=ok(call)) as srv:
        error = perform(mode, make_requester(srv.url), call).failed()
        assert type(error) is InvalidResponseError
        assert not error.retryable
        check_identity(error, call, 1)
        assert error.status == 200
        assert error.body_excerpt == '{"status": "R'
        assert error.server_message is None
        assert isinstance(error.__cause__, ValueError)
        assert sent(srv) == 1


# ---------------------------------------------------------------------------
# No server at all.


@pytest.mark.parametrize("mode", MODES)
def test_connection_refused_is_retried_until_the_budget_is_spent(
    mode: Mode, retry_log: list[logging.LogRecord]
) -> None:
    with refusing_url() as url:
        outcome = perform(mode, make_requester(url), "log_heartbeat")
    error = outcome.failed()
    assert spent(error, TransportError)
    check_identity(error, "log_heartbeat", ATTEMPTS)
    assert (error.status, error.server_message) == (None, None)
    last = error.last_error
    assert type(last) is TransportError
    assert "ConnectError" in last.message
    check_identity(last, "log_heartbeat", ATTEMPTS)
    assert [getattr(r, "jobmon_gateway.cause") for r in retry_log] == ["TransportError"] * (
        ATTEMPTS - 1
    )
    # Backoff 0.01 then 0.02 s.
    assert 0.03 <= outcome.elapsed < SLACK


# ---------------------------------------------------------------------------
# A very large answer.


@pytest.mark.parametrize("mode", MODES)
def test_an_8mb_snapshot_decodes(mode: Mode) -> None:
    ids = list(range(1, 1_100_001))
    by_status = {"G": ids[0::3], "Q": ids[1::3], "R": ids[2::3]}
    body = json.dumps({"tasks_by_status": by_status, "time": SERVER_TIME}).encode()
    assert len(body) > 8_000_000
    with FaultServer(default=Action.respond(200, body)) as srv:
        requester = make_requester(srv.url, request_timeout=20.0, retries_timeout=30.0)
        outcome = perform(mode, requester, "get_task_status_updates")
        assert outcome.error is None, repr(outcome.error)
        result = outcome.result
        assert isinstance(result, TaskStatusUpdatesResponse)
        assert result.tasks_by_status == by_status
        assert result.time == datetime(2026, 11, 28, 17, 56, 34)
        assert sent(srv) == 1


# ---------------------------------------------------------------------------
# The real 3.6 server after a 500, with retries off: the next call must not fail.


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("retries", ["retries_attempts=1", "without_retries"])
@pytest.mark.parametrize(
    "after_500",
    [
        Action.respond_then_close_unread(500),
        Action.respond_then_reset(500),
        Action.respond_then_close(500),
    ],
    ids=["closed-unread", "reset", "closed"],
)
def test_the_call_after_a_500_succeeds_with_retries_off(
    mode: Mode, retries: str, after_500: Action
) -> None:
    with FaultServer(after_500, default=ok("log_heartbeat")) as srv:
        options = {"retries_attempts": 1} if retries == "retries_attempts=1" else {}
        requester = make_requester(srv.url, **options)
        gateway = ServerGateway(requester, WORKFLOW_ID, WORKFLOW_RUN_ID)
        view = gateway.without_retries() if retries == "without_retries" else gateway
        args = CALL_ARGS["log_heartbeat"]

        async def run() -> tuple[GatewayError | None, Any]:
            first: GatewayError | None = None
            try:
                await view.log_heartbeat(*args)
            except GatewayError as exc:
                first = exc
            second = await view.log_heartbeat(*args)
            await gateway.close()
            return first, second

        first: GatewayError | None = None
        if mode == "sync":
            try:
                view.log_heartbeat_sync(*args)
            except GatewayError as exc:
                first = exc
            second = view.log_heartbeat_sync(*args)
            gateway.close_sync()
        else:
            first, second = asyncio.run(run())
        assert first is not None
        assert first.status == 500
        assert first.attempts == 1
        assert second.status == "R"
        assert len(srv.requests) == 2
        assert srv.connections_accepted == 2
