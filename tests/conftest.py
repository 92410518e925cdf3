"""Shared fixtures: the recorded wire pairs and a requester that retries without waiting."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jobmon_gateway import Requester

SERVICE_URL = "http://jobmon.test"
"""A made-up host for mock transports only: any lookup of it fails the test (below)."""
SERVER_DIRS = ("jobmon-server-3.6", "jobmon-server-3.2.2")
# Loading the CA bundle costs ~30 ms per client; every test client shares one context.
_TLS = ssl.create_default_context()


def find_wire_dir() -> Path | None:
    """The recorded pairs: /work/shared/wire beside the repo, else $JOBMON_WIRE_DIR."""
    candidates = [Path(__file__).resolve().parents[2] / "shared" / "wire"]
    if os.environ.get("JOBMON_WIRE_DIR"):
        candidates.append(Path(os.environ["JOBMON_WIRE_DIR"]))
    for candidate in candidates:
        if all((candidate / server).is_dir() for server in SERVER_DIRS):
            return candidate
    return None


OWN_WIRE_DIR = Path(__file__).resolve().parent / "wire"
"""Pairs this project recorded itself (tests/live/record_322.py), kept in the repo."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # One case per recorded file: the shared recordings (when ../shared is
    # there) and the project's own; an absent wire dir gives fewer cases.
    if "recording_path" in metafunc.fixturenames:
        wire = find_wire_dir()
        shared = (
            []
            if wire is None
            else sorted(path for server in SERVER_DIRS for path in (wire / server).glob("*.json"))
        )
        own = sorted(
            path for server in SERVER_DIRS for path in (OWN_WIRE_DIR / server).glob("*.json")
        )
        metafunc.parametrize(
            "recording_path",
            shared + own,
            ids=[f"{path.parent.name}/{path.stem}" for path in shared]
            + [f"own/{path.parent.name}/{path.stem}" for path in own],
        )


@pytest.fixture
def wire_dir() -> Path:
    wire = find_wire_dir()
    if wire is None:
        pytest.skip("no recorded wire pairs (set JOBMON_WIRE_DIR)")
    return wire


@pytest.fixture
def recording(recording_path: Path) -> dict[str, Any]:
    """One recorded pair: method, route, query, request_json, status, content_type, ..."""
    loaded: dict[str, Any] = json.loads(recording_path.read_text(encoding="utf-8"))
    loaded["name"] = recording_path.stem
    loaded["server_dir"] = recording_path.parent.name
    return loaded


@pytest.fixture
def make_requester() -> Callable[..., Requester]:
    """Requester factory for http://jobmon.test with zero backoff (retries are instant)."""

    def make(**options: Any) -> Requester:
        settings: dict[str, Any] = {
            "retries_attempts": 3,
            "wait_initial": 0,
            "wait_jitter": 0,
            "wait_max": 0,
            "retry_after_max": 0,
            "verify": _TLS,
            **options,
        }
        service_url = settings.pop("service_url", SERVICE_URL)
        return Requester(service_url, **settings)

    return make


_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def _no_proxies_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK honours HTTP_PROXY and friends, as httpx does: the machine's own
    must never send a test's loopback requests elsewhere. Tests of proxies set
    their own."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture(scope="module")
def ca() -> Any:
    """A throwaway certificate authority (trustme), for TLS servers on 127.0.0.1."""
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture
def ca_bundle(ca: Any, tmp_path: Path) -> str:
    """``ca``'s certificate as a CA bundle file."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(autouse=True)
def _no_dns_lookups(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Nothing leaves 127.0.0.1, name lookups included: a test that looks up a
    name (``jobmon.test``, even ``localhost``) fails. Tests of lookups patch
    ``socket.getaddrinfo`` themselves (their patch wins over this one)."""
    real = socket.getaddrinfo
    names: list[str] = []

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        text = host.decode() if isinstance(host, bytes) else str(host)
        try:
            ipaddress.ip_address(text.strip("[]"))
        except ValueError:
            names.append(text)
            raise socket.gaierror(socket.EAI_NONAME, f"test refused a lookup of {text!r}") from None
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    yield
    if names:
        pytest.fail(f"the test looked up host names {sorted(set(names))}: patch the resolver")
