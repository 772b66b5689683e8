"""Pydantic models of every v1 message: the single source of the wire format.

Every payload is JSON with a `schema` field (`tx.loan/1`, ...). `decode()` turns bytes into a
model or raises MessageError naming the field and the reason; nothing else escapes it.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from selfcheck.mqtt import bounds

MAX_PAYLOAD = 16 * 1024  # bytes; larger messages are refused before parsing
MAX_PAGES = 1_000_000  # of the offline list: page x page size must stay a 64-bit offset
MAX_DEPTH = 16  # nesting of JSON arrays and objects; the deepest v1 message needs 4

ItemId = Annotated[str, Field(min_length=1, max_length=64)]
UUID7 = r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
MsgId = Annotated[str, Field(pattern=UUID7)]
PatronRef = Annotated[str, Field(min_length=1, max_length=64)]
# Shared by the telemetry and command models (defined here so that either imports first).
Text = Annotated[str, Field(max_length=500)]
OfflinePolicy = Literal["returns", "none"]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TxBase(Message):
    msg_id: MsgId = Field(description="UUIDv7 chosen by the station; the dedupe key")
    seq: int = Field(ge=1, description="station sequence number, raised by one per transaction")
    journal: str | None = Field(None, pattern=r"^[0-9a-f]{32}$", description=(
        "the station journal's id, made with the journal: seq counts within one journal, so "
        "a station given a new journal starts again at 1 without being taken for late"))
    site: str
    station: str
    at: dt.datetime = Field(description="when the reader did it, station clock, UTC")
    item_id: ItemId
    offline: bool = Field(False, description="done while the central could not be reached, "
                          "under the site's offline policy (the reader was told it was "
                          "accepted). An offline loan is never refused as `late`; every other "
                          "rule still applies, and a refusal is recorded for reconciliation "
                          "(staff see it from the ack, operators in `selfcheck central "
                          "report`)")
    acked_below: int | None = Field(None, ge=1, description=(
        "every seq of this journal below this number had been acknowledged by the central "
        "when the station wrote this transaction (the lowest seq then waiting in its "
        "outbox, or this one's): the station dropped them at their ack and never sends "
        "them again. After a restore of the central's store the numbering goes on from "
        "here, not from a gap the restored store would wait for. Absent from older "
        "stations"))


# What a library system may ask the reader to accept before a loan (Koha's needsconfirmation
# that a reader, not staff, may answer).
ConfirmCode = Literal["rental_charge"]


class LoanConfirm(Message):
    code: ConfirmCode
    amount: int | None = Field(None, ge=0, description="in minor units of `currency`")
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    currency_exponent: int = Field(0, ge=0, le=4)


class TxLoan(TxBase):
    schema_: Literal["tx.loan/1"] = Field("tx.loan/1", alias="schema")
    patron_ref: PatronRef = Field(description="pseudonymous patron reference from the patron check")
    deadline: dt.datetime = Field(description="a loan reaching the central after this is refused "
                                  "as late: the station has already told the reader it failed")
    confirmed: list[ConfirmCode] = Field(default_factory=list, max_length=8, description=(
        "what the reader accepted on screen after an ack with `confirm` (a rental charge): "
        "the central lends only if what the library system asks is among these"))


class TxReturn(TxBase):
    schema_: Literal["tx.return/1"] = Field("tx.return/1", alias="schema")
    compensates: MsgId | None = Field(None, description=(
        "a check-in the station sends by itself: the loan `compensates` was made by the "
        "library system after the reader had been told it was not (an answer lost or too "
        "late). Recorded for staff as a compensation"))


class TxRenew(TxBase):
    schema_: Literal["tx.renew/1"] = Field("tx.renew/1", alias="schema")
    patron_ref: PatronRef


Transaction = Annotated[TxLoan | TxReturn | TxRenew, Field(discriminator="schema_")]

Reason = Literal[
    "unknown_patron", "patron_blocked", "card_expired", "too_many_loans", "unknown_item",
    "not_for_loan", "on_loan_to_other", "not_on_loan", "late", "invalid",
    "refused",  # the library system said no without a reason we can name: see screen_message
    "wrong_pin",  # res.patron: the PIN did not match (pin_tries_left says how many are left)
    "pin_locked",  # res.patron: too many wrong PINs; locked until pin_locked_until
    # res.patron: this station's PIN checks are paused after many wrong PINs over any cards
    # (until pin_locked_until); nothing was said of the card, which may be fine elsewhere
    "pin_paused",
    "pin_required",  # res.patron: the central wants a PIN for this card: ask, send it again
    "on_hold_for_other",  # loan / renewal: the item is reserved for another reader
    "needs_confirmation",  # loan: the reader must accept `confirm` first (ack.confirm)
    "needs_staff",  # loan: staff must check something first (e.g. the parts of a set)
    "too_many_renewals",  # renewal: no renewals left
    "too_soon",  # renewal: not yet (the library renews only near the due date)
    "auto_renew",  # renewal: the library renews this loan by itself
    "overdue_blocks",  # renewal: overdue loans block renewing
    # account / online loan / renewal: no session open at this station for this reader (none
    # was, or it ended after its idle time): check the card again
    "no_session",
]


class AckTx(Message):
    schema_: Literal["ack.tx/1"] = Field("ack.tx/1", alias="schema")
    msg_id: MsgId
    ok: bool
    reason: Reason | None = None
    item_id: ItemId
    title: str | None = None
    due: dt.date | None = None
    sort_bin: str | None = None
    hold: bool = False
    repeat: bool = Field(False, description="answered from the dedupe row, not applied again")
    confirm: LoanConfirm | None = Field(None, description=(
        "with reason needs_confirmation: what the reader must accept; the station asks and, "
        "on a yes, sends a new loan with `confirmed`"))
    # From a library system over SIP2 (absent with the embedded store):
    screen_message: list[str] | None = Field(None, description="SIP2 AF: show to the reader")
    print_lines: list[str] | None = Field(None, description="SIP2 AG: print on the receipt")
    alert_type: str | None = Field(None, description="SIP2 CV on a return: 01 local hold, "
                                   "02 remote hold, 03 ILL transit, 04 transfer, 99 other")
    desensitize: bool | None = Field(None, description="SIP2 12/30: the tag may be set to "
                                     "'on loan'; None when the library system did not say")
    resensitize: bool | None = Field(None, description="SIP2 10: the tag goes back to "
                                     "'in library'; None when the library system did not say")
    # Returns: where the book goes next (both backends). `hold` is True with alert_type 01
    # (hold here: put it on the hold shelf, hold_for says for whom) or 02 (hold at another
    # branch: transit_to says where); a book of another branch with no hold has alert_type
    # 04 and transit_to set. sort_bin is still given.
    hold_for: str | None = Field(None, max_length=64, description="return of a book with a "
                                 "hold: a pseudonymous patron ref or a hold shelf label for "
                                 "the slip, never a name or card number")
    transit_to: str | None = Field(None, max_length=64, description="return: the book goes to "
                                   "this branch (site code, or the library system's location "
                                   "text); None when it stays here")


class Status(Message):
    schema_: Literal["status/1"] = Field("status/1", alias="schema")
    online: bool
    session: int = Field(ge=0)
    version: str
    mode: str


class PatronCheckReq(Message):
    schema_: Literal["req.patron/1"] = Field("req.patron/1", alias="schema")
    # Neither is shown by repr()/str(), so a logged model never carries them; MessageError
    # names the field but never quotes the value.
    card_id: Annotated[str, Field(min_length=1, max_length=64, repr=False)]
    pin: str | None = Field(None, min_length=1, max_length=32, repr=False, description=(
        "the PIN typed by the reader, when the site asks for one (station config) or the "
        "central answered pin_required. Checked by the central (salted hash, or SIP2 AD/CQ); "
        "never stored, logged or published by either side. Absent: no PIN check, unless the "
        "central's rule for the card wants one (then: pin_required); a locked card is "
        "refused (pin_locked) with or without it"))


class PatronCheckRes(Message):
    """The answer to req.patron. patron_ref is given only when the check passed (ok, or a
    refusal like patron_blocked after a correct PIN). An ok answer also opens the central's
    session for that reader at this station, which the account, online loans and renewals
    need: a ref alone proves nothing."""

    schema_: Literal["res.patron/1"] = Field("res.patron/1", alias="schema")
    ok: bool
    reason: Reason | None = None
    patron_ref: PatronRef | None = None
    display_name: str | None = Field(None, description="the given name only (the last word "
                                     "of a Vietnamese name), never the full name")
    loans: int = Field(0, ge=0)
    max_loans: int = Field(0, ge=0)
    screen_message: list[str] | None = Field(None, description="SIP2 AF: show to the reader")
    pin_required: bool = Field(False, description="True with reason pin_required (no PIN sent "
                               "but the central wants one) or wrong_pin (try again): show the "
                               "PIN pad and send req.patron again with `pin`. No patron_ref "
                               "and no name are given then")
    pin_tries_left: int | None = Field(None, ge=0, description="with wrong_pin: wrong PINs "
                                       "left before the card is locked")
    pin_locked_until: dt.datetime | None = Field(None, description="with pin_locked: UTC time "
                                                 "the lock ends")


# -- req/account -> res/account: the reader's account screen

class AccountReq(Message):
    schema_: Literal["req.account/1"] = Field("req.account/1", alias="schema")
    patron_ref: PatronRef = Field(description="from a successful res.patron of this session: "
                                  "the central answers only within the session it opened for "
                                  "that reader at this station (else reason no_session)")


class AccountLoan(Message):
    item_id: ItemId
    title: str | None = Field(None, description="None when the library system gave none")
    due: dt.date | None = Field(None, description="None when the library system gave none")
    overdue: bool = Field(False, description="due before today (central's date)")
    renewable: bool = Field(True, description="a tx/renew would not be refused for a known "
                            "reason (hold for another reader, patron blocked); the answer "
                            "to the tx/renew is what counts")


class HoldReady(Message):
    item_id: ItemId
    title: str | None = None
    pickup_by: dt.date | None = Field(None, description="last day on the hold shelf")
    pickup_at: str | None = Field(None, max_length=64, description="site code of the pickup "
                                  "branch, when known")


class HoldWaiting(Message):
    title: str = Field(description="title (or the library system's text for the hold)")
    position: int | None = Field(None, ge=1, description="place in the queue, 1 = next; "
                                 "None when the library system does not say (SIP2)")


class Fine(Message):
    description: str
    amount: int | None = Field(None, description="in the currency's minor unit (see "
                               "AccountRes.currency_exponent); None when not itemised")


class AccountRes(Message):
    """Renew one: a tx/renew. Renew all: one tx/renew per loan in `loans` (each goes through
    the outbox and gets its own ack/tx), for either backend."""

    schema_: Literal["res.account/1"] = Field("res.account/1", alias="schema")
    ok: bool = Field(description="False: unknown patron_ref (reason) and the lists are empty")
    reason: Reason | None = None
    loans: list[AccountLoan] = Field(default_factory=list, description="due date order")
    holds_ready: list[HoldReady] = Field(default_factory=list,
                                         description="waiting on the hold shelf for pickup")
    holds_waiting: list[HoldWaiting] = Field(default_factory=list,
                                             description="not available yet")
    fines_total: int = Field(0, ge=0, description="what the reader owes, in minor units")
    currency: str = Field("VND", min_length=3, max_length=3, description="ISO 4217")
    currency_exponent: int = Field(0, ge=0, le=4, description="minor units per major unit "
                                   "as a power of ten: VND 0 (whole dong), USD 2 (cents)")
    fines: list[Fine] = Field(default_factory=list)
    screen_message: list[str] | None = Field(None, description="SIP2 AF: show to the reader")


# -- req/offline-list -> res/offline-list: who may borrow while the central is unreachable

class OfflineListReq(Message):
    schema_: Literal["req.offline-list/1"] = Field("req.offline-list/1", alias="schema")
    page: int = Field(1, ge=1, le=MAX_PAGES, description="1 first; ask 2..pages after it (a "
                      "page stays well under the 16 KiB payload limit)")


class OfflineEntry(Message):
    card_hash: str = Field(pattern=r"^[0-9a-f]{32}$", description="HMAC-SHA256 keyed by the "
                           "list's salt over the card id (UTF-8), first 32 hex digits: "
                           "hmac.new(bytes.fromhex(salt), card_id.encode(), 'sha256')"
                           ".hexdigest()[:32]. The station hashes the card it reads and "
                           "looks it up; it never stores card numbers")
    patron_ref: PatronRef = Field(description="to put in the offline tx/loan")
    display_name: str = Field(max_length=64, description="given name only (the last word of "
                              "a Vietnamese name), never the full name")
    max_offline_loans: int = Field(ge=1, description="loans this patron may make offline, "
                                   "over all offline sessions until the list is renewed")


def card_hash(salt: str, card_id: str) -> str:
    """An offline list's key for a card (OfflineEntry.card_hash): the station and the central
    must compute it alike, so both take it from here."""
    return hmac.new(bytes.fromhex(salt), card_id.encode(), "sha256").hexdigest()[:32]


class OfflineListRes(Message):
    schema_: Literal["res.offline-list/1"] = Field("res.offline-list/1", alias="schema")
    ok: bool | None = Field(None, description="absent on a list; false: no list for this "
                            "station, `reason` says why (no entries, already expired)")
    reason: Literal["not_offline"] | None = Field(None, description="with ok=false: "
                                                  "not_offline, the central does not serve "
                                                  "this station a list (it lends offline "
                                                  "nothing; ask again after offline_list_s)")
    site: str = Field(description="the site the list is for (the topic's)")
    salt: str = Field(pattern=r"^[0-9a-f]{32,64}$", description="per-site key of card_hash, "
                      "hex; the same on every page and stable for a site")
    generated_at: dt.datetime = Field(description="UTC")
    valid_until: dt.datetime = Field(description="UTC; after it the station must not lend "
                                     "offline against this list")
    page: int = Field(ge=1, le=MAX_PAGES)
    pages: int = Field(ge=1, le=MAX_PAGES)
    entries: list[OfflineEntry] = Field(default_factory=list, description="patrons in good "
                                        "standing only: not blocked, card valid, no overdue "
                                        "loans, fines under the limit, not PIN-locked")


# -- tagging the collection (converting a library to RFID) at a station in staff mode
class ItemReq(Message):
    schema_: Literal["req.item/1"] = Field("req.item/1", alias="schema")
    item_id: ItemId = Field(description="the barcode staff scanned off the book")


class ItemRes(Message):
    schema_: Literal["res.item/1"] = Field("res.item/1", alias="schema")
    ok: bool = Field(description="False: the library system does not know this barcode")
    reason: Literal["unknown_item"] | None = None
    item_id: ItemId
    title: str | None = Field(None, max_length=500)
    owner_isil: str | None = Field(None, max_length=16, description=(
        "the owning library's ISIL for the tag; None: the station's own"))
    parts_in_item: int = Field(1, ge=1, le=255, description="tags of a multi-part item (set)")
    home_site: str | None = Field(None, max_length=64, description="owning branch (site code)")
    not_for_loan: bool = Field(False, description="written as type of usage 2 (not for loan)")


class TxTagged(Message):
    """A tag written for an item, from the station's tagging outbox: recorded once per
    msg_id (answered on ack/tx). Outside the circulation's station order: no seq."""

    schema_: Literal["tx.tagged/1"] = Field("tx.tagged/1", alias="schema")
    msg_id: MsgId
    site: str
    station: str
    at: dt.datetime = Field(description="when the tag was written and verified, UTC")
    item_id: ItemId
    tag_uid: str = Field(pattern=r"^[0-9A-F]{16}$")
    part_number: int = Field(1, ge=1, le=255)
    parts_in_item: int = Field(1, ge=1, le=255)
    staff_ref: str = Field(min_length=1, max_length=64, description="hash of the staff card")
    overwrote: bool = Field(False, description="the tag held other data; staff confirmed")
    offline: bool = Field(False, description="written while the central did not answer: "
                          "the item was not looked up (kept for the progress report)")


# -- req/stocktake -> res/stocktake, req/stocktake-seen -> res/stocktake-seen: staff taking
# stock of a shelf with the pad (central/stocktake.py, kiosk/stocktake.py)

PlaceKind = Literal["shelf", "calls", "collection"]
StocktakeId = Annotated[str, Field(pattern=UUID7)]


class Place(Message):
    kind: PlaceKind = Field(description="shelf: the items' shelving location (Koha 952$c, the "
                            "import's `location`); calls: a call-number range, `value` to "
                            "`upto` (a prefix of `upto` counts as within); collection: the "
                            "holdings of one branch (the items' home site)")
    value: str = Field(min_length=1, max_length=255)
    upto: str | None = Field(None, min_length=1, max_length=255)


class PlaceInfo(Message):
    place: Place
    items: int = Field(ge=0, description="items of the catalogue in that place")


class StocktakeInfo(Message):
    stocktake_id: StocktakeId
    place: Place
    status: Literal["open", "paused", "closed"]
    expected: int = Field(ge=0, description="items of the place in the catalogue")
    seen: int = Field(ge=0, description="tags seen so far")
    found: int = Field(0, ge=0)
    missing: int = Field(0, ge=0, description="expected, not on loan, not seen (so far)")
    misplaced: int = Field(0, ge=0, description="seen here, belonging elsewhere")
    on_loan: int = Field(0, ge=0, description="seen while on loan: a return never made")
    unknown: int = Field(0, ge=0, description="tags the catalogue does not know")
    stations: list[str] = Field(default_factory=list, max_length=20)


class StocktakeReq(Message):
    schema_: Literal["req.stocktake/1"] = Field("req.stocktake/1", alias="schema")
    action: Literal["places", "open", "pause", "close"] = Field(description="places: the "
                                                               "site's places and its "
                                                               "stock-takes not closed; open: "
                                                               "start one of `place`, or take "
                                                               "up the one not closed there "
                                                               "(or `stocktake_id`); pause, "
                                                               "close: `stocktake_id`")
    place: Place | None = None
    stocktake_id: StocktakeId | None = None


class StocktakeRes(Message):
    schema_: Literal["res.stocktake/1"] = Field("res.stocktake/1", alias="schema")
    ok: bool
    reason: Literal["unknown_stocktake", "closed", "empty_place", "bad_request"] | None = None
    stocktake: StocktakeInfo | None = None
    places: list[PlaceInfo] = Field(default_factory=list, max_length=40)
    going: list[StocktakeInfo] = Field(default_factory=list, max_length=20, description=(
        "the site's stock-takes not closed, newest first"))


class SeenEntry(Message):
    uid: str = Field(pattern=r"^[0-9A-F]{16}$")
    item_id: ItemId | None = Field(None, description="from the tag; absent: no item id read")


class StocktakeSeenReq(Message):
    schema_: Literal["req.stocktake-seen/1"] = Field("req.stocktake-seen/1", alias="schema")
    stocktake_id: StocktakeId
    batch_id: MsgId = Field(description="UUIDv7 chosen by the station; sent again until "
                            "answered, counted once")
    at: dt.datetime = Field(description="when the stack was on the pad, station clock, UTC")
    tags: list[SeenEntry] = Field(min_length=1, max_length=40)


class SeenBook(Message):
    uid: str = Field(pattern=r"^[0-9A-F]{16}$")
    item_id: ItemId | None = None
    title: str | None = Field(None, max_length=80)
    verdict: Literal["found", "misplaced", "on_loan", "unknown"]


class StocktakeSeenRes(Message):
    schema_: Literal["res.stocktake-seen/1"] = Field("res.stocktake-seen/1", alias="schema")
    ok: bool
    reason: Literal["unknown_stocktake", "closed"] | None = None
    batch_id: MsgId
    books: list[SeenBook] = Field(default_factory=list, max_length=40)
    stocktake: StocktakeInfo | None = None


class MessageError(ValueError):
    """A payload that is not a valid v1 message. `field` names where, `reason` why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


MODELS: dict[str, type[Message]] = {
    "tx.loan/1": TxLoan, "tx.return/1": TxReturn, "tx.renew/1": TxRenew, "ack.tx/1": AckTx,
    "status/1": Status, "req.patron/1": PatronCheckReq, "res.patron/1": PatronCheckRes,
    "req.account/1": AccountReq, "res.account/1": AccountRes,
    "req.offline-list/1": OfflineListReq, "res.offline-list/1": OfflineListRes,
    "req.item/1": ItemReq, "res.item/1": ItemRes, "tx.tagged/1": TxTagged,
    "req.stocktake/1": StocktakeReq, "res.stocktake/1": StocktakeRes,
    "req.stocktake-seen/1": StocktakeSeenReq, "res.stocktake-seen/1": StocktakeSeenRes,
}

# tx/{kind} -> the one model that topic carries
TX_MODELS: dict[str, type[Message]] = {"loan": TxLoan, "return": TxReturn, "renew": TxRenew}

# req/{name} -> the request model and the response model on res/{name}
REQUESTS: dict[str, tuple[type[Message], type[Message]]] = {
    "patron": (PatronCheckReq, PatronCheckRes),
    "account": (AccountReq, AccountRes),
    "offline-list": (OfflineListReq, OfflineListRes),
    "item": (ItemReq, ItemRes),
    "stocktake": (StocktakeReq, StocktakeRes),
    "stocktake-seen": (StocktakeSeenReq, StocktakeSeenRes),
}


def encode(msg: Message) -> bytes:
    return msg.model_dump_json(by_alias=True, exclude_none=True).encode()


def decode(payload: bytes | bytearray, *expected: type[Message],
           known: Mapping[str, type[Message]] | None = None) -> Message:
    """Parse a payload into one of `expected`; when none is named, into any of `known` (by
    default the models of this module; selfcheck.mqtt.registry.decode passes every v1 one).

    What it takes is bounded before anything is parsed (size, nesting depth), and what the
    models accept is bounded after: integers a signed 64-bit column holds, finite numbers,
    datetimes with a time zone. Anything else is a MessageError, never another exception.
    """
    if len(payload) > MAX_PAYLOAD:
        raise MessageError("payload", f"{len(payload)} bytes is over the {MAX_PAYLOAD} limit")
    bounds.check_depth(bytes(payload), MAX_DEPTH, MessageError)
    try:
        raw = json.loads(payload, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MessageError("payload", f"not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise MessageError("payload", "not a JSON object")
    schema = raw.get("schema")
    if expected:
        known = {m.model_fields["schema_"].default: m for m in expected}
    elif known is None:
        known = MODELS
    model = known.get(schema) if isinstance(schema, str) else None
    if model is None:
        wanted = ", ".join(m.model_fields["schema_"].default for m in expected) or "a v1 schema"
        shown = schema[:40] if isinstance(schema, str) else type(schema).__name__
        raise MessageError("schema", f"{shown!r} is not {wanted}")
    bounds.check_numbers(raw, MessageError)
    try:
        msg = model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        raise MessageError(where, err["msg"]) from None
    bounds.check_aware(msg, MessageError)
    return msg


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def decode_tx(payload: bytes | bytearray, kind: str | None = None
              ) -> TxLoan | TxReturn | TxRenew:
    """A transaction; with `kind` (the topic's: loan, return, renew) only that kind."""
    if kind is None:
        models: tuple[type[Message], ...] = (TxLoan, TxReturn, TxRenew)
    elif kind in TX_MODELS:
        models = (TX_MODELS[kind],)
    else:
        raise MessageError("topic", f"no transaction kind {kind[:40]!r}")
    msg = decode(payload, *models)
    assert isinstance(msg, TxLoan | TxReturn | TxRenew)
    return msg

