"""What Koha's REST answers mean for a station: no I/O here.

Koha's answers are read through small pydantic models that keep only the fields we use (and
ignore the rest, so a newer Koha still fits); an answer that does not fit raises
KohaProtocolError. Koha's codes (CanBookBeIssued blockers and confirmations, renewal errors)
become the station's refusal reasons.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from selfcheck.central.koha.client import KohaProtocolError
from selfcheck.mqtt.messages import AccountLoan, AccountRes, Fine, HoldReady, HoldWaiting, Reason

EXPONENT = {"VND": 0, "JPY": 0, "KRW": 0}  # ISO 4217 minor units; 2 for the others


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class KPatron(_Answer):
    patron_id: int
    cardnumber: str | None = None
    userid: str | None = None
    surname: str | None = None
    firstname: str | None = None
    preferred_name: str | None = None
    expiry_date: dt.date | None = None
    restricted: bool = False
    patron_card_lost: bool = False
    checkouts_count: int | None = None


class KItem(_Answer):
    item_id: int
    biblio_id: int
    external_id: str | None = None
    not_for_loan_status: int = 0
    effective_not_for_loan_status: int | None = None
    lost_status: int = 0
    withdrawn: int = 0
    holds_count: int | None = None


class KCheckout(_Answer):
    checkout_id: int
    item_id: int | None = None
    due_date: dt.datetime


class KAvailability(_Answer):
    blockers: dict[str, Any] = Field(default_factory=dict)
    confirms: dict[str, Any] = Field(default_factory=dict)
    warnings: dict[str, Any] = Field(default_factory=dict)
    confirmation_token: str | None = None


class KAllowsRenewal(_Answer):
    allows_renewal: bool
    error: str | None = None


class KHold(_Answer):
    hold_id: int
    biblio_id: int
    item_id: str | int | None = None  # Koha's spec says string here, integer elsewhere
    priority: int | None = None
    status: str | None = None  # W waiting on the shelf, T in transit, P processing, None queued
    pickup_library_id: str | None = None
    expiration_date: dt.date | None = None


def hold_item(h: KHold) -> int | None:
    """The hold's item, when it names one (an item-level hold, or one found for it)."""
    return int(h.item_id) if h.item_id is not None and str(h.item_id).isdigit() else None


class KLine(_Answer):
    amount: float
    amount_outstanding: float | None = None
    description: str | None = None
    debit_type: str | None = None
    item_id: int | None = None


class KDebits(_Answer):
    total: float = 0
    lines: list[KLine] = Field(default_factory=list)


class KBalance(_Answer):
    balance: float
    outstanding_debits: KDebits = Field(default_factory=KDebits)


M = TypeVar("M", bound=_Answer)


def parse(model: type[M], body: Any, what: str) -> M:
    """`body` as `model`, or KohaProtocolError naming `what` (never the values)."""
    return _checked(TypeAdapter(model), body, what)


def parse_list(model: type[M], body: Any, what: str) -> list[M]:
    return _checked(TypeAdapter(list[model]), body, what)  # type: ignore[valid-type]


def _checked(adapter: TypeAdapter[Any], body: Any, what: str) -> Any:
    try:
        return adapter.validate_python(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise KohaProtocolError(f"{what}: {where}: {err['msg']}", sent=True) from None


# -- patrons

def patron_reason(p: KPatron, today: dt.date) -> Reason | None:
    if p.restricted or p.patron_card_lost:
        return "patron_blocked"
    if p.expiry_date is not None and p.expiry_date < today:
        return "card_expired"
    return None


def display_name(p: KPatron) -> str | None:
    """Vietnamese order, family name first; Koha's preferred name wins."""
    if p.preferred_name:
        return p.preferred_name
    return " ".join(n for n in (p.surname, p.firstname) if n) or None


# -- loans: Koha's CanBookBeIssued keys (blockers: issuingimpossible, confirms:
# needsconfirmation)
BLOCKERS: dict[str, Reason] = {
    "EXPIRED": "card_expired", "TOO_MANY": "too_many_loans", "DEBARRED": "patron_blocked",
    "USERBLOCKEDNOENDDATE": "patron_blocked", "USERBLOCKEDWITHENDDATE": "patron_blocked",
    "USERBLOCKEDOVERDUE": "patron_blocked", "GNA": "patron_blocked",
    "CARD_LOST": "patron_blocked", "DEBT": "patron_blocked", "DEBT_GUARANTEES": "patron_blocked",
    "DEBT_GUARANTORS": "patron_blocked", "NOTSAMEBRANCH": "refused",
    "NOT_FOR_LOAN": "not_for_loan", "WTHDRAWN": "not_for_loan", "ITEM_LOST": "not_for_loan",
    "UNKNOWN_BARCODE": "unknown_item", "RESERVED": "on_hold_for_other",
    "RESERVE_WAITING": "on_hold_for_other", "RECALLED": "on_hold_for_other",
    "ISSUED_TO_ANOTHER": "on_loan_to_other", "NO_MORE_RENEWALS": "refused",
}
CONFIRMS: dict[str, Reason] = {
    "ISSUED_TO_ANOTHER": "on_loan_to_other", "RESERVED": "on_hold_for_other",
    "RESERVE_WAITING": "on_hold_for_other", "TRANSFERRED": "on_hold_for_other",
    "PROCESSING": "on_hold_for_other", "RESERVED_WAITING": "on_hold_for_other",
    "TOO_MANY": "too_many_loans", "DEBT": "patron_blocked", "ITEM_LOST": "not_for_loan",
    "NOT_FOR_LOAN_FORCING": "not_for_loan", "BOOKED_TO_ANOTHER": "on_hold_for_other",
}
ALREADY_YOURS = "RENEW_ISSUE"  # the item is on loan to this patron: a repeat, not a new loan


def _first(codes: Iterable[str], table: Mapping[str, Reason]) -> Reason:
    known = [table[c] for c in sorted(codes) if c in table]
    return known[0] if known else "refused"


def loan_decision(a: KAvailability, accept: frozenset[str]) -> Reason | str | None:
    """A refusal reason; ALREADY_YOURS; or None to go ahead (with the token if confirms)."""
    if a.blockers:
        return _first(a.blockers, BLOCKERS)
    if ALREADY_YOURS in a.confirms:
        return ALREADY_YOURS
    staff = set(a.confirms) - accept
    if staff:
        return _first(staff, CONFIRMS)
    if a.confirms and not a.confirmation_token:
        return "refused"
    return None


def item_reason(it: KItem) -> Reason | None:
    """What the item record alone says (Koha checks it again at the checkout)."""
    if it.withdrawn or it.lost_status:
        return "not_for_loan"
    if it.not_for_loan_status or (it.effective_not_for_loan_status or 0):
        return "not_for_loan"
    return None


_CODES = re.compile(r"\b[A-Z][A-Z_]{2,}\b")


def forbidden_reason(error: Any) -> Reason:
    """A 403 from POST /checkouts: Koha names the blockers in its message."""
    text = error.get("error", "") if isinstance(error, dict) else ""
    return _first(_CODES.findall(str(text)), BLOCKERS)


# -- renewals: CanBookBeRenewed errors
RENEWAL: dict[str, Reason] = {
    "on_reserve": "on_hold_for_other", "restriction": "patron_blocked",
    "overdue": "patron_blocked", "debarred": "patron_blocked", "too_much_oweing":
    "patron_blocked", "auto_too_much_oweing": "patron_blocked", "auto_account_expired":
    "card_expired", "card_expired": "card_expired", "item_denied_renewal": "not_for_loan",
    "recalled": "on_hold_for_other", "too_many": "refused", "too_soon": "refused",
}


def renewal_reason(a: KAllowsRenewal) -> Reason | None:
    if a.allows_renewal:
        return None
    return RENEWAL.get(a.error or "", "refused")


# -- the account

def minor(amount: float, currency: str) -> int:
    return max(0, round(amount * 10 ** EXPONENT.get(currency, 2)))


def account(*, checkouts: Sequence[KCheckout], allows: Mapping[int, KAllowsRenewal],
            holds: Sequence[KHold], balance: KBalance, barcodes: Mapping[int, str],
            titles: Mapping[int, str], biblio_titles: Mapping[int, str], currency: str,
            today: dt.date) -> AccountRes:
    """`barcodes` and `titles` by Koha's item_id, `biblio_titles` by biblio_id; what is
    missing stays None."""
    loans = []
    for c in checkouts:
        if c.item_id is None or c.item_id not in barcodes:
            continue  # an item without a barcode cannot be on the station's screen
        due = c.due_date.date()
        ok = allows.get(c.checkout_id)
        loans.append(AccountLoan(item_id=barcodes[c.item_id], title=titles.get(c.item_id),
                                 due=due, overdue=due < today,
                                 renewable=ok is None or ok.allows_renewal))
    loans.sort(key=lambda ln: (ln.due or dt.date.max, ln.item_id))
    ready, waiting = [], []
    for h in holds:
        item = hold_item(h)
        title = (titles.get(item) if item is not None else None) or \
            biblio_titles.get(h.biblio_id)
        if h.status == "W" and item is not None and item in barcodes:
            ready.append(HoldReady(item_id=barcodes[item], title=title,
                                   pickup_by=h.expiration_date,
                                   pickup_at=(h.pickup_library_id or "")[:64] or None))
        elif h.status != "W":
            waiting.append(HoldWaiting(
                title=title or f"#{h.biblio_id}",
                position=h.priority if h.priority and h.priority >= 1 else None))
    waiting.sort(key=lambda w: (w.position or 10**6, w.title))
    fines = [Fine(description=ln.description or ln.debit_type or "",
                  amount=minor(ln.amount_outstanding if ln.amount_outstanding is not None
                               else ln.amount, currency))
             for ln in balance.outstanding_debits.lines
             if (ln.amount_outstanding if ln.amount_outstanding is not None else ln.amount) > 0]
    return AccountRes(ok=True, loans=loans, holds_ready=ready, holds_waiting=waiting,
                      fines_total=minor(max(balance.balance, 0.0), currency),
                      currency=currency, currency_exponent=EXPONENT.get(currency, 2),
                      fines=fines)
