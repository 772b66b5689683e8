"""The journal's schema is numbered (PRAGMA user_version): a journal from before the number
(version 1) is migrated on start with its contents kept; one from a newer release is refused,
naming its version, and left untouched."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from selfcheck.kiosk.runtime import journal as journal_mod
from selfcheck.kiosk.runtime.journal import VERSION, Journal, JournalVersionError

# The journal as the station wrote it before the schema had a number: tables only.
V1_TABLES = """
CREATE TABLE outbox (msg_id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, kind TEXT NOT NULL,
    topic TEXT NOT NULL, payload BLOB NOT NULL, created REAL NOT NULL);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE identity (id INTEGER PRIMARY KEY CHECK (id = 1), journal TEXT);
CREATE TABLE offline_tx (msg_id TEXT PRIMARY KEY, kind TEXT NOT NULL, item_id TEXT NOT NULL,
    patron_ref TEXT, created REAL NOT NULL, acked REAL);
INSERT INTO outbox VALUES ('m-1', 7, 'checkout', 'lib/s/st/tx/checkout', x'7b7d', 1.0);
INSERT INTO counters VALUES ('seq', 7);
INSERT INTO identity VALUES (1, 'journal-of-2025');
INSERT INTO offline_tx VALUES ('m-1', 'loan', '39000001', 'p-1', 1.0, NULL);
"""


def _write_v1(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(V1_TABLES)
    db.close()


def _user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        value: int = db.execute("PRAGMA user_version").fetchone()[0]
        return value
    finally:
        db.close()


def _indexes(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    finally:
        db.close()


def test_a_new_journal_is_numbered(tmp_path: Path) -> None:
    j = Journal(tmp_path / "station.db")
    j.close()
    assert VERSION >= 2
    assert _user_version(tmp_path / "station.db") == VERSION
    assert "offline_tx_loans" in _indexes(tmp_path / "station.db")


def test_an_unnumbered_journal_is_migrated_with_its_contents(tmp_path: Path) -> None:
    path = tmp_path / "station.db"
    _write_v1(path)
    assert _user_version(path) == 0
    j = Journal(path)
    try:
        assert j.journal_id == "journal-of-2025"  # the same journal, not a new one
        assert [m for m, _t, _p in j.pending()] == ["m-1"]
        assert j.last_seq() == 7
        # Tables the old file lacked are there to be used.
        j.save_pending("E001", "39000001", None, "on_loan")
        assert j.pending_writes() == [("E001", "39000001", None, "on_loan")]
    finally:
        j.close()
    assert _user_version(path) == VERSION
    assert "offline_tx_loans" in _indexes(path)
    # A second start finds it current and changes nothing.
    Journal(path).close()
    assert _user_version(path) == VERSION


def test_a_failed_migration_leaves_the_old_journal_as_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "station.db"
    _write_v1(path)
    monkeypatch.setitem(journal_mod._STEPS, 2, "CREATE INDEX broken ON no_such_table(x);")
    with pytest.raises(sqlite3.OperationalError):
        Journal(path)
    assert _user_version(path) == 0
    db = sqlite3.connect(path)
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    db.close()
    assert "pending_security" not in names  # the whole migration rolled back


def test_a_newer_journal_is_refused_naming_its_version(tmp_path: Path) -> None:
    path = tmp_path / "station.db"
    _write_v1(path)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {VERSION + 1}")
    db.close()
    with pytest.raises(JournalVersionError) as err:
        Journal(path)
    assert f"schema version {VERSION + 1}" in str(err.value)
    assert str(VERSION) in str(err.value) and str(path) in str(err.value)
    assert _user_version(path) == VERSION + 1  # not touched
    assert "offline_tx_loans" not in _indexes(path)
    assert not Journal.in_use(path)  # the refused open let go of its lock


def test_doctor_names_a_journal_too_new_for_this_release(tmp_path: Path) -> None:
    from selfcheck.cli.doctor import journal_check

    path = tmp_path / "station.db"
    Journal(path).close()
    assert journal_check(path, "en")[0] == "ok"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {VERSION + 3}")
    db.close()
    state, text = journal_check(path, "vi")
    assert state == "problem"
    assert f"phiên bản cấu trúc {VERSION + 3}" in text and str(path) in text


def test_the_station_and_its_release_check_refuse_a_newer_journal(tmp_path: Path) -> None:
    import subprocess
    import sys

    journal = tmp_path / "station.db"
    cfg = tmp_path / "station.toml"
    cfg.write_text(f'lang = "en"\nbroker = "127.0.0.1:9"\njournal = "{journal}"\n')
    station = [sys.executable, "-m", "selfcheck.cli", "station", "--headless", "--config",
               str(cfg)]
    ok = subprocess.run([*station, "--check"], capture_output=True, text=True, timeout=60,
                        stdin=subprocess.DEVNULL)
    assert ok.returncode == 0, ok.stderr
    assert "Check passed" in ok.stdout and not journal.exists()  # read only: nothing made
    _write_v1(journal)
    db = sqlite3.connect(journal)
    db.execute(f"PRAGMA user_version = {VERSION + 1}")
    db.close()
    for argv in ([*station, "--check"], station):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 2, (argv, done.stdout, done.stderr)
        said = done.stdout + done.stderr
        assert f"schema version {VERSION + 1}" in said and "Traceback" not in said
    assert _user_version(journal) == VERSION + 1
