"""Koha: its REST API for what SIP2 cannot say, SIP2 for what the REST API cannot do.

- REST: the patron check (with Koha's own PIN check), the account (due dates, holds with
  their queue position, each fine's amount), renewals (allows_renewal says why not) and,
  unless the site says `loans=sip2`, loans (availability, then the checkout with its
  confirmation token, at the station's branch named in `x-koha-library`).
- SIP2: returns (mainline Koha has no check-in endpoint) and titles (the REST subset we
  rely on has no biblio endpoint, and its GET /items embeds no biblio; SIP2 item information
  names the title, kept per biblio).
- Items for tagging and stock-takes (item_info, items_info): GET /items by barcode, matched
  exactly and checked again here (Koha's list matches `LIKE '%barcode%'` otherwise).

Exactly once is the ledger's (central/ledger/), as for SIP2; both go through the SIP2
backend's chains, so one station's transactions go out in seq order, a chain stopping at the
first without an answer. An unknown outcome is settled by asking Koha before anything else
(`_settle`): a REST loan by whether the item is among the patron's checkouts, a renewal by
whether the checkout's renewals_count grew past the one noted before the renewal went out.

Confirmations (mapping.loan_decision): a rental charge is the reader's to accept, so the
central answers needs_confirmation with the amount and lends only when a new loan comes with
`confirmed` naming it; what a librarian must look at is needs_staff; the rest refuses with
its reason.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from sqlalchemy import Engine

from selfcheck.central import pin as pins
from selfcheck.central.backend import BackendUnavailable, ItemInfo, Tx
from selfcheck.central.backends.koha import mapping as km
from selfcheck.central.backends.koha.client import KohaClient, KohaConfig
from selfcheck.central.backends.sip2.backend import Sip2Backend
from selfcheck.central.backends.sip2.client import Sip2Config, Sip2Pool
from selfcheck.central.backends.sip2.codec import Sip2Error
from selfcheck.central.names import given_name
from selfcheck.central.pin_guard import StationBudget
from selfcheck.central.pin_rules import PinRules, demand, refusal
from selfcheck.mqtt.messages import (
    AccountRes,
    AckTx,
    LoanConfirm,
    PatronCheckRes,
    Reason,
    TxLoan,
    TxReturn,
)

log = logging.getLogger(__name__)
CACHE_MAX = 200_000
# The station waits 5 s for an account (ACK_TIMEOUT_S in kiosk/timeouts.py). What has not come
# back by this long after the request reached the central (titles, renewal answers) is left
# out, so that the reader sees the loans rather than nothing.
ACCOUNT_BUDGET_S = 3.5
PASSWORD = "/auth/password/validation"
ITEMS_AT_ONCE = 50  # barcodes in one GET /items (the query string stays short)
T = TypeVar("T")


class KohaBackend(Sip2Backend):
    def __init__(self, koha: KohaConfig, circulation: Sip2Config, engine: Engine, *,
                 lease_s: float | None = None, pool: Sip2Pool | None = None,
                 client: KohaClient | None = None,
                 pin_policy: pins.PinPolicy | None = None,
                 pin_rules: PinRules | None = None,
                 pin_budget: StationBudget | None = None) -> None:
        if lease_s is None:  # longer than the worst a transaction can take over either
            # protocol: up to six REST requests (GETs tried twice) and two SIP2 ones
            lease_s = max(6 * circulation.timeout_s, 8 * koha.timeout_s) + 10
        super().__init__(circulation, engine, lease_s=lease_s, pool=pool,
                         pin_policy=pin_policy, currency=koha.currency, pin_rules=pin_rules,
                         pin_budget=pin_budget)
        self.koha = koha
        self.client = client or KohaClient(koha)
        # Stable in Koha, and looked up on every loan otherwise: card -> patron_id (in memory
        # only), biblio_id -> title; emptied when they reach CACHE_MAX entries.
        self._patron_ids: dict[str, int] = {}
        self._titles: dict[int, str] = {}
        self._cache_lock = threading.Lock()
        # The account's requests at once; sized like the HTTP pool they share.
        self._fetch = ThreadPoolExecutor(koha.pool_size, thread_name_prefix="koha")
        self._old_password_api = False  # Koha before 23.11: userid in, 204 out

    @property
    def connections(self) -> int:
        """The fewer of SIP2's and Koha's HTTP connections (transactions use both)."""
        return min(self.cfg.pool_size, self.koha.pool_size)

    def close(self) -> None:
        self._fetch.shutdown(cancel_futures=True)
        super().close()
        self.client.close()

    # -- patrons
    def _patron(self, card: str, *, counts: bool = False) -> km.KPatron | None:
        headers = {"x-koha-embed": "checkouts+count"} if counts else None
        _, body = self.client.get_all("/patrons", params={"cardnumber": card},
                                      headers=headers)
        found = [p for p in km.parse_list(km.KPatron, body, "GET /patrons")
                 if p.cardnumber == card]
        if len(found) != 1:
            return None
        with self._cache_lock:
            if len(self._patron_ids) >= CACHE_MAX:
                self._patron_ids.clear()
            self._patron_ids[card] = found[0].patron_id
        return found[0]

    def _patron_id(self, card: str) -> int | None:
        with self._cache_lock:
            known = self._patron_ids.get(card)
        if known is not None:
            return known
        p = self._patron(card)
        return None if p is None else p.patron_id

    def _forget(self, patron_id: int) -> None:
        """Koha no longer knows this patron (deleted, merged): look the card up again."""
        with self._cache_lock:
            for card in [c for c, p in self._patron_ids.items() if p == patron_id]:
                del self._patron_ids[card]

    def check_patron(self, card_id: str, today: dt.date | None = None, *,
                     pin: str | None = None, site: str | None = None,
                     station: str | None = None) -> PatronCheckRes:
        """Koha says who the patron is and checks the PIN (its own password rules); the
        wrong ones are counted here too, as with SIP2, so the lockout does not depend on
        Koha's settings. The PIN rule is the patron's category's (category_id), else the
        site's; a locked card is refused before Koha is asked."""
        today = today or dt.date.today()
        now = dt.datetime.now(dt.UTC)
        if pin is not None and (paused := self.pin_guard.paused(site, station, now)):
            return paused  # Koha is not asked: it may lock cards itself
        known = self._known_ref(card_id)
        state = self._pin_state(known) if known is not None else None
        if state is not None and pins.locked(state, now):  # no need to ask Koha
            return PatronCheckRes(ok=False, reason="pin_locked",
                                  pin_locked_until=state.locked_until)
        p = self._patron(card_id, counts=True)
        wanted = demand(self.pin_rules.rule(site, p.category_id if p else None), state, now,
                        pin_given=pin is not None)
        refused = refusal(wanted, state)
        if refused is not None:  # before unknown_patron: `always` says nothing of the card
            return refused
        if p is None:
            return PatronCheckRes(ok=False, reason="unknown_patron")
        ref = self._ref(card_id)
        if pin is not None:
            if not self._pin_right(p, card_id, pin):
                return self._wrong_pin(ref, now, site, station)
            self._right_pin(ref, now, site, station)
        reason = km.patron_reason(p, today)
        return PatronCheckRes(ok=reason is None, reason=reason, patron_ref=ref,
                              display_name=given_name(p.preferred_name or p.firstname
                                                      or p.surname),
                              loans=p.checkouts_count or 0)

    def _pin_right(self, p: km.KPatron, card: str, pin: str) -> bool:
        """Released Koha takes `identifier` (its userid, else its card number) and answers
        201 naming the patron it matched, which must be this one; before 23.11 it took only
        `userid`, answered 204, and refused `identifier` as out of its spec (a 400 with
        `errors`), so then `userid` from then on. A 400 "Validation failed" is a wrong PIN;
        401/403 are Koha refusing us (KohaAuthRefused), never the reader's PIN."""
        if not self._old_password_api:
            status, body = self.client.post(PASSWORD, expect=(201, 204, 400), json={
                "identifier": p.userid or card, "password": pin})
            if not (status == 400 and _out_of_spec(body)):
                return self._validated(status, body, p)
            log.info("Koha takes userid for password validation (before 23.11)")
            self._old_password_api = True
        status, body = self.client.post(PASSWORD, expect=(201, 204, 400), json={
            "userid": p.userid or card, "password": pin})
        return self._validated(status, body, p)

    @staticmethod
    def _validated(status: int, body: Any, p: km.KPatron) -> bool:
        if status == 204:
            return True
        if status != 201:
            return False
        who = km.parse(km.KValidated, body, "POST /auth/password/validation")
        if who.patron_id != p.patron_id:  # the identifier is another patron's userid
            log.warning("password validation matched another patron than the card's")
            return False
        return True

    # -- items and titles
    def _item(self, barcode: str) -> km.KItem | None:
        _, body = self.client.get_all("/items", params={"external_id": barcode})
        found = [i for i in km.parse_list(km.KItem, body, "GET /items")
                 if i.external_id == barcode]
        return found[0] if len(found) == 1 else None

    def item_info(self, item_id: str) -> ItemInfo | None:
        """The item record by its barcode, its title by SIP2 (None when SIP2 cannot say)."""
        try:
            item = self._item(item_id)
        except BackendUnavailable as exc:
            log.info("item look-up unanswered: %s", exc)
            return None
        if item is None:
            return ItemInfo(known=False)
        return self._info(item, self._title(item))

    def items_info(self, item_ids: Sequence[str]) -> dict[str, ItemInfo] | None:
        """A request per ITEMS_AT_ONCE barcodes (`q` takes a list, compared with =, which
        MySQL's collation still takes case-insensitively: checked again here). No titles."""
        wanted = list(dict.fromkeys(item_ids))
        out = {b: ItemInfo(known=False) for b in wanted}
        try:
            for start in range(0, len(wanted), ITEMS_AT_ONCE):
                chunk = wanted[start:start + ITEMS_AT_ONCE]
                _, body = self.client.get_all("/items", params={
                    "q": json.dumps({"external_id": chunk})})
                for it in km.parse_list(km.KItem, body, "GET /items"):
                    if it.external_id in out:
                        out[it.external_id] = self._info(it, None)
        except BackendUnavailable as exc:
            log.info("item look-ups unanswered: %s", exc)
            return None
        return out

    def _info(self, item: km.KItem, title: str | None) -> ItemInfo:
        home = item.home_library_id
        sites = [s for s, code in self.koha.branches if code == home]
        return ItemInfo(known=True, title=title, home_branch=home,
                        home_site=sites[0] if len(sites) == 1 else None,
                        not_for_loan=bool(item.not_for_loan_status
                                          or item.effective_not_for_loan_status),
                        on_loan=item.checked_out_date is not None)

    def _items(self, ids: Iterable[int]) -> dict[int, km.KItem]:
        """In one request, whatever their number."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        _, body = self.client.get_all("/items", params={"q": json.dumps({"item_id": wanted})})
        return {i.item_id: i for i in km.parse_list(km.KItem, body, "GET /items")
                if i.item_id in wanted}

    def _barcodes_of(self, biblios: Iterable[int]) -> dict[int, str]:
        """A barcode of each biblio (for its title), in one request."""
        wanted = sorted(set(biblios))
        if not wanted:
            return {}
        _, body = self.client.get_all("/items",
                                      params={"q": json.dumps({"biblio_id": wanted})})
        out: dict[int, str] = {}
        for it in km.parse_list(km.KItem, body, "GET /items"):
            if it.biblio_id in wanted and it.external_id:
                out.setdefault(it.biblio_id, it.external_id)
        return out

    def _known_title(self, biblio_id: int) -> str | None:
        with self._cache_lock:
            return self._titles.get(biblio_id)

    def _sip2_title(self, biblio_id: int, barcode: str) -> str | None:
        """By SIP2 item information, kept: a biblio's title does not change. None when
        SIP2 cannot say (a title is never worth a refusal or an empty account)."""
        if (known := self._known_title(biblio_id)) is not None:
            return known
        info = self._item_information(barcode, "a title from SIP2")
        if info is None:
            return None
        if info.title:
            with self._cache_lock:
                if len(self._titles) >= CACHE_MAX:
                    self._titles.clear()
                self._titles[biblio_id] = info.title
        return info.title

    def _title(self, item: km.KItem | None) -> str | None:
        if item is None or not item.external_id:
            return None
        return self._sip2_title(item.biblio_id, item.external_id)

    def _checkouts(self, patron_id: int) -> list[km.KCheckout]:
        _, body = self.client.get_all("/checkouts", params={"patron_id": patron_id})
        # Exact already; checked again because showing or renewing another reader's loan
        # is the one thing this list must never lead to.
        return [c for c in km.parse_list(km.KCheckout, body, "GET /checkouts")
                if c.patron_id in (None, patron_id)]

    def _loan_of(self, patron_id: int, item: km.KItem) -> km.KCheckout | None:
        mine = [c for c in self._checkouts(patron_id) if c.item_id == item.item_id]
        return mine[0] if mine else None

    def _holds(self, patron_id: int) -> list[km.KHold]:
        _, body = self.client.get_all(f"/patrons/{patron_id}/holds")
        return [h for h in km.parse_list(km.KHold, body, "GET /patrons/{id}/holds")
                if h.patron_id in (None, patron_id)]

    def _balance(self, patron_id: int) -> km.KBalance:
        _, body = self.client.get(f"/patrons/{patron_id}/account")
        return km.parse(km.KBalance, body, "GET /patrons/{id}/account")

    # -- the account
    def account(self, patron_ref: str, today: dt.date | None = None) -> AccountRes:
        """About 4 rounds of requests whatever the number of loans: the checkouts, holds and
        balance at once; then every allows_renewal, the items of all of them (one request)
        and the barcodes of biblio-level holds (one request) at once; then the titles not
        yet known, over SIP2, at once. Titles and renewal answers still missing when the
        budget runs out are left out; the loans, holds and fines never are."""
        card = self._card(patron_ref)
        if card is None:
            return AccountRes(ok=False, reason="unknown_patron")
        until = time.monotonic() + ACCOUNT_BUDGET_S
        today = today or dt.date.today()
        pid = self._patron_id(card)
        if pid is None:
            return AccountRes(ok=False, reason="unknown_patron")
        run = self._fetch.submit
        f_holds, f_balance = run(self._holds, pid), run(self._balance, pid)
        checkouts = self._checkouts(pid)
        f_allows = {c.checkout_id: run(self._allows, c.checkout_id) for c in checkouts}
        holds = f_holds.result()
        f_biblios = run(self._barcodes_of, {
            h.biblio_id for h in holds
            if km.hold_item(h) is None and self._known_title(h.biblio_id) is None})
        items = self._items([c.item_id for c in checkouts if c.item_id is not None]
                            + [i for h in holds if (i := km.hold_item(h)) is not None])
        biblios = {it.biblio_id for it in items.values()} | {h.biblio_id for h in holds}
        titles = {b: t for b in biblios if (t := self._known_title(b)) is not None}
        barcodes = {it.biblio_id: it.external_id for it in items.values() if it.external_id}
        barcodes.update({b: code for b, code in f_biblios.result().items()
                         if b not in barcodes})
        f_titles = {b: run(self._sip2_title, b, code) for b, code in barcodes.items()
                    if b not in titles}
        titles.update({b: t for b, t in _by(f_titles, until, "title").items() if t})
        allows = _by(f_allows, until, "allows_renewal")
        return km.account(checkouts=checkouts, holds=holds, balance=f_balance.result(),
                          allows={k: v for k, v in allows.items() if v is not None},
                          items=items, titles=titles, currency=self.koha.currency,
                          today=today)

    # -- transactions (apply, its chains and the settling first: Sip2Backend)
    def _over_sip2(self, tx: Tx) -> bool:
        """Returns always (mainline Koha has no check-in endpoint); loans when the site says
        so, and offline loans, which only SIP2 can date the day they happened ("no block")."""
        return isinstance(tx, TxReturn) or (isinstance(tx, TxLoan) and (
            self.koha.loans == "sip2" or tx.offline))

    def _settle(self, tx: Tx, card: str | None, now: dt.datetime) -> AckTx | None:
        """A loan: made if the item is among the patron's checkouts. A renewal: made if the
        checkout's renewals_count is above the one noted before it went out (no note: it
        never went out), so that it is never sent twice."""
        if self._over_sip2(tx):
            return super()._settle(tx, card, now)
        assert card is not None
        pid = self._patron_id(card)
        item = self._item(tx.item_id)
        if pid is None or item is None:
            return None
        mine = self._loan_of(pid, item)
        if isinstance(tx, TxLoan):
            if mine is None:
                return None
            log.info("loan %s was done before the answer was lost", tx.msg_id)
            return self._yes(tx, mine, item)
        note = self._noted(tx.msg_id) or ""
        if not note.startswith("renewals:"):
            return None
        _, checkout_id, count = note.split(":")
        if mine is None:  # returned since: nothing left to renew
            return self._no(tx, "not_on_loan", item)
        if mine.checkout_id != int(checkout_id) or (mine.renewals_count or 0) <= int(count):
            return None
        log.info("renewal %s was done before the answer was lost", tx.msg_id)
        return self._yes(tx, mine, item)

    def _send(self, tx: Tx, card: str | None, now: dt.datetime) -> AckTx:
        if self._over_sip2(tx):
            return super()._send(tx, card, now)
        assert card is not None
        pid = self._patron_id(card)
        if pid is None:
            return self._no(tx, "unknown_patron")
        item = self._item(tx.item_id)
        if item is None:
            return self._no(tx, "unknown_item")
        if isinstance(tx, TxLoan):
            return self._lend(tx, pid, item)
        return self._renew(tx, pid, item)

    def _branch(self, tx: Tx) -> dict[str, str]:
        return {"x-koha-library": self.koha.branch(tx.site)}

    def _lend(self, tx: TxLoan, pid: int, item: km.KItem) -> AckTx:
        if (why := km.item_reason(item)) is not None:
            return self._no(tx, why, item)
        for _ in range(2):  # a 412: what Koha asks changed since availability; asked again
            _, body = self.client.get("/checkouts/availability", headers=self._branch(tx),
                                      params={"patron_id": pid, "item_id": item.item_id})
            avail = km.parse(km.KAvailability, body, "GET /checkouts/availability")
            decision = km.loan_decision(avail, self.koha.confirms, tx.confirmed,
                                        currency=self.koha.currency)
            if decision.already:  # a repeat of a loan Koha has: the same answer
                mine = self._loan_of(pid, item)
                if mine is not None:
                    return self._yes(tx, mine, item)
                return self._no(tx, "refused", item)
            if not decision.go:
                log.info("loan %s not made: %s (Koha: %s)", tx.msg_id, decision.reason,
                         ",".join(sorted(km.codes(avail.blockers) | km.codes(avail.confirms))))
                return self._no(tx, decision.reason or "refused", item, decision.confirm)
            params = {"confirmation": avail.confirmation_token} if avail.confirms else None
            status, body = self.client.post(
                "/checkouts", expect=(201, 403, 409, 412), forbidden="Checkout not authorized",
                params=params, headers=self._branch(tx),
                json={"patron_id": pid, "item_id": item.item_id})
            if status == 201:
                return self._yes(tx, km.parse(km.KCheckout, body, "POST /checkouts"), item)
            log.info("loan %s refused by Koha: HTTP %s", tx.msg_id, status)
            if status == 403:
                return self._no(tx, km.forbidden_reason(body), item)
            if status == 409:
                reason = km.conflict_reason(body)
                if reason == "unknown_patron":
                    self._forget(pid)
                return self._no(tx, reason, item)
        return self._no(tx, "refused", item)

    def _renew(self, tx: Tx, pid: int, item: km.KItem) -> AckTx:
        mine = self._loan_of(pid, item)
        if mine is None:
            return self._no(tx, "not_on_loan", item)
        cid = mine.checkout_id
        allows = self._allows(cid, self._branch(tx))
        if allows is None:  # returned meanwhile
            return self._no(tx, "not_on_loan", item)
        if (why := km.renewal_reason(allows)) is not None:
            log.info("renewal %s refused: %s", tx.msg_id, allows.error)
            return self._no(tx, why, item)
        count = mine.renewals_count if mine.renewals_count is not None else \
            allows.current_renewals or 0
        self._note(tx.msg_id, f"renewals:{cid}:{count}")  # committed before it goes out
        status, body = self.client.post(f"/checkouts/{cid}/renewal", expect=(201, 403, 404),
                                        forbidden="Renewal not authorized",
                                        headers=self._branch(tx))
        if status == 201:
            return self._yes(tx, km.parse(km.KCheckout, body, "POST /checkouts/{id}/renewal"),
                             item)
        log.info("renewal %s refused by Koha: HTTP %s", tx.msg_id, status)
        return self._no(tx, km.renewal_refusal(body) if status == 403 else "not_on_loan", item)

    def _allows(self, checkout_id: int,
                headers: dict[str, str] | None = None) -> km.KAllowsRenewal | None:
        """None when Koha no longer has the checkout (404)."""
        status, body = self.client.get(f"/checkouts/{checkout_id}/allows_renewal",
                                       expect=(200, 404), headers=headers)
        return None if status == 404 else km.parse(km.KAllowsRenewal, body, "allows_renewal")

    def _yes(self, tx: Tx, c: km.KCheckout, item: km.KItem) -> AckTx:
        return AckTx(msg_id=tx.msg_id, ok=True, item_id=tx.item_id, due=c.due_date.date(),
                     title=self._title(item), desensitize=True)

    def _no(self, tx: Tx, reason: Reason, item: km.KItem | None = None,
            confirm: LoanConfirm | None = None) -> AckTx:
        return AckTx(msg_id=tx.msg_id, ok=False, reason=reason, item_id=tx.item_id,
                     title=self._title(item), confirm=confirm)


def _out_of_spec(body: Any) -> bool:
    """Koha's OpenAPI validator's 400 (a body its spec does not take), not the
    controller's "Validation failed"."""
    return isinstance(body, dict) and "errors" in body and "error" not in body


def _by(futures: Mapping[int, Future[T]], until: float, what: str) -> dict[int, T]:
    """The results that came by `until`; the others are cancelled (or left to finish)."""
    done, late = wait(futures.values(), timeout=max(0.0, until - time.monotonic()))
    for f in late:
        f.cancel()
    out: dict[int, T] = {}
    failed = 0
    for key, f in futures.items():
        if f not in done:
            continue
        try:
            out[key] = f.result()
        except (BackendUnavailable, Sip2Error) as exc:
            failed += 1
            log.info("account: a %s lookup failed (%s)", what, exc)
    if late or failed:
        log.info("account without %d of %d %s answers (late or failed)",
                 len(late) + failed, len(futures), what)
    return out

