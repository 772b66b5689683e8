"""Koha: its REST API for what SIP2 cannot say, SIP2 for what the REST API cannot do.

- REST: the patron check (with Koha's own PIN check), the account (due dates, holds with
  their queue position, each fine's amount), renewals (allows_renewal says why not) and,
  unless the site says `loans=sip2`, loans (availability, then the checkout with its
  confirmation token).
- SIP2: returns (mainline Koha has no check-in endpoint) and titles (the REST subset we
  rely on has no biblio endpoint; SIP2 item information names the title).

Exactly once is the ledger's (central/ledger.py), as for SIP2; both go through the SIP2
backend's chains, so one station's transactions go out in seq order, a chain stopping at the
first without an answer. A REST loan whose outcome is unknown (a timeout after the POST) is
settled the same way as over SIP2: by asking whether the item is among the patron's
checkouts.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Engine

from selfcheck.central import pin as pins
from selfcheck.central.backend import Tx
from selfcheck.central.koha import mapping as km
from selfcheck.central.koha.client import KohaClient, KohaConfig
from selfcheck.central.sip2 import messages as m
from selfcheck.central.sip2.backend import Sip2Backend
from selfcheck.central.sip2.client import Sip2Config, Sip2Pool
from selfcheck.central.sip2.codec import Sip2Error
from selfcheck.mqtt.messages import AccountRes, AckTx, PatronCheckRes, TxLoan, TxReturn

log = logging.getLogger(__name__)
CACHE_MAX = 200_000


class KohaBackend(Sip2Backend):
    def __init__(self, koha: KohaConfig, circulation: Sip2Config, engine: Engine, *,
                 lease_s: float | None = None, pool: Sip2Pool | None = None,
                 client: KohaClient | None = None,
                 pin_policy: pins.PinPolicy | None = None) -> None:
        if lease_s is None:  # longer than the worst a transaction can take over either
            # protocol: up to four REST requests (GETs tried twice) and two SIP2 ones
            lease_s = max(6 * circulation.timeout_s, 8 * koha.timeout_s) + 10
        super().__init__(circulation, engine, lease_s=lease_s, pool=pool,
                         pin_policy=pin_policy, currency=koha.currency)
        self.koha = koha
        self.client = client or KohaClient(koha)
        # Stable in Koha, and looked up on every loan otherwise: card -> patron_id (in memory
        # only), barcode -> title; emptied when they reach CACHE_MAX entries.
        self._patron_ids: dict[str, int] = {}
        self._titles: dict[str, str] = {}
        self._cache_lock = threading.Lock()

    def close(self) -> None:
        super().close()
        self.client.close()

    # -- patrons
    def _patron(self, card: str, *, counts: bool = False) -> km.KPatron | None:
        headers = {"x-koha-embed": "checkouts+count"} if counts else None
        _, body = self.client.get("/patrons", params={"cardnumber": card, "_match": "exact"},
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

    def check_patron(self, card_id: str, today: dt.date | None = None, *,
                     pin: str | None = None) -> PatronCheckRes:
        """Koha says who the patron is and checks the PIN (its own password rules); the
        wrong ones are counted here too, as with SIP2, so the lockout does not depend on
        Koha's settings."""
        today = today or dt.date.today()
        now = dt.datetime.now(dt.UTC)
        known = self._known_ref(card_id) if pin is not None else None
        if known is not None:
            state = self._pin_state(known)
            if pins.locked(state, now):
                return PatronCheckRes(ok=False, reason="pin_locked",
                                      pin_locked_until=state.locked_until)
        p = self._patron(card_id, counts=True)
        if p is None:
            return PatronCheckRes(ok=False, reason="unknown_patron")
        ref = self._ref(card_id)
        if pin is not None:
            status, _ = self.client.post("/auth/password/validation", expect=(204, 400, 401),
                                         json={"userid": p.userid or card_id, "password": pin})
            if status != 204:
                return self._wrong_pin(ref, now)
            self._set_pin_state(ref, pins.PinState(0, None))
        reason = km.patron_reason(p, today)
        return PatronCheckRes(ok=reason is None, reason=reason, patron_ref=ref,
                              display_name=km.display_name(p), loans=p.checkouts_count or 0)

    # -- items
    def _item(self, barcode: str) -> km.KItem | None:
        _, body = self.client.get("/items", params={"external_id": barcode, "_match": "exact"})
        found = [i for i in km.parse_list(km.KItem, body, "GET /items")
                 if i.external_id == barcode]
        return found[0] if len(found) == 1 else None

    def _items(self, ids: Iterable[int]) -> dict[int, km.KItem]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        _, body = self.client.get("/items", params={
            "q": json.dumps({"item_id": wanted}), "_per_page": str(len(wanted))})
        return {i.item_id: i for i in km.parse_list(km.KItem, body, "GET /items")}

    def _title(self, barcode: str) -> str | None:
        """By SIP2 item information, cached: a title does not change under a barcode."""
        with self._cache_lock:
            if barcode in self._titles:
                return self._titles[barcode]
        try:
            info = m.item(self.pool.call(m.item_information(
                self.cfg.institution, barcode, dt.datetime.now(dt.UTC),
                self.cfg.terminal_password), idempotent=True))
        except Sip2Error as exc:
            log.info("no title from SIP2 (%s)", exc)
            return None
        if info.title:
            with self._cache_lock:
                if len(self._titles) >= CACHE_MAX:
                    self._titles.clear()
                self._titles[barcode] = info.title
        return info.title

    def _checkouts(self, patron_id: int) -> list[km.KCheckout]:
        _, body = self.client.get("/checkouts", params={"patron_id": patron_id,
                                                        "_per_page": "-1"})
        return km.parse_list(km.KCheckout, body, "GET /checkouts")

    # -- the account
    def account(self, patron_ref: str, today: dt.date | None = None) -> AccountRes:
        card = self._card(patron_ref)
        if card is None:
            return AccountRes(ok=False, reason="unknown_patron")
        today = today or dt.date.today()
        pid = self._patron_id(card)
        if pid is None:
            return AccountRes(ok=False, reason="unknown_patron")
        checkouts = self._checkouts(pid)
        allows = {c.checkout_id: a for c in checkouts
                  if (a := self._allows(c.checkout_id)) is not None}
        _, body = self.client.get(f"/patrons/{pid}/holds", params={"_per_page": "-1"})
        holds = km.parse_list(km.KHold, body, "GET /patrons/{id}/holds")
        _, body = self.client.get(f"/patrons/{pid}/account")
        balance = km.parse(km.KBalance, body, "GET /patrons/{id}/account")
        hold_items = [i for h in holds if (i := km.hold_item(h)) is not None]
        items = self._items([c.item_id for c in checkouts if c.item_id is not None]
                            + hold_items)
        # Biblio-level holds name no item: any item of the biblio gives its title.
        missing = {h.biblio_id for h in holds if km.hold_item(h) is None}
        barcodes = {i: it.external_id for i, it in items.items() if it.external_id}
        titles = {i: t for i, b in barcodes.items() if (t := self._title(b))}
        return km.account(checkouts=checkouts, allows=allows, holds=holds, balance=balance,
                          barcodes=barcodes, titles=titles,
                          biblio_titles=self._biblio_titles(missing),
                          currency=self.koha.currency, today=today)

    def _biblio_titles(self, biblios: set[int]) -> Mapping[int, str]:
        out: dict[int, str] = {}
        for b in sorted(biblios):
            _, body = self.client.get("/items", params={"q": json.dumps({"biblio_id": b}),
                                                        "_per_page": "1"})
            found = km.parse_list(km.KItem, body, "GET /items")
            if found and found[0].external_id and (t := self._title(found[0].external_id)):
                out[b] = t
        return out

    # -- transactions (apply and its chains: Sip2Backend)
    def _send(self, tx: Tx, card: str | None, now: dt.datetime, *,
              unknown_outcome: bool) -> AckTx:
        if isinstance(tx, TxReturn) or (isinstance(tx, TxLoan) and self.koha.loans == "sip2"):
            return super()._send(tx, card, now, unknown_outcome=unknown_outcome)
        assert card is not None
        pid = self._patron_id(card)
        if pid is None:
            return self._no(tx, "unknown_patron")
        item = self._item(tx.item_id)
        if item is None:
            return self._no(tx, "unknown_item")
        if unknown_outcome:
            self.counters.reconciled += 1
            if isinstance(tx, TxLoan):  # a renewal cannot be told apart: sent again
                mine = [c for c in self._checkouts(pid) if c.item_id == item.item_id]
                if mine:
                    log.info("loan %s was done before the answer was lost", tx.msg_id)
                    return self._yes(tx, mine[0])
        self.counters.sent += 1
        if isinstance(tx, TxLoan):
            return self._lend(tx, pid, item)
        return self._renew(tx, pid, item)

    def _lend(self, tx: Tx, pid: int, item: km.KItem) -> AckTx:
        if (why := km.item_reason(item)) is not None:
            return self._no(tx, why)
        _, body = self.client.get("/checkouts/availability",
                                  params={"patron_id": pid, "item_id": item.item_id})
        avail = km.parse(km.KAvailability, body, "GET /checkouts/availability")
        decision = km.loan_decision(avail, self.koha.confirms)
        if decision == km.ALREADY_YOURS:  # a repeat of a loan Koha has: the same answer
            mine = [c for c in self._checkouts(pid) if c.item_id == item.item_id]
            if mine:
                return self._yes(tx, mine[0])
            decision = "refused"
        if decision is not None:
            log.info("loan %s refused: %s", tx.msg_id, ",".join(sorted(
                {*avail.blockers, *avail.confirms})))
            return self._no(tx, decision)  # type: ignore[arg-type]
        params = {"confirmation": avail.confirmation_token} if avail.confirms else None
        payload: dict[str, Any] = {"patron_id": pid, "item_id": item.item_id}
        if self.koha.library_id:
            payload["library_id"] = self.koha.library_id
        status, body = self.client.post("/checkouts", expect=(201, 403, 409, 412),
                                        params=params, json=payload)
        if status == 201:
            return self._yes(tx, km.parse(km.KCheckout, body, "POST /checkouts"))
        reason: km.Reason = {403: km.forbidden_reason(body), 409: "on_loan_to_other",
                             412: "refused"}[status]
        log.info("loan %s refused by Koha: HTTP %s", tx.msg_id, status)
        return self._no(tx, reason)

    def _renew(self, tx: Tx, pid: int, item: km.KItem) -> AckTx:
        mine = [c for c in self._checkouts(pid) if c.item_id == item.item_id]
        if not mine:
            return self._no(tx, "not_on_loan")
        cid = mine[0].checkout_id
        allows = self._allows(cid)
        if allows is None:  # returned meanwhile
            return self._no(tx, "not_on_loan")
        if (why := km.renewal_reason(allows)) is not None:
            log.info("renewal %s refused: %s", tx.msg_id, allows.error)
            return self._no(tx, why)
        status, body = self.client.post(f"/checkouts/{cid}/renewal", expect=(201, 403, 404))
        if status != 201:
            return self._no(tx, "refused" if status == 403 else "not_on_loan")
        return self._yes(tx, km.parse(km.KCheckout, body, "POST /checkouts/{id}/renewal"))

    def _allows(self, checkout_id: int) -> km.KAllowsRenewal | None:
        """None when Koha no longer has the checkout (404)."""
        status, body = self.client.get(f"/checkouts/{checkout_id}/allows_renewal",
                                       expect=(200, 404))
        return None if status == 404 else km.parse(km.KAllowsRenewal, body, "allows_renewal")

    def _yes(self, tx: Tx, c: km.KCheckout) -> AckTx:
        return AckTx(msg_id=tx.msg_id, ok=True, item_id=tx.item_id, due=c.due_date.date(),
                     title=self._title(tx.item_id), desensitize=True)

    def _no(self, tx: Tx, reason: km.Reason) -> AckTx:
        return AckTx(msg_id=tx.msg_id, ok=False, reason=reason, item_id=tx.item_id,
                     title=self._title(tx.item_id))

