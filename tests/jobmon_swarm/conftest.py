"""Registers the ``live`` marker for these tests, should the project's settings not have it yet."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if not any(line.split(":", 1)[0].strip() == "live" for line in config.getini("markers")):
        config.addinivalue_line(
            "markers",
            "live: against real Jobmon servers started on 127.0.0.1; skips without ../shared",
        )
