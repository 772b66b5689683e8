"""`selfcheck central migrate` and `selfcheck central import`: set up and fill the central
store without running a bridge."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # SQLAlchemy is loaded only when a command runs
    from sqlalchemy import Engine

DB_HELP = "store URL: sqlite:///PATH or postgresql://USER@HOST/DB"


def register(central: argparse.ArgumentParser) -> None:
    actions = central.add_subparsers(dest="action", metavar="{migrate,import}",
                                     help="(none: run the bridge)")
    p = actions.add_parser("migrate", help="bring the store's schema to the newest revision")
    p.add_argument("--db", required=True, help=DB_HELP)
    p.add_argument("--check", action="store_true",
                   help="change nothing; exit 1 if the database differs from the schema "
                   "the code expects")
    p.set_defaults(func=migrate)

    p = actions.add_parser(
        "import", help="import loan rules, patrons and items (CSV, MARC21, MARCXML)",
        description="One transaction: a bad row (reported with its line or record, field "
        "and reason) rejects the whole import unless --skip-bad is given. Existing rows are "
        "updated; nothing is deleted.")
    p.add_argument("--db", required=True, help=DB_HELP)
    p.add_argument("--rules", type=Path, metavar="FILE.csv",
                   help="loan rules: category, loan_days, max_loans")
    p.add_argument("--patrons", type=Path, metavar="FILE.csv",
                   help="Koha borrowers export (cardnumber, surname, firstname, categorycode,"
                   " dateexpiry) or card_id, name, category, expires")
    p.add_argument("--items", type=Path, metavar="FILE",
                   help="items: .csv (barcode, title, author, itemcallnumber, notforloan, "
                   "location), .mrc (MARC21) or .xml (MARCXML), holdings in 952")
    p.add_argument("--skip-bad", action="store_true",
                   help="import the good rows and list the bad ones as skipped")
    p.set_defaults(func=import_)


def _engine(url: str) -> Engine:
    from central.store import open_engine

    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return open_engine(url)


def migrate(args: argparse.Namespace) -> int:
    from central import migrations

    engine = _engine(args.db)
    try:
        if args.check:
            diff = migrations.drift(engine)
            print(f"revision {migrations.current(engine)} (code: {migrations.head()})")
            for d in diff:
                print(f"differs: {d}")
            return 1 if diff or migrations.current(engine) != migrations.head() else 0
        before = migrations.current(engine)
        after = migrations.upgrade(engine)
        print(f"store at revision {after}" + (f" (was {before})" if before != after
                                              else " (up to date)"))
        return 0
    finally:
        engine.dispose()


def import_(args: argparse.Namespace) -> int:
    from central import migrations
    from central.importer import CatalogueError, import_files

    if not (args.rules or args.patrons or args.items):
        print("import: give --rules, --patrons and/or --items", file=sys.stderr)
        return 2
    engine = _engine(args.db)
    try:
        migrations.upgrade(engine)
        report = import_files(engine, rules_csv=args.rules, patrons_csv=args.patrons,
                              items_file=args.items, skip_bad=args.skip_bad)
    except CatalogueError as exc:
        print(f"import: {exc}; nothing imported", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    for line in report.lines():
        print(line)
    return 0 if report.committed else 1
