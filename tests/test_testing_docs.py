"""Every code example of docs/testing.md, and of the README's "Testing your own driver",
runs as it stands, as a test module of its own.

The blocks are written to a temporary directory and run by a separate pytest
(with only the installed ``jobmon_server`` plugin, as a user's project has
it); every test they define must pass.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

PAGE = Path(__file__).parents[1] / "docs" / "testing.md"
README = Path(__file__).parents[1] / "README.md"
README_SECTION = "## Testing your own driver\n"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)
# pytest-asyncio in its strict mode: the examples say what they need.
PYTEST_INI = """[pytest]
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
"""


def blocks() -> list[str]:
    return BLOCK.findall(PAGE.read_text(encoding="utf-8"))


def readme_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(README_SECTION) :]
    section = section[: section.find("\n## ", len(README_SECTION))]
    return BLOCK.findall(section)


def test_the_page_has_examples() -> None:
    found = blocks()
    assert len(found) >= 6
    for block in found + readme_blocks():
        assert re.search(r"^(async )?def test_", block, re.MULTILINE), block[:200]
    assert len(readme_blocks()) == 1
    assert "docs/testing.md" in README.read_text(encoding="utf-8").split(README_SECTION)[1]


@pytest.mark.parametrize("source", ["docs/testing.md", "README.md"])
def test_every_example_passes(tmp_path: Path, source: str) -> None:
    found = blocks() if source == "docs/testing.md" else readme_blocks()
    for number, block in enumerate(found):
        (tmp_path / f"test_example_{number}.py").write_text(block, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text(PYTEST_INI, encoding="utf-8")
    expected = sum(len(re.findall(r"^(?:async )?def test_", b, re.MULTILINE)) for b in found)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.fullmatch(rf"{expected} passed in [\d.]+s", summary), result.stdout


@pytest.mark.parametrize("name", ["jobmon_server", "requester(", "requests_to", "serve()", "3.2.2"])
def test_the_page_covers(name: str) -> None:
    assert name in PAGE.read_text(encoding="utf-8")
