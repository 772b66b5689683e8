"""Throwaway databases for the store tests: a SQLite file, or a PostgreSQL database created on
127.0.0.1:5432 for the test and dropped after it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
KINDS = ["sqlite", "postgresql"]


def pg_available() -> bool:
    try:
        with create_engine(PG_ADMIN).connect():
            return True
    except Exception:
        return False


@contextmanager
def fresh_db(kind: str, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of `kind`; skips the test without a PostgreSQL."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / ('db-' + secrets.token_hex(3) + '.db')}"
        return
    if not pg_available():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    name = "selfcheck_" + secrets.token_hex(4)
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()
