"""A Koha stand-in for the tests and the benchmark: Koha's REST API over real HTTP on
127.0.0.1, every request and every answer checked against Koha's specification
(tests/koha_spec.py). A request that does not match gets Koha's 400 and is recorded in
`violations`; an answer of ours that does not match is recorded too and sent as a 500.

It behaves as Koha's code does, not as a reading of the specification would (the file each
habit comes from in Koha-Community/Koha):
- a filtered list matches `LIKE '%value%'` (case-insensitive, as MySQL's collation) unless
  `_match=exact`, and pages by 20 (RESTdefaultPageSize) unless `_per_page=-1`, with
  X-Total-Count (Koha/REST/Plugin/Query.pm, Objects.pm);
- Basic authentication with a wrong password, a missing permission and an `x-koha-library`
  the API user may not act for are 403, a bad token 401 (Koha/REST/V1/Auth.pm); a loan is
  recorded at the branch of `x-koha-library`, else the API user's own (`_set_userenv`);
- password validation takes `identifier` (a userid, else a card number) and answers 201 with
  the patron (Auth/Password.pm); `KohaExtra(password_204=True)` is a release before 23.11;
- a confirmation token is bound to the API user, the item and the confirmation codes, not to
  the patron (Checkouts.pm's JWT); POST /checkouts answers 409 for an item or patron that
  does not exist, and lends again (a renewal) an item already on loan to the patron;
- a Fault(after=True) does the work, then fails: Koha made the loan, the client cannot know.

It shares its library with the SIP2 test server (tests/sip2_server.Library): a loan made
over REST is seen by SIP2 and a SIP2 check-in ends the REST checkout, as in one Koha. What
SIP2 does not model (internal ids, holds with their queue, checkout ids, renewal counts,
expiry dates, confirmation tokens) lives here.

`with koha_running(lib, KohaExtra(...)) as koha: ...` serves from threads on a free port.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from selfcheck.lab.standins.koha_spec import Request, Spec, Violation
from selfcheck.lab.standins.sip2_server import LOAN_DAYS, Library

LIBRARY_ID = "TVTINH"  # the API user's own branch
_KEY = secrets.token_bytes(16)
PAGE_SIZE = 20  # Koha's RESTdefaultPageSize
RESERVED = {"_match", "_order_by", "_page", "_per_page", "q", "checked_in"}


@dataclass
class Hold:
    card: str
    title: str  # the biblio, by its title (one biblio per title in the stand-in)
    item: str | None = None  # barcode: an item-level hold, or the one waiting on the shelf
    waiting: bool = False  # status W: on the hold shelf
    expires: dt.date | None = None
    pickup: str = LIBRARY_ID
    hold_id: int = 0


@dataclass
class Fault:
    """Applied to the next request to `route` (a spec template, None: any): `status` (an
    error answer instead of doing it), or `hold_s` (wait that long before answering),
    `after` (do the work first, then fail or hold: the outcome is unknown to the client),
    `garbage` (200 with a body that is not JSON)."""

    route: str | None = None
    method: str | None = None
    status: int | None = None
    hold_s: float = 0.0
    after: bool = False
    garbage: bool = False
    body: Any = None  # with `status`: the answer (else Koha's internal server error)
    times: int = 1


@dataclass
class KohaExtra:
    user: str = "sc-api"
    password: str = "mật-khẩu-api"
    client_id: str = "selfcheck"
    client_secret: str = "s3cret-oauth"
    token_lifetime_s: int = 3600
    delay_s: float = 0.0  # every answer waits this long
    expired: set[str] = field(default_factory=set)  # cards past their expiry date
    lost_cards: set[str] = field(default_factory=set)
    # card -> userid (else the card; None: the patron has none)
    userids: dict[str, str | None] = field(default_factory=dict)
    patron_ids: dict[str, int] = field(default_factory=dict)  # card -> a chosen patron_id
    not_for_loan: set[str] = field(default_factory=set)  # barcodes
    previously: set[tuple[str, str]] = field(default_factory=set)  # (card, barcode): PREVISSUE
    staff_confirm: set[str] = field(default_factory=set)  # barcodes: AGE_RESTRICTION
    rental: dict[str, str] = field(default_factory=dict)  # barcode -> RENTALCHARGE, as Koha
    materials: dict[str, str] = field(default_factory=dict)  # barcode -> ADDITIONAL_MATERIALS
    renewal_errors: dict[str, str] = field(default_factory=dict)  # barcode -> CanBookBeRenewed
    holds: list[Hold] = field(default_factory=list)
    max_renewals: int = 2
    libraries: set[str] = field(default_factory=lambda: {LIBRARY_ID, "TVHUYEN"})
    denied: set[str] = field(default_factory=set)  # "METHOD /template" the API user may not
    password_204: bool = False  # password validation as before Koha 23.11


class KohaStandIn:
    def __init__(self, lib: Library, extra: KohaExtra | None = None, *,
                 tls: tuple[Path, Path] | None = None) -> None:
        """`tls`: (certificate, key) files to serve HTTPS with."""
        self.lib = lib
        self.x = extra or KohaExtra()
        self.spec = Spec.load()
        self.violations: list[str] = []
        self.requests: list[tuple[str, str]] = []  # (method, template) of each valid request
        self.queries: list[tuple[str, dict[str, Any]]] = []  # (template, query) of each GET
        self.faults: list[Fault] = []
        self.tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.connections: set[socket.socket] = set()
        self._lock = threading.RLock()
        self._ids: dict[str, int] = {}
        self._keys: dict[tuple[str, int], str] = {}  # (kind, id) -> key
        self._checkouts: dict[str, int] = {}  # barcode -> current checkout id
        self._renewals: dict[int, int] = {}
        self._out_since: dict[int, dt.datetime] = {}
        self._branch: dict[int, str] = {}  # checkout id -> where it was lent
        self._next = 100
        for card, number in self.x.patron_ids.items():
            self._ids[f"patron:{card}"] = number
            self._keys[("patron", number)] = card
        self.api_user_id = self._id("patron", "\x00api")  # the API user is a patron too
        for n, h in enumerate(self.x.holds, 1):
            h.hold_id = h.hold_id or n
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.tls = tls is not None
        if tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(*tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="koha-standin")

    @property
    def url(self) -> str:
        return f"koha+{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> KohaStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Down as a stopped Koha is: kept-alive connections are cut too."""
        self.server.shutdown()
        self.server.server_close()
        with self._lock:
            for conn in list(self.connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def count(self, method: str, template: str) -> int:
        return self.requests.count((method, template))

    def branch_of(self, barcode: str) -> str | None:
        """The branch Koha recorded the item's current loan at."""
        cid = self.checkout_id(barcode)
        return None if cid is None else self._branch.get(cid, LIBRARY_ID)

    # -- ids: stable numbers for cards, barcodes and titles
    def _id(self, kind: str, key: str) -> int:
        with self._lock:
            if f"{kind}:{key}" not in self._ids:
                self._next += 1
                while (kind, self._next) in self._keys:  # a number chosen for another
                    self._next += 1
                self._ids[f"{kind}:{key}"] = self._next
                self._keys[(kind, self._next)] = key
            return self._ids[f"{kind}:{key}"]

    def _by_id(self, kind: str, number: Any) -> str | None:
        with self._lock:
            return self._keys.get((kind, number)) if isinstance(number, int) else None

    def patron_id(self, card: str) -> int:
        return self._id("patron", card)

    def item_id(self, barcode: str) -> int:
        return self._id("item", barcode)

    def checkout_id(self, barcode: str) -> int | None:
        """The current checkout of an item, made or ended over either protocol."""
        with self._lock:
            it = self.lib.items.get(barcode)
            if it is None or it.charged_to is None:
                self._checkouts.pop(barcode, None)
                return None
            if barcode not in self._checkouts:
                self._next += 1
                self._checkouts[barcode] = self._next
                self._out_since[self._next] = dt.datetime.now(dt.UTC)
            return self._checkouts[barcode]

    def _userid(self, card: str) -> str | None:
        return self.x.userids.get(card, card)

    # -- the representations (only what the specification declares)
    def _patron(self, card: str, embed: list[str]) -> dict[str, Any]:
        p = self.lib.patrons[card]
        surname, _, firstname = p.name.partition(" ")
        expiry = dt.date.today() + dt.timedelta(days=-1 if card in self.x.expired else 365)
        out: dict[str, Any] = {
            "patron_id": self.patron_id(card), "cardnumber": card,
            "userid": self._userid(card), "surname": surname,
            "firstname": firstname or None, "library_id": LIBRARY_ID, "category_id": "BD",
            "expiry_date": expiry.isoformat(), "restricted": p.blocked,
            "patron_card_lost": card in self.x.lost_cards, "lang": "vi-VN"}
        if "checkouts+count" in embed:
            out["checkouts_count"] = len(self.lib.charged(card))
        return out

    def _item(self, barcode: str) -> dict[str, Any]:
        it = self.lib.items[barcode]
        nfl = 1 if barcode in self.x.not_for_loan else 0
        return {"item_id": self.item_id(barcode), "biblio_id": self._id("biblio", it.title),
                "external_id": barcode, "not_for_loan_status": nfl,
                "effective_not_for_loan_status": nfl, "damaged_status": int(it.damaged),
                "lost_status": int(it.lost),
                "withdrawn": 0, "home_library_id": it.home, "holding_library_id": it.home,
                "callnumber": None, "holds_count": len(self._holds_on(barcode)),
                "checked_out_date": None if it.charged_to is None else
                dt.date.today().isoformat()}

    def _checkout(self, barcode: str) -> dict[str, Any]:
        it = self.lib.items[barcode]
        cid = self.checkout_id(barcode)
        assert cid is not None and it.charged_to is not None and it.due is not None
        due = dt.datetime.combine(it.due, dt.time(23, 59), dt.timezone(dt.timedelta(hours=7)))
        return {"checkout_id": cid, "patron_id": self.patron_id(it.charged_to),
                "item_id": self.item_id(barcode), "due_date": due.isoformat(),
                "library_id": self._branch.get(cid, LIBRARY_ID), "issuer_id": None,
                "checkout_date": self._out_since[cid].isoformat(),
                "renewals_count": self._renewals.get(cid, 0), "unseen_renewals": 0,
                "auto_renew": False, "onsite_checkout": False, "note": None,
                "timestamp": dt.datetime.now(dt.UTC).isoformat()}

    def _holds_on(self, barcode: str) -> list[Hold]:
        title = self.lib.items[barcode].title
        return [h for h in self.x.holds if (h.item or barcode) == barcode and h.title == title]

    def _hold(self, h: Hold) -> dict[str, Any]:
        queue = [q for q in self.x.holds if q.title == h.title and not q.waiting]
        return {"hold_id": h.hold_id, "patron_id": self.patron_id(h.card),
                "hold_date": dt.date.today().isoformat(),
                "biblio_id": self._id("biblio", h.title), "pickup_library_id": h.pickup,
                "priority": 0 if h.waiting else 1 + queue.index(h),
                "status": "W" if h.waiting else None,
                "item_id": str(self.item_id(h.item)) if h.item else None,
                "expiration_date": h.expires.isoformat() if h.expires else None,
                "waiting_date": dt.date.today().isoformat() if h.waiting else None,
                "lowest_priority": False, "suspended": False, "non_priority": False,
                "item_level": h.item is not None and not h.waiting,
                "timestamp": dt.datetime.now(dt.UTC).isoformat()}

    # -- circulation rules (CanBookBeIssued, CanBookBeRenewed, cut short)
    def availability(self, card: str, barcode: str) -> dict[str, Any]:
        p, it = self.lib.patrons[card], self.lib.items[barcode]
        blockers: dict[str, Any] = {}
        confirms: dict[str, Any] = {}
        if p.blocked:
            blockers["DEBARRED"] = "9999-12-31"
        if card in self.x.expired:
            blockers["EXPIRED"] = 1
        if card in self.x.lost_cards:
            blockers["CARD_LOST"] = 1
        if barcode in self.x.not_for_loan:
            blockers["NOT_FOR_LOAN"] = 1
        if it.charged_to is None and len(self.lib.charged(card)) >= p.limit:
            blockers["TOO_MANY"] = len(self.lib.charged(card))
        if it.charged_to == card:
            confirms["RENEW_ISSUE"] = 1
        elif it.charged_to is not None:
            confirms["ISSUED_TO_ANOTHER"] = 1
        others = [h for h in self._holds_on(barcode) if h.card != card]
        if others:
            confirms["RESERVE_WAITING" if others[0].waiting else "RESERVED"] = 1
        if (card, barcode) in self.x.previously:
            confirms["PREVISSUE"] = 1
        if barcode in self.x.staff_confirm:
            confirms["AGE_RESTRICTION"] = 1
        if barcode in self.x.materials:
            confirms["ADDITIONAL_MATERIALS"] = self.x.materials[barcode]
        if barcode in self.x.rental:
            confirms["RENTALCHARGE"] = self.x.rental[barcode]
        if "RENEW_ISSUE" in confirms and not self.allows_renewal(barcode)["allows_renewal"]:
            del confirms["RENEW_ISSUE"]
            blockers["NO_MORE_RENEWALS"] = 1
        if "TOO_MANY" in blockers:  # with its details, in lower case, as Koha adds them
            blockers.update(current_loan_count=len(self.lib.charged(card)),
                            max_loans_allowed=p.limit)
        return {"blockers": blockers, "confirms": confirms, "warnings": {},
                "confirmation_token": self._token(barcode, confirms)}

    def _token(self, barcode: str, confirms: dict[str, Any]) -> str:
        """Koha's JWT signs "API user id:item id:sorted confirmation keys": neither the
        patron nor the time (Checkouts.pm get_availability)."""
        text = f"{self.api_user_id}:{self.item_id(barcode)}:{':'.join(sorted(confirms))}"
        return hmac.new(_KEY, text.encode(), hashlib.sha256).hexdigest()

    def allows_renewal(self, barcode: str) -> dict[str, Any]:
        """CanBookBeRenewed, cut short: the error a test chose for the item first."""
        cid = self.checkout_id(barcode)
        assert cid is not None
        it = self.lib.items[barcode]
        done = self._renewals.get(cid, 0)
        error = self.x.renewal_errors.get(barcode)
        if error is not None:
            pass
        elif done >= self.x.max_renewals:
            error = "too_many"
        elif it.charged_to and self.lib.patrons[it.charged_to].blocked:
            error = "restriction"
        elif [h for h in self._holds_on(barcode) if h.card != it.charged_to]:
            error = "on_reserve"
        return {"allows_renewal": error is None, "max_renewals": self.x.max_renewals,
                "current_renewals": done, "unseen_renewals": 0, "error": error}

    def _renew(self, barcode: str) -> None:
        """AddRenewal."""
        cid = self.checkout_id(barcode)
        assert cid is not None
        self.lib.log.append(("29", barcode))
        self._renewals[cid] = self._renewals.get(cid, 0) + 1
        self.lib.items[barcode].due = dt.date.today() + dt.timedelta(days=2 * LOAN_DAYS)

    # -- lists: loose matching and paging, as Koha's Objects.pm
    def _listed(self, keys: list[Any], q: dict[str, Any],
                fields: dict[str, Any]) -> tuple[list[Any], int]:
        """The keys whose fields match the query's filters (each `fields[name](key)` gives
        the field's value), then the page: (page, total)."""
        match = q.get("_match", "contains")
        for name, wanted in q.items():
            if name in RESERVED:
                continue
            keys = [k for k in keys if _like(fields[name](k), wanted, match)]
        for text in q.get("q", []):
            for name, wanted in json.loads(text).items():
                # `=` (a list: IN), which MySQL's collation takes case-insensitively
                accepted = {_folded(w) for w in (wanted if isinstance(wanted, list)
                                                 else [wanted])}
                keys = [k for k in keys if _folded(fields[name](k)) in accepted]
        total, per, page = len(keys), q.get("_per_page", PAGE_SIZE), q.get("_page", 1)
        if per != -1:
            keys = keys[(page - 1) * per:page * per]
        return keys, total

    # -- the operations: (status, body); a Page body carries X-Total-Count, an Unchecked one
    # is sent without checking it against the specification
    def handle(self, req: Request, headers: dict[str, str]) -> tuple[int, Any]:
        name = f"{req.op.method} {req.op.template}"
        q, body, pp = req.query, req.body, req.path_params
        embed = [e for e in headers.get("x-koha-embed", "").split(",") if e]
        if name == "POST /oauth/token":
            if (body.get("grant_type"), body.get("client_id"), body.get("client_secret")) != \
                    ("client_credentials", self.x.client_id, self.x.client_secret):
                return 403, {"error": "unauthorized_client"}
            token = secrets.token_urlsafe(24)
            self.tokens[token] = time.monotonic() + self.x.token_lifetime_s
            return 200, {"access_token": token, "token_type": "Bearer",
                         "expires_in": self.x.token_lifetime_s}
        if q.get("_per_page") == 0:  # Auth.pm validate_query_parameters
            return 400, Unchecked({"errors": [{"path": "/query/_per_page",
                                               "message": "Invalid value: 0"}], "status": 400})
        branch = headers.get("x-koha-library") or LIBRARY_ID
        with self._lock, self.lib.lock:
            return self._circulation(name, q, body, pp, embed, branch)

    def _circulation(self, name: str, q: dict[str, Any], body: Any, pp: dict[str, Any],
                     embed: list[str], branch: str) -> tuple[int, Any]:
        lib = self.lib
        if name == "POST /auth/password/validation":
            return self._validate(body)
        if name == "GET /patrons":
            patron_fields: dict[str, Any] = {
                "cardnumber": lambda c: c, "patron_id": self.patron_id,
                "userid": self._userid}
            fields = {n: patron_fields.get(n, lambda c, n=n: self._patron(c, [])[n])
                      for n in q}
            cards, total = self._listed(list(lib.patrons), q, fields)
            return 200, Page([self._patron(c, embed) for c in cards], total)
        if name == "GET /items":
            item_fields: dict[str, Any] = {
                "external_id": lambda b: b, "item_id": self.item_id,
                "biblio_id": lambda b: self._id("biblio", lib.items[b].title)}
            found, total = self._listed(list(lib.items), q, item_fields)
            return 200, Page([self._item(b) for b in found], total)
        if name == "GET /checkouts":
            out = [b for b, it in lib.items.items() if it.charged_to is not None]
            found, total = self._listed(out, q, {
                "patron_id": lambda b: self.patron_id(lib.items[b].charged_to or "")})
            return 200, Page([self._checkout(b) for b in found], total)
        if name == "GET /checkouts/availability":
            card = self._by_id("patron", q.get("patron_id", -1))
            barcode = self._by_id("item", q.get("item_id", -1))
            if card not in lib.patrons or barcode not in lib.items:
                return 200, {"blockers": {"UNKNOWN_BARCODE": 1}, "confirms": {},
                             "warnings": {}, "confirmation_token": None}
            return 200, self.availability(card, barcode)
        if name == "POST /checkouts":
            return self._add_checkout(q, body, branch)
        if name in ("GET /checkouts/{checkout_id}/allows_renewal",
                    "POST /checkouts/{checkout_id}/renewal"):
            barcode = next((b for b, c in self._checkouts.items()
                            if c == pp["checkout_id"] and self.checkout_id(b) == c), None)
            if barcode is None:
                return 404, {"error": "Checkout doesn't exist"}
            allows = self.allows_renewal(barcode)
            if name.startswith("GET"):
                return 200, allows
            if not allows["allows_renewal"]:
                return 403, {"error": f"Renewal not authorized ({allows['error']})"}
            self._renew(barcode)
            return 201, self._checkout(barcode)
        if name == "GET /patrons/{patron_id}/holds":
            card = self._by_id("patron", pp["patron_id"])
            if card not in lib.patrons:
                return 404, {"error": "Patron not found"}
            mine = [h for h in self.x.holds if h.card == card]
            found, total = self._listed(mine, q, {})
            return 200, Page([self._hold(h) for h in found], total)
        if name == "GET /patrons/{patron_id}/account":
            card = self._by_id("patron", pp["patron_id"])
            if card not in lib.patrons:
                return 404, {"error": "Patron not found"}
            lines = [{"account_line_id": n, "amount": float(amount),
                      "amount_outstanding": float(amount), "description": text,
                      "debit_type": "OVERDUE", "patron_id": pp["patron_id"],
                      "status": "UNRETURNED", "date": dt.datetime.now(dt.UTC).isoformat()}
                     for n, (text, amount) in enumerate(lib.patrons[card].fines, 1)]
            total_due = float(sum(a for _, a in lib.patrons[card].fines))
            return 200, {"balance": total_due, "outstanding_credits": {"total": 0, "lines": []},
                         "outstanding_debits": {"total": total_due, "lines": lines}}
        return 404, {"error": f"{name}: not served by the stand-in"}

    def _validate(self, body: dict[str, Any]) -> tuple[int, Any]:
        """Koha/REST/V1/Auth/Password.pm validate, and C4::Auth::checkpw's lookup: the
        identifier as a userid first, then as a card number."""
        lib = self.lib
        if self.x.password_204:  # before 23.11: userid required, identifier unknown, 204
            if "identifier" in body or "userid" not in body:
                return 400, Unchecked({"errors": [{"message": "Properties not allowed: "
                                                   "identifier.", "path": "/body"}],
                                       "status": 400})
            card = next((c for c in lib.patrons if self._userid(c) == body["userid"]), None)
            right = card is not None and lib.patrons[card].pin == body["password"]
            return (204, Unchecked(None)) if right else (400, {"error": "Validation failed"})
        identifier, userid = body.get("identifier"), body.get("userid")
        if identifier is None and userid is None:
            return 400, {"error": "Validation failed"}
        if identifier is not None and userid is not None:
            return 400, {"error": "Bad request. Only one identifier attribute can be passed."}
        by_userid = {self._userid(c): c for c in lib.patrons if self._userid(c)}
        if userid is not None and userid not in by_userid:
            return 400, {"error": "Validation failed"}
        wanted = identifier if identifier is not None else userid
        card = by_userid.get(wanted) or (wanted if wanted in lib.patrons else None)
        if card is None or lib.patrons[card].pin is None or \
                lib.patrons[card].pin != body.get("password", ""):
            return 400, {"error": "Validation failed"}
        return 201, {"cardnumber": card, "patron_id": self.patron_id(card),
                     "userid": self._userid(card) or ""}

    def _add_checkout(self, q: dict[str, Any], body: dict[str, Any],
                      branch: str) -> tuple[int, Any]:
        """Checkouts.pm add: 409 for what does not exist, 403 for blockers, 412 without the
        token for the confirmations, then AddIssue (a renewal for the patron's own loan)."""
        lib = self.lib
        barcode = self._by_id("item", body["item_id"])
        if barcode not in lib.items:
            return 409, {"error": "Item not found", "error_code": "ITEM_NOT_FOUND"}
        card = self._by_id("patron", body["patron_id"])
        if card not in lib.patrons:
            return 409, {"error": "Patron not found", "error_code": "PATRON_NOT_FOUND"}
        avail = self.availability(card, barcode)
        if avail["blockers"]:
            return 403, {"error": "Checkout not authorized "
                         f"({' '.join(sorted(avail['blockers']))})"}
        if avail["confirms"] and q.get("confirmation") != avail["confirmation_token"]:
            return 412, {"error": "Confirmation error"}
        it = lib.items[barcode]
        if it.charged_to == card:
            self._renew(barcode)
            return 201, self._checkout(barcode)
        if it.charged_to is not None:  # AddIssue returns it from the other patron first
            lib.log.append(("09", barcode))
            it.charged_to = None
            self.checkout_id(barcode)
        lib.log.append(("11", barcode))
        it.charged_to, it.due = card, dt.date.today() + dt.timedelta(days=LOAN_DAYS)
        cid = self.checkout_id(barcode)
        assert cid is not None
        self._branch[cid] = branch
        if barcode in self.x.rental:  # AddIssuingCharge
            lib.patrons[card].fines.append((f"Phí thuê: {it.title}",
                                            round(float(self.x.rental[barcode]))))
        return 201, self._checkout(barcode)

    # -- auth (Koha/REST/V1/Auth.pm, before any operation)
    def refusal(self, req: Request, headers: dict[str, str]) -> tuple[int, Any] | None:
        """Koha's authenticator's answer when it refuses the request, else None."""
        if req.op.spec.get("security") == []:
            return None
        auth = headers.get("authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return 401, {"error": "Authentication failure."}
            if (user, pw) != (self.x.user, self.x.password):  # checkpw_internal
                return 403, {"error": "Invalid password", "required_permissions": None}
        elif auth.startswith("Bearer "):
            until = self.tokens.get(auth[7:])
            if until is None or time.monotonic() >= until:
                return 401, {"error": "Authentication failure."}
        else:
            return 401, {"error": "Authentication failure."}
        library = headers.get("x-koha-library")
        if library is not None and library not in self.x.libraries:
            return 403, {"error": f"Unauthorized attempt to set library to {library}"}
        if f"{req.op.method} {req.op.template}" in self.x.denied:
            return 403, {"error": "Authorization failure. Missing required permission(s).",
                         "required_permissions": req.op.spec.get("x-koha-authorization", {})
                         .get("permissions")}
        return None

    def revoke_tokens(self) -> None:
        """As a Koha restart or an early expiry does: every token stops working."""
        self.tokens.clear()

    def take_fault(self, method: str, template: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.route in (None, template) and f.method in (None, method):
                    f.times -= 1
                    if f.times <= 0:
                        self.faults.remove(f)
                    return f
        return None


class Page(list[Any]):
    """One page of a list, and how many the whole list has (X-Total-Count)."""

    def __init__(self, rows: list[Any], total: int) -> None:
        super().__init__(rows)
        self.total = total


@dataclass
class Unchecked:
    """An answer of a Koha release other than the one the specification describes."""

    body: Any


def _folded(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _like(value: Any, wanted: Any, match: str) -> bool:
    """Koha's build_query_params: LIKE '%v%' by default; MySQL compares case-insensitively."""
    if value is None:
        return False
    have, want = str(value).casefold(), str(wanted).casefold()
    return {"exact": have == want, "starts_with": have.startswith(want),
            "ends_with": have.endswith(want)}.get(match, want in have)


def _handler(koha: KohaStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the client's pool is used
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            with koha._lock:
                koha.connections.add(self.connection)

        def finish(self) -> None:
            with koha._lock:
                koha.connections.discard(self.connection)
            try:
                super().finish()
            except OSError:
                pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            url = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                req = koha.spec.check_request(self.command, url.path, url.query, headers, raw)
            except Violation as exc:
                koha.violations.append(f"request: {exc}")
                self._send(400, {"errors": [{"message": str(exc), "path": url.path}],
                                 "status": 400})
                return
            if koha.x.delay_s:
                time.sleep(koha.x.delay_s)
            if (refused := koha.refusal(req, headers)) is not None:
                # Koha's authenticator answers before the operation does, whatever the
                # operation declares: not checked against the operation's responses.
                self._send(*refused)
                return
            koha.requests.append((req.op.method, req.op.template))
            if req.op.method == "GET":
                koha.queries.append((req.op.template, req.query))
            fault = koha.take_fault(req.op.method, req.op.template)
            if fault is not None and not fault.after:
                self._fault(req, fault)
                return
            status, body = koha.handle(req, headers)
            if fault is not None:
                self._fault(req, fault)
                return
            self._check_and_send(req, status, body)

        def _fault(self, req: Request, fault: Fault) -> None:
            if fault.hold_s:
                time.sleep(fault.hold_s)
            if fault.garbage:
                self._raw(200, b"<html>Koha is being upgraded</html>", "text/html")
            elif fault.status:
                self._check_and_send(req, fault.status,
                                     fault.body or {"error": "Internal server error"})
            else:
                self._raw(200, b"", "application/json")

        def _check_and_send(self, req: Request, status: int, body: Any) -> None:
            if isinstance(body, Unchecked):
                self._send(status, body.body)
                return
            try:
                koha.spec.check_response(req.op, status, body)
            except Violation as exc:
                koha.violations.append(f"response: {exc}")
                status, body = 500, {"error": "stand-in answer out of spec"}
            self._send(status, body)

        def _send(self, status: int, body: Any) -> None:
            data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
            total = {"X-Total-Count": str(body.total)} if isinstance(body, Page) else {}
            self._raw(status, data, "application/json", total)

        def _raw(self, status: int, data: bytes, ctype: str,
                 headers: dict[str, str] | None = None) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (its timeout): nothing to answer
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    return Handler


@contextmanager
def koha_running(lib: Library, extra: KohaExtra | None = None, *,
                 tls: tuple[Path, Path] | None = None) -> Iterator[KohaStandIn]:
    koha = KohaStandIn(lib, extra, tls=tls).start()
    try:
        yield koha
    finally:
        koha.stop()


HEAVY = "DG9012"  # the benchmark's heavy reader: 25 loans, 30 holds, 3 fines


def bench_library(items: int, patrons: int, delay_s: float = 0.0) -> tuple[Library, KohaExtra]:
    """The benchmark's library, built the same in the stand-in's process and beside the SIP2
    server: `patrons` readers with no limit, `items` books on the shelf, and HEAVY with 25
    loans, 2 holds on the shelf, 28 in queues (biblio level) and 3 fines, told both ways
    (the stand-in's holds, SIP2's AS and CD)."""
    from selfcheck.lab.standins.sip2_server import Item, Patron

    lib = Library(patrons={f"DG{n:04d}": Patron(f"Bạn đọc số {n}", limit=9999)
                           for n in range(patrons)},
                  items={f"49{n:06d}": Item(f"Sách thử nghiệm số {n}")
                         for n in range(1, items + 1)}, delay_s=delay_s)
    today = dt.date.today()
    for n in range(1, 26):
        lib.items[f"58{n:06d}"] = Item(f"Sách đang mượn số {n}", charged_to=HEAVY,
                                       due=today + dt.timedelta(days=n))
    holds = []
    for n in range(1, 31):
        lib.items[f"57{n:06d}"] = Item(f"Sách được đặt số {n}")
        holds.append(Hold(HEAVY, f"Sách được đặt số {n}", item=f"57{n:06d}" if n <= 2 else None,
                          waiting=n <= 2,
                          expires=today + dt.timedelta(days=3) if n <= 2 else None))
    lib.patrons[HEAVY] = Patron(
        "Bạn đọc mượn nhiều", limit=9999, holds_ready=["57000001", "57000002"],
        holds_waiting=[f"Sách được đặt số {n}" for n in range(3, 31)],
        fines=[("Trả muộn", 5000), ("Mất thẻ", 20000), ("Sách hỏng", 30000)])
    return lib, KohaExtra(delay_s=delay_s, holds=holds)


def main() -> None:
    """`python -m selfcheck.lab.standins.koha_standin --items N --patrons N --delay S`: a
    stand-in in its own process (the benchmark: Koha's work does not share our interpreter),
    over bench_library.
    Prints `{"port": P}`, serves until stdin closes, then prints `{"requests": N,
    "violations": [...]}`."""
    import argparse
    import sys

    p = argparse.ArgumentParser()
    p.add_argument("--items", type=int, default=1000)
    p.add_argument("--patrons", type=int, default=4)
    p.add_argument("--delay", type=float, default=0.0)
    args = p.parse_args()
    lib, extra = bench_library(args.items, args.patrons)
    extra.delay_s = args.delay
    koha = KohaStandIn(lib, extra).start()
    print(json.dumps({"port": koha.port, "user": koha.x.user, "password": koha.x.password},
                     ensure_ascii=False), flush=True)
    sys.stdin.read()
    koha.stop()
    print(json.dumps({"requests": len(koha.requests), "violations": koha.violations},
                     ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
