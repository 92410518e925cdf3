"""The retry course of one call: first attempt, stamina's loop, waits, budget, final error.

One object serves both worlds; :meth:`RetryCourse.run` and
:meth:`RetryCourse.run_async` differ only in ``await``. The first attempt
runs outside stamina (the happy path should not pay for the retry
machinery); should it fail, stamina's loop starts by replaying that failure,
so stamina sleeps, counts and instruments every retry itself.
"""

from __future__ import annotations

import contextvars
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import stamina

from ._answers import Attempt
from ._reader import Deadline
from ._settings import RetryPolicy
from .errors import GatewayError, RetryBudgetExhaustedError
from .routes import Call

__all__ = ["RetryCourse"]

T = TypeVar("T")

logger = logging.getLogger("jobmon_gateway")

_IN_COURSE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "jobmon_gateway_in_course", default=False
)


class _OneLinePerRetry(logging.Filter):
    """Drops stamina's own log line for the SDK's retries: ours says more, once.

    Only the default logging hook's record is dropped, and only while one of
    our calls retries; a user's own stamina hooks still see every retry.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_IN_COURSE.get() and record.msg == "stamina.retry_scheduled")


logging.getLogger("stamina").addFilter(_OneLinePerRetry())


class RetryCourse:
    """The retry decisions of one call: what to retry, how long to wait, when to stop."""

    __slots__ = (
        "call",
        "first",
        "last_answer",
        "policy",
        "reached",
        "repeat_safe",
        "replayed",
        "replayed_wait",
        "request_id",
        "request_timeout",
        "retry",
        "sent",
        "started",
        "url",
    )

    def __init__(
        self,
        policy: RetryPolicy,
        call: Call[Any],
        url: str,
        *,
        retry: bool,
        request_timeout: float,
        repeat_safe: bool,
        request_id: str | None = None,
    ) -> None:
        self.policy = policy
        self.call = call
        self.url = url
        self.retry = retry
        self.request_timeout = request_timeout
        self.repeat_safe = repeat_safe
        # The call's id, as sent to the server: every error of the call names it.
        self.request_id = request_id
        self.sent = 0
        self.started = time.monotonic()
        self.last_answer: GatewayError | None = None
        # Whether any request of the call may have reached the server.
        self.reached = False
        # The first attempt's failure and the wait decided for it, until
        # stamina's loop replays it.
        self.first: tuple[GatewayError, float] | None = None
        self.replayed: GatewayError | None = None
        self.replayed_wait: float | None = None

    def next_attempt(self) -> tuple[Attempt, Deadline]:
        """Count one more request and give its deadline (never past the call's budget)."""
        self.sent += 1
        budget = self.policy.timeout
        cap = self.started + budget if budget > 0 else None
        return (
            Attempt(self.call, self.url, self.sent, self.request_timeout),
            Deadline(self.request_timeout, cap),
        )

    def run(self, attempt: Callable[[Attempt, Deadline], T]) -> T:
        """Run ``attempt`` until it succeeds or the course says stop; raise the final error."""
        try:
            return attempt(*self.next_attempt())
        except GatewayError as exc:
            self._first_failed(exc)
        token = _IN_COURSE.set(True)
        try:
            for retry in self._stamina():
                with retry:
                    self._replay_first_failure()
                    return attempt(*self.next_attempt())
        except GatewayError as exc:
            self._raise_final(exc)
        finally:
            _IN_COURSE.reset(token)
        raise AssertionError("unreachable: stamina either returns or raises")

    async def run_async(self, attempt: Callable[[Attempt, Deadline], Awaitable[T]]) -> T:
        """Async form of :meth:`run`; cancelling it stops the retries at once."""
        try:
            return await attempt(*self.next_attempt())
        except GatewayError as exc:
            self._first_failed(exc)
        token = _IN_COURSE.set(True)
        try:
            async for retry in self._stamina():
                with retry:
                    self._replay_first_failure()
                    return await attempt(*self.next_attempt())
        except GatewayError as exc:
            self._raise_final(exc)
        finally:
            _IN_COURSE.reset(token)
        raise AssertionError("unreachable: stamina either returns or raises")

    def _first_failed(self, exc: GatewayError) -> None:
        wait = self.retry_on(exc)
        if wait is False:
            self._raise_final(exc)
        self.first = (exc, float(wait))

    def _raise_final(self, exc: GatewayError) -> NoReturn:
        if exc.request_id is None:
            exc.request_id = self.request_id
        final = self.final_error(exc)
        if final is exc:
            raise exc
        raise final from exc

    def _replay_first_failure(self) -> None:
        if self.first is not None:
            (failure, self.replayed_wait), self.first = self.first, None
            self.replayed = failure
            raise failure

    def _stamina(self) -> Any:
        policy = self.policy
        # Our hook decides every retry and its wait (so it can honour
        # Retry-After and the time budget); stamina runs the loop, sleeps
        # (zero in its testing mode) and calls its instrumentation.
        return stamina.retry_context(
            on=self.retry_on,
            attempts=policy.attempts,
            timeout=policy.timeout,
            wait_initial=policy.wait_initial,
            wait_max=policy.wait_max,
            wait_jitter=policy.wait_jitter,
            wait_exp_base=policy.wait_exp_base,
        )

    def retry_on(self, exc: Exception) -> bool | float:
        """Stamina's hook: ``False`` to stop, else the seconds to wait before the next try."""
        if exc is self.replayed and self.replayed_wait is not None:
            # Decided (and logged) when it first happened.
            self.replayed = None
            return self.replayed_wait
        if not isinstance(exc, GatewayError):
            return False
        if exc.request_id is None:
            # Set here, where every failure of the call passes, before it is logged.
            exc.request_id = self.request_id
        if exc.status is not None:
            self.last_answer = exc
        self.reached = self.reached or exc.request_sent
        policy = self.policy
        if not (self.retry and exc.retryable and stamina.is_active()):
            return False
        if policy.timeout == 0 or self.sent >= policy.attempts:
            return False
        if exc.request_sent and not self.repeat_safe:
            # The server may have done the work; repeating it is not safe here.
            return False
        wait = self._wait_for(exc)
        if time.monotonic() - self.started + wait >= policy.timeout:
            return False
        logger.warning(
            "retrying %s %s in %.2fs (attempt %d of %d failed: %s)",
            self.call.method,
            self.call.route,
            wait,
            self.sent,
            policy.attempts,
            exc,
            extra={
                "jobmon_gateway.route": self.call.route,
                "jobmon_gateway.method": self.call.method,
                "jobmon_gateway.attempt": self.sent,
                "jobmon_gateway.wait": wait,
                "jobmon_gateway.cause": type(exc).__name__,
                "jobmon_gateway.status": exc.status,
                "jobmon_gateway.request_id": self.request_id,
            },
        )
        return wait

    def _wait_for(self, exc: GatewayError) -> float:
        policy = self.policy
        if exc.retry_after is not None:
            return min(exc.retry_after, policy.retry_after_max)
        backoff = policy.wait_initial * policy.wait_exp_base ** min(self.sent - 1, 64)
        jitter = random.uniform(0, policy.wait_jitter) if policy.wait_jitter else 0.0  # noqa: S311
        return min(policy.wait_max, backoff + jitter)

    def final_error(self, exc: GatewayError) -> GatewayError:
        """What the call raises for ``exc``: itself, or the spent budget wrapping it.

        The spent budget is an instance of ``exc``'s own class too (see
        :class:`~jobmon_gateway.RetryBudgetExhaustedError`).
        """
        if not (self.retry and exc.retryable) or not stamina.is_active():
            return exc
        if exc.request_sent and not self.repeat_safe:
            return exc
        elapsed = time.monotonic() - self.started
        answer = exc if exc.status is not None else (self.last_answer or exc)
        policy = self.policy
        return RetryBudgetExhaustedError(
            f"gave up after {self.sent} attempt{'s' if self.sent != 1 else ''}"
            f" in {elapsed:.1f}s (retries_attempts={policy.attempts},"
            f" retries_timeout={policy.timeout:g}s): {exc.message}",
            last_error=exc,
            answer=answer,
            attempts=self.sent,
            request_sent=self.reached or exc.request_sent,
            elapsed=elapsed,
            retries_attempts=policy.attempts,
            retries_timeout=policy.timeout,
        )
