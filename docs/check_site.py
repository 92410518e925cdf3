"""Build the docs site strictly and check every page of it; then look at it in Chromium.

Run from the repository root::

    .venv/bin/python docs/check_site.py                    # build, check, browse
    .venv/bin/python docs/check_site.py --site-dir site/   # ... and keep the build
    .venv/bin/python docs/check_site.py --site site/       # check an existing build

Three stages, each failing the run (exit 1) on any finding:

1. ``mkdocs build --strict``, without ``--quiet`` (``--quiet`` drops the
   warnings before strict mode counts them, so a broken cross-reference would
   pass); any ``WARNING`` line in its output fails the build too.
2. Every built page, read as HTML: no leftover reference markup
   (``[title][identifier]`` that autorefs could not resolve) outside code
   blocks, no empty section (a heading with nothing under it before the next
   heading of its level), and every API reference page documents something.
3. Chromium (headless, when installed; it says so and skips otherwise) opens
   every page served on 127.0.0.1 at a desktop width: key pages must show
   their expected texts, prose pages must have no code block wider than the
   page, and no name in the navigation may be cut off or broken mid-word. The pages are loaded
   one after another in a frame of one harness page, which posts its
   findings back to the server; no request leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
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
    # No name is ever looked up: only the loopback server answers.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--window-size=1400,1000",
)
FRAME_WIDTH = 1280
"""CSS pixels of the frame each page is laid out in: a desktop, sidebar and contents shown."""


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

# Pages whose code blocks must fit the page: the prose. Schema and API pages
# show wire JSON and signatures, which scroll by design.
WIDE_BY_DESIGN = ("schemas/", "reference/")


# -- 1. the build ----------------------------------------------------------------------


def build_site(site_dir: Path, config_file: Path) -> None:
    """``mkdocs build --strict`` into ``site_dir``; raises on failure or on any warning."""
    environment = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [
        sys.executable,
        "-m",
        "mkdocs",
        "build",
        "--strict",
        "--config-file",
        str(config_file),
        "--site-dir",
        str(site_dir),
    ]
    completed = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        command,
        cwd=config_file.parent,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    output = completed.stdout + completed.stderr
    warnings = [line for line in output.splitlines() if "WARNING" in line]
    if completed.returncode != 0 or warnings:
        raise RuntimeError(
            f"mkdocs build --strict failed (exit {completed.returncode},"
            f" {len(warnings)} warnings):\n{output}"
        )


# -- 2. every page, as HTML -----------------------------------------------------------------

# [title][identifier] left by autorefs: the identifier is a dotted Python name.
_LEFTOVER_REFERENCE = re.compile(r"\[[^\[\]\n]*\]\[[A-Za-z_][\w.\-]*\]")
_HEADING = re.compile(r"h[1-6]")


@dataclass
class _Section:
    level: int
    title: str
    has_content: bool = False


@dataclass
class PageReport:
    """What the HTML of one built page holds, as far as the checks care."""

    text: list[str] = field(default_factory=list)
    sections: list[_Section] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    api_objects: int = 0


class _PageParser(HTMLParser):
    """Reads the article of a Material page: its visible text outside code, its headings."""

    _HIDDEN = frozenset({"script", "style", "template", "noscript"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.report = PageReport()
        self._article_depth = 0  # >0 while inside <article>
        self._hidden = 0
        self._pre = 0
        self._code = 0
        self._heading: _Section | None = None
        self._headerlink = 0
        self._open: list[_Section] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if tag == "article":
            self._article_depth += 1
        if not self._article_depth:
            return
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag == "pre":
            self._pre += 1
            self._content()
        elif tag == "code":
            self._code += 1
        elif tag in ("table", "img", "svg"):
            self._content()
        elif _HEADING.fullmatch(tag):
            self._heading = _Section(int(tag[1]), "")
        elif tag == "a" and "headerlink" in classes:
            self._headerlink += 1
        if tag == "div" and {"doc", "doc-object"} <= set(classes):
            self.report.api_objects += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "article" and self._article_depth:
            self._article_depth -= 1
            if not self._article_depth:
                self._close_sections(0)
        if not self._article_depth:
            return
        if tag in self._HIDDEN and self._hidden:
            self._hidden -= 1
        elif tag == "pre" and self._pre:
            self._pre -= 1
        elif tag == "code" and self._code:
            self._code -= 1
        elif tag == "a" and self._headerlink:
            self._headerlink -= 1
        elif _HEADING.fullmatch(tag) and self._heading is not None:
            heading, self._heading = self._heading, None
            self._close_sections(heading.level)
            self._open.append(heading)
            self.report.sections.append(heading)

    def handle_data(self, data: str) -> None:
        if not self._article_depth or self._hidden:
            return
        if self._heading is not None:
            if not self._headerlink:
                self._heading.title += data
            return
        # Code is left out: `[title][identifier]` in code is an example, not
        # a leftover. A leftover's title in code still leaves "[][identifier]".
        if not (self._pre or self._code):
            self.report.text.append(data)
        if data.strip():
            self._content()

    def _content(self) -> None:
        if self._heading is None:
            for section in self._open:
                section.has_content = True

    def _close_sections(self, level: int) -> None:
        # A heading ends every open section of its level or deeper.
        while self._open and self._open[-1].level >= level:
            section = self._open.pop()
            if not section.has_content:
                self.report.empty.append(f"h{section.level} {section.title.strip()!r}")


def read_page(html: str) -> PageReport:
    """The text, sections and API objects of a built page's article."""
    parser = _PageParser()
    parser.feed(html)
    parser.close()
    return parser.report


def page_path(site: Path, html_file: Path) -> str:
    """The URL path of a built page, e.g. ``guide/errors/`` (``""`` for the home page)."""
    relative = html_file.relative_to(site).as_posix()
    return relative.removesuffix("index.html")


def check_built_pages(site: Path) -> tuple[int, list[str]]:
    """Check the HTML of every page; returns (pages checked, failures)."""
    failures: list[str] = []
    pages = sorted(site.rglob("*.html"))
    checked = 0
    for html_file in pages:
        path = page_path(site, html_file)
        if path in ("404.html",) or path.startswith(("assets/", "search/")):
            continue
        checked += 1
        report = read_page(html_file.read_text(encoding="utf-8"))
        text = "".join(report.text)
        for leftover in _LEFTOVER_REFERENCE.findall(text):
            failures.append(f"{path or '/'}: unresolved reference markup {leftover}")
        for empty in report.empty:
            failures.append(f"{path or '/'}: empty section {empty}")
        is_api_page = path.startswith("reference/") and path != "reference/"
        if is_api_page and report.api_objects == 0:
            failures.append(f"{path}: an API page that documents nothing")
    return checked, failures


# -- 3. Chromium ---------------------------------------------------------------------------

RESULTS_PATH = "/__check_site_results__"
HARNESS_PATH = "/__check_site__.html"

# Loads each page in a same-origin frame of FRAME_WIDTH pixels, measures it,
# and posts the findings back. Plain ES2017, no dependencies.
_HARNESS = """<!doctype html>
<html><head><meta charset="utf-8"><title>check_site</title></head><body>
<script>
const PAGES = __PAGES__;
const WIDTH = __WIDTH__;
const WIDE_BY_DESIGN = __WIDE__;
function longestLine(text) {
  return text.split("\\n").reduce((a, b) => (a.length >= b.length ? a : b), "");
}
function lineCount(doc, element) {
  // The lines its text is laid out on: one client rect per line box.
  const range = doc.createRange();
  range.selectNodeContents(element);
  const tops = new Set([...range.getClientRects()].map((rect) => Math.round(rect.top)));
  return tops.size;
}
async function measure(path) {
  const frame = document.createElement("iframe");
  frame.style.width = WIDTH + "px";
  frame.style.height = "900px";
  document.body.appendChild(frame);
  await new Promise((resolve) => { frame.onload = resolve; frame.src = "/" + path; });
  const doc = frame.contentDocument;
  const wide = WIDE_BY_DESIGN.some((prefix) => path.startsWith(prefix));
  const overflowing = wide ? [] : [...doc.querySelectorAll("article pre > code")]
    .filter((code) => code.scrollWidth > code.clientWidth + 1)
    .map((code) => longestLine(code.textContent));
  // Cut off (an ellipsis), or a one-word name broken over two lines.
  const cutOff = [...doc.querySelectorAll(".md-sidebar--primary .md-nav__link .md-ellipsis")]
    .filter((name) => name.offsetParent !== null)
    .filter((name) => name.scrollWidth > name.clientWidth + 1
      || (!/\\s/.test(name.textContent.trim()) && lineCount(doc, name) > 1))
    .map((name) => name.textContent.trim());
  const text = doc.body ? doc.body.innerText : "";
  frame.remove();
  return { path, overflowing, cutOff, text };
}
(async () => {
  const results = [];
  for (const path of PAGES) {
    try { results.push(await measure(path)); }
    catch (error) { results.push({ path, error: String(error) }); }
  }
  await fetch("__RESULTS__", { method: "POST", body: JSON.stringify(results) });
})();
</script></body></html>
"""


class _SiteHandler(SimpleHTTPRequestHandler):
    """Serves the built site, the harness page, and takes the harness's findings."""

    harness = b""
    received: list[Any]
    done: threading.Event

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == HARNESS_PATH:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(self.harness)))
            self.end_headers()
            self.wfile.write(self.harness)
            return
        super().do_GET()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.send_response(204)
        self.end_headers()
        if self.path == RESULTS_PATH:
            self.received.append(json.loads(body))
            self.done.set()


@contextmanager
def serve(site_dir: Path, harness: bytes = b"") -> Iterator[tuple[str, type[_SiteHandler]]]:
    """Serve ``site_dir`` (and the harness) on 127.0.0.1 from a thread."""
    handler_class = type(
        "Handler",
        (_SiteHandler,),
        {"harness": harness, "received": [], "done": threading.Event()},
    )
    handler = functools.partial(handler_class, directory=str(site_dir))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="site-server", daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}/", handler_class
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def find_chromium(explicit: str | None) -> str | None:
    """The Chromium executable to use, or ``None`` when there is none."""
    if explicit:
        return explicit if shutil.which(explicit) else None
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def browse(chromium: str, site: Path, paths: list[str], timeout: float) -> list[dict[str, Any]]:
    """Have Chromium measure ``paths`` of the served ``site``; returns one result per page."""
    harness = (
        _HARNESS.replace("__PAGES__", json.dumps(paths))
        .replace("__WIDTH__", str(FRAME_WIDTH))
        .replace("__WIDE__", json.dumps(list(WIDE_BY_DESIGN)))
        .replace("__RESULTS__", RESULTS_PATH)
        .encode()
    )
    with (
        serve(site.resolve(), harness) as (base_url, handler),
        # Chromium's helpers may still be writing the profile as it goes.
        tempfile.TemporaryDirectory(
            prefix="check-site-profile-", ignore_cleanup_errors=True
        ) as profile,
    ):
        command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        browser = subprocess.Popen(  # noqa: S603 - a browser we located ourselves
            [*command, base_url.rstrip("/") + HARNESS_PATH],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own process group: stopping it stops its renderer and GPU helpers too.
            start_new_session=True,
        )
        try:
            if not handler.done.wait(timeout):
                raise RuntimeError(f"chromium sent no findings within {timeout:g}s")
        finally:
            _stop(browser)
    results: list[dict[str, Any]] = handler.received[0]
    return results


def _stop(browser: subprocess.Popen[bytes]) -> None:
    """Stop the browser we started and every helper process it started."""
    for stop_signal in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(browser.pid, stop_signal)
        try:
            browser.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def check_in_browser(chromium: str, site: Path, timeout: float) -> tuple[int, list[str]]:
    """Load every page in Chromium; returns (pages loaded, failures)."""
    pages = [page_path(site, path) for path in sorted(site.rglob("index.html"))]
    wanted = [p for p in pages if not p.startswith(("assets/", "search/"))]
    expected = {check.path: check.expected for check in CHECKS}
    failures = []
    cut_off: set[str] = set()
    for result in browse(chromium, site, wanted, timeout):
        path = result["path"]
        where = path or "/"
        if "error" in result:
            failures.append(f"{where}: {result['error']}")
            continue
        missing = [text for text in expected.get(path, ()) if text not in result["text"]]
        if missing:
            failures.append(f"{where}: missing {missing}")
        for line in result["overflowing"]:
            failures.append(f"{where}: a code line wider than the page at {FRAME_WIDTH}px: {line}")
        for name in result["cutOff"]:
            if name not in cut_off:  # the same navigation on every page: say it once
                cut_off.add(name)
                failures.append(f"{where}: navigation name cut off or broken: {name!r}")
    return len(wanted), failures


def main(argv: Sequence[str] | None = None) -> int:
    """Build or take the site, check it; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--site", type=Path, help="check this built site (no build)")
    where.add_argument("--site-dir", type=Path, help="build into this folder and keep it")
    parser.add_argument(
        "--config-file", type=Path, default=REPO / "mkdocs.yml", help="the mkdocs.yml to build"
    )
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium stage")
    parser.add_argument("--chromium", help="the browser executable (default: found on PATH)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds for Chromium")
    arguments = parser.parse_args(argv)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="check-site-") as scratch:
        site = arguments.site
        if site is None:
            site = arguments.site_dir or Path(scratch) / "site"
            try:
                build_site(site.resolve(), arguments.config_file.resolve())
            except RuntimeError as exc:
                print(f"check_site: {exc}", file=sys.stderr)
                return 1
            print(f"check_site: built {site} (strict, no warnings)")
        elif not (site / "index.html").is_file():
            print(f"check_site: {site} holds no built site (no index.html)", file=sys.stderr)
            return 1

        checked, failures = check_built_pages(site)
        print(f"check_site: read {checked} pages")

        chromium = None if arguments.no_browser else find_chromium(arguments.chromium)
        if chromium is None and arguments.chromium:
            print(f"check_site: --chromium {arguments.chromium} not found", file=sys.stderr)
            return 1
        if chromium is None and not arguments.no_browser:
            print(
                "check_site: browser stage skipped, no Chromium found"
                f" (looked for {', '.join(CHROMIUM_NAMES)}; apt-get install chromium)"
            )
        if chromium is not None:
            try:
                loaded, found = check_in_browser(chromium, site, arguments.timeout)
            except RuntimeError as exc:
                loaded, found = 0, [str(exc)]
            failures += found
            print(f"check_site: {chromium} laid out {loaded} pages at {FRAME_WIDTH}px")

    if failures:
        print("check_site: FAILED\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print(f"check_site: all checks passed in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
