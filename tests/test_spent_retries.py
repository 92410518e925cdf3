"""A call whose retries are spent raises its last attempt's class, and says it gave up.

``except ServerError`` catches a 5xx whatever the retry settings, ``except
TransportError`` a refused connection, ``except RetryBudgetExhaustedError``
still catches both. Sync and async alike; refused connections on real
sockets on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import pickle
import socket
from collections.abc import Callable, Iterator
from typing import Any, Literal

import httpx
import pytest

from jobmon_gateway import (
    GatewayError,
    RateLimitedError,
    Requester,
    RequestTimeoutError,
    RetryBudgetExhaustedError,
    ServerError,
    ServerGateway,
    TransportError,
)

Mode = Literal["sync", "async"]
MODES: list[Mode] = ["sync", "async"]
Handler = Callable[[httpx.Request], httpx.Response]


def requester(handler: Handler | None = None, **options: Any) -> Requester:
    """Retries without waiting, on a mock transport answering with ``handler``."""
    settings: dict[str, Any] = {
        "retries_attempts": 3,
        "wait_initial": 0,
        "wait_jitter": 0,
        "wait_max": 0,
        "retry_after_max": 0,
        **options,
    }
    if handler is not None:
        settings["transport"] = httpx.MockTransport(handler)
        settings["async_transport"] = httpx.MockTransport(handler)
    return Requester(settings.pop("service_url", "http://127.0.0.1:1"), **settings)


def time_call(mode: Mode, gateway: ServerGateway) -> Any:
    if mode == "sync":
        return gateway.get_server_time_sync()
    return asyncio.run(gateway.get_server_time())


def always(status: int, **headers: str) -> Handler:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers, json={"detail": "busy"})

    return answer


@pytest.fixture
def refusing_url() -> Iterator[str]:
    """A loopback URL that refuses connections: the port is bound, never listened on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{holder.getsockname()[1]}"


@pytest.mark.parametrize("mode", MODES)
def test_a_spent_5xx_is_caught_as_a_server_error(mode: Mode) -> None:
    gateway = ServerGateway(requester(always(503), retries_attempts=2), 1, 1)
    try:
        time_call(mode, gateway)
    except ServerError as error:
        caught: GatewayError = error
    else:
        pytest.fail("no error")
    # ... and as the spent budget it also is, and as what the reference raised.
    assert isinstance(caught, RetryBudgetExhaustedError)
    assert isinstance(caught, RuntimeError)
    assert type(caught.last_error) is ServerError
    assert (caught.status, caught.attempts) == (503, 2)
    assert caught.retries_attempts == 2
    assert caught.retries_timeout == 300
    assert caught.elapsed is not None
    assert 0 <= caught.elapsed < 300
    text = str(caught)
    assert text.startswith("gave up after 2 attempts in ")
    assert "(retries_attempts=2, retries_timeout=300s): HTTP 503 Service Unavailable" in text


@pytest.mark.parametrize("mode", MODES)
def test_a_spent_refused_connection_is_caught_as_a_transport_error(
    mode: Mode, refusing_url: str
) -> None:
    gateway = ServerGateway(requester(service_url=refusing_url, retries_attempts=2), 1, 1)
    with pytest.raises(TransportError) as caught:
        time_call(mode, gateway)
    error = caught.value
    assert isinstance(error, RetryBudgetExhaustedError)
    assert type(error.last_error) is TransportError
    assert error.attempts == 2
    assert error.request_sent is False
    assert "gave up after 2 attempts" in str(error)


@pytest.mark.parametrize("mode", MODES)
def test_a_spent_timeout_is_caught_as_a_request_timeout(mode: Mode) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(RequestTimeoutError) as caught:
        time_call(mode, ServerGateway(requester(slow), 1, 1))
    error = caught.value
    assert isinstance(error, TransportError)
    assert isinstance(error, RetryBudgetExhaustedError)
    assert type(error.last_error) is RequestTimeoutError
    assert error.attempts == 3


@pytest.mark.parametrize("mode", MODES)
def test_the_class_of_a_spent_call_is_made_once(mode: Mode) -> None:
    gateway = ServerGateway(requester(always(429, **{"Retry-After": "0"})), 1, 1)
    errors = []
    for _ in range(2):
        with pytest.raises(RateLimitedError) as caught:
            time_call(mode, gateway)
        errors.append(caught.value)
    assert type(errors[0]) is type(errors[1])
    assert type(errors[0]).__name__ == "RetryBudgetExhaustedError[RateLimitedError]"
    assert repr(errors[0]).startswith("RetryBudgetExhaustedError[RateLimitedError](")


@pytest.mark.parametrize("mode", MODES)
def test_no_retries_at_all_is_still_a_spent_budget_of_the_same_class(mode: Mode) -> None:
    # retries_timeout=0 is Jobmon's "one attempt": the budget is spent at once.
    gateway = ServerGateway(requester(always(500), retries_timeout=0), 1, 1)
    with pytest.raises(ServerError) as caught:
        time_call(mode, gateway)
    assert isinstance(caught.value, RetryBudgetExhaustedError)
    assert caught.value.attempts == 1


@pytest.mark.parametrize("mode", MODES)
def test_without_retries_raises_the_plain_class(mode: Mode) -> None:
    gateway = ServerGateway(requester(always(503)), 1, 1).without_retries()
    with pytest.raises(ServerError) as caught:
        time_call(mode, gateway)
    assert type(caught.value) is ServerError


def test_a_spent_error_survives_pickling() -> None:
    # Errors cross process pools (concurrent.futures, multiprocessing).
    gateway = ServerGateway(requester(always(503), retries_attempts=2), 1, 1)
    with pytest.raises(ServerError) as caught:
        gateway.get_server_time_sync()
    error = caught.value
    copied = pickle.loads(pickle.dumps(error))
    assert type(copied) is type(error)
    assert isinstance(copied, RetryBudgetExhaustedError)
    assert str(copied) == str(error)
    assert (copied.status, copied.attempts, copied.request_id) == (503, 2, error.request_id)
    assert type(copied.last_error) is ServerError


def test_a_budget_error_made_by_hand_takes_its_last_errors_class() -> None:
    last = TransportError("connection refused", method="GET", route="/time", attempts=2)
    made = RetryBudgetExhaustedError("gave up", last_error=last, attempts=2)
    assert isinstance(made, TransportError)
    assert made.last_error is last
    assert pickle.loads(pickle.dumps(made)).message == "gave up"
