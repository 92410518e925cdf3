"""Live Jobmon servers for the tests: 3.6 and 3.2.2, built, started, seeded and stopped here.

Once per session the ``live_servers`` fixture

1. builds each server's venv (cached under ``<repo>/.live/``, so reruns take
   seconds): 3.6 with ``../shared/jobmon-3.6/install.sh``, 3.2.2 with
   ``pip install jobmon-server==3.2.2 pymysql``; both at once;
2. starts each server on 127.0.0.1 on a free port with a fresh SQLite file
   in a temporary folder, and waits (bounded) until it answers;
3. seeds workflows: 3.6 with Jobmon's own client in its venv
   (``seed_36.py``), 3.2.2 through its HTTP routes (``seed_322.py``);
4. stops the servers and removes their folders at the end.

Every live test skips, saying why, when ``../shared`` (beside the repo) is
absent or a venv cannot be built.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .servers import CACHE, JOBMON_36, SERVERS, LiveServer, RunningServer, bring_up

# The first live test also waits for the servers: building both venvs from
# nothing takes two to three minutes here. Every other live test is quick.
FIRST_TEST_TIMEOUT = 400
TEST_TIMEOUT = 60


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Last, so the order (and any -k selection) is final when the first is picked.
    # Only this folder's tests share the session fixture that builds the venvs
    # (tests/jobmon_swarm has its own, and may come first in the run).
    here = Path(__file__).resolve().parent
    live = [
        item
        for item in items
        if item.get_closest_marker("live") is not None and here in Path(item.path).parents
    ]
    for index, item in enumerate(live):
        item.add_marker(pytest.mark.timeout(FIRST_TEST_TIMEOUT if index == 0 else TEST_TIMEOUT))


@pytest.fixture(scope="session")
def live_servers() -> Iterator[dict[str, LiveServer | str]]:
    """Both servers, up and seeded, or for each one the reason it is not."""
    if not (JOBMON_36 / "install.sh").is_file():
        reason = f"no Jobmon 3.6 kit at {JOBMON_36} (../shared beside the repo is absent)"
        yield dict.fromkeys(SERVERS, reason)
        return
    CACHE.mkdir(exist_ok=True)
    # Both venvs and both servers come up side by side: the slow parts
    # (pip, the servers' imports) overlap.
    with ThreadPoolExecutor(max_workers=len(SERVERS)) as pool:
        futures = {version: pool.submit(bring_up, version) for version in SERVERS}
    # Leaving the pool waited for both; whatever came up is stopped at the end,
    # even when the other one failed.
    failures = [error for future in futures.values() if (error := future.exception())]
    running: list[RunningServer] = [
        process
        for future in futures.values()
        if future.exception() is None and (process := future.result()[0]) is not None
    ]
    try:
        if failures:
            raise failures[0]
        yield {version: future.result()[1] for version, future in futures.items()}
    finally:
        for process in running:
            process.stop()


@pytest.fixture(params=SERVERS, ids=[f"jobmon-{version}" for version in SERVERS])
def live_server(
    request: pytest.FixtureRequest, live_servers: dict[str, LiveServer | str]
) -> LiveServer:
    """Each live server in turn (the test skips, saying why, if it is unavailable)."""
    server = live_servers[request.param]
    if isinstance(server, str):
        pytest.skip(server)
    return server
