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

from sqlalchemy import Engine, create_engine, event, func, insert, select, update
from sqlalchemy.engine import Connection

from central.backend import Tx
from central.schema import circulation, items, loans, metadata, patrons, processed, rules
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
        metadata.create_all(self.engine)

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
        """Apply a batch in one database transaction; one ack per transaction, in order."""
        now = now or dt.datetime.now(dt.UTC)
        with self.engine.begin() as conn:
            return [self._apply_one(conn, tx, now) for tx in batch]

    def _apply_one(self, conn: Connection, tx: Tx, now: dt.datetime) -> AckTx:
        stored = conn.execute(select(processed.c.result)
                              .where(processed.c.msg_id == tx.msg_id)).scalar_one_or_none()
        if stored is not None:
            ack = AckTx.model_validate_json(stored)
            return ack.model_copy(update={"repeat": True})
        kind = KIND[type(tx)]
        if isinstance(tx, TxLoan):
            ack = self._loan(conn, tx, now)
        elif isinstance(tx, TxReturn):
            ack = self._return(conn, tx)
        else:
            ack = self._renew(conn, tx, now)
        if ack.ok:
            conn.execute(insert(circulation).values(
                msg_id=tx.msg_id, kind=kind, item_id=tx.item_id,
                patron_ref=getattr(tx, "patron_ref", None), site=tx.site, station=tx.station,
                at=tx.at))
        conn.execute(insert(processed).values(
            msg_id=tx.msg_id, site=tx.site, station=tx.station, seq=tx.seq, kind=kind,
            result=ack.model_dump_json(by_alias=True), applied_at=now))
        return ack

    def _item(self, conn: Connection, item_id: str) -> Any:
        return conn.execute(select(items).where(items.c.item_id == item_id)).mappings().first()

    def _patron(self, conn: Connection, ref: str) -> Any:
        return conn.execute(select(patrons, rules.c.loan_days, rules.c.max_loans).join(rules)
                            .where(patrons.c.ref == ref)).mappings().first()

    def _loan(self, conn: Connection, tx: TxLoan, now: dt.datetime) -> AckTx:
        item = self._item(conn, tx.item_id)

        def refuse(reason: messages.Reason) -> AckTx:
            return AckTx(msg_id=tx.msg_id, ok=False, reason=reason, item_id=tx.item_id,
                         title=item["title"] if item else None)

        if now > tx.deadline:
            return refuse("late")
        patron = self._patron(conn, tx.patron_ref)
        if patron is None:
            return refuse("unknown_patron")
        if patron["blocked"]:
            return refuse("patron_blocked")
        if patron["expires"] is not None and patron["expires"] < now.date():
            return refuse("card_expired")
        if item is None:
            return refuse("unknown_item")
        if item["not_for_loan"]:
            return refuse("not_for_loan")
        current = conn.execute(select(loans).where(loans.c.item_id == tx.item_id)
                               ).mappings().first()
        if current is not None:
            if current["patron_ref"] != tx.patron_ref:
                return refuse("on_loan_to_other")
            return AckTx(msg_id=tx.msg_id, ok=True, item_id=tx.item_id, title=item["title"],
                         due=current["due"])
        count = conn.execute(select(func.count()).select_from(loans)
                             .where(loans.c.patron_ref == tx.patron_ref)).scalar_one()
        if count >= patron["max_loans"]:
            return refuse("too_many_loans")
        due = now.date() + dt.timedelta(days=patron["loan_days"])
        conn.execute(insert(loans).values(item_id=tx.item_id, patron_ref=tx.patron_ref,
                                          loaned_at=now, due=due))
        return AckTx(msg_id=tx.msg_id, ok=True, item_id=tx.item_id, title=item["title"], due=due)

    def _return(self, conn: Connection, tx: TxReturn) -> AckTx:
        item = self._item(conn, tx.item_id)
        if item is None:
            return AckTx(msg_id=tx.msg_id, ok=False, reason="unknown_item", item_id=tx.item_id)
        conn.execute(loans.delete().where(loans.c.item_id == tx.item_id))
        # A book that was not on loan is still accepted back: it is in the library now.
        return AckTx(msg_id=tx.msg_id, ok=True, item_id=tx.item_id, title=item["title"],
                     sort_bin=item["sort_bin"])

    def _renew(self, conn: Connection, tx: TxRenew, now: dt.datetime) -> AckTx:
        item = self._item(conn, tx.item_id)
        patron = self._patron(conn, tx.patron_ref)
        current = conn.execute(select(loans).where(loans.c.item_id == tx.item_id)
                               ).mappings().first()
        title = item["title"] if item else None
        if patron is None or current is None or current["patron_ref"] != tx.patron_ref:
            return AckTx(msg_id=tx.msg_id, ok=False, reason="not_on_loan", item_id=tx.item_id,
                         title=title)
        due = now.date() + dt.timedelta(days=patron["loan_days"])
        conn.execute(update(loans).where(loans.c.item_id == tx.item_id).values(due=due))
        return AckTx(msg_id=tx.msg_id, ok=True, item_id=tx.item_id, title=title, due=due)

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
        rows = [{"author": None, "not_for_loan": False, "sort_bin": None, **r} for r in rows]
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
