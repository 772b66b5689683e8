"""The `selfcheck` command: one entry point, one module per subcommand.

Each module in COMMANDS has `register(subparsers)` which adds its parser and sets `func`
(a callable taking the parsed args and returning an exit code).

Logging is set up here, once, for every command (selfcheck/logs.py); an expected failure
raised as selfcheck.errors.UserError is printed in the user's language, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from selfcheck import errors, logs

COMMANDS = [
    "selfcheck.demo",
    "selfcheck.station_cmd",
    "selfcheck.central_cmd",
    "selfcheck.simulate",
    "selfcheck.chaos",
    "selfcheck.bench.cmd",
    "selfcheck.schema_cmd",
    "selfcheck.fleet_cmd",
    "selfcheck.doctor",
    "drivers.tags.cli",
    "drivers.pad.cli",
]


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found: list[argparse.ArgumentParser] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found += [child, *_subparsers(child)]
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfcheck", description=__doc__.splitlines()[0])
    logs.add_arguments(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    # `--log-level` also after any subcommand (`selfcheck central --log-level debug`);
    # SUPPRESS keeps a subcommand's absent option from hiding the top-level one.
    for child in _subparsers(parser):
        if not any("--log-level" in a.option_strings for a in child._actions):
            child.add_argument("--log-level", choices=logs.LEVELS, type=str.lower,
                               default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    lang = errors.lang_of(getattr(args, "lang", None))
    try:
        logs.setup(args.log_level)
    except ValueError:
        print(errors.t("options.invalid", lang, command=args.command,
                       msg=f"{logs.ENV}={os.environ.get(logs.ENV)}"), file=sys.stderr)
        return 2
    try:
        code: int = args.func(args)
    except errors.UserError as exc:  # a command may have learnt the language (its config)
        print(exc.text(errors.lang_of(getattr(args, "lang", None))), file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(errors.t("interrupted", errors.lang_of(getattr(args, "lang", None))),
              file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
