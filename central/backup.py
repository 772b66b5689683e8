"""Backups of the central store and restores from them, for the library's IT person
(`selfcheck central backup` / `restore`).

- SQLite: SQLite's online backup API (`sqlite3.Connection.backup`): a consistent copy while
  the bridges keep writing, one page set under one read lock, never a torn file copy. A
  restore writes into the store through the same API, so bridges that have the file open see
  the restored content rather than an unlinked old file.
- PostgreSQL: pg_dump and pg_restore, custom format; the password (if the URL has one) goes
  to them in PGPASSWORD, never on their command line, where `ps` shows it.

A restore refuses a store that already holds tables unless `force` is given (that is someone's
live data), brings the restored store to the newest schema revision (a backup may come from an
older release) and checks it then matches the code, and records the restore in
`store_restores`: from then on each station's numbering is taken from where its transactions
say it is (central/ledger/order.py), instead of waiting for the numbers the backup never saw.

Failures are `BackupError`s: a key of the command line's catalog (selfcheck/cli/locale) and its
arguments, so that the person at the terminal reads them in their language.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, inspect, text
from sqlalchemy.engine import URL

from selfcheck.central import migrations
from selfcheck.central.engine import hide_password, multi_host, open_engine, parse_url
from selfcheck.central.schema import store_restores

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_MAGIC = b"PGDMP"  # pg_dump's custom format


class BackupError(Exception):
    """What went wrong, as a key of the command line's catalog; `code` as for UserError (2: a
    wrong argument, 1: refused or failed)."""

    def __init__(self, key: str, code: int = 1, **args: object) -> None:
        super().__init__(key, args)
        self.key = key
        self.code = code
        self.args_ = args


@dataclass(frozen=True)
class Done:
    revision: str | None  # the store's revision: the backup's, or the restored store's
    size: int  # bytes written (backup) or 0
    was: str | None = None  # restore: the backup's own revision, before the upgrade


def sqlite_path(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def backup(url: str, dest: Path, *, force: bool = False) -> Done:
    """Copy the store at `url` to the file `dest` (written aside, then renamed: a backup that
    fails half-way leaves no file that looks whole). Readable by its owner only: it holds
    readers' names and loans."""
    _parsed(url)
    if dest.exists() and not force:
        raise BackupError("central.backup.exists", dest=dest)
    if not dest.parent.is_dir():
        raise BackupError("central.backup.no_folder", code=2, folder=dest.parent)
    partial = dest.with_name(dest.name + ".partial")
    partial.unlink(missing_ok=True)
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        path = sqlite_path(url)
        if path is not None:
            revision = _backup_sqlite(path, partial)
        else:
            revision = _backup_pg(url, partial)
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    return Done(revision, dest.stat().st_size)


def _backup_sqlite(path: Path, dest: Path) -> str | None:
    if not path.is_file():  # a mistyped --db would otherwise back up a new empty file
        raise BackupError("central.store.missing", code=2, path=path)
    # mode=rw: never creates the file; the backup API needs no more than reading it, but a
    # WAL store may need its -shm written by whoever reads.
    src = sqlite3.connect(f"file:{path}?mode=rw", uri=True)
    try:
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)
            revision = _sqlite_revision(dst)
        finally:
            dst.close()
    finally:
        src.close()
    if revision is None:
        raise BackupError("central.backup.not_a_store", path=path)
    return revision


def _sqlite_revision(conn: sqlite3.Connection) -> str | None:
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:
        return None
    return str(row[0]) if row else None


def _parsed(url: str) -> URL:
    """The store URL as SQLAlchemy reads it; one it cannot read is the user's to correct, not
    a traceback."""
    try:
        return parse_url(url)
    except ValueError as exc:
        raise BackupError("central.store.bad_url", code=2, url=_safe(url),
                          reason=exc) from None


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """The URL pg_dump and pg_restore take, without its password, and their environment with
    it."""
    u = _parsed(url).set(drivername="postgresql")
    env = dict(os.environ)
    if u.password is not None:
        env["PGPASSWORD"] = str(u.password)
        u = u._replace(password=None)  # not set(): it leaves a field given None as it was
    if multi_host(url) != url:
        # libpq takes the multi-host form as it is (and not SQLAlchemy's `host=H:P` list):
        # the user's URL with the scheme libpq knows and the password taken out.
        rest = url.partition("://")[2]
        head, q, query = rest.partition("?")
        userinfo, at, hosts = head.rpartition("@")
        return f"postgresql://{userinfo.partition(':')[0]}{at}{hosts}{q}{query}", env
    return u.render_as_string(hide_password=False), env


def _run(tool: str, args: list[str], env: dict[str, str]) -> None:
    exe = shutil.which(tool)
    if exe is None:
        raise BackupError("central.backup.no_tool", tool=tool)
    done = subprocess.run([exe, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError("central.backup.tool_failed", tool=tool,
                          reason=done.stderr.strip() or f"exit {done.returncode}")


def _backup_pg(url: str, dest: Path) -> str | None:
    engine = open_engine(url)
    try:
        revision = migrations.current(engine)
    except Exception as exc:  # the server's own words: down, no such database, no login
        raise BackupError("central.store.cannot_open", reason=exc) from None
    finally:
        engine.dispose()
    if revision is None:
        raise BackupError("central.backup.not_a_store", path=_safe(url))
    target, env = _libpq(url)
    _run("pg_dump", ["--format=custom", f"--file={dest}", f"--dbname={target}"], env)
    return revision


def _safe(url: str) -> str:
    return hide_password(url)


def restore(src: Path, url: str, *, force: bool = False,
            now: dt.datetime | None = None) -> Done:
    """Put the backup `src` in place of the store at `url`, migrate it and record the restore."""
    _parsed(url)
    if not src.is_file():
        raise BackupError("central.restore.no_backup", code=2, path=src)
    with open(src, "rb") as f:
        magic = f.read(len(SQLITE_MAGIC))
    path = sqlite_path(url)
    if path is not None and not magic.startswith(SQLITE_MAGIC):
        raise BackupError("central.restore.wrong_kind", src=src, kind="SQLite")
    if path is None and not magic.startswith(PG_MAGIC):
        raise BackupError("central.restore.wrong_kind", src=src, kind="PostgreSQL (pg_dump -Fc)")
    if path is not None:
        was = _restore_sqlite(src, path, force)
    else:
        was = _restore_pg(src, url, force)
    engine = open_engine(url)
    try:
        reached = migrations.upgrade(engine)
        diff = migrations.drift(engine)
        if reached != migrations.head() or diff:
            raise BackupError("central.restore.not_migrated", revision=reached,
                              head=migrations.head(), diff="; ".join(map(str, diff[:3])))
        with engine.begin() as conn:
            conn.execute(insert(store_restores).values(
                restored_at=now or dt.datetime.now(dt.UTC), source=str(src.resolve())[:500]))
    finally:
        engine.dispose()
    return Done(reached, 0, was)


def restart_numbering(url: str, *, force: bool = False,
                      now: dt.datetime | None = None) -> Done:
    """A new store put in place of one that was lost without a backup: the stations number on
    from where they are, so the same as after a restore (migrated first; refused on a store
    that has recorded transactions unless `force`, since it is not new)."""
    _parsed(url)
    path = sqlite_path(url)
    if path is not None and not path.parent.is_dir():
        raise BackupError("central.backup.no_folder", code=2, folder=path.parent)
    engine = open_engine(url)
    try:
        reached = migrations.upgrade(engine)
        with engine.begin() as conn:
            count = int(conn.execute(text("SELECT COUNT(*) FROM processed")).scalar_one())
            if count and not force:
                raise BackupError("central.restore.fresh_not_new", target=_safe(url),
                                  count=count)
            conn.execute(insert(store_restores).values(
                restored_at=now or dt.datetime.now(dt.UTC), source="(new store, no backup)"))
    finally:
        engine.dispose()
    return Done(reached, 0)


def _tables(engine: Engine) -> list[str]:
    return sorted(inspect(engine).get_table_names())


def _live(url: str) -> tuple[list[str], int]:
    """The target's tables and how many transactions it has recorded (what --force loses)."""
    engine = open_engine(url)
    try:
        tables = _tables(engine)
        count = 0
        if "processed" in tables:
            with engine.connect() as conn:
                count = int(conn.execute(text("SELECT COUNT(*) FROM processed")).scalar_one())
        return tables, count
    finally:
        engine.dispose()


def _refuse_live(url: str, where: object, force: bool) -> list[str]:
    tables, count = _live(url)
    if tables and not force:
        raise BackupError("central.restore.live", target=where, tables=len(tables),
                          count=count)
    return tables


def _restore_sqlite(src: Path, path: Path, force: bool) -> str | None:
    if not path.parent.is_dir():
        raise BackupError("central.backup.no_folder", code=2, folder=path.parent)
    if path.exists():
        _refuse_live(f"sqlite:///{path}", path, force)
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    try:
        check = source.execute("PRAGMA quick_check").fetchone()
        was = _sqlite_revision(source)
        if not check or check[0] != "ok" or was is None:
            raise BackupError("central.restore.not_a_backup", src=src,
                              reason=check[0] if check and check[0] != "ok"
                              else "no alembic_version")
        target = sqlite3.connect(path, timeout=30)
        try:
            # Into the store itself, under its write lock: whoever has it open reads the
            # restored pages next, and the file keeps its owner and mode.
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()
    return was


def _restore_pg(src: Path, url: str, force: bool) -> str | None:
    target, env = _libpq(url)
    _run("pg_restore", ["--list", str(src)], env)  # a readable dump, before anything goes
    tables = _refuse_live(url, _safe(url), force)
    if tables:
        engine = open_engine(url)
        try:
            with engine.begin() as conn:  # the dump brings every table back, fleet's too
                conn.execute(text("DROP TABLE " + ", ".join(
                    f'"{t}"' for t in tables) + " CASCADE"))
        finally:
            engine.dispose()
    _run("pg_restore", ["--no-owner", "--no-privileges", "--exit-on-error",
                        "--single-transaction", f"--dbname={target}", str(src)], env)
    engine = open_engine(url)
    try:
        return migrations.current(engine)
    finally:
        engine.dispose()


def restores(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            store_restores.select().order_by(store_restores.c.id)).mappings()]
