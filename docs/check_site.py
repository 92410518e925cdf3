"""Open the built docs site in headless Chromium and check that key pages render.

Run from the repository root::

    .venv/bin/python docs/check_site.py                 # build (strict), serve, check
    .venv/bin/python docs/check_site.py --site site/    # check an existing build

It builds the site with ``mkdocs build --strict`` into a temporary directory
(unless ``--site`` names a built one), serves it on 127.0.0.1 from a thread,
and has Chromium load each checked page and dump the DOM it rendered. A page
passes when every expected text appears in the rendered page's visible text.
Without Chromium it says so and exits 0; with ``--screenshots DIR`` it also
saves a PNG of each page.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


@dataclass(frozen=True)
class PageCheck:
    """A page of the site and the texts its rendered DOM must show."""

    path: str
    expected: tuple[str, ...]


CHECKS = (
    PageCheck(
        "schemas/TaskStatusUpdatesResponse/",
        (
            "TaskStatusUpdatesResponse",
            "tasks_by_status",
            "time",
            "This is the schema of the wire payload",
            '"$schema"',
            "https://json-schema.org/draft/2020-12/schema",
            "POST /workflow/{workflow_id}/task_status_updates",
            "Recorded answers",
        ),
    ),
    PageCheck(
        "schemas/TasksResponse/",
        (
            "TasksResponse",
            "TaskMetadata",
            "resource_scales",
            "requested_resources",
            "propertyNames",
        ),
    ),
    PageCheck(
        "reference/gateway/",
        (
            "ServerGateway",
            "log_heartbeat",
            "log_heartbeat_sync",
            "iter_tasks",
            "iter_tasks_sync",
            "set_session",
            "without_retries",
            "HeartbeatResponse",
        ),
    ),
    PageCheck(
        "schemas/",
        (
            "HeartbeatResponse",
            "DownstreamTasksResponse",
            "ServerTimeResponse",
            "set_status_for_triaging",
        ),
    ),
)


class _VisibleText(HTMLParser):
    """The text a reader sees: everything outside <script>, <style> and <template>."""

    _HIDDEN = frozenset({"script", "style", "template", "noscript"})

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN and self._hidden_depth:
            self._hidden_depth -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden_depth:
            self.parts.append(data)


def visible_text(dom: str) -> str:
    """The visible text of an HTML document, in document order."""
    parser = _VisibleText()
    parser.feed(dom)
    parser.close()
    return "".join(parser.parts)


def find_chromium(explicit: str | None) -> str | None:
    """The Chromium executable to use, or ``None`` when there is none."""
    if explicit:
        return explicit if shutil.which(explicit) else None
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def build_site(site_dir: Path) -> None:
    """``mkdocs build --strict`` into ``site_dir``; raises on any warning."""
    environment = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    completed = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"mkdocs build --strict failed:\n{completed.stdout}{completed.stderr}")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(site_dir: Path) -> Iterator[str]:
    """Serve ``site_dir`` on 127.0.0.1 (a free port) from a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site_dir))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="site-server", daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def render(chromium: str, url: str, timeout: float, screenshot: Path | None = None) -> str:
    """The DOM Chromium rendered for ``url`` (a fresh profile per page)."""
    with tempfile.TemporaryDirectory(prefix="check-site-profile-") as profile:
        command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        completed = subprocess.run(  # noqa: S603 - a browser we located ourselves
            [*command, "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if completed.returncode != 0 or not completed.stdout.strip():
            raise RuntimeError(
                f"chromium could not render {url} (exit {completed.returncode}):"
                f" {completed.stderr.strip()[-500:]}"
            )
        if screenshot is not None:
            subprocess.run(  # noqa: S603
                [*command, "--window-size=1280,2400", f"--screenshot={screenshot}", url],
                capture_output=True,
                timeout=timeout,
                check=True,
            )
        return completed.stdout


def check_pages(
    chromium: str, base_url: str, timeout: float, screenshots: Path | None
) -> list[str]:
    """Load every page of :data:`CHECKS`; returns the failures (empty when all pass)."""
    failures = []
    for check in CHECKS:
        started = time.perf_counter()
        url = base_url + check.path
        shot = None
        if screenshots is not None:
            shot = screenshots / (check.path.strip("/").replace("/", "_") or "index")
            shot = shot.with_suffix(".png")
        try:
            text = visible_text(render(chromium, url, timeout, shot))
        except (RuntimeError, subprocess.SubprocessError) as exc:
            failures.append(f"{check.path}: {exc}")
            continue
        missing = [expected for expected in check.expected if expected not in text]
        elapsed = time.perf_counter() - started
        status = "ok" if not missing else "FAILED"
        print(f"  {status:6} {check.path:40} {elapsed:5.2f}s")
        if missing:
            failures.append(f"{check.path}: missing {missing}")
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    """Build or take the site, check it in Chromium; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", type=Path, help="an already built site (default: build one)")
    parser.add_argument("--chromium", help="the browser executable (default: found on PATH)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per page")
    parser.add_argument("--screenshots", type=Path, help="also save a PNG of each page here")
    arguments = parser.parse_args(argv)

    started = time.perf_counter()
    chromium = find_chromium(arguments.chromium)
    if chromium is None and arguments.chromium:
        print(f"check_site: --chromium {arguments.chromium} not found", file=sys.stderr)
        return 1
    if chromium is None:
        print(
            "check_site: skipped, no Chromium found"
            f" (looked for {', '.join(CHROMIUM_NAMES)}; apt-get install chromium)"
        )
        return 0
    if arguments.screenshots is not None:
        arguments.screenshots.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="check-site-") as scratch:
        site = arguments.site
        if site is None:
            site = Path(scratch) / "site"
            try:
                build_site(site)
            except RuntimeError as exc:
                print(f"check_site: {exc}", file=sys.stderr)
                return 1
            print(f"check_site: built the site in {time.perf_counter() - started:.2f}s")
        elif not (site / "index.html").is_file():
            print(f"check_site: {site} holds no built site (no index.html)", file=sys.stderr)
            return 1
        with serve(site.resolve()) as base_url:
            print(f"check_site: {chromium} on {base_url}")
            failures = check_pages(chromium, base_url, arguments.timeout, arguments.screenshots)

    total = time.perf_counter() - started
    if failures:
        print("check_site: FAILED\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print(f"check_site: {len(CHECKS)} pages rendered as expected in {total:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
