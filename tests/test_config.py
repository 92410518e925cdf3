"""Settings from JOBMON__HTTP__* variables and the JOBMON__CONFIG_FILE YAML."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pytest_httpx import HTTPXMock

from jobmon_gateway import ConfigurationError, HttpSettings, Requester, ServerGateway

URL = "JOBMON__HTTP__SERVICE_URL"


def write_yaml(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "jobmon.yaml"
    path.write_text(text, encoding="utf-8")
    return {"JOBMON__CONFIG_FILE": str(path)}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's own Jobmon settings must not leak into these tests.
    for name in list(os.environ):
        if name.startswith("JOBMON__"):
            monkeypatch.delenv(name)


def test_defaults_are_the_reference_clients() -> None:
    requester = Requester.from_env(environ={URL: "http://jobmon.test:5000"})
    assert requester.base_url == "http://jobmon.test:5000/api/v3"
    assert requester.route_prefix == "/api/v3"
    assert requester.request_timeout == 20.0
    assert requester.retries_attempts == 10
    assert requester.retries_timeout == 300.0


def test_every_variable_is_read() -> None:
    requester = Requester.from_env(
        environ={
            URL: "https://jobmon.test",
            "JOBMON__HTTP__ROUTE_PREFIX": "/api/v2",
            "JOBMON__HTTP__REQUEST_TIMEOUT": "5.5",
            "JOBMON__HTTP__RETRIES_ATTEMPTS": "3",
            "JOBMON__HTTP__RETRIES_TIMEOUT": "60",
        }
    )
    assert requester.base_url == "https://jobmon.test/api/v2"
    assert requester.request_timeout == 5.5
    assert requester.retries_attempts == 3
    assert type(requester.retries_attempts) is int
    assert requester.retries_timeout == 60.0


def test_an_empty_route_prefix_mounts_at_the_root() -> None:
    # 3.2 servers mount the API at "/".
    requester = Requester.from_env(
        environ={URL: "http://jobmon.test", "JOBMON__HTTP__ROUTE_PREFIX": ""}
    )
    assert requester.base_url == "http://jobmon.test"


def test_os_environ_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(URL, "http://from-os.test")
    monkeypatch.setenv("JOBMON__HTTP__RETRIES_ATTEMPTS", "2")
    requester = Requester.from_env()
    assert requester.base_url == "http://from-os.test/api/v3"
    assert requester.retries_attempts == 2


async def test_requests_go_where_the_settings_say(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json={"time": "2026-11-28 17:56:34"})
    requester = Requester.from_env(environ={URL: "http://jobmon.test:5000/"})
    async with ServerGateway(requester, 1, 1) as gateway:
        await gateway.get_server_time()
    (request,) = httpx_mock.get_requests()
    assert str(request.url.copy_with(query=None)) == "http://jobmon.test:5000/api/v3/time"


def test_yaml_http_section(tmp_path: Path) -> None:
    environ = write_yaml(
        tmp_path,
        "db:\n  host: elsewhere\n"
        "http:\n"
        "  service_url: http://yaml.test:8000\n"
        "  route_prefix: /api/v3\n"
        "  request_timeout: 7\n"
        "  retries_attempts: 4\n"
        "  retries_timeout: 12.5\n",
    )
    requester = Requester.from_env(environ=environ)
    assert requester.base_url == "http://yaml.test:8000/api/v3"
    assert requester.request_timeout == 7.0
    assert requester.retries_attempts == 4
    assert requester.retries_timeout == 12.5


def test_environment_wins_over_yaml(tmp_path: Path) -> None:
    environ = write_yaml(
        tmp_path,
        "http:\n  service_url: http://yaml.test\n  request_timeout: 7\n  retries_attempts: 4\n",
    )
    environ |= {URL: "http://env.test", "JOBMON__HTTP__REQUEST_TIMEOUT": "9"}
    requester = Requester.from_env(environ=environ)
    assert requester.base_url == "http://env.test/api/v3"
    assert requester.request_timeout == 9.0
    assert requester.retries_attempts == 4  # not in the environment: the YAML's


def test_keyword_overrides_win_over_both(tmp_path: Path) -> None:
    environ = write_yaml(tmp_path, "http:\n  service_url: http://yaml.test\n  request_timeout: 7\n")
    environ |= {"JOBMON__HTTP__REQUEST_TIMEOUT": "9", "JOBMON__HTTP__RETRIES_ATTEMPTS": "4"}
    requester = Requester.from_env(
        environ=environ,
        service_url="http://override.test",
        route_prefix="",
        request_timeout=1.5,
        wait_initial=0,
    )
    assert requester.base_url == "http://override.test"
    assert requester.request_timeout == 1.5
    assert requester.retries_attempts == 4


def test_a_service_url_override_needs_no_environment() -> None:
    requester = Requester.from_env(environ={}, service_url="http://override.test")
    assert requester.base_url == "http://override.test/api/v3"


def test_malformed_overrides_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        Requester.from_env(environ={URL: "http://jobmon.test"}, retries_attempts=0)


@pytest.mark.parametrize("environ", [{}, {URL: ""}], ids=["unset", "empty"])
def test_a_missing_service_url_names_the_variable(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError) as refused:
        Requester.from_env(environ=environ)
    assert URL in str(refused.value)
    assert isinstance(refused.value, ValueError)


def test_a_yaml_without_service_url_names_variable_and_file(tmp_path: Path) -> None:
    environ = write_yaml(tmp_path, "http:\n  request_timeout: 7\n")
    with pytest.raises(ConfigurationError) as refused:
        Requester.from_env(environ=environ)
    assert URL in str(refused.value)
    assert "jobmon.yaml" in str(refused.value)


def test_a_malformed_url_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        Requester.from_env(environ={URL: "jobmon.test:5000"})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REQUEST_TIMEOUT", "abc"),
        ("REQUEST_TIMEOUT", ""),
        ("REQUEST_TIMEOUT", "0"),
        ("REQUEST_TIMEOUT", "-1"),
        ("REQUEST_TIMEOUT", "nan"),
        ("REQUEST_TIMEOUT", "inf"),
        ("RETRIES_ATTEMPTS", "3.5"),
        ("RETRIES_ATTEMPTS", "ten"),
        ("RETRIES_ATTEMPTS", "0"),
        ("RETRIES_TIMEOUT", "soon"),
        ("RETRIES_TIMEOUT", "-5"),
    ],
)
def test_malformed_numbers_in_the_environment(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        Requester.from_env(environ={URL: "http://jobmon.test", f"JOBMON__HTTP__{variable}": value})
    assert f"JOBMON__HTTP__{variable}" in str(refused.value)


@pytest.mark.parametrize(
    "line",
    [
        "request_timeout: abc",
        "request_timeout: [1, 2]",
        "request_timeout: true",
        "retries_attempts: ten",
        "retries_attempts: 0",
        "retries_timeout: {a: 1}",
    ],
)
def test_malformed_numbers_in_yaml(tmp_path: Path, line: str) -> None:
    environ = write_yaml(tmp_path, f"http:\n  service_url: http://yaml.test\n  {line}\n")
    with pytest.raises(ConfigurationError) as refused:
        Requester.from_env(environ=environ)
    assert line.split(":")[0] in str(refused.value)


def test_a_fractional_retries_attempts_in_yaml_is_refused(tmp_path: Path) -> None:
    environ = write_yaml(
        tmp_path, "http:\n  service_url: http://yaml.test\n  retries_attempts: 2.5\n"
    )
    with pytest.raises(ConfigurationError):
        Requester.from_env(environ=environ)


@pytest.mark.parametrize(
    "text",
    ["http: [unclosed\n", "http:\n  service_url: [a\n", "\tbad: indent\n", "http: - x\n"],
    ids=["unclosed-flow", "unclosed-nested", "tab", "bad-sequence"],
)
def test_invalid_yaml_is_a_configuration_error(tmp_path: Path, text: str) -> None:
    environ = write_yaml(tmp_path, text)
    with pytest.raises(ConfigurationError) as refused:
        Requester.from_env(environ=environ)
    assert "JOBMON__CONFIG_FILE" in str(refused.value)


def test_http_must_be_a_mapping(tmp_path: Path) -> None:
    environ = write_yaml(tmp_path, "http:\n  - service_url\n")
    with pytest.raises(ConfigurationError) as refused:
        Requester.from_env(environ=environ)
    assert "http" in str(refused.value)


@pytest.mark.parametrize("where", ["missing", "directory"])
def test_an_unreadable_yaml_file_is_a_configuration_error(tmp_path: Path, where: str) -> None:
    path = tmp_path / "nope.yaml" if where == "missing" else tmp_path
    with pytest.raises(ConfigurationError) as refused:
        Requester.from_env(environ={"JOBMON__CONFIG_FILE": str(path), URL: "http://env.test"})
    assert "JOBMON__CONFIG_FILE" in str(refused.value)


def test_a_yaml_file_that_is_not_utf8_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("http:\n  service_url: http://caf\u00e9.test\n".encode("latin-1"))
    with pytest.raises(ConfigurationError):
        Requester.from_env(environ={"JOBMON__CONFIG_FILE": str(path)})


def test_an_empty_yaml_file_falls_back_to_the_environment(tmp_path: Path) -> None:
    environ = write_yaml(tmp_path, "")
    environ |= {URL: "http://env.test"}
    assert Requester.from_env(environ=environ).base_url == "http://env.test/api/v3"


def test_http_settings_are_public_and_frozen() -> None:
    settings = HttpSettings.from_env({URL: "http://jobmon.test"})
    assert settings == HttpSettings(service_url="http://jobmon.test")
    assert settings.route_prefix == "/api/v3"
    changed: Any = settings
    with pytest.raises(AttributeError):
        changed.request_timeout = 1.0
