"""The SIP2 backend: station transactions applied to a library system (Koha, Evergreen, ...).

Exactly once, with a library system that knows nothing of msg_ids:
- The dedupe rows (`processed`) live in the local database, as with the embedded store: a
  repeat is answered from the stored result and never sent to the library system again.
- Before a request goes out, a claim row is committed for its msg_id; the `processed` row and
  the removal of the claim commit together after the answer.
- A crash (or a timeout, or a dropped connection) between the request and that commit leaves
  the claim: the outcome is unknown. Whoever meets the claim after its lease has run out
  *asks before acting*: a loan whose item is already among the patron's charged items (63) is
  taken as done; a return whose item is no longer charged (17) is taken as done; anything
  else is sent again. A renewal cannot be told apart this way and is sent again: the worst
  case is one extra renewal counted by the library system, with the same due date.
- A claim still inside its lease belongs to a bridge at work on it: the transaction gets no
  answer now (the station sends it again and then meets the stored result).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from selfcheck.central import migrations
from selfcheck.central import pin as pins
from selfcheck.central.backend import BackendUnavailable, Tx
from selfcheck.central.schema import patron_refs, processed, reconciliation, sip2_claims
from selfcheck.central.sip2 import messages as m
from selfcheck.central.sip2.client import Sip2Config, Sip2Pool, Sip2Unavailable
from selfcheck.central.sip2.codec import Sip2Error, Sip2ProtocolError
from selfcheck.central.store import KIND, open_engine, site_salt
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

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
Claim = Literal["new", "taken_over", "busy"]
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


def _key(tx: Tx) -> tuple[str, str, str]:
    return (tx.site, tx.station, tx.msg_id)


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


def _aware(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)  # SQLite drops the zone


class Sip2Backend:
    def __init__(self, cfg: Sip2Config, db_url: str, *, owner: str = "bridge",
                 lease_s: float | None = None, pool: Sip2Pool | None = None,
                 pin_policy: pins.PinPolicy | None = None, currency: str = "VND") -> None:
        self.cfg = cfg
        self.pin_policy = pin_policy or pins.PinPolicy()
        self.currency = currency  # when the ACS sends no BH
        self.owner = owner
        self.engine = open_engine(db_url)
        migrations.upgrade(self.engine)
        self.pool = pool or Sip2Pool(cfg)
        # Longer than the worst a bridge can spend on one transaction: up to five requests.
        self.lease = dt.timedelta(seconds=lease_s if lease_s is not None
                                  else 6 * cfg.timeout_s + 10)
        self.counters = Sip2Counters()
        self._workers = ThreadPoolExecutor(cfg.pool_size, thread_name_prefix="sip2")

    def close(self) -> None:
        self._workers.shutdown()
        self.pool.close()
        self.engine.dispose()

    # -- patron check (63, mapped to PatronCheckRes)
    def check_patron(self, card_id: str, today: dt.date | None = None, *,
                     pin: str | None = None) -> PatronCheckRes:
        """The PIN goes in AD and the ACS's CQ decides; the wrong ones are counted here too
        (patron_refs), so the lockout does not depend on the library system having one."""
        now = dt.datetime.now(dt.UTC)
        known = self._known_ref(card_id) if pin is not None else None
        if known is not None:  # a card never seen has no failures yet
            state = self._pin_state(known)
            if pins.locked(state, now):
                return PatronCheckRes(ok=False, reason="pin_locked",
                                      pin_locked_until=state.locked_until)
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
                return self._wrong_pin(ref, now)
            self._set_pin_state(ref, pins.PinState(0, None))
        if any(info.denied(p) for p in (m.CHARGE_DENIED, m.CARD_LOST, m.EXCESSIVE_FINES,
                                        m.EXCESSIVE_FEES, m.TOO_MANY_OVERDUE)):
            reason = "patron_blocked"
        elif info.denied(m.TOO_MANY_CHARGED):
            reason = "too_many_loans"
        return PatronCheckRes(ok=reason is None, reason=reason,
                              patron_ref=ref or self._ref(card_id),
                              display_name=info.name or None, loans=info.charged_count or 0,
                              max_loans=info.charged_limit or 0,
                              screen_message=_lines(info.text.screen))

    def _pin_state(self, ref: str) -> pins.PinState:
        with self.engine.connect() as conn:
            row = conn.execute(select(patron_refs.c.pin_failures, patron_refs.c.pin_locked_until)
                               .where(patron_refs.c.ref == ref)).one()
        return pins.PinState(row.pin_failures, None if row.pin_locked_until is None
                             else _aware(row.pin_locked_until))

    def _set_pin_state(self, ref: str, state: pins.PinState) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(patron_refs).where(patron_refs.c.ref == ref).values(
                pin_failures=state.failures, pin_locked_until=state.locked_until))

    def _wrong_pin(self, ref: str, now: dt.datetime) -> PatronCheckRes:
        state = pins.after_failure(self._pin_state(ref), now, self.pin_policy)
        self._set_pin_state(ref, state)
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

        try:
            charged = info(m.CHARGED_ITEMS)
            if charged.valid is False:
                return AccountRes(ok=False, reason="unknown_patron")
            overdue = set(info(m.OVERDUE_ITEMS).overdue_items)
            ready = info(m.HOLD_ITEMS)
            waiting = info(m.UNAVAILABLE_HOLDS)
            fined = info(m.FINE_ITEMS)
        except Sip2ProtocolError as exc:
            raise Sip2Unavailable(f"patron information reply out of spec: {exc}", sent=True
                                  ) from exc
        may_renew = not (charged.denied(m.RENEW_DENIED) or charged.denied(m.CARD_LOST))
        loans = []
        for item_id in charged.charged_items:
            it = item(item_id)
            due = it.due if it else None
            loans.append(AccountLoan(
                item_id=item_id, title=it.title if it else None, due=due,
                overdue=item_id in overdue or (due is not None and due < today),
                renewable=may_renew and not (it and it.hold_queue_length)))
        loans.sort(key=lambda ln: (ln.due or dt.date.max, ln.item_id))
        holds_ready = []
        for item_id in ready.hold_items:
            it = item(item_id)
            holds_ready.append(HoldReady(item_id=item_id, title=it.title if it else None,
                                         pickup_by=it.hold_pickup_date if it else None))
        # CD may hold item ids or titles, by ACS: a title when 17 knows no such item.
        holds_waiting = [HoldWaiting(title=(it.title if (it := item(text)) and it.title
                                            else text)) for text in waiting.unavailable_holds]
        currency = fined.currency or self.currency
        return AccountRes(
            ok=True, loans=loans, holds_ready=holds_ready, holds_waiting=holds_waiting,
            fines_total=_minor(fined.fee_amount, currency), currency=currency,
            currency_exponent=EXPONENT.get(currency, 2),
            fines=[Fine(description=text) for text in fined.fine_items],
            screen_message=_lines(charged.text.screen))

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
    def apply(self, batch: Sequence[Tx], now: dt.datetime | None = None) -> list[AckTx | None]:
        """One local transaction claims the batch, the requests go out (in parallel over the
        pool for different items, in order for one item, a chain stopping at the first that
        gets no answer), and one local transaction commits the results: two commits a batch
        rather than two a transaction. A crash in between leaves claims: see the module doc."""
        when = now or dt.datetime.now(dt.UTC)
        results: list[AckTx | None] = [None] * len(batch)
        done: dict[int, AckTx] = {}  # answered now: to commit
        cards: dict[int, str | None] = {}
        todo: list[int] = []
        seen: set[tuple[str, str, str]] = set()
        stored = self._stored_many(batch)
        for i, tx in enumerate(batch):
            if _key(tx) in stored:
                results[i] = stored[_key(tx)]
            elif _key(tx) in seen:
                continue  # the same message twice in one batch: the first one answers
            elif isinstance(tx, TxLoan) and when > tx.deadline and not tx.offline:
                done[i] = AckTx(msg_id=tx.msg_id, ok=False, reason="late", item_id=tx.item_id)
            elif isinstance(tx, TxLoan | TxRenew) and (card := self._card(tx.patron_ref)) is None:
                done[i] = AckTx(msg_id=tx.msg_id, ok=False, reason="unknown_patron",
                                item_id=tx.item_id)
            else:
                cards[i] = card if isinstance(tx, TxLoan | TxRenew) else None
                todo.append(i)
            seen.add(_key(tx))
        claims = self._claim_many([batch[i].msg_id for i in todo])
        failed: dict[int, bool] = {}  # no answer: True when the request may have gone out

        def run(chain: list[int]) -> None:
            for n, i in enumerate(chain):
                tx = batch[i]
                if claims[tx.msg_id] == "busy":  # another bridge is at work on it
                    self.counters.busy += 1
                    failed.update({j: False for j in chain[n:]
                                   if claims[batch[j].msg_id] != "busy"})
                    return
                try:
                    done[i] = self._send(tx, cards[i], when,
                                         unknown_outcome=claims[tx.msg_id] == "taken_over")
                except (BackendUnavailable, Sip2ProtocolError) as exc:  # any library system
                    log.warning("%s %s: no usable answer from the library system (%s)",
                                KIND[type(tx)], tx.msg_id, exc)
                    failed[i] = getattr(exc, "sent", True)
                    failed.update({j: False for j in chain[n + 1:]})
                    return

        for future in [self._workers.submit(run, chain) for chain in _chains(batch, todo)]:
            future.result()
        for i, ack in self._commit_many(batch, done, failed, when).items():
            results[i] = ack
        self.counters.unanswered += results.count(None)
        return results

    def _stored(self, tx: Tx) -> AckTx | None:
        return self._stored_many([tx]).get(_key(tx))

    def _stored_many(self, txs: Sequence[Tx]) -> dict[tuple[str, str, str], AckTx]:
        """The stored results, keyed by station and msg_id."""
        wanted = {_key(tx) for tx in txs}
        with self.engine.connect() as conn:
            rows = conn.execute(select(processed.c.site, processed.c.station,
                                       processed.c.msg_id, processed.c.result)
                                .where(processed.c.msg_id.in_([k[2] for k in wanted]))).all()
        return {(r.site, r.station, r.msg_id):
                AckTx.model_validate_json(r.result).model_copy(update={"repeat": True})
                for r in rows if (r.site, r.station, r.msg_id) in wanted}

    def _claim_many(self, msg_ids: list[str]) -> dict[str, Claim]:
        """Claim each msg_id: 'new', 'taken_over' (an earlier claim outlived its lease: the
        outcome is unknown) or 'busy' (another bridge is at work on it)."""
        if not msg_ids:
            return {}
        now = dt.datetime.now(dt.UTC)
        out: dict[str, Claim] = {}
        try:
            with self.engine.begin() as conn:
                held = {r.msg_id: r.claimed_at for r in conn.execute(
                    select(sip2_claims.c.msg_id, sip2_claims.c.claimed_at)
                    .where(sip2_claims.c.msg_id.in_(msg_ids)))}
                fresh = [i for i in msg_ids if i not in held]
                if fresh:
                    conn.execute(insert(sip2_claims), [
                        {"msg_id": i, "owner": self.owner, "claimed_at": now} for i in fresh])
                out.update(dict.fromkeys(fresh, "new"))
                for msg_id, claimed_at in held.items():
                    if _aware(claimed_at) > now - self.lease:
                        out[msg_id] = "busy"
                        continue
                    taken = conn.execute(
                        update(sip2_claims).where(sip2_claims.c.msg_id == msg_id,
                                                  sip2_claims.c.claimed_at == claimed_at)
                        .values(owner=self.owner, claimed_at=now)).rowcount
                    out[msg_id] = "taken_over" if taken == 1 else "busy"
            return out
        except IntegrityError:  # another bridge claimed one of them meanwhile: one by one
            return {i: self._claim(i) for i in msg_ids}

    def _claim(self, msg_id: str) -> Claim:
        try:
            return self._claim_many([msg_id])[msg_id]
        except IntegrityError:
            return "busy"

    def _commit_many(self, batch: Sequence[Tx], done: dict[int, AckTx],
                     failed: dict[int, bool], now: dt.datetime) -> dict[int, AckTx]:
        """The results and their dedupe rows in one transaction, claims settled with them:
        removed for answered ones and for requests that surely did not go out; kept with an
        expired lease where the outcome is unknown, so the next attempt asks first."""
        def rows(i: int, ack: AckTx) -> dict[str, object]:
            tx = batch[i]
            return {"msg_id": tx.msg_id, "site": tx.site, "station": tx.station,
                    "journal": tx.journal or "", "seq": tx.seq, "kind": KIND[type(tx)],
                    "result": ack.model_dump_json(by_alias=True), "applied_at": now}

        def refused_offline(items: dict[int, AckTx]) -> list[dict[str, object]]:
            return [{"msg_id": batch[i].msg_id, "site": batch[i].site,
                     "station": batch[i].station, "kind": KIND[type(batch[i])],
                     "item_id": batch[i].item_id,
                     "patron_ref": getattr(batch[i], "patron_ref", None),
                     "reason": a.reason or "refused", "at": batch[i].at, "recorded_at": now}
                    for i, a in items.items() if batch[i].offline and not a.ok]

        def settle(conn: Connection, items: dict[int, AckTx]) -> None:
            if items:
                conn.execute(insert(processed), [rows(i, a) for i, a in items.items()])
                if recon := refused_offline(items):
                    conn.execute(insert(reconciliation), recon)
            gone = [batch[i].msg_id for i in items] + \
                [batch[i].msg_id for i, sent in failed.items() if not sent]
            if gone:
                conn.execute(delete(sip2_claims).where(sip2_claims.c.msg_id.in_(gone)))
            unknown = [batch[i].msg_id for i, sent in failed.items() if sent]
            if unknown:
                conn.execute(update(sip2_claims).where(sip2_claims.c.msg_id.in_(unknown))
                             .values(claimed_at=EPOCH))

        try:
            with self.engine.begin() as conn:
                settle(conn, done)
            return done
        except IntegrityError:  # a bridge that outlived its lease got there first: one by one
            out: dict[int, AckTx] = {}
            for i, ack in done.items():
                try:
                    with self.engine.begin() as conn:
                        conn.execute(insert(processed), [rows(i, ack)])
                        if recon := refused_offline({i: ack}):
                            conn.execute(insert(reconciliation), recon)
                        conn.execute(delete(sip2_claims)
                                     .where(sip2_claims.c.msg_id == batch[i].msg_id))
                    out[i] = ack
                except IntegrityError:
                    stored = self._stored(batch[i])
                    if stored is not None:
                        out[i] = stored
            with self.engine.begin() as conn:
                settle(conn, {})
            return out

    # -- the requests
    def _send(self, tx: Tx, card: str | None, now: dt.datetime, *,
              unknown_outcome: bool) -> AckTx:
        cfg, call = self.cfg, self.pool.call
        if unknown_outcome:
            self.counters.reconciled += 1
            settled = self._settle(tx, card, now)
            if settled is not None:
                return settled
        self.counters.sent += 1
        if isinstance(tx, TxReturn):
            r = m.circulation(call(m.checkin(cfg.institution, tx.item_id, cfg.checkin_ap, now,
                                             cfg.terminal_password)))
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
            r = m.circulation(call(m.checkout(cfg.institution, card, tx.item_id, now,
                                              cfg.terminal_password)))
        else:
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
            return None
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
