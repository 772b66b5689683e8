"""What Koha's REST answers mean for a station: no I/O here.

Koha's answers are read through small pydantic models that keep only the fields we use (and
ignore the rest, so a newer Koha still fits); an answer that does not fit raises
KohaProtocolError. Koha's codes (CanBookBeIssued blockers and confirmations, renewal errors,
the 409 of POST /checkouts) become the station's refusal reasons; the tables cite where in
Koha each code comes from.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from selfcheck.central.backends.koha.client import KohaProtocolError
from selfcheck.mqtt.messages import (
    AccountLoan,
    AccountRes,
    Fine,
    HoldReady,
    HoldWaiting,
    LoanConfirm,
    Reason,
)

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
    category_id: str | None = None  # the PIN rule's patron category (central/pin_rules.py)
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
    home_library_id: str | None = None
    # None: not checked out (a date, read as text: only whether there is one matters)
    checked_out_date: str | None = None


class KCheckout(_Answer):
    checkout_id: int
    patron_id: int | None = None
    item_id: int | None = None
    due_date: dt.datetime
    renewals_count: int | None = None
    library_id: str | None = None


class KValidated(_Answer):
    """The 201 of POST /auth/password/validation (Koha 23.11 and later)."""

    patron_id: int
    cardnumber: str | None = None
    userid: str | None = None


class KAvailability(_Answer):
    blockers: dict[str, Any] = Field(default_factory=dict)
    confirms: dict[str, Any] = Field(default_factory=dict)
    warnings: dict[str, Any] = Field(default_factory=dict)
    confirmation_token: str | None = None


class KAllowsRenewal(_Answer):
    allows_renewal: bool
    error: str | None = None
    current_renewals: int | None = None


class KHold(_Answer):
    hold_id: int
    patron_id: int | None = None
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


# -- loans: C4::Circulation::CanBookBeIssued's keys (blockers: %issuingimpossible,
# confirms: %needsconfirmation). Only upper-case keys are codes: the lower-case ones
# (current_loan_count, resfirstname, ...) are details of a code, as Koha's SIP2 server reads
# them too (C4/SIP/ILS/Transaction/Checkout.pm, _can_we_issue).
BLOCKERS: dict[str, Reason] = {
    "EXPIRED": "card_expired", "TOO_MANY": "too_many_loans", "DEBARRED": "patron_blocked",
    "USERBLOCKEDNOENDDATE": "patron_blocked", "USERBLOCKEDWITHENDDATE": "patron_blocked",
    "USERBLOCKEDREMAINING": "patron_blocked",
    "USERBLOCKEDOVERDUE": "patron_blocked", "GNA": "patron_blocked",
    "CARD_LOST": "patron_blocked", "DEBT": "patron_blocked", "DEBT_GUARANTEES": "patron_blocked",
    "DEBT_GUARANTORS": "patron_blocked", "STATS": "patron_blocked",
    "NOT_FOR_LOAN": "not_for_loan", "WTHDRAWN": "not_for_loan", "RESTRICTED": "not_for_loan",
    "AGE_RESTRICTION": "not_for_loan", "ITEMNOTSAMEBRANCH": "not_for_loan",
    "UNKNOWN_BARCODE": "unknown_item", "RECALLED_INTRANSIT": "on_hold_for_other",
    # Koha's public routes upgrade these confirmations to blockers (Checkouts.pm)
    "RESERVED": "on_hold_for_other", "RESERVE_WAITING": "on_hold_for_other",
    "TRANSFERRED": "on_hold_for_other", "PROCESSING": "on_hold_for_other",
    "ISSUED_TO_ANOTHER": "on_loan_to_other", "RETURN_IMPOSSIBLE": "on_loan_to_other",
    "NO_MORE_RENEWALS": "too_many_renewals", "NO_RENEWAL_FOR_ONSITE_CHECKOUTS": "not_for_loan",
}
# Confirmations never accepted at a station: a librarian could override them, but what stops
# the loan is a rule the reader should hear about (Koha's SIP2 server refuses these too).
REFUSING: dict[str, Reason] = {
    "ISSUED_TO_ANOTHER": "on_loan_to_other", "RESERVED": "on_hold_for_other",
    "RESERVE_WAITING": "on_hold_for_other", "TRANSFERRED": "on_hold_for_other",
    "PROCESSING": "on_hold_for_other", "RECALLED": "on_hold_for_other",
    "BOOKED_TO_ANOTHER": "on_hold_for_other",
    "TOO_MANY": "too_many_loans", "PATRON_CANT": "too_many_loans",
    "DEBT": "patron_blocked", "DEBT_GUARANTEES": "patron_blocked",
    "DEBT_GUARANTORS": "patron_blocked", "USERBLOCKEDOVERDUE": "patron_blocked",
    "NOT_FOR_LOAN_FORCING": "not_for_loan",
}
# Every other confirmation (ADDITIONAL_MATERIALS: staff check the parts of a set;
# AGE_RESTRICTION, ITEM_LOST, HIGHHOLDS, BORRNOTSAMEBRANCH, BIBLIO_ALREADY_ISSUED,
# INVALID_DATE and whatever a later Koha adds) is one a librarian must look at: needs_staff.
ALREADY_YOURS = "RENEW_ISSUE"  # the item is on loan to this patron: a repeat, not a new loan
RENTAL = "RENTALCHARGE"  # daily and hourly rental fees are summed into it (Koha::Charges::Fees)


@dataclass(frozen=True)
class LoanDecision:
    """What availability says: go (with the token when there are confirmations), a repeat of
    a loan the patron has, a refusal, or a question for the reader first."""

    go: bool = False
    already: bool = False
    reason: Reason | None = None
    confirm: LoanConfirm | None = None


def codes(found: Mapping[str, Any]) -> set[str]:
    return {k for k in found if re.fullmatch(r"[A-Z][A-Z0-9_]*", k)}


def _first(found: Iterable[str], table: Mapping[str, Reason], default: Reason) -> Reason:
    known = [table[c] for c in sorted(found) if c in table]
    return known[0] if known else default


def loan_decision(a: KAvailability, accept: frozenset[str], confirmed: Collection[str], *,
                  currency: str) -> LoanDecision:
    """`accept`: the site's harmless confirmations; `confirmed`: what the reader accepted on
    screen for this loan (TxLoan.confirmed)."""
    if blockers := codes(a.blockers):
        return LoanDecision(reason=_first(blockers, BLOCKERS, "refused"))
    confirms = codes(a.confirms)
    if ALREADY_YOURS in confirms:
        return LoanDecision(already=True)
    if refusing := confirms & set(REFUSING):
        return LoanDecision(reason=_first(refusing, REFUSING, "refused"))
    if confirms - accept - {RENTAL}:
        return LoanDecision(reason="needs_staff")
    if RENTAL in confirms and "rental_charge" not in confirmed:
        return LoanDecision(reason="needs_confirmation", confirm=LoanConfirm(
            code="rental_charge", amount=_amount(a.confirms[RENTAL], currency),
            currency=currency, currency_exponent=EXPONENT.get(currency, 2)))
    if confirms and not a.confirmation_token:
        return LoanDecision(reason="refused")
    return LoanDecision(go=True)


def _amount(value: Any, currency: str) -> int | None:
    """Koha gives the charge as a number or a decimal string ("5000.000000")."""
    try:
        return minor(float(str(value)), currency)
    except ValueError:
        return None


def item_reason(it: KItem) -> Reason | None:
    """What the item record alone says (Koha checks it again at the checkout)."""
    if it.withdrawn or it.lost_status:
        return "not_for_loan"
    if it.not_for_loan_status or (it.effective_not_for_loan_status or 0):
        return "not_for_loan"
    return None


_CODES = re.compile(r"\b[A-Z][A-Z0-9_]{2,}\b")


def forbidden_reason(error: Any) -> Reason:
    """A 403 from POST /checkouts: "Checkout not authorized (CODE CODE)" (Checkouts.pm)."""
    text = error.get("error", "") if isinstance(error, dict) else ""
    return _first(_CODES.findall(str(text)), BLOCKERS, "refused")


# POST /checkouts answers 409 when its item_id or patron_id names nothing (Checkouts.pm add):
# neither is "on loan to another".
CONFLICT: dict[str, Reason] = {"ITEM_NOT_FOUND": "unknown_item",
                               "PATRON_NOT_FOUND": "unknown_patron"}


def conflict_reason(error: Any) -> Reason:
    code = error.get("error_code") if isinstance(error, dict) else None
    text = str(error.get("error", "")).lower() if isinstance(error, dict) else ""
    if code in CONFLICT:
        return CONFLICT[code]
    if "patron" in text:
        return "unknown_patron"
    return "unknown_item"


# -- renewals: C4::Circulation::CanBookBeRenewed's errors (allows_renewal's `error`, and the
# 403 "Renewal not authorized (error)" of POST /checkouts/{id}/renewal)
RENEWAL: dict[str, Reason] = {
    "too_many": "too_many_renewals",
    "item_denied_renewal": "too_many_renewals",  # ItemsDeniedRenewal: none at all
    "auto_too_late": "too_many_renewals",  # past the last day it may be renewed
    "too_soon": "too_soon",
    "auto_renew": "auto_renew", "auto_too_soon": "auto_renew",  # Koha renews it by itself
    "overdue": "overdue_blocks",
    "restriction": "patron_blocked", "debarred": "patron_blocked",
    "too_much_oweing": "patron_blocked", "auto_too_much_oweing": "patron_blocked",
    "auto_account_expired": "card_expired", "card_expired": "card_expired",
    "on_reserve": "on_hold_for_other", "recalled": "on_hold_for_other",
    "onsite_checkout": "not_for_loan",  # lent for reading in the library only
    "too_unseen": "needs_staff",  # UnseenRenewals: staff must see the book
    "item_issued_to_other_patron": "on_loan_to_other",
    "no_item": "not_on_loan", "no_checkout": "not_on_loan",
}


def renewal_reason(a: KAllowsRenewal) -> Reason | None:
    if a.allows_renewal:
        return None
    return RENEWAL.get(a.error or "", "refused")


def renewal_refusal(error: Any) -> Reason:
    """The 403 of a renewal: "Renewal not authorized (too_soon)"."""
    text = str(error.get("error", "")) if isinstance(error, dict) else ""
    found = re.search(r"\(([a-z_]+)\)", text)
    return RENEWAL.get(found.group(1), "refused") if found else "refused"


# -- the account

def minor(amount: float, currency: str) -> int:
    return max(0, round(amount * 10 ** EXPONENT.get(currency, 2)))


def account(*, checkouts: Sequence[KCheckout], allows: Mapping[int, KAllowsRenewal],
            holds: Sequence[KHold], balance: KBalance, items: Mapping[int, KItem],
            titles: Mapping[int, str], currency: str, today: dt.date) -> AccountRes:
    """`items` by Koha's item_id, `titles` by biblio_id; a title or a renewal answer that is
    missing leaves the title None or the loan shown as renewable (the renewal's own answer
    is what counts)."""
    barcodes = {i: it.external_id for i, it in items.items() if it.external_id}
    loans = []
    for c in checkouts:
        if c.item_id is None or c.item_id not in barcodes:
            continue  # an item without a barcode cannot be on the station's screen
        due = c.due_date.date()
        ok = allows.get(c.checkout_id)
        loans.append(AccountLoan(item_id=barcodes[c.item_id],
                                 title=titles.get(items[c.item_id].biblio_id),
                                 due=due, overdue=due < today,
                                 renewable=ok is None or ok.allows_renewal))
    loans.sort(key=lambda ln: (ln.due or dt.date.max, ln.item_id))
    ready, waiting = [], []
    for h in holds:
        item = hold_item(h)
        title = titles.get(h.biblio_id)
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
