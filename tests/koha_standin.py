"""A Koha stand-in for the tests and the benchmark: Koha's REST API over real HTTP on
127.0.0.1, every request and every answer checked against Koha's specification
(tests/koha_spec.py). A request that does not match gets Koha's 400 and is recorded in
`violations`; an answer of ours that does not match is recorded too and sent as a 500.

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

from tests.koha_spec import Request, Spec, Violation
from tests.sip2_server import LOAN_DAYS, Library

LIBRARY_ID = "TVTINH"
_KEY = secrets.token_bytes(16)


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
    userids: dict[str, str] = field(default_factory=dict)  # card -> userid (else the card)
    not_for_loan: set[str] = field(default_factory=set)  # barcodes
    previously: set[tuple[str, str]] = field(default_factory=set)  # (card, barcode): PREVISSUE
    staff_confirm: set[str] = field(default_factory=set)  # barcodes: AGE_RESTRICTION
    holds: list[Hold] = field(default_factory=list)
    max_renewals: int = 2


class KohaStandIn:
    def __init__(self, lib: Library, extra: KohaExtra | None = None, *,
                 tls: tuple[Path, Path] | None = None) -> None:
        """`tls`: (certificate, key) files to serve HTTPS with."""
        self.lib = lib
        self.x = extra or KohaExtra()
        self.spec = Spec.load()
        self.violations: list[str] = []
        self.requests: list[tuple[str, str]] = []  # (method, template) of each valid request
        self.faults: list[Fault] = []
        self.tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.connections: set[socket.socket] = set()
        self._lock = threading.RLock()
        self._ids: dict[str, int] = {}
        self._checkouts: dict[str, int] = {}  # barcode -> current checkout id
        self._renewals: dict[int, int] = {}
        self._out_since: dict[int, dt.datetime] = {}
        self._next = 100
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

    # -- ids: stable numbers for cards, barcodes and titles
    def _id(self, kind: str, key: str) -> int:
        with self._lock:
            if f"{kind}:{key}" not in self._ids:
                self._next += 1
                self._ids[f"{kind}:{key}"] = self._next
            return self._ids[f"{kind}:{key}"]

    def _by_id(self, kind: str, number: int) -> str | None:
        with self._lock:
            for k, v in self._ids.items():
                if v == number and k.startswith(kind + ":"):
                    return k.split(":", 1)[1]
        return None

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

    # -- the representations (only what the specification declares)
    def _patron(self, card: str, embed: list[str]) -> dict[str, Any]:
        p = self.lib.patrons[card]
        surname, _, firstname = p.name.partition(" ")
        expiry = dt.date.today() + dt.timedelta(days=-1 if card in self.x.expired else 365)
        out: dict[str, Any] = {
            "patron_id": self.patron_id(card), "cardnumber": card,
            "userid": self.x.userids.get(card, card), "surname": surname,
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
                "effective_not_for_loan_status": nfl, "damaged_status": 0, "lost_status": 0,
                "withdrawn": 0, "home_library_id": LIBRARY_ID, "holding_library_id": LIBRARY_ID,
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
                "library_id": LIBRARY_ID, "issuer_id": None,
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
        token = self._token(card, barcode, confirms) if confirms else None
        return {"blockers": blockers, "confirms": confirms, "warnings": {},
                "confirmation_token": token}

    @staticmethod
    def _token(card: str, barcode: str, confirms: dict[str, Any]) -> str:
        text = f"{card}|{barcode}|{':'.join(sorted(confirms))}"
        return hmac.new(_KEY, text.encode(), hashlib.sha256).hexdigest()

    def allows_renewal(self, barcode: str) -> dict[str, Any]:
        cid = self.checkout_id(barcode)
        assert cid is not None
        it = self.lib.items[barcode]
        done = self._renewals.get(cid, 0)
        error = None
        if it.charged_to and self.lib.patrons[it.charged_to].blocked:
            error = "restriction"
        elif [h for h in self._holds_on(barcode) if h.card != it.charged_to]:
            error = "on_reserve"
        elif done >= self.x.max_renewals:
            error = "too_many"
        return {"allows_renewal": error is None, "max_renewals": self.x.max_renewals,
                "current_renewals": done, "unseen_renewals": 0, "error": error}

    # -- the operations: (status, body)
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
        with self._lock, self.lib.lock:
            return self._circulation(name, q, body, pp, embed)

    def _circulation(self, name: str, q: dict[str, Any], body: Any, pp: dict[str, Any],
                     embed: list[str]) -> tuple[int, Any]:
        lib = self.lib
        if name == "POST /auth/password/validation":
            card = next((c for c in lib.patrons
                         if self.x.userids.get(c, c) == body["userid"]), None)
            if card is None or lib.patrons[card].pin is None or \
                    lib.patrons[card].pin != body["password"]:
                return 400, {"error": "Validation failed"}
            return 204, None
        if name == "GET /patrons":
            cards = [c for c in lib.patrons if q.get("cardnumber") in (None, c)]
            return 200, [self._patron(c, embed) for c in cards]
        if name == "GET /items":
            found = list(lib.items)
            if "external_id" in q:
                found = [b for b in found if b == q["external_id"]]
            for text in q.get("q", []):
                query = json.loads(text)
                ids = query.get("item_id")
                if ids is not None:
                    ids = ids if isinstance(ids, list) else [ids]
                    found = [b for b in found if self.item_id(b) in ids]
                if "biblio_id" in query:
                    found = [b for b in found
                             if self._id("biblio", lib.items[b].title) == query["biblio_id"]]
            if q.get("_per_page", 20) > 0:
                found = found[:q.get("_per_page", 20)]
            return 200, [self._item(b) for b in found]
        if name == "GET /checkouts":
            card = self._by_id("patron", q.get("patron_id", -1))
            mine = [b for b, it in lib.items.items()
                    if it.charged_to is not None and card in (None, it.charged_to)]
            return 200, [self._checkout(b) for b in mine]
        if name == "GET /checkouts/availability":
            card = self._by_id("patron", q.get("patron_id", -1))
            barcode = self._by_id("item", q.get("item_id", -1))
            if card not in lib.patrons or barcode not in lib.items:
                return 200, {"blockers": {"UNKNOWN_BARCODE": 1}, "confirms": {},
                             "warnings": {}, "confirmation_token": None}
            return 200, self.availability(card, barcode)
        if name == "POST /checkouts":
            card = self._by_id("patron", body["patron_id"])
            barcode = self._by_id("item", body["item_id"])
            if card not in lib.patrons or barcode not in lib.items:
                return 400, {"error": "Item or patron not found"}
            avail = self.availability(card, barcode)
            if avail["blockers"]:
                return 403, {"error": "Checkout not authorized "
                             f"({' '.join(sorted(avail['blockers']))})"}
            if avail["confirms"] and q.get("confirmation") != avail["confirmation_token"]:
                return 412, {"error": "Needs confirmation",
                             "error_code": ":".join(sorted(avail["confirms"]))}
            it = lib.items[barcode]
            if it.charged_to == card:
                return 409, {"error": "Item already checked out to this patron"}
            lib.log.append(("11", barcode))
            it.charged_to, it.due = card, dt.date.today() + dt.timedelta(days=LOAN_DAYS)
            return 201, self._checkout(barcode)
        if name in ("GET /checkouts/{checkout_id}/allows_renewal",
                    "POST /checkouts/{checkout_id}/renewal"):
            barcode = next((b for b, c in self._checkouts.items()
                            if c == pp["checkout_id"] and self.checkout_id(b) == c), None)
            if barcode is None:
                return 404, {"error": "Checkout not found"}
            allows = self.allows_renewal(barcode)
            if name.startswith("GET"):
                return 200, allows
            if not allows["allows_renewal"]:
                return 403, {"error": f"Renewal not authorized ({allows['error']})"}
            lib.log.append(("29", barcode))
            cid = pp["checkout_id"]
            self._renewals[cid] = self._renewals.get(cid, 0) + 1
            lib.items[barcode].due = dt.date.today() + dt.timedelta(days=2 * LOAN_DAYS)
            return 201, self._checkout(barcode)
        if name == "GET /patrons/{patron_id}/holds":
            card = self._by_id("patron", pp["patron_id"])
            if card not in lib.patrons:
                return 404, {"error": "Patron not found"}
            return 200, [self._hold(h) for h in self.x.holds if h.card == card]
        if name == "GET /patrons/{patron_id}/account":
            card = self._by_id("patron", pp["patron_id"])
            if card not in lib.patrons:
                return 404, {"error": "Patron not found"}
            lines = [{"account_line_id": n, "amount": float(amount),
                      "amount_outstanding": float(amount), "description": text,
                      "debit_type": "OVERDUE", "patron_id": pp["patron_id"],
                      "status": "UNRETURNED", "date": dt.datetime.now(dt.UTC).isoformat()}
                     for n, (text, amount) in enumerate(lib.patrons[card].fines, 1)]
            total = float(sum(a for _, a in lib.patrons[card].fines))
            return 200, {"balance": total, "outstanding_credits": {"total": 0, "lines": []},
                         "outstanding_debits": {"total": total, "lines": lines}}
        return 404, {"error": f"{name}: not served by the stand-in"}

    # -- auth
    def authorised(self, req: Request, headers: dict[str, str]) -> bool:
        if req.op.spec.get("security") == []:
            return True
        auth = headers.get("authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return False
            return (user, pw) == (self.x.user, self.x.password)
        if auth.startswith("Bearer "):
            until = self.tokens.get(auth[7:])
            return until is not None and time.monotonic() < until
        return False

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
            if not koha.authorised(req, headers):
                # Koha's authenticator answers before the operation does, whatever the
                # operation declares: not checked against the operation's responses.
                self._send(401, {"error": "Authentication failure."})
                return
            koha.requests.append((req.op.method, req.op.template))
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
            try:
                koha.spec.check_response(req.op, status, body)
            except Violation as exc:
                koha.violations.append(f"response: {exc}")
                status, body = 500, {"error": "stand-in answer out of spec"}
            self._send(status, body)

        def _send(self, status: int, body: Any) -> None:
            data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
            self._raw(status, data, "application/json")

        def _raw(self, status: int, data: bytes, ctype: str) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
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


def main() -> None:
    """`python -m tests.koha_standin --items N --patrons N --delay S`: a stand-in in its own
    process (the benchmark: Koha's work does not share our interpreter). Prints `{"port": P}`,
    serves until stdin closes, then prints `{"requests": N, "violations": [...]}`."""
    import argparse
    import sys

    from tests.sip2_server import Item, Patron

    p = argparse.ArgumentParser()
    p.add_argument("--items", type=int, default=1000)
    p.add_argument("--patrons", type=int, default=4)
    p.add_argument("--delay", type=float, default=0.0)
    args = p.parse_args()
    lib = Library(patrons={f"DG{n:04d}": Patron(f"Bạn đọc số {n}", limit=9999)
                           for n in range(args.patrons)},
                  items={f"49{n:06d}": Item(f"Sách thử nghiệm số {n}")
                         for n in range(1, args.items + 1)})
    koha = KohaStandIn(lib, KohaExtra(delay_s=args.delay)).start()
    print(json.dumps({"port": koha.port, "user": koha.x.user, "password": koha.x.password},
                     ensure_ascii=False), flush=True)
    sys.stdin.read()
    koha.stop()
    print(json.dumps({"requests": len(koha.requests), "violations": koha.violations},
                     ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
