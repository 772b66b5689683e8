"""`selfcheck central migrate` and `selfcheck central import`: set up and fill the central
store without running a bridge."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selfcheck.cli import central_report, central_tagging
from selfcheck.cli.errors import lang_of, t

if TYPE_CHECKING:  # SQLAlchemy is loaded only when a command runs
    from sqlalchemy import Engine

DB_HELP = "store URL: sqlite:///PATH or postgresql://USER@HOST/DB"


def register(central: argparse.ArgumentParser) -> None:
    actions = central.add_subparsers(dest="action",
                                     metavar="{migrate,import,report,rotate-salt,unlock-pin,"
                                     "backup,restore,wheelhouse}",
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

    p = actions.add_parser(
        "report", help="offline transactions refused on arrival, loans undone by the station, "
        "and order gaps (reconciliation)",
        description="Loans and returns done while a station was offline that the library "
        "system refused when they arrived: the reader was told yes, so staff follow them up. "
        "Then the loans the library system made after the reader had been told \"not "
        "borrowed\" (an answer lost or too late), which the station checked back in by "
        "itself. Then the order gaps: a station's transactions whose predecessor never came within "
        "the order wait (applied past the gap), and the missing ones that came after all "
        "(applied late, out of order): the books concerned may need a look. Then the "
        "transactions a station dated with a wrong clock (applied at the central's time), the "
        "cards waiting or locked after wrong PINs, the stations by wrong PINs (paused over "
        "their budget) and the PIN events, unlocks included.")
    p.add_argument("--db", required=True, help=DB_HELP)
    p.add_argument("--site", help="only this site")
    p.add_argument("--since", type=_date, metavar="YYYY-MM-DD",
                   help="only transactions done on or after this day (UTC)")
    p.add_argument("--lang", choices=("vi", "en"),
                   help="vi or en for the sections on PINs and clocks (default: LANG)")
    central_tagging.add_options(p)
    p.set_defaults(func=report)

    p = actions.add_parser(
        "unlock-pin", help="lift a card's wait or lock after wrong PINs (logged)",
        description="Once staff know the reader: the card's wrong PINs are forgotten and its "
        "wait or lock lifted, in the embedded store and for a library system's cards; the "
        "unlock is logged with --by (central report, PIN events).")
    p.add_argument("--db", required=True, help=DB_HELP)
    p.add_argument("--ref", required=True, help="the patron reference (central report)")
    p.add_argument("--by", default=os.environ.get("USER") or "staff",
                   help="who unlocks (default $USER)")
    p.add_argument("--lang", choices=("vi", "en"), help="vi or en (default: LANG)")
    p.set_defaults(func=unlock_pin)

    p = actions.add_parser(
        "rotate-salt", help="replace the offline lists' card-hash key now (after a theft)",
        description="Each site gets a new random key for the card hashes of its offline "
        "list; the stations replace their whole list with the next fetch (every "
        "offline_list_s), so the hashes on a stolen disk match nothing sent afterwards.")
    p.add_argument("--db", required=True, help=DB_HELP)
    p.add_argument("--site", help="only this site (default: every site)")
    p.set_defaults(func=rotate_salt)

    from selfcheck.cli import central_backup  # `central backup`, `central restore`

    central_backup.register(actions)

    from selfcheck.cli import central_wheelhouse  # `central wheelhouse build`

    central_wheelhouse.register(actions)


def rotate_salt(args: argparse.Namespace) -> int:
    import datetime as dt

    from selfcheck.central.backends.store import rotate_salts

    sites = rotate_salts(_engine(args.db), dt.datetime.now(dt.UTC), args.site)
    if not sites:
        print(f"no offline-list key for {args.site or 'any site'} yet: nothing to rotate",
              file=sys.stderr)
        return 1
    print(f"new offline-list key for: {', '.join(sorted(sites))}")
    return 0


def _date(text: str) -> object:
    import datetime as dt

    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _engine(url: str) -> Engine:
    from selfcheck.central.engine import open_engine

    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return open_engine(url)


def migrate(args: argparse.Namespace) -> int:
    from selfcheck.central import migrations

    if args.check:  # before _engine: a mistyped path must not become a folder or a file
        from selfcheck.cli import central_backup

        return central_backup.check(args.db, lang_of(None))
    engine = _engine(args.db)
    try:
        before = migrations.current(engine)
        after = migrations.upgrade(engine)
        print(f"store at revision {after}" + (f" (was {before})" if before != after
                                              else " (up to date)"))
        return 0
    finally:
        engine.dispose()


def import_(args: argparse.Namespace) -> int:
    from selfcheck.central import migrations
    from selfcheck.central.importer import CatalogueError, import_files

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


def report(args: argparse.Namespace) -> int:
    from selfcheck.central import ledger

    engine = _engine(args.db)
    if getattr(args, "tagging", False):  # the RFID conversion's progress instead
        try:
            return central_tagging.report(engine, lang_of(args.lang), args.csv, args.since)
        finally:
            engine.dispose()
    try:
        rows = ledger.refused_offline(engine, site=args.site, since=args.since)
        gaps: list[dict[str, Any]] = ledger.gaps(engine, site=args.site, since=args.since)
    finally:
        engine.dispose()
    head = ("at (UTC)", "site", "station", "kind", "item", "patron ref", "reason", "msg_id")
    refused = [r for r in rows if r.get("compensates") is None
               and r["reason"] not in central_report.CLOCK_REASONS]
    _print_table([head] + [(r["at"].strftime("%Y-%m-%d %H:%M"), r["site"], r["station"],
                            r["kind"], r["item_id"], r["patron_ref"] or "-", r["reason"],
                            r["msg_id"]) for r in refused])
    print(f"{len(refused)} refused offline transaction(s)")
    print()
    # A loan the library system made after the reader was told "not borrowed": the station
    # checked it back in by itself; staff see whether that return went through.
    undone = [r for r in rows if r.get("compensates") is not None]
    _print_table([("at (UTC)", "site", "station", "item", "result", "loan msg_id",
                   "return msg_id")] + [
        (r["at"].strftime("%Y-%m-%d %H:%M"), r["site"], r["station"], r["item_id"],
         r["reason"], r["compensates"], r["msg_id"]) for r in undone])
    failed = sum(r["reason"] != "compensated" for r in undone)
    print(f"{len(undone)} loan(s) made after the reader was told they were not, checked back "
          f"in ({failed} of those returns refused: check the book at the desk)")
    print()
    # Numbering taken from a station after a restore: said apart, it is no gap
    # (central/ledger/order.py).
    rebased = [g for g in gaps if g["kind"] == "rebase"]
    gaps = [g for g in gaps if g["kind"] != "rebase"]
    # A seq counts within one journal: a reinstalled station starts again at 1.
    _print_table([("recorded (UTC)", "site", "station", "journal", "kind", "seq", "msg_id")] + [
        (g["recorded_at"].strftime("%Y-%m-%d %H:%M"), g["site"], g["station"],
         g["journal"][:8] or "-", g["kind"],
         str(g["first_seq"]) if g["first_seq"] == g["last_seq"]
         else f"{g['first_seq']}-{g['last_seq']}", g["msg_id"] or "-") for g in gaps])
    given_up = sum(g["kind"] == "gap" for g in gaps)
    print(f"{given_up} order gap(s) given up, {len(gaps) - given_up} late transaction(s) "
          "applied out of order")
    from selfcheck.cli import central_backup

    central_backup.print_rebased(rebased, lang_of(getattr(args, "lang", None)))
    print()
    central_report.clock_and_pins(args.db, rows, args.site, args.since,
                                  lang_of(getattr(args, "lang", None)))
    return 0


def unlock_pin(args: argparse.Namespace) -> int:
    import datetime as dt

    from selfcheck.central import pin_guard

    engine = _engine(args.db)
    lang = lang_of(args.lang)
    try:
        done = pin_guard.unlock(engine, args.ref, args.by[:64], dt.datetime.now(dt.UTC))
    finally:
        engine.dispose()
    print(t("unlock_pin.done" if done else "unlock_pin.unknown", lang, ref=args.ref[:64]),
          file=sys.stdout if done else sys.stderr)
    return 0 if done else 1


_print_table = central_report.print_table
