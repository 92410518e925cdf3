"""Settings as values: what a requester connects to and how it retries, validated once.

:class:`ConnectionSettings` and :class:`RetryPolicy` are frozen. The
constructor of :class:`~jobmon_gateway.Requester`, its ``from_env`` and its
``with_options`` all build them through :func:`build_settings`, so a value
is checked in one place and can never change under a client that was made
from it.
"""

from __future__ import annotations

import math
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ._routing import parse_proxy
from .config import DEFAULT_ROUTE_PREFIX
from .errors import ConfigurationError

__all__ = [
    "DEFAULTS",
    "ConnectionSettings",
    "RetryPolicy",
    "build_settings",
    "header_pairs",
    "pool_limits",
]

MIB = 1024 * 1024

DEFAULTS: dict[str, Any] = {
    # The one default of the SDK, its CLI and from_env: Jobmon 3.4 and later
    # (3.2 servers mount their routes at "").
    "route_prefix": DEFAULT_ROUTE_PREFIX,
    "request_timeout": 20.0,
    "retries_attempts": 10,
    "retries_timeout": 300.0,
    "wait_initial": 1.0,
    "wait_max": 30.0,
    "wait_jitter": 1.0,
    "wait_exp_base": 2.0,
    "retry_after_max": 60.0,
    "max_response_bytes": 128 * MIB,
    "verify": True,
    "headers": None,
    "client_jobmon_version": "3.6.0",
    "transport": None,
    "async_transport": None,
    "limits": None,
    "repeat_safe_queueing": None,
    "proxy": None,
    "trust_env": True,
    "event_hooks": None,
}
"""Every option of a requester and its default, stated once."""

KEEPALIVE_EXPIRY = 4.0
"""Seconds an idle pooled connection is kept: below uvicorn's 5 s keep-alive, so
the server never closes a connection we are about to reuse for idleness."""

_HOST = re.compile(r"[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]")
_PREFIX = re.compile(r"(/[A-Za-z0-9._~!$&'()*+,;=:@%\-]+)*")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")
_VERSION = re.compile(r"[0-9A-Za-z.+\-_]{1,64}")


@dataclass(frozen=True)
class ConnectionSettings:
    """Where requests go and how they are sent; frozen once built.

    Attributes:
        scheme: ``"http"`` or ``"https"``.
        host: Host name or address (IPv6 in brackets).
        port: TCP port.
        route_prefix: Path the API is mounted under (``""`` or ``"/api/v3"``).
        base_url: ``scheme://host:port`` plus the service URL's path and the prefix.
        request_timeout: Seconds for one request, to the last byte of the answer.
        max_response_bytes: Most bytes of an answer's body after decompression.
        verify: TLS verification (``True``, ``False``, a CA-bundle path or a context).
        headers: Extra headers sent with every request, in order.
        client_jobmon_version: The Jobmon version announced to the server.
        repeat_safe_queueing: Whether the server creates no second task
            instance when ``queue_task_batch`` is repeated (3.6 does, 3.2 does not).
        max_connections: Most connections a client opens at once.
        max_keepalive_connections: Most idle connections a client keeps.
        keepalive_expiry: Seconds an idle connection is kept.
        proxy: The proxy URL given (``None``: the environment's, if ``trust_env``).
        trust_env: Whether the environment's proxies and CA bundle apply.
        event_hooks: ``"request"`` and ``"response"`` hooks, as httpx's.
    """

    scheme: str
    host: str
    port: int
    path: str
    route_prefix: str
    request_timeout: float
    max_response_bytes: int
    verify: bool | str | ssl.SSLContext
    headers: tuple[tuple[str, str], ...]
    client_jobmon_version: str
    repeat_safe_queueing: bool
    max_connections: int
    max_keepalive_connections: int
    keepalive_expiry: float
    proxy: str | None = None
    trust_env: bool = True
    event_hooks: Mapping[str, tuple[Callable[[Any], object], ...]] = field(default_factory=dict)

    @property
    def service_url(self) -> str:
        """``scheme://host:port`` and the service URL's own path, if it had one."""
        default = 443 if self.scheme == "https" else 80
        port = "" if self.port == default else f":{self.port}"
        return f"{self.scheme}://{self.host}{port}{self.path}"

    @property
    def base_url(self) -> str:
        """The URL every route is appended to."""
        return self.service_url + self.route_prefix

    @property
    def target_prefix(self) -> str:
        """The path every request target starts with."""
        return self.path + self.route_prefix


@dataclass(frozen=True)
class RetryPolicy:
    """How a call is retried; frozen once built.

    Attributes:
        attempts: Most requests sent for one call, the first included.
        timeout: Most seconds one call may spend across its retries; ``0``
            means Jobmon's reading: one attempt, then
            :class:`~jobmon_gateway.RetryBudgetExhaustedError`.
        wait_initial: First backoff wait, seconds.
        wait_max: Longest backoff wait, seconds.
        wait_jitter: Up to this many random seconds added to each wait.
        wait_exp_base: Growth factor of the backoff.
        retry_after_max: Longest ``Retry-After`` honoured, seconds.
    """

    attempts: int
    timeout: float
    wait_initial: float
    wait_max: float
    wait_jitter: float
    wait_exp_base: float
    retry_after_max: float

    @property
    def single_shot(self) -> bool:
        """Whether a call gets one attempt only (``retries_timeout=0`` or one attempt)."""
        return self.timeout == 0 or self.attempts == 1


def build_settings(
    service_url: object, options: Mapping[str, Any]
) -> tuple[ConnectionSettings, RetryPolicy]:
    """Validate every option and return the two frozen values.

    Raises:
        ConfigurationError: an option is malformed; the message names it and
            never echoes a credential or a header value.
    """
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ConfigurationError(f"unknown option(s): {', '.join(sorted(unknown))}")
    values = {**DEFAULTS, **options}
    scheme, host, port, path = _service_url(service_url)
    prefix = _route_prefix(values["route_prefix"])
    for name in ("request_timeout", "wait_exp_base"):
        _number(name, values[name], positive=True)
    for name in ("retries_timeout", "wait_initial", "wait_max", "wait_jitter", "retry_after_max"):
        _number(name, values[name], positive=False)
    attempts = values["retries_attempts"]
    if (
        isinstance(attempts, bool)
        or not isinstance(attempts, int)
        or not 1 <= attempts <= 1_000_000
    ):
        raise ConfigurationError(
            f"retries_attempts must be an int from 1 to 1000000, got {_short(attempts)}"
        )
    max_bytes = values["max_response_bytes"]
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or not 1 <= max_bytes <= 2**48:
        raise ConfigurationError(
            f"max_response_bytes must be an int from 1 to 2**48, got {_short(max_bytes)}"
        )
    headers = header_pairs(values["headers"])
    version = values["client_jobmon_version"]
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise ConfigurationError(
            f"client_jobmon_version must be a version string like '3.6.0', got {version!r}"
        )
    verify = values["verify"]
    if not isinstance(verify, bool | str | ssl.SSLContext):
        raise ConfigurationError(
            f"verify must be a bool, a CA-bundle path or an ssl.SSLContext, got"
            f" {type(verify).__name__}"
        )
    repeat_safe = values["repeat_safe_queueing"]
    if repeat_safe is None:
        # Servers mounted under a versioned prefix (3.4+) answer a repeated
        # queue_task_batch without a second task instance; 3.2 (routes at /)
        # adds one per repeat (measured in its database).
        repeat_safe = (path + prefix) != ""  # Jobmon puts the prefix in service_url
    elif not isinstance(repeat_safe, bool):
        raise ConfigurationError(
            f"repeat_safe_queueing must be a bool or None, got {repeat_safe!r}"
        )
    max_connections, max_keepalive, expiry = pool_limits(values["limits"])
    proxy = values["proxy"]
    if proxy is not None:
        if not isinstance(proxy, str):
            raise ConfigurationError(f"proxy must be a str URL or None, got {type(proxy).__name__}")
        parse_proxy(proxy, source="proxy")
    trust_env = values["trust_env"]
    if not isinstance(trust_env, bool):
        raise ConfigurationError(f"trust_env must be a bool, got {type(trust_env).__name__}")
    hooks = _event_hooks(values["event_hooks"])
    connection = ConnectionSettings(
        scheme=scheme,
        host=host,
        port=port,
        path=path,
        route_prefix=prefix,
        request_timeout=float(values["request_timeout"]),
        max_response_bytes=max_bytes,
        verify=verify,
        headers=headers,
        client_jobmon_version=version,
        repeat_safe_queueing=repeat_safe,
        max_connections=max_connections,
        max_keepalive_connections=max_keepalive,
        keepalive_expiry=expiry,
        proxy=proxy,
        trust_env=trust_env,
        event_hooks=hooks,
    )
    policy = RetryPolicy(
        attempts=attempts,
        timeout=float(values["retries_timeout"]),
        wait_initial=float(values["wait_initial"]),
        wait_max=float(values["wait_max"]),
        wait_jitter=float(values["wait_jitter"]),
        wait_exp_base=float(values["wait_exp_base"]),
        retry_after_max=float(values["retry_after_max"]),
    )
    return connection, policy


def _service_url(value: object) -> tuple[str, str, int, str]:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        shown = _masked(value) if isinstance(value, str) else type(value).__name__
        raise ConfigurationError(f"service_url must be an http:// or https:// URL, got {shown!r}")
    rest = value.split("://", 1)[1]
    if "@" in rest:
        # Refused rather than masked: sync and async would otherwise need to
        # agree on turning it into Basic auth, and it would sit in every repr.
        # Checked before parsing: a '#', '/' or '?' in a password would hide it.
        raise ConfigurationError(
            f"service_url must not carry a user name or password ({_masked(value)!r});"
            " pass credentials as headers={'Authorization': ...}"
        )
    if _CONTROL_OR_SPACE.search(value):
        raise ConfigurationError(
            "service_url must not contain spaces or control characters (line breaks, tabs)"
        )
    if "?" in value or "#" in value:
        # Only the part before it is shown: a query may carry a token.
        before = value.split("?", 1)[0].split("#", 1)[0]
        raise ConfigurationError(
            f"service_url must not have a query or fragment (not shown), got {before!r} + ..."
        )
    try:
        parts = urlsplit(value)
        hostname = parts.hostname or ""
        port = parts.port
    except ValueError:
        raise ConfigurationError(
            f"service_url is not a valid URL (host or port malformed): {value!r}"
        ) from None
    host = f"[{hostname}]" if ":" in hostname else hostname
    if not hostname or not _HOST.fullmatch(host):
        raise ConfigurationError(f"service_url has no valid host name: {value!r}")
    if port is None:
        if parts.netloc.endswith(":"):
            raise ConfigurationError(f"service_url has an empty port: {value!r}")
        port = 443 if parts.scheme == "https" else 80
    if not 1 <= port <= 65535:
        raise ConfigurationError(f"service_url has an invalid port (1-65535): {value!r}")
    path = _route_prefix(parts.path, name="the path of service_url")
    return parts.scheme, host, port, path


def _route_prefix(value: object, *, name: str = "route_prefix") -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a str, got {type(value).__name__}")
    if _CONTROL_OR_SPACE.search(value) or "?" in value or "#" in value:
        raise ConfigurationError(
            f"{name} must not contain spaces, control characters, '?' or '#', got {value!r}"
        )
    stripped = value.strip("/")
    prefix = f"/{stripped}" if stripped else ""
    segments = prefix.split("/")[1:]
    if any(segment in ("", ".", "..") for segment in segments) or not _PREFIX.fullmatch(prefix):
        raise ConfigurationError(
            f"{name} must be a plain path like '/api/v3' (no '..', no empty segments),"
            f" got {value!r}"
        )
    return prefix


def _masked(url: str) -> str:
    # As httpx shows a URL: the user name kept, the password replaced. The
    # last '@' ends the user info, whatever the password holds ('/', '#', '?').
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    userinfo, _, hostport = rest.rpartition("@")
    user = userinfo.split(":", 1)[0].split("/", 1)[0]
    return f"{scheme}{sep}{user}:[secure]@{hostport}"


MAX_SECONDS = 1e6
"""Longest time any setting may name (11 days): longer is a mistake, and breaks clocks."""
_MAX_FACTOR = 1e3


def _number(name: str, value: object, *, positive: bool) -> None:
    limit = _MAX_FACTOR if name == "wait_exp_base" else MAX_SECONDS
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        # A huge int would overflow math.isfinite; anything past the limit is refused.
        or (isinstance(value, int) and value.bit_length() > 64)
        or not math.isfinite(value)
        or value < 0
        or value > limit
        or (positive and value == 0)
    ):
        need = "a positive" if positive else "a non-negative"
        raise ConfigurationError(
            f"{name} must be {need} finite number of at most {limit:g}, got {_short(value)}"
        )


def _short(value: object) -> str:
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 200 else "a huge int"
    return text[:80]


def header_pairs(value: object) -> tuple[tuple[str, str], ...]:
    """Check request headers (names and printable values); the values are never shown.

    Raises:
        ConfigurationError: not a mapping, or a malformed name or value.
    """
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"headers must be a mapping, got {type(value).__name__}")
    pairs: list[tuple[str, str]] = []
    for name, text in value.items():
        # Refused here, at once and without echoing the value (it is often a
        # token): sent, it would fail every call, differently in sync and async.
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ConfigurationError(f"header name {name!r} is not a valid HTTP header name")
        if not isinstance(text, str) or not _HEADER_VALUE.fullmatch(text):
            raise ConfigurationError(
                f"the value of header {name!r} must be printable ASCII without leading or"
                " trailing whitespace or line breaks (value not shown)"
            )
        pairs.append((name, text))
    return tuple(pairs)


def _event_hooks(value: object) -> dict[str, tuple[Callable[[Any], object], ...]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"event_hooks must be a mapping, got {type(value).__name__}")
    hooks: dict[str, tuple[Callable[[Any], object], ...]] = {}
    for name, listed in value.items():
        if name not in ("request", "response"):
            raise ConfigurationError(
                f"event_hooks takes 'request' and 'response' hooks, got {name!r}"
            )
        if isinstance(listed, str | bytes) or not isinstance(listed, list | tuple):
            raise ConfigurationError(f"event_hooks[{name!r}] must be a list of callables")
        if not all(callable(hook) for hook in listed):
            raise ConfigurationError(f"event_hooks[{name!r}] must hold callables only")
        hooks[name] = tuple(listed)
    return hooks


def pool_limits(value: object) -> tuple[int, int, float]:
    """Most connections, most idle ones and their idle expiry, from an ``httpx.Limits`` or None.

    Raises:
        ConfigurationError: ``value`` is not an ``httpx.Limits``.
    """
    if value is None:
        # httpx's 100 connections, every one of them kept while idle (for at
        # most 4 s): a driver's bursts of concurrent calls would otherwise
        # open and close connections on every burst.
        return 100, 100, KEEPALIVE_EXPIRY
    max_connections = getattr(value, "max_connections", None)
    max_keepalive = getattr(value, "max_keepalive_connections", None)
    expiry = getattr(value, "keepalive_expiry", None)
    if not hasattr(value, "max_connections"):
        raise ConfigurationError(f"limits must be an httpx.Limits, got {type(value).__name__}")
    most = int(max_connections) if isinstance(max_connections, int) else 100
    return (
        most,
        int(max_keepalive) if isinstance(max_keepalive, int) else most,
        # Never longer than the server keeps an idle connection (uvicorn: 5 s).
        min(float(expiry), KEEPALIVE_EXPIRY)
        if isinstance(expiry, int | float)
        else KEEPALIVE_EXPIRY,
    )
