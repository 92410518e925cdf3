"""``.ci/lowest.py``: the floors CI installs come from pyproject.toml, and each must exist.

The CI step itself (``.ci/check-lowest``) installs those floors and runs the
unit tests; here only the reading of the floors is tested.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

tomllib = pytest.importorskip("tomllib")  # the script runs on CI's Python (3.11+)

REPO = Path(__file__).resolve().parents[1]
LOWEST = REPO / ".ci" / "lowest.py"


@pytest.fixture(scope="module")
def lowest() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ci_lowest", LOWEST)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_each_floor_is_the_lowest_version_the_specifiers_allow(lowest: ModuleType) -> None:
    assert lowest.floors(
        [
            "httpx>=0.28,<0.29",
            "pydantic >= 2.14, < 3",
            "pkg[extra]>=1.2; python_version < '3.12'",
            "exact==3.1",
            "compatible~=1.4",
            "twice>=1.0,>=1.10",
        ]
    ) == {
        "httpx": "0.28",
        "pydantic": "2.14",
        "pkg": "1.2",
        "exact": "3.1",
        "compatible": "1.4",
        "twice": "1.10",
    }


@pytest.mark.parametrize("requirement", ["rich", "httpx<0.29", "click!=8.1.0", "yaml>6"])
def test_a_dependency_without_a_floor_is_refused(
    lowest: ModuleType, requirement: str, tmp_path: Path
) -> None:
    with pytest.raises(lowest.NoFloorError, match="has no floor"):
        lowest.floors(["httpx>=0.28", requirement])
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(f'[project]\ndependencies = ["{requirement}"]\n', encoding="utf-8")
    with pytest.raises(lowest.NoFloorError, match="has no floor"):
        lowest.declared(pyproject)


def test_the_script_prints_a_pin_for_every_runtime_dependency() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    dependencies = declared["project"]["dependencies"]
    printed = subprocess.run(
        [sys.executable, str(LOWEST)], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert len(printed) == len(dependencies)
    for pin, requirement in zip(printed, dependencies, strict=True):
        name, floor = pin.split("==")
        assert requirement.startswith(f"{name}>={floor}")


def test_installed_versions_are_compared_as_releases(lowest: ModuleType) -> None:
    assert lowest._release("0.28") == lowest._release("0.28.0")
    assert lowest._release("6") == lowest._release("6.0")
    assert lowest._release("25.2") != lowest._release("25.2.1")
    assert lowest.not_at_floor({"pytest": "0.1"}) != []
    assert lowest.not_at_floor({"not-a-package-here": "1.0"}) == [
        "not-a-package-here: not installed (floor 1.0)"
    ]
