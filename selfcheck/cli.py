"""The `selfcheck` command: one entry point, one module per subcommand.

Each module in COMMANDS has `register(subparsers)` which adds its parser and sets `func`
(a callable taking the parsed args and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = [
    "selfcheck.demo",
    "selfcheck.station_cmd",
    "selfcheck.central_cmd",
    "selfcheck.simulate",
    "selfcheck.bench.cmd",
    "selfcheck.schema_cmd",
    "selfcheck.fuzz.cmd",
    "selfcheck.fleet_cmd",
    "drivers.tags.cli",
    "drivers.pad.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfcheck", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
