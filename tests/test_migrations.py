"""Migrations of the central store (central/migrations) on a real SQLite file and a real
PostgreSQL database: fresh upgrades, upgrades of an older store with its data, adoption of a
store made by create_all(), concurrent upgrades, and no drift between schema.py and them."""

from __future__ import annotations

import datetime as dt
import shutil
import threading
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from selfcheck.central import migrations
from selfcheck.central.backends.store import CirculationStore
from selfcheck.central.engine import open_engine
from selfcheck.central.sample import ITEMS, PATRONS, RULES
from selfcheck.central.schema import metadata
from selfcheck.cli import main
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.messages import TxLoan
from tests.conftest import applied
from tests.dbs import KINDS, fresh_db

NOW = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)


def _indexes(url: str, table: str) -> set[str]:
    engine = open_engine(url)
    try:
        return {i["name"] for i in inspect(engine).get_indexes(table) if i["name"]}
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", KINDS)
def test_a_fresh_database_upgrades_to_head_and_matches_schema_py(kind: str,
                                                                  tmp_path: Path) -> None:
    with fresh_db(kind, tmp_path) as url:
        store = CirculationStore(url)
        assert migrations.current(store.engine) is None
        store.create()
        assert migrations.current(store.engine) == migrations.head() == "0012"
        tables = set(inspect(store.engine).get_table_names())
        assert tables == set(metadata.tables) | {"alembic_version"}
        # The drift check: what autogenerate would change. Empty, or schema.py and the
        # migrations have come apart (write a revision for the change).
        assert migrations.drift(store.engine) == []
        store.create()  # again: nothing to do
        assert migrations.current(store.engine) == "0012"
        store.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_store_at_the_initial_revision_upgrades_with_its_data(kind: str,
                                                                tmp_path: Path) -> None:
    with fresh_db(kind, tmp_path) as url:
        store = CirculationStore(url)
        assert migrations.upgrade(store.engine, "0001") == "0001"
        # The data a store of that revision holds, written without the later columns.
        with store.engine.begin() as conn:
            conn.execute(text("INSERT INTO rules VALUES ('adult', 14, 5)"))
            conn.execute(text("INSERT INTO patrons (card_id, ref, name, category, blocked) "
                              "VALUES ('DG0001', 'p-1', 'Nguyễn Văn An', 'adult', false)"))
            conn.execute(text("INSERT INTO items (item_id, title, not_for_loan) "
                              "VALUES ('39000001', 'Truyện Kiều', false)"))
        assert "ix_loans_due" not in _indexes(url, "loans")

        store.create()
        assert migrations.current(store.engine) == "0012"
        assert {"ix_loans_due", "ix_loans_patron_ref"} <= _indexes(url, "loans")
        assert "ix_circulation_at" in _indexes(url, "circulation")
        assert migrations.drift(store.engine) == []
        # The old rows are there and work with the new code.
        (ack,) = applied(store, [TxLoan(msg_id=uuid7(), seq=1, site="s", station="st-1", at=NOW,
                                     item_id="39000001", patron_ref="p-1",
                                     deadline=NOW + dt.timedelta(seconds=5))], NOW)
        assert ack.ok and ack.title == "Truyện Kiều"

        # ...and back down, keeping the rows.
        assert migrations.downgrade(store.engine, "0001") == "0001"
        assert "ix_loans_due" not in _indexes(url, "loans")
        assert store.on_loan() == {"39000001": "p-1"}
        store.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_store_made_by_create_all_before_migrations_is_adopted(kind: str,
                                                                 tmp_path: Path) -> None:
    with fresh_db(kind, tmp_path) as url:
        store = CirculationStore(url)
        # The store as the first release made it: create_all() of six tables, no SIP2
        # tables, no alembic_version.
        migrations.upgrade(store.engine, "0001")
        with store.engine.begin() as conn:
            for table in ("alembic_version", "sip2_claims", "patron_refs"):
                conn.execute(text(f"DROP TABLE {table}"))
        store.add_rules(RULES)
        store.add_patrons([{k: v for k, v in p.items()} for p in PATRONS])
        with store.engine.begin() as conn:
            for it in ITEMS[:2]:
                conn.execute(text("INSERT INTO items (item_id, title, not_for_loan) "
                                  "VALUES (:i, :t, false)"), {"i": it["item_id"],
                                                              "t": it["title"]})
        assert migrations.current(store.engine) is None

        store.create()
        assert migrations.current(store.engine) == "0012"
        assert migrations.drift(store.engine) == []
        assert store.check_patron("DG0002").display_name == "Ngọc"  # the given name only
        store.close()


def _upgrade_together(url: str, bridges: int = 4) -> tuple[list[str | None],
                                                              list[BaseException]]:
    """`bridges` engines upgrade one database at the same moment: revisions reached, errors."""
    engines = [open_engine(url) for _ in range(bridges)]
    reached: list[str | None] = []
    errors: list[BaseException] = []
    go = threading.Barrier(len(engines))

    def start(engine: object) -> None:
        try:
            go.wait()
            reached.append(migrations.upgrade(engine))  # type: ignore[arg-type]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for e in engines:
        e.dispose()
    return reached, errors


@pytest.mark.parametrize("kind", KINDS)
def test_bridges_starting_together_upgrade_once(kind: str, tmp_path: Path) -> None:
    """Several rounds: on a fresh SQLite file the bridges also race to switch it to WAL, a
    race SQLite answers with "database is locked" at once (a few rounds in a hundred)."""
    for round_ in range(8 if kind == "sqlite" else 1):
        with fresh_db(kind, tmp_path) as url:
            reached, errors = _upgrade_together(url)
        assert errors == [], f"round {round_}: {errors[0]!r}"
        assert reached == ["0012"] * 4


def test_a_new_revision_applies_and_the_drift_check_sees_it(tmp_path: Path) -> None:
    """A revision added later (here in a copy of the scripts) upgrades a store at the current
    head; and a revision that schema.py does not know about shows up as drift."""
    scripts = tmp_path / "migrations"
    shutil.copytree(migrations.HERE, scripts,
                    ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
    (scripts / "versions" / "9999_items_note.py").write_text(
        '"""items.note"""\n'
        "import sqlalchemy as sa\nfrom alembic import op\n\n"
        'revision = "9999"\ndown_revision = "0012"\nbranch_labels = None\ndepends_on = None\n\n\n'
        "def upgrade() -> None:\n"
        '    op.add_column("items", sa.Column("note", sa.String(100)))\n\n\n'
        "def downgrade() -> None:\n"
        '    op.drop_column("items", "note")\n')
    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = CirculationStore(url)
    store.create()
    store.add_rules(RULES)
    assert migrations.head(scripts) == "9999"
    assert migrations.upgrade(store.engine, script_location=scripts) == "9999"
    assert "note" in {c["name"] for c in inspect(store.engine).get_columns("items")}
    diff = migrations.drift(store.engine)
    assert [(d[0], d[2], d[3].name) for d in diff] == [("remove_column", "items", "note")]
    store.close()


def test_selfcheck_central_migrate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'c.db'}"
    assert main(["central", "migrate", "--db", url]) == 0
    out = capsys.readouterr().out
    assert "0012" in out
    assert main(["central", "migrate", "--db", url, "--check"]) == 0
    engine = open_engine(url)
    assert migrations.current(engine) == "0012"
    with engine.begin() as conn:  # a change made by hand, outside the migrations
        conn.execute(text("CREATE INDEX ix_by_hand ON items (title)"))
    engine.dispose()
    assert main(["central", "migrate", "--db", url, "--check"]) == 1
    assert "ix_by_hand" in capsys.readouterr().out


def test_migrate_check_names_the_pending_migrations(tmp_path: Path) -> None:
    """A store not yet migrated: a count and the migrations' names, not autogenerate's
    tuples table by table; in Vietnamese with LANG=vi_*."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    db = tmp_path / "c.db"
    engine = open_engine(f"sqlite:///{db}")
    migrations.upgrade(engine, "0007")
    engine.dispose()
    env = dict(os.environ, LANG="C.UTF-8")
    env.pop("LC_ALL", None)
    env.pop("LC_MESSAGES", None)

    def check(url: str, lang: str = "C.UTF-8") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "selfcheck.cli", "central", "migrate",
                               "--check", "--db", url], cwd=ROOT, capture_output=True,
                              text=True, env={**env, "LANG": lang}, timeout=120)

    out = check(f"sqlite:///{db}")
    assert out.returncode == 1
    assert out.stdout.splitlines() == [
        "5 migration(s) pending: 0008_pin_stations_clock, 0009_store_restores, "
        "0010_stocktakes, 0011_tagging, 0012_stocktake_lent_there. "
        f"Run `selfcheck central migrate --db sqlite:///{db}` "
        "(with the bridges stopped, after a backup)."]
    vi = check(f"sqlite:///{db}", "vi_VN.UTF-8")
    assert vi.stdout.startswith("Còn 5 bản chuyển đổi chưa chạy: 0008_pin_stations_clock")
    # A mistyped path: said, and nothing made there (no empty store, no folder).
    typo = tmp_path / "typo" / "c.db"
    out = check(f"sqlite:///{typo}")
    assert out.returncode == 2 and out.stdout == ""
    assert f"{typo} does not exist" in out.stderr
    assert not typo.parent.exists()
    assert main(["central", "migrate", "--db", f"sqlite:///{db}"]) == 0
    assert check(f"sqlite:///{db}").returncode == 0
