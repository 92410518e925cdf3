"""The lowest version of every runtime dependency that pyproject.toml allows.

    python3 .ci/lowest.py             # one pin a line: "httpx==0.27", ...
    python3 .ci/lowest.py --installed # exit 1 unless this Python has each at its floor

The pins are read from ``[project].dependencies`` each time, so they cannot
drift from what the package declares. A dependency without a floor (no
``>=``, ``==`` or ``~=``) stops the script with exit 1: the lowest-version CI
step could not test it, so its declared range would be a guess.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*)(;.*)?$")
_FLOOR = re.compile(r"^(>=|==|~=)\s*([0-9][0-9A-Za-z.+!-]*)$")


class NoFloorError(ValueError):
    """A runtime dependency that declares no lowest version."""


def floors(dependencies: list[str]) -> dict[str, str]:
    """Each dependency's name and the lowest version its specifiers allow."""
    found: dict[str, str] = {}
    for requirement in dependencies:
        match = _REQUIREMENT.match(requirement)
        if match is None:
            raise NoFloorError(f"cannot read the requirement {requirement!r}")
        name, _extras, specifiers, _marker = match.groups()
        lowest = [
            floor[2]
            for part in specifiers.split(",")
            if (floor := _FLOOR.match(part.strip())) is not None
        ]
        if not lowest:
            raise NoFloorError(
                f"{name} has no floor in pyproject.toml ({requirement!r}): declare the lowest"
                " version the code works with (>=X), found by the lowest-version CI step"
            )
        found[name] = max(lowest, key=_release)
    return found


def _release(version: str) -> tuple[int, ...]:
    # Plain releases only (the floors are X.Y or X.Y.Z); "1.0" equals "1.0.0".
    numbers = [int(part) for part in re.findall(r"\d+", version.split("+")[0])]
    while numbers and numbers[-1] == 0:
        numbers.pop()
    return tuple(numbers)


def declared(pyproject: Path = PYPROJECT) -> dict[str, str]:
    """The floors of ``pyproject``'s ``[project].dependencies``."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    return floors(list(project["dependencies"]))


def not_at_floor(wanted: dict[str, str]) -> list[str]:
    """Which dependencies this Python has at another version than their floor, or lacks."""
    wrong = []
    for name, floor in wanted.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong.append(f"{name}: not installed (floor {floor})")
            continue
        if _release(installed) != _release(floor):
            wrong.append(f"{name}: {installed} installed, floor {floor}")
    return wrong


def main(argv: list[str]) -> int:
    """Print the pins, or with ``--installed`` check them; 1 on any problem."""
    try:
        wanted = declared()
    except NoFloorError as exc:
        print(f"lowest.py: {exc}", file=sys.stderr)
        return 1
    if argv == ["--installed"]:
        wrong = not_at_floor(wanted)
        for line in wrong:
            print(f"lowest.py: {line}", file=sys.stderr)
        return 1 if wrong else 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    for name, floor in wanted.items():
        print(f"{name}=={floor}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
