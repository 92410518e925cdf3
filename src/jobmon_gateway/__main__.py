"""Command line of jobmon-gateway: ``python -m jobmon_gateway schema --out DIR``.

``schema`` writes the JSON Schema of every response model (see
:mod:`jobmon_gateway.schemas`) into ``DIR``, one ``<ModelName>.json`` each,
and prints the paths written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .schemas import export_schemas

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m jobmon_gateway``."""
    parser = argparse.ArgumentParser(
        prog="python -m jobmon_gateway",
        description="Tools of the jobmon-gateway SDK for the Jobmon server's workflow-run API.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    schema = commands.add_parser(
        "schema",
        help="write the JSON Schema of every response model",
        description="Write one <ModelName>.json JSON Schema (of the wire payload) per model.",
    )
    schema.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="directory to write into"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    arguments = build_parser().parse_args(argv)
    if arguments.command == "schema":
        for path in export_schemas(arguments.out):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
