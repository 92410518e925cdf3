"""From an answer to a result or an error, and from any foreign exception to ours.

Everything here is shared by every exchange and both worlds: a status code
becomes its error class, a body its model, a ``Retry-After`` a number, and
every exception that can reach a call (httpx's tree, which every transport
raises behind httpx's transport API; ssl, json, pydantic, and Python's own
RecursionError, OverflowError, MemoryError, UnicodeError) exactly one class
of the SDK's tree.
"""

from __future__ import annotations

import asyncio
import email.utils
import gc
import math
import os
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from ._reader import Fault
from ._routing import UnresolvedHost
from .errors import (
    BadRequestError,
    GatewayError,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    RequestTimeoutError,
    ResourceLockedError,
    ResponseTooLargeError,
    ServerError,
    ServerStatusError,
    TransportError,
    UnprocessableEntityError,
)
from .models import ServerErrorBody
from .routes import Call

__all__ = ["EXCERPT_LIMIT", "Answer", "Attempt", "error_from", "never_sent", "result_of"]

T = TypeVar("T")

EXCERPT_LIMIT = 500
"""Most characters of a body kept in an error."""

_STATUS_ERRORS: dict[int, type[ServerStatusError]] = {
    400: BadRequestError,
    404: NotFoundError,
    422: UnprocessableEntityError,
    423: ResourceLockedError,
    429: RateLimitedError,
}


@dataclass(frozen=True, slots=True)
class Attempt:
    """Which request an error belongs to: the call, where it went, its number."""

    call: Call[Any]
    url: str
    number: int
    request_timeout: float = 0.0


@dataclass(frozen=True, slots=True)
class Answer:
    """A complete answer: status, headers (error answers only) and decoded body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @classmethod
    def of(cls, status: int, head: Iterable[tuple[str, str]], body: bytes) -> Answer:
        """An answer; a 2xx one keeps no headers (only errors read them: Retry-After)."""
        return cls(status, () if 200 <= status < 300 else tuple(head), body)


def result_of(attempt: Attempt, answer: Answer) -> Any:
    """The call's decoded result, or the error its answer stands for."""
    status = answer.status
    if not 200 <= status < 300:
        raise status_error(attempt, answer)
    call = attempt.call
    try:
        return _decode(call, answer.body)
    except GatewayError as exc:
        # A decoder's own verdict (e.g. an unknown workflow): complete it here.
        raise type(exc)(
            exc.message,
            method=call.method,
            route=call.route,
            status=status,
            url=attempt.url,
            attempts=attempt.number,
            body_excerpt=exc.body_excerpt,
        ) from None
    except MemoryError:
        raise ResponseTooLargeError(
            "ran out of memory decoding the answer; lower max_response_bytes",
            **_where(attempt, status),
        ) from None
    except (ValueError, TypeError, KeyError, RecursionError, OverflowError, UnicodeError) as exc:
        # pydantic's ValidationError and json's errors are ValueErrors.
        raise InvalidResponseError(
            f"the answer does not fit {_result_name(call)}: {_first_line(exc)}",
            body_excerpt=excerpt(answer.body),
            **_where(attempt, status),
        ) from exc


def status_error(attempt: Attempt, answer: Answer) -> ServerStatusError:
    """The error for a non-2xx answer, with the server's own message."""
    status = answer.status
    kind = _STATUS_ERRORS.get(status) or (ServerError if status >= 500 else ServerStatusError)
    said = ServerErrorBody.from_body(answer.body)
    retry_after = None
    for name, value in answer.headers:
        if name.lower() == "retry-after":
            retry_after = retry_after_seconds(value)
    return kind(
        # The standard phrase: the server's own is free text, and not every
        # library hands it over.
        f"HTTP {status} {_phrase(status)}".rstrip(),
        server_message=said.message,
        server_error_type=said.error_type,
        body_excerpt=excerpt(answer.body),
        retry_after=retry_after,
        hint=_prefix_hint(attempt) if status == 404 and said.route_missing else None,
        **_where(attempt, status),
    )


def _prefix_hint(attempt: Attempt) -> str:
    # Every route the SDK sends exists on the servers it speaks to (3.2 lacks
    # one: get_array_concurrency); a 404 for the route itself most often
    # means the API is mounted elsewhere than route_prefix says.
    url, route = attempt.url, attempt.call.route
    mount = urlsplit(url[: -len(route)] if url.endswith(route) else url).path
    return (
        f"is the route prefix right? The API was looked for under {mount!r} (route_prefix:"
        " '/api/v3' for Jobmon 3.4 and later, '' for 3.2)"
    )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _where(attempt: Attempt, status: int | None = None) -> dict[str, Any]:
    call = attempt.call
    return {
        "method": call.method,
        "route": call.route,
        "status": status,
        "url": attempt.url,
        "attempts": attempt.number,
    }


_QUIET_DECODE_BYTES = 16 * 1024


def _decode(call: Call[T], content: bytes) -> T:
    if len(content) < _QUIET_DECODE_BYTES or not gc.isenabled():
        return call.decode(content)
    # A big answer (a downstream map, a page of tasks) allocates hundreds of
    # thousands of containers at once; the cycle collector would scan them
    # again and again for nothing (measured: half the decode time of a
    # 100k-task downstream map). Decoding never awaits, so no other task
    # runs while the collector is paused.
    gc.disable()
    try:
        return call.decode(content)
    finally:
        gc.enable()


def error_from(
    exc: BaseException, attempt: Attempt, *, answered: bool, connecting: bool = False
) -> GatewayError:
    """The one exception map: any failure of a send as a GatewayError, by its class.

    What reaches here is httpx's exception tree (every transport sits behind
    httpx's transport API), the reader's :class:`~._reader.Fault`, or
    Python's own (a custom transport's ``OSError``, ``MemoryError``...).
    ``answered`` says whether any byte of an answer had arrived;
    ``connecting`` that the failure came before a connection existed (the
    request surely never reached the server). ``MemoryError`` is never retryable.
    """
    if isinstance(exc, GatewayError):
        return exc
    where = _where(attempt)
    if connecting or never_sent(exc):
        where["request_sent"] = False
    name = type(exc).__name__
    if isinstance(exc, Fault):
        if exc.kind == "timeout":
            phase = " (could not connect)" if "request_sent" in where else ""
            return RequestTimeoutError(f"{exc}{phase}", **where)
        if exc.kind == "too_large":
            return ResponseTooLargeError(str(exc), **where)
        if exc.kind == "decoding":
            # No retry mends a body the server encodes wrongly.
            return TransportError(str(exc), retryable=False, **where)
        return TransportError(str(exc), **where)
    if isinstance(exc, MemoryError):
        return ResponseTooLargeError(
            "ran out of memory reading the answer; lower max_response_bytes", **where
        )
    if type(exc) is httpx.TimeoutException:
        # No transport raises the bare class (real timeouts are its subclasses):
        # it is a mock's verdict, pytest-httpx's "No response can be found".
        # Retrying cannot change it; its own words are the message.
        return TransportError(_first_line(exc), retryable=False, **where)
    if isinstance(exc, _TIMEOUTS):
        # The same words whichever layer timed out.
        phase = " (could not connect)" if "request_sent" in where else ""
        return RequestTimeoutError(
            f"no complete answer within request_timeout={attempt.request_timeout:g}s{phase}",
            **where,
        )
    if _certificate_refused(exc):
        return TransportError(
            f"TLS certificate not trusted ({name}): {_first_line(exc)}", retryable=False, **where
        )
    if isinstance(exc, httpx.ProxyError):
        return TransportError(f"the proxy failed: {_first_line(exc)}", retryable=False, **where)
    if isinstance(exc, httpx.LocalProtocolError):
        # About our own request; the parser's words quote the offending
        # header value, which may be a credential: never shown.
        return TransportError(
            f"{name}: the request has an invalid header or target (value not shown)",
            retryable=False,
            **where,
        )
    if isinstance(exc, _NOT_RETRYABLE):
        # About our own request: a retry would fail the same way.
        return TransportError(f"{name}: {_first_line(exc)}", retryable=False, **where)
    unresolved = _lookup_failure(exc, attempt.url)
    if unresolved is not None:
        host, failure = unresolved
        where["request_sent"] = False
        reason = _LOOKUP_REASONS.get(failure.errno) or (failure.strerror or _first_line(failure))
        # A name that does not exist (a typo, a host taken down) stays so:
        # retrying only delays the verdict. A resolver that could not answer
        # now (EAI_AGAIN: "temporary failure") is worth another try.
        return TransportError(
            f"could not resolve host {host} ({reason.lower()})",
            retryable=failure.errno == socket.EAI_AGAIN,
            **where,
        )
    if "request_sent" in where:
        return TransportError(
            f"could not connect to {_host_port(attempt.url)} (ConnectError: {_os_reason(exc)})",
            **where,
        )
    if isinstance(exc, RecursionError | OverflowError | UnicodeError | ValueError):
        return TransportError(f"the answer could not be read ({name})", **where)
    if not isinstance(exc, httpx.TransportError | OSError):
        # Not the network's doing: a transport's or a hook's own failure (a
        # mock's "nothing matched", a bug). Sending again cannot mend it.
        return TransportError(f"{name}: {_first_line(exc)}", retryable=False, **where)
    kind = "the connection failed before any answer" if not answered else "the answer broke off"
    return TransportError(f"{kind} ({name}: {_first_line(exc)})", **where)


_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    ConnectionRefusedError,
    socket.gaierror,
)
_TIMEOUTS = (httpx.TimeoutException, TimeoutError, socket.timeout, asyncio.TimeoutError)
_NOT_RETRYABLE = (
    httpx.UnsupportedProtocol,
    httpx.DecodingError,
    httpx.TooManyRedirects,
    httpx.InvalidURL,
)


# The resolver's words for the common failures, the same on every platform
# (an OSError that is not a gaierror would say "unknown error -2").
_LOOKUP_REASONS: dict[int | None, str] = {
    socket.EAI_NONAME: "no such host is known",
    socket.EAI_AGAIN: "temporary failure in name resolution",
    socket.EAI_FAIL: "the name server failed",
}


def _lookup_failure(exc: BaseException, url: str) -> tuple[str, OSError] | None:
    """The host whose name lookup failed, and the resolver's error, if that is ``exc``'s cause.

    The SDK's pools name the host they looked up (a proxy's, through one);
    for a lent client's pool it is the URL's host.
    """
    host: str | None = None
    seen: BaseException | None = exc
    for _ in range(8):  # the chain is short; the bound guards against cycles
        if seen is None:
            return None
        if isinstance(seen, UnresolvedHost):
            host = seen.host
        # getaddrinfo's errors are gaierror, their EAI_* codes negative on
        # Linux (an errno never is): "unknown error -2" as an OSError's text.
        if isinstance(seen, OSError) and (
            isinstance(seen, socket.gaierror) or (isinstance(seen.errno, int) and seen.errno < 0)
        ):
            return host or urlsplit(url).hostname or "?", seen
        seen = seen.__cause__ or seen.__context__
    return None


def never_sent(exc: BaseException) -> bool:
    """Whether ``exc`` means the request surely never reached the server (no connection)."""
    return isinstance(exc, _NOT_SENT)


def _host_port(url: str) -> str:
    authority = url.split("://", 1)[-1].split("/", 1)[0]
    if ":" not in authority.rsplit("]", 1)[-1]:
        authority += ":443" if url.startswith("https:") else ":80"
    return authority


def _os_reason(exc: BaseException) -> str:
    # The operating system's words, the same whichever layer connected.
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, socket.gaierror):
            return "host name not found"
        if isinstance(seen, OSError) and seen.errno is not None:
            return os.strerror(seen.errno).lower()
        seen = seen.__cause__ or seen.__context__
    return _first_line(exc)


def _certificate_refused(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):  # the chain is short; the bound guards against cycles
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds asked for by a ``Retry-After`` value (seconds or an HTTP date); never raises."""
    if value is None:
        return None
    value = value.strip()[:100]
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            seconds = (when - datetime.now(timezone.utc)).total_seconds()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def excerpt(content: bytes) -> str:
    """The start of a body, decoded leniently, at most 500 characters."""
    text = content[: EXCERPT_LIMIT * 4].decode("utf-8", errors="replace")
    return text if len(text) <= EXCERPT_LIMIT else text[:EXCERPT_LIMIT] + "…"


def _first_line(exc: BaseException) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors) and type(exc).__name__ == "ValidationError":
        # pydantic renders every error (and its input) in str(): a huge bad
        # answer would cost more to describe than to refuse. The first is enough.
        try:
            first = errors(include_input=False, include_url=False)[0]
            where = ".".join(str(part) for part in first.get("loc", ()))
            count = exc.error_count()  # type: ignore[attr-defined]
            more = f" (and {count - 1} more)" if count > 1 else ""
            return f"{where}: {first.get('msg', '')}{more}"[:300]
        except Exception:  # noqa: S110 - fall back to the plain text below
            pass
    try:
        text = str(exc).strip()
    except Exception:  # a foreign __str__ may itself fail
        return type(exc).__name__
    lines = text[:2000].splitlines()
    return " ".join(lines[:3])[:300] if lines else type(exc).__name__


def _result_name(call: Call[Any]) -> str:
    owner = getattr(call.decode, "__self__", None)
    if isinstance(owner, type):
        return owner.__name__
    return f"the {call.route} answer"
