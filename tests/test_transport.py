"""The transport: settings, URLs, headers, retries, error mapping and logging."""

from __future__ import annotations

import email.utils
import gzip
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock
from stamina.instrumentation import RetryDetails, set_on_retry_hooks

from jobmon_gateway import (
    CLIENT_JOBMON_VERSION,
    BadRequestError,
    ConfigurationError,
    GatewayError,
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
    TransportError,
    UnprocessableEntityError,
)

TIME = {"time": "2026-11-28 17:56:34"}
NOON = datetime(2026, 11, 28, 17, 56, 34)
ERROR_500 = {
    "error": {
        "type": "<class 'sqlalchemy.exc.NoResultFound'>",
        "exception_message": "No row was found when one was required",
        "status_code": "500",
    }
}
CUSTOM_JSON = {"Content-Type": "application/custom+json"}
SECRET = "Bearer s3cr3t-t0ken"


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
async def gateway(make_requester: Callable[..., Requester]) -> AsyncIterator[ServerGateway]:
    gateway = ServerGateway(make_requester(route_prefix="/api/v3"), 1, 1)
    yield gateway
    await gateway.close()


async def run(gateway: ServerGateway, mode: str, name: str, *args: Any) -> Any:
    """Call ``name`` on the gateway: ``<name>_sync`` in sync mode, awaited in async mode."""
    if mode == "sync":
        return getattr(gateway, f"{name}_sync")(*args)
    return await getattr(gateway, name)(*args)


async def server_time(gateway: ServerGateway, mode: str) -> Any:
    return await run(gateway, mode, "get_server_time")


async def with_gateway(requester: Requester, mode: str, name: str, *args: Any) -> Any:
    gateway = ServerGateway(requester, 1, 1)
    try:
        return await run(gateway, mode, name, *args)
    finally:
        await gateway.close()


# -- settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["ftp://jobmon.test", "jobmon.test:5000", "", "/api/v3", 5000, None], ids=repr
)
def test_service_url_must_be_http(url: Any) -> None:
    with pytest.raises(ConfigurationError) as refused:
        Requester(url)
    assert isinstance(refused.value, ValueError)
    assert "service_url" in str(refused.value)


POSITIVE = ["request_timeout", "wait_exp_base"]
NON_NEGATIVE = ["retries_timeout", "wait_initial", "wait_max", "wait_jitter", "retry_after_max"]


@pytest.mark.parametrize(
    ("name", "bad"),
    [(name, bad) for name in POSITIVE for bad in (0, -1, math.nan, math.inf, "5", True, None)]
    + [
        (name, bad)
        for name in NON_NEGATIVE
        for bad in (-1, -0.1, math.nan, math.inf, "1", True, None)
    ]
    + [("retries_attempts", bad) for bad in (0, -1, 1.5, True, "3", None)]
    + [("route_prefix", bad) for bad in (5, None, b"/api")],
    ids=repr,
)
def test_malformed_settings_are_refused(name: str, bad: Any) -> None:
    with pytest.raises(ConfigurationError) as refused:
        Requester("http://jobmon.test", **{name: bad})
    assert name in str(refused.value)


def test_zero_waits_and_one_attempt_are_valid() -> None:
    requester = Requester(
        "http://jobmon.test",
        wait_initial=0,
        wait_max=0,
        wait_jitter=0,
        retry_after_max=0,
        retries_attempts=1,
    )
    assert requester.retries_attempts == 1
    assert requester.with_options(retries_attempts=4).retries_attempts == 4


def test_with_options_checks_its_changes() -> None:
    with pytest.raises(ConfigurationError):
        Requester("http://jobmon.test").with_options(request_timeout=-1)


# -- URLs and headers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service_url", "route_prefix", "expected"),
    [
        ("http://jobmon.test:5000", "/api/v3", "http://jobmon.test:5000/api/v3/time"),
        ("http://jobmon.test:5000/", "api/v3", "http://jobmon.test:5000/api/v3/time"),
        ("http://jobmon.test:5000", "/api/v3/", "http://jobmon.test:5000/api/v3/time"),
        ("http://jobmon.test:5000/", "/api/v3/", "http://jobmon.test:5000/api/v3/time"),
        ("http://jobmon.test:5000", "", "http://jobmon.test:5000/time"),
        ("http://jobmon.test:5000/", "/", "http://jobmon.test:5000/time"),
        ("https://jobmon.test/jobmon", "/api/v3", "https://jobmon.test/jobmon/api/v3/time"),
    ],
)
async def test_base_url_joining(
    make_requester: Callable[..., Requester],
    httpx_mock: HTTPXMock,
    mode: str,
    service_url: str,
    route_prefix: str,
    expected: str,
) -> None:
    httpx_mock.add_response(json=TIME)
    requester = make_requester(service_url=service_url, route_prefix=route_prefix)
    assert await with_gateway(requester, mode, "get_server_time") == NOON
    (request,) = httpx_mock.get_requests()
    assert str(request.url.copy_with(query=None)) == expected
    assert dict(request.url.params) == {"client_jobmon_version": CLIENT_JOBMON_VERSION}


@pytest.mark.parametrize(
    ("call", "args", "answer", "method"),
    [
        ("get_server_time", (), TIME, "GET"),
        ("get_tasks", (0, 10), {"tasks": {}}, "GET"),
        ("log_heartbeat", ("R", 30.0), {"status": "R"}, "POST"),
        ("update_status", ("D",), {"status": "D"}, "PUT"),
    ],
)
async def test_every_request_carries_the_headers(
    make_requester: Callable[..., Requester],
    httpx_mock: HTTPXMock,
    mode: str,
    call: str,
    args: tuple[Any, ...],
    answer: Any,
    method: str,
) -> None:
    httpx_mock.add_response(json=answer)
    requester = make_requester(headers={"Authorization": SECRET, "X-Site": "ihme"})
    await with_gateway(requester, mode, call, *args)
    (request,) = httpx_mock.get_requests()
    assert request.method == method
    # GET included: 3.2 answers a GET without Content-Type with a 500.
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("jobmon-gateway/")
    assert request.headers["Authorization"] == SECRET
    assert request.headers["X-Site"] == "ihme"
    assert request.url.params["client_jobmon_version"] == CLIENT_JOBMON_VERSION


async def test_client_jobmon_version_is_configurable(
    make_requester: Callable[..., Requester], httpx_mock: HTTPXMock, mode: str
) -> None:
    httpx_mock.add_response(json=TIME)
    await with_gateway(make_requester(client_jobmon_version="3.4.0"), mode, "get_server_time")
    (request,) = httpx_mock.get_requests()
    assert request.url.params["client_jobmon_version"] == "3.4.0"


async def test_gzip_answers_are_decoded(mode: str) -> None:
    # Served by httpx.MockTransport: pytest-httpx cannot stream a compressed body.
    rows = {
        str(task_id): [1, "Q", 3, "{}", "[]", "{}", "sequential", "null.q", 5]
        for task_id in range(1, 200)
    }
    body = json.dumps({"tasks": rows}).encode()
    assert len(body) > 1000
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            content=gzip.compress(body),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )

    transport = httpx.MockTransport(answer)
    requester = Requester("http://jobmon.test", transport=transport, async_transport=transport)
    tasks = await with_gateway(requester, mode, "get_tasks", 0, 500)
    assert list(tasks) == list(range(1, 200))
    assert "gzip" in seen[0].headers["Accept-Encoding"]


async def test_secret_headers_never_show_in_errors_or_logs(
    make_requester: Callable[..., Requester],
    httpx_mock: HTTPXMock,
    mode: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    httpx_mock.add_response(status_code=500, json=ERROR_500, headers=CUSTOM_JSON)
    httpx_mock.add_exception(httpx.ConnectError("refused"))
    httpx_mock.add_response(status_code=500, json=ERROR_500, headers=CUSTOM_JSON)
    requester = make_requester(headers={"Authorization": SECRET})
    assert "s3cr3t" not in repr(requester)
    with pytest.raises(RetryBudgetExhaustedError) as exhausted:
        await with_gateway(requester, mode, "log_heartbeat", "R", 30.0)
    assert all(r.headers["Authorization"] == SECRET for r in httpx_mock.get_requests())
    error = exhausted.value
    for shown in (str(error), repr(error), str(error.last_error), repr(error.last_error)):
        assert "s3cr3t" not in shown
    assert "s3cr3t" not in (error.body_excerpt or "")
    assert "s3cr3t" not in caplog.text


# -- retries -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, ServerError),
        (423, ResourceLockedError),
    ],
)
async def test_retryable_statuses_are_retried_until_success(
    make_requester: Callable[..., Requester],
    httpx_mock: HTTPXMock,
    mode: str,
    status: int,
    kind: type[GatewayError],
) -> None:
    for _ in range(2):
        httpx_mock.add_response(status_code=status, html="<html><title>Bad Gateway</title></html>")
    httpx_mock.add_response(json=TIME)
    requester = make_requester(retries_attempts=3)
    assert await with_gateway(requester, mode, "get_server_time") == NOON
    assert len(httpx_mock.get_requests()) == 3


@pytest.mark.parametrize(
    ("status", "kind"),
    [(500, ServerError), (503, ServerError), (423, ResourceLockedError), (429, RateLimitedError)],
)
async def test_retryable_statuses_end_in_budget_exhausted(
    make_requester: Callable[..., Requester],
    httpx_mock: HTTPXMock,
    mode: str,
    status: int,
    kind: type[GatewayError],
) -> None:
    httpx_mock.add_response(status_code=status, json=ERROR_500, is_reusable=True)
    with pytest.raises(RetryBudgetExhaustedError) as exhausted:
        await with_gateway(make_requester(retries_attempts=3), mode, "get_server_time")
    error = exhausted.value
    assert isinstance(error, RuntimeError)
    assert type(error.last_error) is kind
    assert error.status == status
    assert error.attempts == 3
    assert error.method == "GET"
    assert error.route == "/time"
    assert error.server_message == "No row was found when one was required"
    assert error.server_error_type == "sqlalchemy.exc.NoResultFound"
    assert len(httpx_mock.get_requests()) == 3


@pytest.mark.parametrize(
    "retry_after",
    ["0", "0.0", email.utils.format_datetime(datetime.now(timezone.utc) - timedelta(seconds=30))],
    ids=["zero", "zero-float", "http-date-in-the-past"],
)
async def test_429_with_retry_after_is_retried(
    make_requester: Callable[..., Requester],
    httpx_mock: HTTPXMock,
    mode: str,
    retry_after: str,
) -> None:
    httpx_mock.add_response(status_code=429, headers={"Retry-After": retry_after})
    httpx_mock.add_response(json=TIME)
    requester = make_requester(retry_after_max=60)
    started = time.monotonic()
    assert await with_gateway(requester, mode, "get_server_time") == NOON
    assert time.monotonic() - started < 5
    assert len(httpx_mock.get_requests()) == 2


async def test_retry_after_is_honoured(
    make_requester: Callable[..., Requester], httpx_mock: HTTPXMock, mode: str
) -> None:
    # The backoff itself is zero here, so any wait is the server's Retry-After.
    httpx_mock.add_response(status_code=503, headers={"Retry-After": "0.2"})
    httpx_mock.add_response(json=TIME)
    started = time.monotonic()
    assert await with_gateway(make_requester(retry_after_max=5), mode, "get_server_time") == NOON
    assert time.monotonic() - started >= 0.2


async def test_retry_after_is_capped_by_retry_after_max(
    make_requester: Callable[..., Requester], httpx_mock: HTTPXMock, mode: str
) -> None:
    httpx_mock.add_response(status_code=429, headers={"Retry-After": "3600"})
    httpx_mock.add_response(json=TIME)
    started = time.monotonic()
    assert await with_gateway(make_requester(retry_after_max=0), mode, "get_server_time") == NOON
    assert time.monotonic() - started < 5


async def test_a_wait_beyond_the_time_budget_is_not_started(
    make_requester: Callable[..., Requester], httpx_mock: HTTPXMock, mode: str
) -> None:
    httpx_mock.add_response(status_code=429, headers={"Retry-After": "30"})
    requester = make_requester(retry_after_max=60, retries_timeout=1, retries_attempts=5)
    started = time.monotonic()
    with pytest.raises(RetryBudgetExhaustedError) as exhausted:
        await with_gateway(requester, mode, "get_server_time")
    assert time.monotonic() - started < 1
    assert exhausted.value.status == 429
    assert exhausted.value.attempts == 1
    assert len(httpx_mock.get_requests()) == 1


@pytest.mark.parametrize(
    ("status", "kind", "body"),
    [
        (400, BadRequestError, {"error": {"type": "x", "exception_message": "bad body"}}),
        (404, NotFoundError, {"error": "Workflow with ID 999 not found in database."}),
        (422, UnprocessableEntityError, {"detail": [{"loc": ["path", "x"], "msg": "no"}]}),
        (401, ServerStatusError, {"detail": "Not authenticated"}),
        (409, ServerStatusError, {"detail": "Conflict"}),
    ],
)
async def test_client_errors_are_never_retried(
    make_requester: Callable[..., Requester],
    httpx_mock: HTTPXMock,
    mode: str,
    status: int,
    kind: type[GatewayError],
    body: Any,
) -> None:
    httpx_mock.add_response(status_code=status, json=body)
    with pytest.raises(GatewayError) as raised:
        await with_gateway(make_requester(retries_attempts=5), mode, "get_server_time")
    assert type(raised.value) is kind
    assert raised.value.status == status
    assert raised.value.attempts == 1
    assert raised.value.server_message
    assert len(httpx_mock.get_requests()) == 1


@pytest.mark.parametrize(
    ("exception", "kind"),
    [
        (httpx.ConnectError("connection refused"), TransportError),
        (httpx.RemoteProtocolError("peer closed connection"), TransportError),
        (httpx.ReadError("connection reset by peer"), TransportError),
        (httpx.ReadTimeout("read timed out"), RequestTimeoutError),
        (httpx.ConnectTimeout("connect timed out"), RequestTimeoutError),
        (httpx.PoolTimeout("pool timed out"), RequestTimeoutError),
    ],
    ids=lambda item: type(item).__name__ if isinstance(item, Exception) else item.__name__,
)
async def test_transport_failures_are_retried_then_exhausted(
    make_requester: Callable[..., Requester],
    httpx_mock: HTTPXMock,
    mode: str,
    exception: Exception,
    kind: type[GatewayError],
) -> None:
    httpx_mock.add_exception(exception, is_reusable=True)
    with pytest.raises(RetryBudgetExhaustedError) as exhausted:
        await with_gateway(make_requester(retries_attempts=4), mode, "get_server_time")
    error = exhausted.value
    assert type(error.last_error) is kind
    assert error.attempts == 4
    assert error.status is None
    assert error.server_message is None
    assert (error.method, error.route) == ("GET", "/time")
    assert len(httpx_mock.get_requests()) == 4


async def test_a_connection_error_then_success(
    make_requester: Callable[..., Requester], httpx_mock: HTTPXMock, mode: str
) -> None:
    httpx_mock.add_exception(httpx.ConnectError("connection refused"))
    httpx_mock.add_response(json=TIME)
    assert await with_gateway(make_requester(), mode, "get_server_time") == NOON
    assert len(httpx_mock.get_requests()) == 2


@pytest.mark.parametrize("attempts", [1, 2, 5])
async def test_retries_attempts_is_respected_exactly(
    make_requester: Callable[..., Requester], httpx_mock: HTTPXMock, mode: str, attempts: int
) -> None:
    httpx_mock.add_response(status_code=503, text="busy", is_reusable=True)
    with pytest.raises(GatewayError) as raised:
        await with_gateway(make_requester(retries_attempts=attempts), mode, "get_server_time")
    assert isinstance(raised.value, RetryBudgetExhaustedError | ServerError)
    assert raised.value.status == 503
    assert raised.value.attempts == attempts
    assert len(httpx_mock.get_requests()) == attempts


@pytest.mark.parametrize(
    ("register", "kind"),
    [
        (lambda mock: mock.add_response(status_code=503, text="busy"), ServerError),
        (lambda mock: mock.add_response(status_code=423, json=ERROR_500), ResourceLockedError),
        (lambda mock: mock.add_exception(httpx.ConnectError("refused")), TransportError),
        (lambda mock: mock.add_exception(httpx.ReadTimeout("slow")), RequestTimeoutError),
    ],
    ids=["503", "423", "connect-error", "read-timeout"],
)
async def test_without_retries_sends_once(
    gateway: ServerGateway,
    httpx_mock: HTTPXMock,
    mode: str,
    register: Callable[[HTTPXMock], None],
    kind: type[GatewayError],
) -> None:
    register(httpx_mock)
    with pytest.raises(GatewayError) as raised:
        await server_time(gateway.without_retries(), mode)
    assert type(raised.value) is kind
    assert raised.value.attempts == 1
    assert len(httpx_mock.get_requests()) == 1


async def test_without_retries_leaves_the_gateway_retrying(
    gateway: ServerGateway, httpx_mock: HTTPXMock, mode: str
) -> None:
    httpx_mock.add_response(status_code=503, text="busy")
    httpx_mock.add_response(json=TIME)
    once = gateway.without_retries()
    assert once is not gateway
    assert await server_time(gateway, mode) == NOON
    assert len(httpx_mock.get_requests()) == 2


async def test_a_500_then_connection_errors_keeps_the_500s_message(
    make_requester: Callable[..., Requester], httpx_mock: HTTPXMock, mode: str
) -> None:
    # uvicorn drops the connection after a 500: the reset must not hide what it said.
    httpx_mock.add_response(status_code=500, json=ERROR_500, headers=CUSTOM_JSON)
    httpx_mock.add_exception(httpx.RemoteProtocolError("Server disconnected"))
    httpx_mock.add_exception(httpx.ConnectError("connection refused"))
    with pytest.raises(RetryBudgetExhaustedError) as exhausted:
        await with_gateway(make_requester(retries_attempts=3), mode, "log_heartbeat", "R", 30.0)
    error = exhausted.value
    assert error.status == 500
    assert error.server_message == "No row was found when one was required"
    assert error.server_error_type == "sqlalchemy.exc.NoResultFound"
    assert type(error.last_error) is TransportError
    assert error.attempts == 3
    assert (error.method, error.route) == ("POST", "/workflow_run/1/log_heartbeat")
    assert "No row was found" in str(error)


# -- answers that do not fit -------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b'{"status": 5}', b"{}", b"<html>oops</html>", b"", b'{"status": "R"'],
    ids=["wrong-type", "missing-field", "html", "empty", "truncated-json"],
)
async def test_a_200_that_does_not_fit_is_an_invalid_response(
    gateway: ServerGateway, httpx_mock: HTTPXMock, mode: str, content: bytes
) -> None:
    httpx_mock.add_response(content=content, headers={"Content-Type": "application/json"})
    with pytest.raises(InvalidResponseError) as raised:
        await run(gateway, mode, "log_heartbeat", "R", 30.0)
    error = raised.value
    assert error.route == "/workflow_run/1/log_heartbeat"
    assert error.method == "POST"
    assert error.status == 200
    assert error.attempts == 1
    assert "/workflow_run/1/log_heartbeat" in str(error)
    assert error.body_excerpt == content.decode()
    assert error.__cause__ is not None
    assert len(httpx_mock.get_requests()) == 1  # not retried


async def test_the_body_excerpt_of_a_huge_answer_is_capped(
    gateway: ServerGateway, httpx_mock: HTTPXMock, mode: str
) -> None:
    httpx_mock.add_response(content=b"[" + b"9," * 200_000 + b"9]")
    with pytest.raises(InvalidResponseError) as raised:
        await run(gateway, mode, "get_workflow_concurrency")
    excerpt = raised.value.body_excerpt
    assert excerpt is not None
    assert excerpt.startswith("[9,9,")
    assert 400 <= len(excerpt) <= 510
    assert len(str(raised.value)) < 2000


async def test_error_bodies_are_read_whatever_their_content_type(
    gateway: ServerGateway, httpx_mock: HTTPXMock, mode: str
) -> None:
    httpx_mock.add_response(
        status_code=400,
        headers=CUSTOM_JSON,
        content=b'{"error":{"type":"<class \'x.InvalidUsage\'>","exception_message":"no"}}',
    )
    with pytest.raises(BadRequestError) as raised:
        await run(gateway, mode, "log_heartbeat", "R", 30.0)
    assert raised.value.server_message == "no"
    assert raised.value.server_error_type == "x.InvalidUsage"


# -- logging -----------------------------------------------------------------------------


async def test_retries_are_logged_at_warning(
    make_requester: Callable[..., Requester],
    httpx_mock: HTTPXMock,
    mode: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="jobmon_gateway")
    httpx_mock.add_response(status_code=503, text="busy")
    httpx_mock.add_exception(httpx.ConnectError("refused"))
    httpx_mock.add_response(json=TIME)
    assert await with_gateway(make_requester(), mode, "get_server_time") == NOON
    warnings = [
        record
        for record in caplog.records
        if record.name == "jobmon_gateway" and record.levelno == logging.WARNING
    ]
    assert len(warnings) == 2
    for attempt, record in enumerate(warnings, start=1):
        message = record.getMessage()
        assert "/time" in message
        assert f"attempt {attempt}" in message
    assert "503" in warnings[0].getMessage()
    assert "ConnectError" in warnings[1].getMessage()


async def test_the_happy_path_logs_nothing_above_debug(
    gateway: ServerGateway,
    httpx_mock: HTTPXMock,
    mode: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="jobmon_gateway")
    httpx_mock.add_response(json=TIME)
    httpx_mock.add_response(json={"status": "R"})
    assert await server_time(gateway, mode) == NOON
    await run(gateway, mode, "log_heartbeat", "R", 30.0)
    assert [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("jobmon_gateway") and record.levelno > logging.DEBUG
    ] == []


async def test_turning_tls_verification_off_is_logged(
    httpx_mock: HTTPXMock, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="jobmon_gateway")
    httpx_mock.add_response(json=TIME)
    requester = Requester("https://jobmon.test", verify=False)
    assert await with_gateway(requester, mode, "get_server_time") == NOON
    assert any(
        record.levelno == logging.WARNING and "TLS" in record.getMessage()
        for record in caplog.records
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_stamina_instrumentation_sees_every_retry(mode: str) -> None:
    # The first attempt runs outside stamina's loop; its retry must still
    # reach stamina's hooks (logging, structlog, prometheus) like the others.
    answers = [500, 503, 200]

    def answer(request: httpx.Request) -> httpx.Response:
        status = answers.pop(0)
        return httpx.Response(status, json={"time": "2026-11-28 17:56:34"})

    seen: list[RetryDetails] = []

    def record(details: RetryDetails) -> None:
        seen.append(details)

    set_on_retry_hooks([record])
    try:
        transport = httpx.MockTransport(answer)
        requester = Requester(
            "http://jobmon.test",
            transport=transport,
            async_transport=transport,
            wait_initial=0,
            wait_jitter=0,
        )
        now = await with_gateway(requester, mode, "get_server_time")
    finally:
        set_on_retry_hooks(None)
    assert now == datetime(2026, 11, 28, 17, 56, 34)
    assert [details.retry_num for details in seen] == [1, 2]
    assert [type(details.caused_by) for details in seen] == [ServerError, ServerError]
