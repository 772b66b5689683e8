"""The embedded circulation store: patrons, items, loans, holds, fines and rules.

`apply_in()` applies a batch of station transactions inside the ledger's database transaction
(central/ledger/): the ledger hands over each msg_id's first copy only and commits its dedupe
row with the effect.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import secrets
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.engine import Connection

from selfcheck.central import pin as pins
from selfcheck.central.backend import KIND, Tx
from selfcheck.central.batch import Batch
from selfcheck.central.engine import open_engine
from selfcheck.central.names import given_name
from selfcheck.central.offline_policy import EVERY, OfflineStations
from selfcheck.central.pin_guard import PinGuard, StationBudget
from selfcheck.central.pin_rules import Demand, PinRules, demand, refusal
from selfcheck.central.salts import rotate_salts, site_salt
from selfcheck.central.schema import (
    circulation,
    fines,
    holds,
    items,
    loans,
    patrons,
    rules,
)
from selfcheck.mqtt import messages
from selfcheck.mqtt.messages import (
    AccountLoan,
    AccountRes,
    AckTx,
    Fine,
    HoldReady,
    HoldWaiting,
    OfflineEntry,
    OfflineListRes,
    PatronCheckRes,
)

log = logging.getLogger(__name__)

__all__ = ["KIND", "CirculationStore", "open_engine", "rotate_salts", "site_salt"]


OFFLINE_PAGE = 50  # entries per res/offline-list page: about 8 KiB of JSON


def _aware(when: dt.datetime | None) -> dt.datetime | None:
    return when if when is None or when.tzinfo else when.replace(tzinfo=dt.UTC)


class CirculationStore:
    def __init__(self, url: str, *, pin_rules: PinRules | None = None,
                 pin_policy: pins.PinPolicy | None = None,
                 pin_budget: StationBudget | None = None, hold_days: int = 7,
                 offline_max_loans: int = 3, offline_valid: dt.timedelta = dt.timedelta(hours=24),
                 offline_max_fines: int = 50_000,
                 offline_salt_age: dt.timedelta | None = dt.timedelta(days=7),
                 offline_recent: dt.timedelta | None = None,
                 offline_stations: OfflineStations = EVERY) -> None:
        """pin_rules: when a patron check needs the PIN (central/pin_rules.py; by default
        never, the caller decides), whatever the station sends. The offline list leaves out
        patrons owing more than offline_max_fines (VND). Its card-hash key is replaced every
        offline_salt_age; offline_recent keeps on a site's list only the patrons who borrowed,
        returned or renewed there within that time (None: every patron in good standing), the
        smallest list that serves the site's regular readers. offline_stations: who gets
        the list at all (central/offline_policy.py; `selfcheck central` gives none by
        default)."""
        self.url = url
        self.engine = open_engine(url)
        self.pin_rules = pin_rules or PinRules()
        self.pin_policy = pin_policy or pins.PinPolicy()
        self.pin_guard = PinGuard(self.engine, pin_budget)
        self.hold_days = hold_days
        self.offline_max_loans = offline_max_loans
        self.offline_valid = offline_valid
        self.offline_salt_age = offline_salt_age
        self.offline_recent = offline_recent
        self.offline_max_fines = offline_max_fines
        self.offline_stations = offline_stations

    def create(self) -> None:
        """Bring the database to the newest schema revision (central/migrations)."""
        from selfcheck.central import migrations  # Alembic only where the store is set up

        migrations.upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- station requests
    def check_patron(self, card_id: str, today: dt.date | None = None, *,
                     pin: str | None = None, now: dt.datetime | None = None,
                     site: str | None = None, station: str | None = None) -> PatronCheckRes:
        now = now or dt.datetime.now(dt.UTC)
        today = today or dt.date.today()
        if pin is not None and (paused := self.pin_guard.paused(site, station, now)):
            return paused  # over the station's wrong-PIN budget: no card looked at or counted
        with self.engine.connect() as conn:
            row = conn.execute(
                select(patrons, rules.c.max_loans).join(rules)
                .where(patrons.c.card_id == card_id)).mappings().first()
            count = 0 if row is None else conn.execute(
                select(func.count()).select_from(loans)
                .where(loans.c.patron_ref == row["ref"])).scalar_one()
        if row is None:  # the site's rule: `always` must not tell a guesser it is unknown
            if pin is not None:  # trying card numbers with PINs spends the budget too
                none = pins.PinState(0, None)
                self.pin_guard.wrong(site, station, None, none, none, now, self.pin_policy)
            wanted = demand(self.pin_rules.rule(site, None), None, now,
                            pin_given=pin is not None)
            return refusal(wanted, None) or PatronCheckRes(ok=False, reason="unknown_patron")
        state = pins.PinState(row["pin_failures"], _aware(row["pin_locked_until"]))
        wanted = demand(self.pin_rules.rule(site, row["category"]), state, now,
                        pin_given=pin is not None)
        refused = refusal(wanted, state)
        if refused is None and wanted is Demand.CHECK and pin is not None:
            refused = self._check_pin(card_id, row, pin, now, site, station)
        if refused is not None:
            return refused
        reason: messages.Reason | None = None
        if row["blocked"]:
            reason = "patron_blocked"
        elif row["expires"] is not None and row["expires"] < today:
            reason = "card_expired"
        return PatronCheckRes(ok=reason is None, reason=reason, patron_ref=row["ref"],
                              display_name=given_name(row["name"]), loans=count,
                              max_loans=row["max_loans"])

    def _check_pin(self, card_id: str, row: Any, pin: str, now: dt.datetime,
                   site: str | None, station: str | None) -> PatronCheckRes | None:
        """None when the PIN is right (failures reset), else the refusal (failure counted).
        No name and no ref in a refusal: they are for the card's owner only."""
        policy = self.pin_policy
        state = pins.PinState(row["pin_failures"], _aware(row["pin_locked_until"]))
        where = patrons.c.card_id == card_id
        if pins.verify_pin(pin, row["pin_hash"]):
            if state.failures or state.locked_until is not None:
                with self.engine.begin() as conn:
                    conn.execute(update(patrons).where(where)
                                 .values(pin_failures=0, pin_locked_until=None))
                self.pin_guard.right(site, station, row["ref"], state, now)
            return None
        # Read again, the row locked until the count is written (PostgreSQL's FOR UPDATE;
        # SQLite's BEGIN IMMEDIATE): another station or bridge may be counting one too.
        with self.engine.begin() as conn:
            fresh = conn.execute(select(patrons.c.pin_failures, patrons.c.pin_locked_until)
                                 .where(where).with_for_update()).one()
            before = pins.PinState(fresh.pin_failures, _aware(fresh.pin_locked_until))
            state = pins.after_failure(before, now, policy)
            conn.execute(update(patrons).where(where).values(
                pin_failures=state.failures, pin_locked_until=state.locked_until))
        self.pin_guard.wrong(site, station, row["ref"], before, state, now, policy)
        log.info("wrong PIN for patron %s", row["ref"])  # the ref, never the card or PIN
        if state.locked_until is not None:
            return PatronCheckRes(ok=False, reason="pin_locked",
                                  pin_locked_until=state.locked_until)
        return PatronCheckRes(ok=False, reason="wrong_pin", pin_required=True,
                              pin_tries_left=pins.tries_left(state, policy))

    def account(self, patron_ref: str, today: dt.date | None = None) -> AccountRes:
        today = today or dt.date.today()
        with self.engine.connect() as conn:
            patron = conn.execute(select(patrons).where(patrons.c.ref == patron_ref)
                                  ).mappings().first()
            if patron is None:
                return AccountRes(ok=False, reason="unknown_patron")
            mine = conn.execute(
                select(loans.c.item_id, loans.c.due, items.c.title).join(items)
                .where(loans.c.patron_ref == patron_ref)
                .order_by(loans.c.due, loans.c.item_id)).all()
            own_holds = conn.execute(
                select(holds, items.c.title).join(items)
                .where(holds.c.patron_ref == patron_ref)
                .order_by(holds.c.placed_at, holds.c.id)).mappings().all()
            wanted = {r.item_id for r in mine} | {h["item_id"] for h in own_holds}
            queues: dict[str, list[Any]] = {}
            for h in conn.execute(select(holds).where(holds.c.item_id.in_(wanted))
                                  .order_by(holds.c.placed_at, holds.c.id)).mappings():
                queues.setdefault(h["item_id"], []).append(h)
            owed = conn.execute(select(fines.c.description, fines.c.amount)
                                .where(fines.c.patron_ref == patron_ref)
                                .order_by(fines.c.created_at, fines.c.id)).all()
        may_renew = not patron["blocked"] and (patron["expires"] is None
                                               or patron["expires"] >= today)
        out_loans = [AccountLoan(
            item_id=r.item_id, title=r.title, due=r.due, overdue=r.due < today,
            renewable=may_renew and all(h["patron_ref"] == patron_ref
                                        for h in queues.get(r.item_id, [])))
            for r in mine]
        ready = [HoldReady(item_id=h["item_id"], title=h["title"], pickup_by=h["pickup_by"],
                           pickup_at=h["pickup_site"])
                 for h in own_holds if h["status"] == "ready"]
        waiting = [HoldWaiting(title=h["title"], position=1 + [q["id"] for q in queues[
            h["item_id"]]].index(h["id"])) for h in own_holds if h["status"] != "ready"]
        return AccountRes(ok=True, loans=out_loans, holds_ready=ready, holds_waiting=waiting,
                          fines_total=sum(f.amount for f in owed),
                          fines=[Fine(description=f.description, amount=f.amount) for f in owed])

    def offline_list(self, site: str, page: int = 1,
                     now: dt.datetime | None = None) -> OfflineListRes:
        """Patrons in good standing who may borrow offline at `site`, one page of them."""
        now = now or dt.datetime.now(dt.UTC)
        valid_until = now + self.offline_valid
        salt = site_salt(self.engine, site, now, self.offline_salt_age)
        counts = select(loans.c.patron_ref, func.count().label("n")).group_by(
            loans.c.patron_ref).subquery()
        current = func.coalesce(counts.c.n, 0)
        overdue = select(loans.c.patron_ref).where(loans.c.due < now.date())
        fined = select(fines.c.patron_ref).group_by(fines.c.patron_ref).having(
            func.sum(fines.c.amount) > self.offline_max_fines)
        good = select(patrons.c.card_id, patrons.c.ref, patrons.c.name,
                      (rules.c.max_loans - current).label("left")).join(rules).outerjoin(
            counts, counts.c.patron_ref == patrons.c.ref).where(
            patrons.c.blocked.is_(False),
            or_(patrons.c.expires.is_(None), patrons.c.expires >= valid_until.date()),
            or_(patrons.c.pin_locked_until.is_(None), patrons.c.pin_locked_until < now),
            patrons.c.ref.not_in(overdue), patrons.c.ref.not_in(fined),
            rules.c.max_loans - current > 0)
        if self.offline_recent is not None:
            good = good.where(patrons.c.ref.in_(select(circulation.c.patron_ref).where(
                circulation.c.site == site, circulation.c.at >= now - self.offline_recent)))
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(good.subquery())).scalar_one()
            rows = conn.execute(good.order_by(patrons.c.ref).limit(OFFLINE_PAGE)
                                .offset((page - 1) * OFFLINE_PAGE)).all()
        entries = [OfflineEntry(card_hash=messages.card_hash(salt, r.card_id), patron_ref=r.ref,
                                display_name=given_name(r.name) or "?",
                                max_offline_loans=min(self.offline_max_loans, r.left))
                   for r in rows]
        return OfflineListRes(site=site, salt=salt, generated_at=now, valid_until=valid_until,
                              page=page, pages=max(1, math.ceil(total / OFFLINE_PAGE)),
                              entries=entries)

    # -- transactions
    def apply_in(self, conn: Connection, batch: Sequence[Tx],
                 now: dt.datetime) -> list[AckTx]:
        """Apply a batch in the ledger's database transaction; one ack per transaction."""
        if not batch:
            return []
        work = Batch(conn, batch, hold_days=self.hold_days)
        acks = [work.apply(tx, now) for tx in batch]
        work.write(conn)
        return acks

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
                 "home_site": None, **r} for r in rows]
        with self.engine.begin() as conn:
            conn.execute(insert(items), rows)

    def ref_of(self, card_id: str) -> str:
        """The patron_ref of a card (staff tools and sample data; KeyError if unknown)."""
        with self.engine.connect() as conn:
            ref = conn.execute(select(patrons.c.ref).where(patrons.c.card_id == card_id)
                               ).scalar_one_or_none()
        if ref is None:
            raise KeyError("card_id: no such patron")  # never the card number itself
        return str(ref)

    def set_pin(self, card_id: str, pin: str | None) -> None:
        """Keep a salted hash of the PIN (None: remove it); clears a lockout."""
        self.set_pin_hash(card_id, pins.hash_pin(pin) if pin is not None else None)

    def set_pin_hash(self, card_id: str, digest: str | None) -> None:
        """Keep a hash made by central/pin.py (None: no PIN); clears a lockout."""
        with self.engine.begin() as conn:
            done = conn.execute(update(patrons).where(patrons.c.card_id == card_id).values(
                pin_hash=digest, pin_failures=0, pin_locked_until=None)).rowcount
        if done != 1:
            raise KeyError("card_id: no such patron")

    def add_loans(self, rows: Iterable[dict[str, Any]]) -> None:
        """Loans made elsewhere (sample data, imports): item_id, patron_ref, loaned_at, due."""
        with self.engine.begin() as conn:
            conn.execute(insert(loans), list(rows))

    def add_holds(self, rows: Iterable[dict[str, Any]]) -> None:
        """item_id, patron_ref, placed_at; optional pickup_site, status, pickup_by."""
        rows = [{"pickup_site": None, "status": "waiting", "pickup_by": None, **r}
                for r in rows]
        bad = [r["status"] for r in rows if r["status"] not in ("waiting", "transit", "ready")]
        if bad:
            raise ValueError(f"status: {bad[0]!r} is not waiting, transit or ready")
        with self.engine.begin() as conn:
            conn.execute(insert(holds), rows)

    def add_fines(self, rows: Iterable[dict[str, Any]]) -> None:
        """patron_ref, description, amount (VND, > 0), created_at."""
        rows = list(rows)
        if any(not isinstance(r["amount"], int) or r["amount"] <= 0 for r in rows):
            raise ValueError("amount: a whole number of dong above 0")
        with self.engine.begin() as conn:
            conn.execute(insert(fines), rows)

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
