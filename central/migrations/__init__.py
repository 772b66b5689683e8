"""Schema migrations of the central store (Alembic), shipped inside the package.

Run from code, never from an alembic.ini: `upgrade(engine)` brings a SQLite file or a
PostgreSQL database to the newest revision, `CirculationStore.create()` and
`selfcheck central migrate --db URL` call it.

Several bridges may start at once against one database: the whole upgrade is one transaction,
and it holds the write lock from its first statement (SQLite: BEGIN IMMEDIATE, see
central/engine.py; PostgreSQL: an advisory lock), so the second one finds the work done.

A store made by `metadata.create_all()` before migrations existed has no `alembic_version`
table: the initial revision creates its tables with IF NOT EXISTS, so such a store is adopted
and upgraded like any other.

To write a new revision, change central/schema.py, then from the repository root:
    .venv/bin/python -m selfcheck.central.migrations revision "what changes"
which autogenerates a script in central/migrations/versions/ from the difference between
schema.py and a scratch database at head; read it before keeping it (tests/test_migrations.py
fails while schema.py and the migrations disagree).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

HERE = Path(__file__).resolve().parent
# Any constant will do: it only has to be the same in every bridge (PostgreSQL advisory lock).
_PG_LOCK = 0x5E1F_C4EC


def include_object(obj: Any, name: str | None, type_: str, reflected: bool,
                   compare_to: Any) -> bool:
    """Tables that are not in central/schema.py may share the database (the fleet state,
    central/fleet/schema.py): autogenerate must not offer to drop them."""
    return not (type_ == "table" and reflected and compare_to is None)


# What env.py and the drift check (compare_metadata) compare with, so they cannot disagree.
OPTIONS: dict[str, Any] = {"include_object": include_object, "compare_type": True}


def config(script_location: Path | str = HERE) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    return cfg


def head(script_location: Path | str = HERE) -> str:
    rev = ScriptDirectory.from_config(config(script_location)).get_current_head()
    assert rev is not None, "no migration scripts"
    return rev


def current(engine: Engine) -> str | None:
    """The revision the database is at; None for an empty (or pre-migration) database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head", *,
            script_location: Path | str = HERE) -> str | None:
    """Upgrade to `revision` in one transaction; returns the revision reached."""
    return _migrate(engine, command.upgrade, revision, script_location)


def downgrade(engine: Engine, revision: str, *,
              script_location: Path | str = HERE) -> str | None:
    return _migrate(engine, command.downgrade, revision, script_location)


def _migrate(engine: Engine, step: Callable[[Config, str], None], revision: str,
             script_location: Path | str) -> str | None:
    cfg = config(script_location)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # bridges starting together migrate once
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
        cfg.attributes["connection"] = conn
        step(cfg, revision)
    return current(engine)


def drift(engine: Engine) -> list[Any]:
    """What autogenerate would change to make the database match central/schema.py: empty
    when the migrations and schema.py agree."""
    from alembic.autogenerate import compare_metadata

    from selfcheck.central.schema import metadata

    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn, opts=OPTIONS), metadata))


def new_revision(message: str) -> None:
    """Autogenerate a revision against a scratch SQLite database brought to head."""
    from selfcheck.central.engine import open_engine

    with tempfile.TemporaryDirectory() as tmp:
        engine = open_engine(f"sqlite:///{Path(tmp) / 'scratch.db'}")
        upgrade(engine)
        cfg = config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.revision(cfg, message=message, autogenerate=True)
        engine.dispose()
