"""`selfcheck central backup`, `selfcheck central restore` and what `central migrate --check`
says: looking after the central store without the developers (central/backup.py).

Messages in the user's language (LANG, or --lang): selfcheck/cli/locale.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selfcheck.cli.errors import LANGS, UserError, lang_of, t

if TYPE_CHECKING:
    from sqlalchemy import Engine

DB_HELP = "store URL: sqlite:///PATH or postgresql://USER@HOST/DB"


def register(actions: argparse._SubParsersAction) -> None:
    """Adds `backup` and `restore` to `selfcheck central`'s actions."""
    p = actions.add_parser(
        "backup", help="copy the store to a file, while the bridges run",
        description="SQLite: a consistent copy through SQLite's online backup API. "
        "PostgreSQL: pg_dump, custom format (restore with `selfcheck central restore`). "
        "The file is readable by its owner only: it holds readers' names and loans.")
    p.add_argument("--db", required=True, help=DB_HELP)
    p.add_argument("file", type=Path, metavar="FILE", help="the backup to write")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p.add_argument("--lang", choices=LANGS, help="vi or en (default: LANG)")
    p.set_defaults(func=backup)

    p = actions.add_parser(
        "restore", help="put a backup in place of the store (bridges stopped)",
        description="Refuses a store that holds data unless --force is given; brings the "
        "restored store to the newest schema and checks it. Afterwards each station's "
        "numbering goes on from where its transactions say the station is (the backup never "
        "saw the last ones): "
        "`selfcheck central report` lists where.")
    p.add_argument("--db", required=True, help=DB_HELP)
    p.add_argument("file", type=Path, metavar="FILE", nargs="?",
                   help="a file from `central backup`")
    p.add_argument("--fresh", action="store_true",
                   help="no backup: the store at --db is a new one, put in place of one that "
                   "was lost; the stations' numbering goes on from where they say they are")
    p.add_argument("--force", action="store_true",
                   help="replace the data the store holds now (it is lost)")
    p.add_argument("--lang", choices=LANGS, help="vi or en (default: LANG)")
    p.set_defaults(func=restore)


def _user_error(exc: Exception) -> UserError:
    from selfcheck.central.backup import BackupError

    assert isinstance(exc, BackupError)
    return UserError(exc.key, exc.code, **exc.args_)


def backup(args: argparse.Namespace) -> int:
    from selfcheck.central.backup import BackupError
    from selfcheck.central.backup import backup as run

    lang = lang_of(args.lang)
    try:
        done = run(args.db, args.file, force=args.force)
    except BackupError as exc:
        raise _user_error(exc) from None
    print(t("central.backup.done", lang, dest=args.file, size=done.size,
            revision=done.revision))
    return 0


def restore(args: argparse.Namespace) -> int:
    from selfcheck.central.backup import BackupError, restart_numbering
    from selfcheck.central.backup import restore as run

    lang = lang_of(args.lang)
    if (args.file is None) == (not args.fresh):
        raise UserError("central.restore.file_or_fresh")
    try:
        if args.fresh:
            done = restart_numbering(args.db, force=args.force, now=dt.datetime.now(dt.UTC))
            print(t("central.restore.fresh_done", lang, revision=done.revision))
            return 0
        done = run(args.file, args.db, force=args.force, now=dt.datetime.now(dt.UTC))
    except BackupError as exc:
        raise _user_error(exc) from None
    print(t("central.restore.done", lang, src=args.file, was=done.was,
            revision=done.revision))
    return 0


# -- `central report`
def print_rebased(rows: list[dict[str, Any]], lang: str) -> None:
    """The station journals whose numbering was taken from the station after a restore: the
    numbers skipped were never in the restored store (their transactions were applied before
    the restore, after the backup), so staff may want to look at those stations' books."""
    if not rows:
        return
    print()
    for r in rows:
        print(t("central.report.rebased", lang,
                at=r["recorded_at"].strftime("%Y-%m-%d %H:%M"), site=r["site"],
                station=r["station"], journal=r["journal"][:8] or "-", seq=r["last_seq"] + 1,
                first=r["first_seq"], last=r["last_seq"]))


# -- `central migrate --check`
def pending(engine: Engine) -> list[str]:
    """The revisions not yet applied, oldest first, by their scripts' names."""
    from alembic.script import ScriptDirectory

    from selfcheck.central import migrations

    scripts = ScriptDirectory.from_config(migrations.config())
    current = migrations.current(engine)
    revs = list(scripts.iterate_revisions(migrations.head(), current or "base"))
    return [Path(r.path).stem for r in reversed(revs) if r.revision != current]


def check(url: str, lang: str) -> int:
    """Exit 0 when the store is at the code's revision and matches its schema; 1 with what
    to do otherwise. A SQLite file that is not there is refused rather than created."""
    from selfcheck.central import migrations
    from selfcheck.central.engine import hide_password, open_engine, parse_url

    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise UserError("central.store.missing", path=url.removeprefix("sqlite:///"))
    try:
        parse_url(url)
    except ValueError as exc:
        raise UserError("central.store.bad_url", url=hide_password(url), reason=exc) from None
    engine = open_engine(url)
    try:
        todo = pending(engine)
        if todo:
            # The schema differs while migrations are pending, by their very content: the
            # list of differences would only repeat them, table by table.
            # The URL goes to the screen and into logs: never with its password.
            print(t("central.migrate.pending", lang, count=len(todo), names=", ".join(todo),
                    db=hide_password(url)))
            return 1
        diff = migrations.drift(engine)
        print(t("central.migrate.at", lang, revision=migrations.current(engine)))
        for d in diff:
            print(t("central.migrate.differs", lang, what=d))
        return 1 if diff else 0
    finally:
        engine.dispose()


if __name__ == "__main__":
    from selfcheck.cli import main

    sys.exit(main(["central", *sys.argv[1:]]))
