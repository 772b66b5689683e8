"""`selfcheck central backup` and `restore` through the real command, on a real SQLite file and
a real PostgreSQL database (pg_dump/pg_restore); and the stations' numbering after a restore:
taken from each station's next transaction instead of waiting for numbers the backup never saw
and giving them up as a gap."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import func, insert, select

from selfcheck.central import backup as backup_mod
from selfcheck.central import migrations
from selfcheck.central.backends.store import CirculationStore
from selfcheck.central.backup import BackupError, restores
from selfcheck.central.engine import open_engine
from selfcheck.central.ledger import Ledger, open_db
from selfcheck.central.sample import load_sample
from selfcheck.central.schema import order_gaps, processed, store_restores
from selfcheck.mqtt.messages import TxLoan, TxReturn
from tests.conftest import ROOT
from tests.dbs import KINDS, fresh_db
from tests.test_order import NOW, Txs, run

T = TypeVar("T", TxLoan, TxReturn)


def selfcheck(*args: str, lang: str = "en") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LANG="vi_VN.UTF-8" if lang == "vi" else "C.UTF-8")
    env.pop("LC_ALL", None)
    env.pop("LC_MESSAGES", None)
    return subprocess.run([sys.executable, "-m", "selfcheck.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(params=KINDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_db(request.param, tmp_path) as u:
        yield u


def said(tx: T, acked_below: int) -> T:
    """`tx` as a station sends it: every seq of its journal below `acked_below` acked."""
    return tx.model_copy(update={"acked_below": acked_below})


def _applied(store: CirculationStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(processed)).scalar_one())


def test_restore_from_an_older_backup_takes_each_stations_numbering_from_the_station(
        url: str, tmp_path: Path) -> None:
    store = CirculationStore(url)
    load_sample(store, 20, 5)
    ledger, st = Ledger(store.engine, store), Txs(store)
    first = [st.loan(f"4900000{n}") for n in range(1, 4)]  # seq 1-3
    assert run(store, ledger, *first) == [t.msg_id for t in first]
    # Without a restore, a number that jumps ahead waits for the ones before it: the order
    # wait the restore must not leave the stations in.
    other = Txs(store, "st-2")
    early = [other.loan("49000009") for _ in range(3)][-1]  # seq 3, 1 and 2 never sent
    assert run(store, ledger, early) == []
    assert ledger.held_count() == 1

    backup = tmp_path / "central.backup"
    made = selfcheck("central", "backup", "--db", url, str(backup))
    assert made.returncode == 0, made.stderr
    assert "Backed up to" in made.stdout
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600  # readers' names and loans in it

    later = [st.loan(f"4900000{n}") for n in range(4, 7)]  # seq 4-6: after the backup
    assert run(store, ledger, *later) == [t.msg_id for t in later]
    assert _applied(store) == 6

    refused = selfcheck("central", "restore", "--db", url, str(backup))
    assert refused.returncode == 1
    assert "--force" in refused.stderr and "6 transactions" in refused.stderr
    assert _applied(store) == 6  # untouched

    done = selfcheck("central", "restore", "--db", url, str(backup), "--force")
    assert done.returncode == 0, done.stderr
    assert f"revision {migrations.head()}" in done.stdout
    store.engine.dispose()  # the restored store, seen afresh (PostgreSQL's tables are new)
    assert _applied(store) == 3
    assert migrations.current(store.engine) == migrations.head()
    assert migrations.drift(store.engine) == []
    assert len(restores(store.engine)) == 1

    # The station numbers on: 7. The restored store knows 1-3 only; 4-6 were acked before
    # the restore and the station dropped them. Applied at once, not held for the order wait.
    ledger = Ledger(store.engine, store)
    seven = said(st.loan("49000007"), 7)  # 1-6 acked: its outbox holds only this one
    assert seven.seq == 7
    assert run(store, ledger, seven) == [seven.msg_id]
    assert ledger.order.counters.rebased == 1
    # Once taken, the order is as before: a real gap waits for its predecessor.
    st.loan("49000008")  # seq 8, lost on the way
    nine = st.loan("49000010")
    assert run(store, ledger, nine) == []
    assert ledger.held_count() == 2  # st-2's, from the backup, and this one

    with store.engine.connect() as conn:
        kinds = [(r.kind, r.first_seq, r.last_seq) for r in conn.execute(
            select(order_gaps).order_by(order_gaps.c.id))]
    assert kinds == [("rebase", 4, 6)]
    report = selfcheck("central", "report", "--db", url)
    assert report.returncode == 0, report.stderr
    assert "numbering taken from station st-1 at seq 7 after restore" in report.stdout
    assert "0 order gap(s) given up, 0 late" in report.stdout
    vi = selfcheck("central", "report", "--db", url, lang="vi")
    assert "số thứ tự lấy theo trạm st-1 từ số 7 sau khi khôi phục" in vi.stdout
    store.close()


def test_a_repeat_after_a_restore_does_not_set_the_numbering(url: str, tmp_path: Path) -> None:
    """A resend of a transaction the backup holds says nothing of where the station is now:
    the next new one sets it."""
    store = CirculationStore(url)
    load_sample(store, 20, 5)
    ledger, st = Ledger(store.engine, store), Txs(store)
    one, two = st.loan("49000001"), st.loan("49000002")
    assert run(store, ledger, one, two) == [one.msg_id, two.msg_id]
    backup = tmp_path / "b"
    assert selfcheck("central", "backup", "--db", url, str(backup)).returncode == 0
    for n in range(3, 6):
        run(store, ledger, st.loan(f"4900000{n}"))  # seq 3-5, lost with the restore
    assert selfcheck("central", "restore", "--db", url, str(backup),
                     "--force").returncode == 0
    store.engine.dispose()
    ledger = Ledger(store.engine, store)
    assert run(store, ledger, two) == [two.msg_id]  # answered from its stored ack
    six = said(st.loan("49000006"), 6)
    assert run(store, ledger, six) == [six.msg_id]
    with store.engine.connect() as conn:
        assert [(r.first_seq, r.last_seq, r.msg_id) for r in conn.execute(
            select(order_gaps))] == [(3, 5, six.msg_id)]
    store.close()


def test_restore_into_an_empty_store_and_from_an_older_revision(url: str,
                                                                 tmp_path: Path) -> None:
    """A backup made by an older release is brought to the newest schema and checked."""
    engine = open_engine(url)
    migrations.upgrade(engine, "0007")
    engine.dispose()
    backup = tmp_path / "old.backup"
    made = selfcheck("central", "backup", "--db", url, str(backup))
    assert made.returncode == 0, made.stderr
    assert "store revision 0007" in made.stdout
    with fresh_db(url.split(":")[0], tmp_path) as target:
        done = selfcheck("central", "restore", "--db", target, str(backup))
        assert done.returncode == 0, done.stderr
        assert "(revision 0007)" in done.stdout
        engine = open_engine(target)
        assert migrations.current(engine) == migrations.head()
        assert migrations.drift(engine) == []
        engine.dispose()


def test_backup_and_restore_refuse_what_is_not_there(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "central.db"
    out = selfcheck("central", "backup", "--db", f"sqlite:///{missing}",
                    str(tmp_path / "b"))
    assert out.returncode == 2
    assert f"{missing} does not exist" in out.stderr
    assert not missing.parent.exists() and not (tmp_path / "b").exists()

    store = tmp_path / "c.db"
    assert selfcheck("central", "migrate", "--db", f"sqlite:///{store}").returncode == 0
    junk = tmp_path / "junk.backup"
    junk.write_bytes(b"not a backup at all")
    out = selfcheck("central", "restore", "--db", f"sqlite:///{tmp_path / 'n.db'}", str(junk))
    assert out.returncode == 1 and "is not a SQLite backup" in out.stderr
    # A SQLite file that is not a store: nothing is written.
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    out = selfcheck("central", "restore", "--db", f"sqlite:///{tmp_path / 'n.db'}",
                    str(other), lang="vi")
    assert out.returncode == 1 and "không dùng được làm bản sao lưu" in out.stderr
    assert not (tmp_path / "n.db").exists()
    backup = tmp_path / "b.db"
    assert selfcheck("central", "backup", "--db", f"sqlite:///{store}",
                     str(backup)).returncode == 0
    again = selfcheck("central", "backup", "--db", f"sqlite:///{store}", str(backup))
    assert again.returncode == 1 and "--force" in again.stderr


def test_a_sqlite_backup_is_consistent_while_a_bridge_writes(tmp_path: Path) -> None:
    """The online backup API copies a consistent state while transactions commit."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = CirculationStore(url)
    load_sample(store, 200, 5)
    ledger, st = Ledger(store.engine, store), Txs(store)
    proc = subprocess.Popen([sys.executable, "-m", "selfcheck.cli", "central", "backup",
                             "--db", url, str(tmp_path / "b")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    n = 0
    while proc.poll() is None and n < 150:  # a loan and its return, one commit
        n += 1
        run(store, ledger, st.loan(f"49{n:06d}"), st.ret(f"49{n:06d}"))
    assert proc.wait(120) == 0, proc.communicate()[1]
    copy = sqlite3.connect(tmp_path / "b")
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # Whatever it caught, it caught whole: both halves of each commit, or neither.
    done = copy.execute("SELECT COUNT(*) FROM processed").fetchone()[0]
    assert done % 2 == 0
    assert copy.execute("SELECT COUNT(*) FROM loans").fetchone()[0] == 0
    copy.close()
    store.close()


def test_a_new_store_in_place_of_a_lost_one_takes_the_numbering_from_the_stations(
        url: str, tmp_path: Path) -> None:
    """No backup at all: the stations are at seq 17 of their journals, the new store knows
    none of it. Marked with `restore --fresh`, seq 18 is applied at once (not held for the
    order wait, then given up as a gap 1-17)."""
    store = CirculationStore(url)
    load_sample(store, 20, 5)
    both = selfcheck("central", "restore", "--db", url, str(tmp_path / "x"), "--fresh")
    assert both.returncode == 2 and "--fresh" in both.stderr
    done = selfcheck("central", "restore", "--db", url, "--fresh")
    assert done.returncode == 0, done.stderr
    assert "marked as put in place of a lost one" in done.stdout
    store.engine.dispose()
    ledger, st = Ledger(store.engine, store), Txs(store)
    for _ in range(17):
        st.loan("49000001")  # numbered and acked by the lost store
    eighteen = said(st.ret("49000001"), 18)
    assert run(store, ledger, eighteen) == [eighteen.msg_id]
    report = selfcheck("central", "report", "--db", url)
    assert "numbering taken from station st-1 at seq 18 after restore" in report.stdout
    assert "0 order gap(s) given up" in report.stdout
    # Not new any more: marking it again would skip real gaps.
    again = selfcheck("central", "restore", "--db", url, "--fresh")
    assert again.returncode == 1 and "1 transactions recorded" in again.stderr
    store.close()


def _restored(store: CirculationStore) -> None:
    """The store marked as restored, as `selfcheck central restore` leaves it."""
    with store.engine.begin() as conn:
        conn.execute(insert(store_restores).values(restored_at=NOW, source="a backup"))


@pytest.mark.parametrize("eleven_said", [10, 8], ids=["current", "stale"])
def test_after_a_restore_a_stations_numbers_on_two_bridges_apply_in_order(
        url: str, eleven_said: int) -> None:
    """seq 10 and 11 reach two bridges of the shared subscription, 11 first: 11 must not be
    taken as where the numbering goes on, or 10 would be applied after it as a late one.
    `stale`: 11 was journalled while 8 still waited for its ack, and says so."""
    store = CirculationStore(url)
    load_sample(store, 20, 5)
    bridge_a, bridge_b = Ledger(store.engine, store), Ledger(store.engine, store)
    st = Txs(store)
    first = [st.loan(f"4900000{n}") for n in range(1, 4)]
    assert run(store, bridge_a, *first) == [t.msg_id for t in first]
    _restored(store)  # the backup had 1-3; 4-9 were acked by the lost store
    for _ in range(4, 10):
        st.loan("49000009")
    ten = said(st.loan("49000005"), 10)
    eleven = said(st.ret("49000005"), eleven_said)
    assert run(store, bridge_b, eleven) == []  # held for its predecessor
    assert run(store, bridge_a, ten) == [ten.msg_id, eleven.msg_id]
    assert "49000005" not in store.on_loan()  # lent, then returned: in the station's order
    assert [r["kind"] for r in store.history(["49000005"])] == ["loan", "return"]
    gaps = [(g["kind"], g["first_seq"], g["last_seq"]) for g in bridge_a.gaps()]
    assert gaps == ([("rebase", 4, 9)] if eleven_said == 10
                    else [("rebase", 4, 7), ("rebase", 8, 9)])
    assert bridge_a.held_count() == 0
    store.close()


def test_after_a_restore_an_older_station_waits_and_its_gap_is_recorded_as_the_restores(
        url: str) -> None:
    """A station that does not say where it is (no acked_below): held like any gap, given up
    after the order wait, recorded as the restore's; a later gap is a gap again."""
    store = CirculationStore(url)
    load_sample(store, 20, 5)
    ledger, st = Ledger(store.engine, store, order_wait_s=30), Txs(store)
    first = [st.loan(f"4900000{n}") for n in range(1, 4)]
    assert run(store, ledger, *first) == [t.msg_id for t in first]
    _restored(store)
    for _ in range(4, 10):
        st.loan("49000009")
    ten, eleven = st.loan("49000005"), st.ret("49000005")
    assert run(store, ledger, eleven) == [] and run(store, ledger, ten) == []
    later = NOW + dt.timedelta(seconds=31)
    released = ledger.release_due(later)
    assert [t.msg_id for t in released] == [ten.msg_id, eleven.msg_id]
    ledger.apply(released, later)
    st.loan("49000006")  # seq 12, lost on the way
    thirteen = st.loan("49000007")
    assert run(store, ledger, thirteen, now=later) == []
    ledger.apply(ledger.release_due(later + dt.timedelta(seconds=31)), later)
    gaps = [(g["kind"], g["first_seq"], g["last_seq"], g["msg_id"]) for g in ledger.gaps()]
    assert gaps == [("rebase", 4, 9, ten.msg_id), ("gap", 12, 12, None)]
    assert ledger.order.counters.rebased == 1 and ledger.order.counters.gaps == 1
    store.close()


MULTI = "postgresql://central:s3cret@db1:5432,db2:5433/central?target_session_attrs=read-write"


def test_a_multi_host_url_goes_to_pg_dump_as_given_and_its_password_nowhere_else() -> None:
    target, env = backup_mod._libpq(MULTI)
    assert target == "postgresql://central@db1:5432,db2:5433/central" \
        "?target_session_attrs=read-write"
    assert env["PGPASSWORD"] == "s3cret"
    one, env = backup_mod._libpq("postgresql+psycopg://central:s3cret@db1/central")
    assert one == "postgresql://central@db1/central" and env["PGPASSWORD"] == "s3cret"
    assert backup_mod._safe(MULTI) == \
        "postgresql://central:***@db1:5432,db2:5433/central?target_session_attrs=read-write"


def test_a_real_backup_through_a_multi_host_url(tmp_path: Path) -> None:
    with fresh_db("postgresql", tmp_path) as url:
        open_db(url).dispose()
        multi = url.replace("127.0.0.1:5432", "127.0.0.1:5432,127.0.0.1:5432") \
            + "?target_session_attrs=read-write"
        done = backup_mod.backup(multi, tmp_path / "b")
        assert done.revision == migrations.head() and done.size > 0


def test_an_unreadable_store_url_is_told_without_a_traceback_or_its_password(
        tmp_path: Path) -> None:
    bad = "postgresql://central:s3cret@db1:notaport/central"
    with pytest.raises(BackupError) as err:
        backup_mod.backup(bad, tmp_path / "b")
    assert err.value.key == "central.store.bad_url" and err.value.code == 2
    assert "s3cret" not in repr(err.value.args_)
    done = selfcheck("central", "backup", "--db", bad, str(tmp_path / "b"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "cannot be read" in done.stderr and "s3cret" not in done.stderr + done.stdout
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.partial").exists()


def test_the_doctor_names_a_multi_host_store_without_its_password() -> None:
    from selfcheck.cli.doctor import _store_name
    from selfcheck.cli.errors import UserError

    assert _store_name(MULTI) == backup_mod._safe(MULTI)
    with pytest.raises(UserError) as err:
        _store_name("postgresql://central:s3cret@db1:notaport/central")
    assert err.value.key == "central.store.bad_url"


def test_migrate_check_shows_the_url_without_its_password(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from selfcheck.central import engine as engine_mod
    from selfcheck.cli import central_backup

    scratch = open_engine(f"sqlite:///{tmp_path / 's.db'}")
    monkeypatch.setattr(engine_mod, "open_engine", lambda url: scratch)
    monkeypatch.setattr(central_backup, "pending", lambda engine: ["0009_store_restores"])
    assert central_backup.check(MULTI, "en") == 1
    out = capsys.readouterr().out
    assert "0009_store_restores" in out and "s3cret" not in out
    assert "--db postgresql://central:***@db1:5432,db2:5433/central" in out
