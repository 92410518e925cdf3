"""Settings of the HTTP connection, read the way Jobmon reads them.

Environment variables ``JOBMON__HTTP__*`` win over the ``http:`` section of
the YAML file named by ``JOBMON__CONFIG_FILE``; anything unset takes the
reference client's default.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import ConfigurationError

__all__ = ["HttpSettings"]

ENV_PREFIX = "JOBMON__HTTP__"
CONFIG_FILE_ENV = "JOBMON__CONFIG_FILE"
DEFAULT_ROUTE_PREFIX = "/api/v3"
"""Where the API is mounted unless told otherwise (Jobmon 3.4+; 3.2 needs ``""``)."""


@dataclass(frozen=True)
class HttpSettings:
    """The ``http`` settings of a Jobmon client.

    Attributes:
        service_url: Scheme, host and port of the server, e.g. ``"http://jobmon:5000"``.
        route_prefix: Where the API is mounted: ``"/api/v3"`` on servers 3.4+, ``""`` on 3.2.
        request_timeout: Seconds allowed for one request (connect, send, read).
        retries_attempts: Most requests sent for one call, the first included.
        max_response_bytes: Most bytes of an answer's body after decompression.
        retries_timeout: Most seconds spent on one call across its retries
            (``0``: Jobmon's reading, one attempt and then an error).
        proxy: An ``http://`` proxy for every request (``JOBMON__HTTP__PROXY``);
            ``None``: the environment's ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY``.
    """

    service_url: str
    route_prefix: str = DEFAULT_ROUTE_PREFIX
    request_timeout: float = 20.0
    retries_attempts: int = 10
    retries_timeout: float = 300.0
    max_response_bytes: int = 128 * 1024 * 1024
    proxy: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HttpSettings:
        """Read the settings from ``environ`` (default: ``os.environ``) and the YAML file.

        Raises:
            ConfigurationError: no service URL anywhere, an unreadable YAML
                file, or a value that is not a number where one is needed.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        config_file = env.get(CONFIG_FILE_ENV)
        if config_file:
            values.update(_yaml_http_section(Path(config_file)))
        for name in (
            "service_url",
            "route_prefix",
            "request_timeout",
            "retries_attempts",
            "retries_timeout",
            "max_response_bytes",
            "proxy",
        ):
            variable = ENV_PREFIX + name.upper()
            if variable in env:
                values[name] = env[variable]
        service_url = values.get("service_url")
        if not service_url:
            where = f" or `http.service_url` in {config_file}" if config_file else ""
            raise ConfigurationError(f"no Jobmon service URL: set {ENV_PREFIX}SERVICE_URL{where}")
        return cls(
            service_url=str(service_url),
            route_prefix=str(values.get("route_prefix", DEFAULT_ROUTE_PREFIX) or ""),
            request_timeout=_number(values, "request_timeout", 20.0, float),
            retries_attempts=int(_number(values, "retries_attempts", 10, int)),
            retries_timeout=_number(values, "retries_timeout", 300.0, float, zero_ok=True),
            max_response_bytes=int(_number(values, "max_response_bytes", 128 * 1024 * 1024, int)),
            proxy=str(values["proxy"]) if values.get("proxy") else None,
        )


def _yaml_http_section(path: Path) -> dict[str, object]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read {CONFIG_FILE_ENV}={path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{CONFIG_FILE_ENV}={path} is not valid YAML: {exc}") from exc
    except (RecursionError, MemoryError):
        raise ConfigurationError(f"{CONFIG_FILE_ENV}={path} is nested too deeply") from None
    if document is None:
        return {}
    section = document.get("http") if isinstance(document, dict) else None
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ConfigurationError(f"`http` in {path} must be a mapping, got {section!r}")
    return {str(key): value for key, value in section.items()}


def _number(
    values: Mapping[str, object],
    name: str,
    default: float,
    kind: type[int] | type[float],
    *,
    zero_ok: bool = False,
) -> float:
    raw = values.get(name, default)
    try:
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise TypeError
        number = float(raw)
        if kind is int and not number.is_integer():
            # 2.5 attempts is a mistake to report, not a number to round.
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise ConfigurationError(
            f"{ENV_PREFIX}{name.upper()} (or http.{name}) must be a number"
            f"{' (whole)' if kind is int else ''}, got {_shown(raw)}"
        ) from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not zero_ok):
        # retries_timeout=0 is Jobmon's own test setting: one attempt, then an error.
        need = "non-negative" if zero_ok else "positive"
        raise ConfigurationError(
            f"{ENV_PREFIX}{name.upper()} (or http.{name}) must be {need}, got {_shown(raw)}"
        )
    return float(number)


def _shown(value: object) -> str:
    # repr() of an int past 4,300 digits raises; a long value helps nobody.
    if isinstance(value, int) and value.bit_length() > 128:
        return "a huge int"
    return repr(value)[:80]
