"""The `selfcheck` command: one entry point, one module per subcommand.

Each module in COMMANDS has `register(subparsers)` which adds its parser and sets `func`
(a callable taking the parsed args and returning an exit code).

Logging is set up here, once, for every command (selfcheck/cli/logs.py); an expected failure
raised as selfcheck.errors.UserError is printed in the user's language, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from selfcheck.cli import errors, logs

# Each subcommand: the module that registers it, and its one-line help. Only the module of the
# command being run is imported (`selfcheck --help` imports none): the station, the central and
# the demo each pull in a lot. tests/test_cli_errors.py checks this table against the modules.
TABLE: dict[str, tuple[str, str]] = {
    "demo": ("selfcheck.lab.demo", "run the station demo (simulated pad and card reader)"),
    "station": ("selfcheck.cli.station", "run the station app"),
    "central": ("selfcheck.cli.central",
                "run the central bridge (embedded circulation store)"),
    "simulate": ("selfcheck.lab.simulate", "drive N headless stations against a central"),
    "chaos": ("selfcheck.lab.chaos", "kill stations, bridges and the broker on a seeded schedule, "
              "then check nothing was lost, doubled or reordered"),
    "bench": ("selfcheck.lab.bench.cmd", "measure speed and memory (prints JSON lines)"),
    "schema": ("selfcheck.cli.schema", "export the MQTT message JSON Schemas"),
    "fuzz": ("selfcheck.lab.fuzz.cmd", "fuzz every decoder (tags, pad frames, SIP2, MQTT, "
             "barcodes, station config) with generated and mutated inputs"),
    "ui": ("selfcheck.cli.ui", "the station's screens: layout audit, gallery"),
    "fleet": ("selfcheck.cli.fleet", "watch and steer the stations (operators)"),
    "doctor": ("selfcheck.cli.doctor",
               "check a station's or the central's set-up, one line per check"),
    "tag": ("selfcheck.cli.tag", "decode and encode library tag data (ISO 28560)"),
    "reader": ("selfcheck.cli.reader", "book pad tools: scan tags, run a pad simulator"),
}
COMMANDS = list(dict.fromkeys(module for module, _ in TABLE.values()))


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named in `argv` (the first word that is not an option)."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word == "--log-level":
            skip = True
        elif not word.startswith("-"):
            return word
    return None


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found: list[argparse.ArgumentParser] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found += [child, *_subparsers(child)]
    return found


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """Every subcommand; with `argv`, only the one it names is loaded, the others are stubs
    that carry their help line."""
    parser = argparse.ArgumentParser(prog="selfcheck", description=__doc__.splitlines()[0])
    logs.add_arguments(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    wanted = None if argv is None else _command_of(argv)
    if argv is None or wanted in TABLE:
        for module in COMMANDS if argv is None else [TABLE[str(wanted)][0]]:
            importlib.import_module(module).register(sub)
    for name, (_, help_line) in TABLE.items():
        if name not in sub.choices:
            sub.add_parser(name, help=help_line)
    # `--log-level` also after any subcommand (`selfcheck central --log-level debug`);
    # SUPPRESS keeps a subcommand's absent option from hiding the top-level one.
    for child in _subparsers(parser):
        if not any("--log-level" in a.option_strings for a in child._actions):
            child.add_argument("--log-level", choices=logs.LEVELS, type=str.lower,
                               default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    args = build_parser(argv).parse_args(argv)
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
