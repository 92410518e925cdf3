"""The docs checks of ``.ci/check`` can fail: each is made to fail once, on purpose.

``docs/check_site.py`` is run as ``.ci/check`` runs it, on a copy of the docs
with a broken cross-reference, and on small hand-written sites that hold each
defect it looks for.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECK_SITE = REPO / "docs" / "check_site.py"


def check_site(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK_SITE), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def docs_copy(root: Path) -> Path:
    """A copy of mkdocs.yml and docs/ that builds from this checkout's sources."""
    shutil.copy(REPO / "mkdocs.yml", root / "mkdocs.yml")
    shutil.copytree(REPO / "docs", root / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "src").symlink_to(REPO / "src")
    return root / "mkdocs.yml"


def test_a_broken_cross_reference_fails_the_docs_build(tmp_path: Path) -> None:
    config = docs_copy(tmp_path)
    with (tmp_path / "docs" / "index.md").open("a", encoding="utf-8") as page:
        page.write("\nSee [a missing name][jobmon_gateway.Nope].\n")
    broken = check_site("--config-file", str(config), "--no-browser")
    assert broken.returncode == 1
    assert "mkdocs build --strict failed" in broken.stderr
    assert "WARNING" in broken.stderr
    assert "jobmon_gateway.Nope" in broken.stderr


def write_page(site: Path, path: str, article: str, extra: str = "") -> None:
    page = site / path / "index.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(
        f"<!doctype html><html><body>{extra}<article>{article}</article></body></html>",
        encoding="utf-8",
    )


def test_a_clean_hand_written_site_passes(tmp_path: Path) -> None:
    write_page(
        tmp_path,
        "",
        "<h1>Home</h1><p>Text about <code>[title][identifier]</code>.</p>"
        "<h2>Code</h2><pre><code>rows[0][name]</code></pre>",
    )
    write_page(tmp_path, "reference/gateway", '<h1>API</h1><div class="doc doc-object">x</div>')
    result = check_site("--site", str(tmp_path), "--no-browser")
    assert result.returncode == 0, result.stderr
    assert "read 2 pages" in result.stdout


def test_leftover_reference_markup_and_empty_sections_fail(tmp_path: Path) -> None:
    write_page(
        tmp_path,
        "",
        "<h1>Home</h1><p>Sent through [<code>AiohttpTransport</code>]"
        "[jobmon_gateway.AiohttpTransport].</p>"
        # Subscripts in a code block are code, not a reference.
        "<pre><code>rows[0][name]</code></pre>"
        '<h2>Nothing here<a class="headerlink" href="#x">¶</a></h2>'
        "<h2>Something</h2><p>text</p>",
    )
    write_page(tmp_path, "reference/empty", "<h1>API</h1><p>No objects.</p>")
    result = check_site("--site", str(tmp_path), "--no-browser")
    assert result.returncode == 1
    failures = result.stderr.splitlines()[1:]
    assert [line.strip() for line in failures] == [
        "/: unresolved reference markup [][jobmon_gateway.AiohttpTransport]",
        "/: empty section h2 'Nothing here'",
        "reference/empty/: an API page that documents nothing",
    ]


@pytest.mark.skipif(
    not any(shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")),
    reason="no Chromium installed (apt-get install chromium)",
)
def test_the_browser_stage_fails_on_a_wide_code_line_and_a_cut_off_name(tmp_path: Path) -> None:
    long_line = "print('" + "x" * 200 + "')"
    write_page(
        tmp_path,
        "",
        # Styled as Material styles code blocks: a scrolling block.
        '<h1>Home</h1><pre><code style="display: block; width: 300px; overflow: auto">'
        f"{long_line}</code></pre>",
        extra=(
            '<nav class="md-sidebar--primary"><a class="md-nav__link">'
            '<span class="md-ellipsis" style="display: block; width: 60px; overflow: hidden;'
            ' white-space: nowrap">TerminateTaskInstancesResponse</span></a></nav>'
        ),
    )
    result = check_site("--site", str(tmp_path))
    assert result.returncode == 1
    assert f"/: a code line wider than the page at 1280px: {long_line}" in result.stderr
    assert "/: navigation name cut off or broken: 'TerminateTaskInstancesResponse'" in (
        result.stderr
    )
