"""Applying a batch of transactions with a handful of statements instead of several per tx.

Everything the batch touches (items, patrons with their rules, loans and loan counts, holds)
is read up front, the rules run in memory in order, and the results are written back with bulk
statements, all inside the caller's database transaction (the ledger's: central/ledger/,
which keeps the dedupe and reconciliation rows and hands over first copies only).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import BindParameter

from selfcheck.central.backend import KIND, Tx
from selfcheck.central.schema import circulation, holds, items, loans, patrons, rules
from selfcheck.mqtt import messages
from selfcheck.mqtt.messages import AckTx, TxLoan, TxReturn

Row = dict[str, Any]

# The reads of every batch, built once (building one costs more than running it): `ids` the
# batch's item_ids, `refs` its patron_refs.
_IDS: BindParameter[list[str]] = bindparam("ids", expanding=True)
_REFS: BindParameter[list[str]] = bindparam("refs", expanding=True)
_ITEMS = select(items).where(items.c.item_id.in_(_IDS))
_PATRONS = (select(patrons, rules.c.loan_days, rules.c.max_loans).join(rules)
            .where(patrons.c.ref.in_(_REFS)))
_LOANS = select(loans).where(loans.c.item_id.in_(_IDS))
_COUNTS = (select(loans.c.patron_ref, func.count()).where(loans.c.patron_ref.in_(_REFS))
           .group_by(loans.c.patron_ref))
_HOLDS = (select(holds).where(holds.c.item_id.in_(_IDS))
          .order_by(holds.c.placed_at, holds.c.id))


class Batch:
    def __init__(self, conn: Connection, txs: Sequence[Tx], *, hold_days: int = 7) -> None:
        self.hold_days = hold_days
        item_ids = {tx.item_id for tx in txs}
        refs = {tx.patron_ref for tx in txs if not isinstance(tx, TxReturn)}
        ids = {"ids": list(item_ids)}
        self.items: dict[str, Row] = {r["item_id"]: dict(r) for r in conn.execute(
            _ITEMS, ids).mappings()}
        self.patrons: dict[str, Row] = {r["ref"]: dict(r) for r in conn.execute(
            _PATRONS, {"refs": list(refs)}).mappings()} if refs else {}
        self.loans: dict[str, Row | None] = {i: None for i in item_ids}
        for r in conn.execute(_LOANS, ids).mappings():
            self.loans[r["item_id"]] = dict(r)
        self.counts: dict[str, int] = dict(conn.execute(
            _COUNTS, {"refs": list(refs)}).all()) if refs else {}
        # The hold queue of each item, first in line first.
        self.holds: dict[str, list[Row]] = {}
        for r in conn.execute(_HOLDS, ids).mappings():
            self.holds.setdefault(r["item_id"], []).append(dict(r))
        self.changed: set[str] = set()
        self.holds_changed: dict[int, Row | None] = {}  # id -> new row, or None: removed
        self.new_circulation: list[Row] = []

    def apply(self, tx: Tx, now: dt.datetime) -> AckTx:
        if isinstance(tx, TxLoan):
            ack = self._loan(tx, now)
        elif isinstance(tx, TxReturn):
            ack = self._return(tx)
        else:
            ack = self._renew(tx, now)
        if ack.ok:
            self.new_circulation.append(dict(
                msg_id=tx.msg_id, kind=KIND[type(tx)], item_id=tx.item_id,
                patron_ref=getattr(tx, "patron_ref", None), site=tx.site, station=tx.station,
                at=tx.at))
        return ack

    def write(self, conn: Connection) -> None:
        if self.changed:
            conn.execute(loans.delete().where(loans.c.item_id.in_(self.changed)))
            rows = [r for i in self.changed if (r := self.loans[i]) is not None]
            if rows:
                conn.execute(insert(loans), rows)
        for hold_id, row in self.holds_changed.items():
            if row is None:
                conn.execute(holds.delete().where(holds.c.id == hold_id))
            else:
                conn.execute(holds.update().where(holds.c.id == hold_id)
                             .values(status=row["status"], pickup_by=row["pickup_by"]))
        if self.new_circulation:
            conn.execute(insert(circulation), self.new_circulation)

    # -- the rules
    def _title(self, item_id: str) -> str | None:
        item = self.items.get(item_id)
        return item["title"] if item else None

    def _loan(self, tx: TxLoan, now: dt.datetime) -> AckTx:
        item = self.items.get(tx.item_id)

        def refuse(reason: messages.Reason) -> AckTx:
            return AckTx(msg_id=tx.msg_id, ok=False, reason=reason, item_id=tx.item_id,
                         title=self._title(tx.item_id))

        if now > tx.deadline and not tx.offline:  # offline: the reader already has the book
            return refuse("late")
        when = tx.at if tx.offline else now  # offline: as of the day it was lent
        patron = self.patrons.get(tx.patron_ref)
        if patron is None:
            return refuse("unknown_patron")
        if patron["blocked"]:
            return refuse("patron_blocked")
        if patron["expires"] is not None and patron["expires"] < when.date():
            return refuse("card_expired")
        if item is None:
            return refuse("unknown_item")
        if item["not_for_loan"]:
            return refuse("not_for_loan")
        current = self.loans.get(tx.item_id)
        if current is not None:
            if current["patron_ref"] != tx.patron_ref:
                return refuse("on_loan_to_other")
            return AckTx(msg_id=tx.msg_id, ok=True, item_id=tx.item_id, title=item["title"],
                         due=current["due"])
        queue = self.holds.get(tx.item_id, [])
        if queue and queue[0]["patron_ref"] != tx.patron_ref:
            return refuse("on_hold_for_other")
        if self.counts.get(tx.patron_ref, 0) >= patron["max_loans"]:
            return refuse("too_many_loans")
        if queue:  # the reader's own hold, fulfilled by this loan
            self.holds_changed[queue.pop(0)["id"]] = None
        due = when.date() + dt.timedelta(days=patron["loan_days"])
        self.loans[tx.item_id] = dict(item_id=tx.item_id, patron_ref=tx.patron_ref,
                                      loaned_at=when, due=due)
        self.counts[tx.patron_ref] = self.counts.get(tx.patron_ref, 0) + 1
        self.changed.add(tx.item_id)
        return AckTx(msg_id=tx.msg_id, ok=True, item_id=tx.item_id, title=item["title"], due=due)

    def _return(self, tx: TxReturn) -> AckTx:
        item = self.items.get(tx.item_id)
        if item is None:
            return AckTx(msg_id=tx.msg_id, ok=False, reason="unknown_item", item_id=tx.item_id)
        current = self.loans.get(tx.item_id)
        if current is not None:
            self.counts[current["patron_ref"]] = self.counts.get(current["patron_ref"], 1) - 1
            self.loans[tx.item_id] = None
            self.changed.add(tx.item_id)
        # A book that was not on loan is still accepted back: it is in the library now.
        ack = AckTx(msg_id=tx.msg_id, ok=True, item_id=tx.item_id, title=item["title"],
                    sort_bin=item["sort_bin"])
        queue = self.holds.get(tx.item_id, [])
        if queue:
            hold = queue[0]
            if hold["pickup_site"] not in (None, tx.site):
                self._set_hold(hold, "transit", None)
                return ack.model_copy(update=dict(hold=True, alert_type="02",
                                                  transit_to=hold["pickup_site"]))
            if hold["status"] != "ready":  # a second return does not move pickup_by
                self._set_hold(hold, "ready", tx.at.date() + dt.timedelta(days=self.hold_days))
            return ack.model_copy(update=dict(hold=True, alert_type="01",
                                              hold_for=hold["patron_ref"]))
        if item["home_site"] not in (None, tx.site):
            return ack.model_copy(update=dict(alert_type="04", transit_to=item["home_site"]))
        return ack

    def _set_hold(self, hold: Row, status: str, pickup_by: dt.date | None) -> None:
        hold["status"], hold["pickup_by"] = status, pickup_by
        self.holds_changed[hold["id"]] = hold

    def _renew(self, tx: messages.TxRenew, now: dt.datetime) -> AckTx:
        patron = self.patrons.get(tx.patron_ref)
        current = self.loans.get(tx.item_id)
        title = self._title(tx.item_id)
        if patron is None or current is None or current["patron_ref"] != tx.patron_ref:
            return AckTx(msg_id=tx.msg_id, ok=False, reason="not_on_loan", item_id=tx.item_id,
                         title=title)
        if any(h["patron_ref"] != tx.patron_ref for h in self.holds.get(tx.item_id, [])):
            return AckTx(msg_id=tx.msg_id, ok=False, reason="on_hold_for_other",
                         item_id=tx.item_id, title=title)
        due = now.date() + dt.timedelta(days=patron["loan_days"])
        self.loans[tx.item_id] = {**current, "due": due}
        self.changed.add(tx.item_id)
        return AckTx(msg_id=tx.msg_id, ok=True, item_id=tx.item_id, title=title, due=due)
