"""The embedded circulation store: patrons, items, loans and rules, and the dedupe rows.

`apply()` applies a batch of station transactions in one database transaction: each msg_id
once (the dedupe row and the effect commit together), a repeat answered with the stored result.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from central.backend import Tx
from central.batch import Batch
from central.schema import circulation, items, loans, patrons, rules
from mqtt import messages
from mqtt.messages import AckTx, PatronCheckRes, TxLoan, TxRenew, TxReturn

log = logging.getLogger(__name__)

KIND = {TxLoan: "loan", TxReturn: "return", TxRenew: "renew"}


def open_engine(url: str) -> Engine:
    """SQLite (WAL, synchronous=FULL, BEGIN IMMEDIATE) or PostgreSQL, by URL."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Take the write lock at the start so two bridges never deadlock on an upgrade.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class CirculationStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = open_engine(url)

    def create(self) -> None:
        """Bring the database to the newest schema revision (central/migrations)."""
        from central import migrations  # Alembic only where the store is set up

        migrations.upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- station requests
    def check_patron(self, card_id: str, today: dt.date | None = None) -> PatronCheckRes:
        today = today or dt.date.today()
        with self.engine.connect() as conn:
            row = conn.execute(
                select(patrons, rules.c.max_loans).join(rules)
                .where(patrons.c.card_id == card_id)).mappings().first()
            if row is None:
                return PatronCheckRes(ok=False, reason="unknown_patron")
            count = conn.execute(select(func.count()).select_from(loans)
                                 .where(loans.c.patron_ref == row["ref"])).scalar_one()
        reason: messages.Reason | None = None
        if row["blocked"]:
            reason = "patron_blocked"
        elif row["expires"] is not None and row["expires"] < today:
            reason = "card_expired"
        return PatronCheckRes(ok=reason is None, reason=reason, patron_ref=row["ref"],
                              display_name=row["name"], loans=count,
                              max_loans=row["max_loans"])

    # -- transactions
    def apply(self, batch: Sequence[Tx], now: dt.datetime | None = None) -> list[AckTx]:
        """Apply a batch in one database transaction; one ack per transaction, in order.

        Another bridge committing the same msg_id or item first makes the commit fail on a
        key; the batch is then read and applied again, and sees what the other one did.
        """
        now = now or dt.datetime.now(dt.UTC)
        for attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    work = Batch(conn, batch)
                    acks = [work.apply(tx, now) for tx in batch]
                    work.write(conn)
                return acks
            except IntegrityError:
                if attempt == 2:
                    raise
                log.info("batch collided with another bridge; applying it again")
        raise AssertionError("unreachable")

    # -- catalogue
    def add_rules(self, rows: Iterable[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(rules), list(rows))

    def add_patrons(self, rows: Iterable[dict[str, Any]]) -> None:
        rows = [{"ref": "p-" + secrets.token_hex(8), "blocked": False, "expires": None, **r}
                for r in rows]
        with self.engine.begin() as conn:
            conn.execute(insert(patrons), rows)

    def add_items(self, rows: Iterable[dict[str, Any]]) -> None:
        rows = [{"author": None, "call_number": None, "not_for_loan": False, "sort_bin": None,
                 **r} for r in rows]
        with self.engine.begin() as conn:
            conn.execute(insert(items), rows)

    def is_empty(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(rules)).scalar_one() == 0

    def history(self, item_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Applied circulation rows, oldest first (for checks and staff tools)."""
        query = select(circulation).order_by(circulation.c.id)
        if item_ids is not None:
            query = query.where(circulation.c.item_id.in_(list(item_ids)))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def on_loan(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return {r.item_id: r.patron_ref for r in conn.execute(select(loans))}
