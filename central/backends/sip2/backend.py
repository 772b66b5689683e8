"""The SIP2 backend: station transactions applied to a library system (Koha, Evergreen, ...).

Exactly once is the ledger's (central/ledger/): it claims each msg_id before this backend
sends anything, commits the results after, and answers repeats itself. What is left here is
what only the library system can settle: when a claim outlived its lease (a bridge died, or
the answer never came), the outcome is unknown, and this backend *asks before acting*: a loan
whose item is already among the patron's charged items (63) is taken as done; a return whose
item is no longer charged (17) is taken as done; anything else is sent again. A renewal
cannot be told apart this way and is sent again: the worst case is one extra renewal counted
by the library system, with the same due date.

The local database (the ledger's, opened and migrated by whoever starts the bridge) keeps the
patrons' pseudonymous references and their PIN failures, and the offline list's keys.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from selfcheck.central import pin as pins
from selfcheck.central.backend import (
    KIND,
    BackendUnavailable,
    Claim,
    ItemInfo,
    Outcome,
    Tx,
)
from selfcheck.central.backends.sip2 import messages as m
from selfcheck.central.backends.sip2.client import Sip2Config, Sip2Pool, Sip2Unavailable
from selfcheck.central.backends.sip2.codec import Sip2Error, Sip2ProtocolError
from selfcheck.central.ledger import aware
from selfcheck.central.names import given_name
from selfcheck.central.offline_policy import EVERY, OfflineStations
from selfcheck.central.pin_guard import PinGuard, StationBudget
from selfcheck.central.pin_rules import PinRules, demand, refusal
from selfcheck.central.salts import site_salt
from selfcheck.central.schema import patron_refs, sip2_claims
from selfcheck.mqtt.messages import (
    AccountLoan,
    AccountRes,
    AckTx,
    Fine,
    HoldReady,
    HoldWaiting,
    OfflineListRes,
    PatronCheckRes,
    Reason,
    TxLoan,
    TxRenew,
    TxReturn,
)

log = logging.getLogger(__name__)

HOLD_ALERTS = {"01", "02"}  # CV: the returned book is wanted by someone (local / remote hold)
TRANSIT_ALERTS = {"02", "04"}  # CV: the book goes to another branch (hold there / its home)
EXPONENT = {"VND": 0, "JPY": 0, "KRW": 0}  # ISO 4217 minor units; 2 for the others


@dataclass
class Sip2Counters:
    sent: int = 0
    reconciled: int = 0  # unknown outcomes settled by asking the library system
    unanswered: int = 0  # left for the station to send again
    busy: int = 0  # claimed by another bridge at work


def _lines(values: tuple[str, ...]) -> list[str] | None:
    return list(values) or None


def _minor(amount: str | None, currency: str) -> int:
    """BV ("12000.00", "12000") in minor units; 0 when absent or unreadable."""
    try:
        value = float((amount or "0").strip() or "0")
    except ValueError:
        return 0
    return max(0, round(value * 10 ** EXPONENT.get(currency, 2)))


def _chains(batch: Sequence[Tx], todo: list[int]) -> list[list[int]]:
    """The requests to send, as chains that run in parallel: one station's transactions in
    batch order (the bridge gives them in seq order) and one item's in batch order share a
    chain, which stops at the first that gets no answer."""
    parent = {i: i for i in todo}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[object, int] = {}
    for i in todo:
        for k in ((batch[i].site, batch[i].station), batch[i].item_id):
            if k in first:
                parent[find(i)] = find(first[k])
            else:
                first[k] = i
    chains: dict[int, list[int]] = {}
    for i in todo:
        chains.setdefault(find(i), []).append(i)
    return list(chains.values())


class Sip2Backend:
    def __init__(self, cfg: Sip2Config, engine: Engine, *, lease_s: float | None = None,
                 pool: Sip2Pool | None = None, pin_policy: pins.PinPolicy | None = None,
                 currency: str = "VND", pin_rules: PinRules | None = None,
                 offline_stations: OfflineStations = EVERY,
                 pin_budget: StationBudget | None = None) -> None:
        """`engine`: the central's database, already migrated (ledger.open_db)."""
        self.offline_stations = offline_stations  # who gets the offline list
        self.cfg = cfg
        self.pin_policy = pin_policy or pins.PinPolicy()
        self.pin_rules = pin_rules or PinRules()
        self.currency = currency  # when the ACS sends no BH
        self.engine = engine
        # per-station wrong PINs, before the library system
        self.pin_guard = PinGuard(engine, pin_budget)
        self.pool = pool or Sip2Pool(cfg)
        # Longer than the worst a bridge can spend on one transaction: up to five requests.
        self.lease = dt.timedelta(seconds=lease_s if lease_s is not None
                                  else 6 * cfg.timeout_s + 10)
        self.counters = Sip2Counters()
        self._workers = ThreadPoolExecutor(cfg.pool_size, thread_name_prefix="sip2")
        # The account's lookups (the pool's slots bound how many go out at once)
        # leave a connection for transactions: a loan must not wait behind an account
        self._lookups = ThreadPoolExecutor(max(1, cfg.pool_size - 1),
                                           thread_name_prefix="sip2-account")

    @property
    def connections(self) -> int:
        """Connections to the library system: the bridge's costly pool leaves one of them to
        its transaction worker (central/costly.py pool_size)."""
        return self.cfg.pool_size

    def close(self) -> None:
        self._workers.shutdown()
        self._lookups.shutdown()
        self.pool.close()
        self.engine.dispose()

    # -- patron check (63, mapped to PatronCheckRes)
    def check_patron(self, card_id: str, today: dt.date | None = None, *,
                     pin: str | None = None, site: str | None = None,
                     station: str | None = None) -> PatronCheckRes:
        """The PIN goes in AD and the ACS's CQ decides; the wrong ones are counted here too
        (patron_refs), so the lockout does not depend on the library system having one.
        SIP2 names no patron category that every library system fills alike (PC is
        optional and free text), so the site's rule applies, decided before the library
        system is asked."""
        now = dt.datetime.now(dt.UTC)
        if pin is not None and (paused := self.pin_guard.paused(site, station, now)):
            return paused  # the library system is not asked: it may lock cards itself
        known = self._known_ref(card_id)  # a card never seen has no failures yet
        state = self._pin_state(known) if known is not None else None
        refused = refusal(demand(self.pin_rules.rule(site, None), state, now,
                                 pin_given=pin is not None), state)
        if refused is not None:
            return refused
        try:
            info = m.patron(self.pool.call(
                m.patron_information(self.cfg.institution, card_id, now,
                                     terminal_pw=self.cfg.terminal_password, patron_pw=pin,
                                     language=self.cfg.language),
                idempotent=True))
        except Sip2ProtocolError as exc:
            raise Sip2Unavailable(f"patron information reply out of spec: {exc}", sent=True
                                  ) from exc
        reason: Reason | None = None
        if info.valid is False:
            return PatronCheckRes(ok=False, reason="unknown_patron",
                                  screen_message=_lines(info.text.screen))
        ref = self._ref(card_id) if pin is not None else None  # a valid patron: keep a ref
        if ref is not None:
            # No CQ in the reply: the PIN was not checked, so it does not count as right.
            if info.valid_password is not True:
                return self._wrong_pin(ref, now, site, station)
            self._right_pin(ref, now, site, station)
        if any(info.denied(p) for p in (m.CHARGE_DENIED, m.CARD_LOST, m.EXCESSIVE_FINES,
                                        m.EXCESSIVE_FEES, m.TOO_MANY_OVERDUE)):
            reason = "patron_blocked"
        elif info.denied(m.TOO_MANY_CHARGED):
            reason = "too_many_loans"
        return PatronCheckRes(ok=reason is None, reason=reason,
                              patron_ref=ref or self._ref(card_id),
                              display_name=given_name(info.name), loans=info.charged_count or 0,
                              max_loans=info.charged_limit or 0,
                              screen_message=_lines(info.text.screen))

    def _pin_state(self, ref: str) -> pins.PinState:
        with self.engine.connect() as conn:
            row = conn.execute(select(patron_refs.c.pin_failures, patron_refs.c.pin_locked_until)
                               .where(patron_refs.c.ref == ref)).one()
        return pins.PinState(row.pin_failures, None if row.pin_locked_until is None
                             else aware(row.pin_locked_until))

    def _set_pin_state(self, ref: str, state: pins.PinState) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(patron_refs).where(patron_refs.c.ref == ref).values(
                pin_failures=state.failures, pin_locked_until=state.locked_until))

    def _right_pin(self, ref: str, now: dt.datetime, site: str | None,
                   station: str | None) -> None:
        before = self._pin_state(ref)
        if before.failures or before.locked_until is not None:
            self._set_pin_state(ref, pins.PinState(0, None))
            self.pin_guard.right(site, station, ref, before, now)

    def _wrong_pin(self, ref: str, now: dt.datetime, site: str | None = None,
                   station: str | None = None) -> PatronCheckRes:
        # Read and written in one transaction, the row locked (PostgreSQL's FOR UPDATE;
        # SQLite's BEGIN IMMEDIATE): two bridges or pool threads counting one card at once
        # lose no count.
        where = patron_refs.c.ref == ref
        with self.engine.begin() as conn:
            row = conn.execute(select(patron_refs.c.pin_failures,
                                      patron_refs.c.pin_locked_until)
                               .where(where).with_for_update()).one()
            before = pins.PinState(row.pin_failures, None if row.pin_locked_until is None
                                   else aware(row.pin_locked_until))
            state = pins.after_failure(before, now, self.pin_policy)
            conn.execute(update(patron_refs).where(where).values(
                pin_failures=state.failures, pin_locked_until=state.locked_until))
        self.pin_guard.wrong(site, station, ref, before, state, now, self.pin_policy)
        log.info("wrong PIN for patron %s", ref)  # the ref, never the card or the PIN
        if state.locked_until is not None:
            return PatronCheckRes(ok=False, reason="pin_locked",
                                  pin_locked_until=state.locked_until)
        return PatronCheckRes(ok=False, reason="wrong_pin", pin_required=True,
                              pin_tries_left=pins.tries_left(state, self.pin_policy))

    # -- account (63 once per item list, 17 for titles and dates)
    def account(self, patron_ref: str, today: dt.date | None = None) -> AccountRes:
        card = self._card(patron_ref)
        if card is None:
            return AccountRes(ok=False, reason="unknown_patron")
        today = today or dt.date.today()
        now = dt.datetime.now(dt.UTC)
        cfg = self.cfg

        def info(items: int) -> m.PatronInfo:
            return m.patron(self.pool.call(m.patron_information(
                cfg.institution, card, now, terminal_pw=cfg.terminal_password, items=items,
                language=cfg.language),
                idempotent=True))

        def item(item_id: str) -> m.ItemInfo | None:
            try:
                return m.item(self.pool.call(m.item_information(
                    cfg.institution, item_id, now, cfg.terminal_password), idempotent=True))
            except Sip2ProtocolError:
                return None

        # A heavy reader's account is dozens of requests: over the pool's connections at
        # once, not one after another, so that it arrives within the station's deadline.
        try:
            charged, overdue_info, ready, waiting, fined = self._lookups.map(info, (
                m.CHARGED_ITEMS, m.OVERDUE_ITEMS, m.HOLD_ITEMS, m.UNAVAILABLE_HOLDS,
                m.FINE_ITEMS))
        except Sip2ProtocolError as exc:
            raise Sip2Unavailable(f"patron information reply out of spec: {exc}", sent=True
                                  ) from exc
        if charged.valid is False:
            return AccountRes(ok=False, reason="unknown_patron")
        overdue = set(overdue_info.overdue_items)
        wanted = list(dict.fromkeys((*charged.charged_items, *ready.hold_items,
                                     *waiting.unavailable_holds)))
        found = dict(zip(wanted, self._lookups.map(item, wanted), strict=True))
        may_renew = not (charged.denied(m.RENEW_DENIED) or charged.denied(m.CARD_LOST))
        loans = []
        for item_id in charged.charged_items:
            it = found[item_id]
            due = it.due if it else None
            loans.append(AccountLoan(
                item_id=item_id, title=it.title if it else None, due=due,
                overdue=item_id in overdue or (due is not None and due < today),
                renewable=may_renew and not (it and it.hold_queue_length)))
        loans.sort(key=lambda ln: (ln.due or dt.date.max, ln.item_id))
        holds_ready = []
        for item_id in ready.hold_items:
            it = found[item_id]
            holds_ready.append(HoldReady(item_id=item_id, title=it.title if it else None,
                                         pickup_by=it.hold_pickup_date if it else None))
        # CD may hold item ids or titles, by ACS: a title when 17 knows no such item.
        holds_waiting = [HoldWaiting(title=(it.title if (it := found[text]) and it.title
                                            else text)) for text in waiting.unavailable_holds]
        currency = fined.currency or self.currency
        return AccountRes(
            ok=True, loans=loans, holds_ready=holds_ready, holds_waiting=holds_waiting,
            fines_total=_minor(fined.fee_amount, currency), currency=currency,
            currency_exponent=EXPONENT.get(currency, 2),
            fines=[Fine(description=text) for text in fined.fine_items],
            screen_message=_lines(charged.text.screen))

    # -- items (tagging, stock-takes: 17)
    def _item_information(self, item_id: str, what: str) -> m.ItemInfo | None:
        """The library system's 18 for `item_id`; None (logged as `what`) when unanswered."""
        try:
            return m.item(self.pool.call(m.item_information(
                self.cfg.institution, item_id, dt.datetime.now(dt.UTC),
                self.cfg.terminal_password), idempotent=True))
        except (Sip2Error, BackendUnavailable) as exc:
            log.info("%s unanswered: %s", what, exc)
            return None

    def item_info(self, item_id: str) -> ItemInfo | None:
        """Item information (17). SIP2 has no not-for-loan flag and no site codes: those
        stay the central's catalogue's."""
        it = self._item_information(item_id, "item information")
        if it is None:
            return None
        if not it.known:
            return ItemInfo(known=False)
        return ItemInfo(known=True, title=it.title, home_branch=it.permanent_location,
                         on_loan=it.on_loan)

    def items_info(self, item_ids: Sequence[str]) -> dict[str, ItemInfo] | None:
        """One 17 each, over the pool's connections at once (one is left to transactions);
        None when any went unanswered: the library system is down or struggling."""
        wanted = list(dict.fromkeys(item_ids))
        down = threading.Event()

        def one(item_id: str) -> ItemInfo | None:
            if down.is_set():  # the others are not waited for, one timeout after another
                return None
            got = self.item_info(item_id)
            if got is None:
                down.set()
            return got

        found = dict(zip(wanted, self._lookups.map(one, wanted), strict=True))
        if down.is_set():
            return None
        return {k: v for k, v in found.items() if v is not None}

    def offline_list(self, site: str, page: int = 1,
                     now: dt.datetime | None = None) -> OfflineListRes:
        """SIP2 cannot list patrons in good standing: an empty list (valid, so the station
        knows it can lend offline to nobody and stays with returns only)."""
        now = now or dt.datetime.now(dt.UTC)
        return OfflineListRes(site=site, salt=site_salt(self.engine, site, now),
                              generated_at=now, valid_until=now + dt.timedelta(hours=24),
                              page=page, pages=1, entries=[])

    def _known_ref(self, card_id: str) -> str | None:
        with self.engine.connect() as conn:
            ref = conn.execute(select(patron_refs.c.ref)
                               .where(patron_refs.c.card_id == card_id)).scalar_one_or_none()
        return None if ref is None else str(ref)

    def _ref(self, card_id: str) -> str:
        ref = self._known_ref(card_id)
        if ref is not None:
            return ref
        try:
            with self.engine.begin() as conn:
                ref = "p-" + secrets.token_hex(8)
                conn.execute(insert(patron_refs).values(ref=ref, card_id=card_id,
                                                        created_at=dt.datetime.now(dt.UTC)))
                return ref
        except IntegrityError:  # another bridge gave this card a reference just now
            return self._ref(card_id)

    def _card(self, ref: str) -> str | None:
        with self.engine.connect() as conn:
            card = conn.execute(select(patron_refs.c.card_id)
                                .where(patron_refs.c.ref == ref)).scalar_one_or_none()
        return None if card is None else str(card)

    # -- transactions
    def apply(self, batch: Sequence[Tx], now: dt.datetime,
              claims: Sequence[Claim]) -> Outcome:
        """The requests go out in parallel over the pool for different items, in order for
        one station and for one item, a chain stopping at the first that gets no answer or
        that another bridge is at work on (busy)."""
        acks: list[AckTx | None] = [None] * len(batch)
        cards: dict[int, str | None] = {}
        todo: list[int] = []
        for i, tx in enumerate(batch):
            if claims[i] == "busy":
                todo.append(i)  # stops its chain
            elif isinstance(tx, TxLoan | TxRenew) and (card := self._card(tx.patron_ref)) is None:
                acks[i] = AckTx(msg_id=tx.msg_id, ok=False, reason="unknown_patron",
                                item_id=tx.item_id)
            else:
                cards[i] = card if isinstance(tx, TxLoan | TxRenew) else None
                todo.append(i)
        unsure: set[int] = set()  # no answer, and the request may have gone out

        def run(chain: list[int]) -> None:
            for i in chain:
                tx = batch[i]
                if claims[i] == "busy":  # another bridge is at work on it
                    self.counters.busy += 1
                    return
                try:
                    acks[i] = self._attempt(tx, cards[i], now, claims[i])
                except (BackendUnavailable, Sip2ProtocolError) as exc:  # any library system
                    log.warning("%s %s: no usable answer from the library system (%s)",
                                KIND[type(tx)], tx.msg_id, exc)
                    if getattr(exc, "sent", True):
                        unsure.add(i)
                    return

        for future in [self._workers.submit(run, chain) for chain in _chains(batch, todo)]:
            future.result()
        self.counters.unanswered += acks.count(None)
        return Outcome(acks, unsure)

    # -- the requests
    def _attempt(self, tx: Tx, card: str | None, now: dt.datetime, claim: Claim) -> AckTx:
        """An unknown outcome is settled by asking first, before anything else is decided:
        a loan the library system made after all is answered as made, even past its
        deadline (the station, which told the reader otherwise, then checks it back in).
        Only a loan surely not made may be refused as late."""
        if claim == "taken_over":
            self.counters.reconciled += 1
            settled = self._settle(tx, card, now)
            if settled is not None:
                return settled
        if isinstance(tx, TxLoan) and now > tx.deadline and not tx.offline:
            return AckTx(msg_id=tx.msg_id, ok=False, reason="late", item_id=tx.item_id)
        self.counters.sent += 1
        return self._send(tx, card, now)

    def _note(self, msg_id: str, value: str) -> None:
        """Keep with the msg_id's claim, committed before the request goes out, what the
        library system said before it: `_settle` compares after an unknown outcome."""
        with self.engine.begin() as conn:
            conn.execute(update(sip2_claims).where(sip2_claims.c.msg_id == msg_id)
                         .values(note=value[:64]))

    def _noted(self, msg_id: str) -> str | None:
        with self.engine.connect() as conn:
            note = conn.execute(select(sip2_claims.c.note).where(
                sip2_claims.c.msg_id == msg_id)).scalar_one_or_none()
        return None if note is None else str(note)

    def _send(self, tx: Tx, card: str | None, now: dt.datetime) -> AckTx:
        cfg, call = self.cfg, self.pool.call
        if isinstance(tx, TxReturn):
            # Offline: SIP2's store and forward, dated when the book came back.
            r = m.circulation(call(m.checkin(cfg.institution, tx.item_id, cfg.checkin_ap,
                                             tx.at if tx.offline else now,
                                             cfg.terminal_password, no_block=tx.offline)))
            if not r.ok:
                return self._refused(tx, r, self._why_not_returned(tx.item_id, now))
            # CY is the hold's patron id, a card number: only its pseudonymous ref goes out.
            hold_for = self._ref(r.hold_patron) if r.hold_patron else None
            return AckTx(msg_id=tx.msg_id, ok=True, item_id=tx.item_id, title=r.title,
                         sort_bin=r.sort_bin, hold=r.alert_type in HOLD_ALERTS,
                         alert_type=r.alert_type, resensitize=r.security, hold_for=hold_for,
                         transit_to=r.destination if r.alert_type in TRANSIT_ALERTS else None,
                         screen_message=_lines(r.text.screen),
                         print_lines=_lines(r.text.print_lines))
        assert card is not None
        if isinstance(tx, TxLoan):
            r = m.circulation(call(m.checkout(cfg.institution, card, tx.item_id,
                                              tx.at if tx.offline else now,
                                              cfg.terminal_password, no_block=tx.offline)))
        else:
            # SIP2 cannot count renewals: the due date before the renewal tells a renewal
            # that went through from one that did not, should the answer be lost.
            before = m.item(call(m.item_information(cfg.institution, tx.item_id, now,
                                                    cfg.terminal_password), idempotent=True))
            self._note(tx.msg_id, f"due:{before.due.isoformat() if before.due else ''}")
            r = m.circulation(call(m.renew(cfg.institution, card, tx.item_id, now,
                                           cfg.terminal_password)))
        if not r.ok:
            return self._refused(tx, r, self._why_not_lent(card, tx, now))
        return AckTx(msg_id=tx.msg_id, ok=True, item_id=tx.item_id, title=r.title, due=r.due,
                     desensitize=r.security, screen_message=_lines(r.text.screen),
                     print_lines=_lines(r.text.print_lines))

    def _settle(self, tx: Tx, card: str | None, now: dt.datetime) -> AckTx | None:
        """The ack of a transaction that may already be done, or None to send it again."""
        cfg, call = self.cfg, self.pool.call
        if isinstance(tx, TxRenew):
            return self._settle_renewal(tx, now)
        if isinstance(tx, TxLoan):
            assert card is not None
            info = m.patron(call(m.patron_information(cfg.institution, card, now, charged=True,
                                                      terminal_pw=cfg.terminal_password,
                                                      language=cfg.language),
                                 idempotent=True))
            if tx.item_id not in info.charged_items:
                return None
        item = m.item(call(m.item_information(cfg.institution, tx.item_id, now,
                                              cfg.terminal_password), idempotent=True))
        if isinstance(tx, TxLoan):
            log.info("loan %s was done before the answer was lost", tx.msg_id)
            return AckTx(msg_id=tx.msg_id, ok=True, item_id=tx.item_id, title=item.title,
                         due=item.due, desensitize=True)
        if item.circulation_status == m.CHARGED:
            return None
        log.info("return %s was done before the answer was lost", tx.msg_id)
        return AckTx(msg_id=tx.msg_id, ok=True, item_id=tx.item_id, title=item.title,
                     resensitize=True)

    def _settle_renewal(self, tx: TxRenew, now: dt.datetime) -> AckTx | None:
        """Renewed if the due date moved since the note taken before the renewal went out;
        no note: the renewal never went out."""
        note = self._noted(tx.msg_id)
        if note is None or not note.startswith("due:"):
            return None
        if note == "due:":  # no due date before it: cannot tell, and never sent twice
            log.warning("renewal %s: outcome unknown and cannot be told apart; not sent "
                        "again", tx.msg_id)
            return AckTx(msg_id=tx.msg_id, ok=False, reason="refused", item_id=tx.item_id)
        item = m.item(self.pool.call(m.item_information(
            self.cfg.institution, tx.item_id, now, self.cfg.terminal_password),
            idempotent=True))
        if item.circulation_status != m.CHARGED:
            return AckTx(msg_id=tx.msg_id, ok=False, reason="not_on_loan", item_id=tx.item_id,
                         title=item.title)
        due = item.due.isoformat() if item.due else ""
        if due == note.removeprefix("due:"):
            return None
        log.info("renewal %s was done before the answer was lost", tx.msg_id)
        return AckTx(msg_id=tx.msg_id, ok=True, item_id=tx.item_id, title=item.title,
                     due=item.due)

    def _refused(self, tx: Tx, r: m.CircResult, reason: Reason) -> AckTx:
        return AckTx(msg_id=tx.msg_id, ok=False, reason=reason, item_id=tx.item_id,
                     title=r.title, screen_message=_lines(r.text.screen),
                     print_lines=_lines(r.text.print_lines))

    def _why_not_lent(self, card: str, tx: Tx, now: dt.datetime) -> Reason:
        """SIP2 gives no reason code for a refusal: find one from the patron and the item,
        and keep the library system's own words in screen_message."""
        cfg, call = self.cfg, self.pool.call
        try:
            p = m.patron(call(m.patron_status(cfg.institution, card, now,
                                              cfg.terminal_password, language=cfg.language),
                              idempotent=True))
            if p.valid is False:
                return "unknown_patron"
            if p.denied(m.CHARGE_DENIED if isinstance(tx, TxLoan) else m.RENEW_DENIED) or \
                    p.denied(m.CARD_LOST):
                return "patron_blocked"
            if isinstance(tx, TxLoan) and p.denied(m.TOO_MANY_CHARGED):
                return "too_many_loans"
            item = m.item(call(m.item_information(cfg.institution, tx.item_id, now,
                                                  cfg.terminal_password), idempotent=True))
        except Sip2Error:
            return "refused"
        if item.title is None:
            return "unknown_item"
        if isinstance(tx, TxLoan) and item.circulation_status == m.CHARGED:
            return "on_loan_to_other"
        if item.circulation_status == m.ON_HOLD_SHELF or item.hold_queue_length:
            return "on_hold_for_other"
        if isinstance(tx, TxRenew) and item.circulation_status != m.CHARGED:
            return "not_on_loan"
        return "refused"

    def _why_not_returned(self, item_id: str, now: dt.datetime) -> Reason:
        try:
            item = m.item(self.pool.call(m.item_information(self.cfg.institution, item_id, now,
                                                            self.cfg.terminal_password),
                                         idempotent=True))
        except Sip2Error:
            return "refused"
        return "unknown_item" if item.title is None else "refused"
