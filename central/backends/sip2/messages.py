"""SIP2 2.00 requests (what a self-check sends) and the replies it reads, as plain data.

Builders return codec.Message; readers take the reply Message and check it is the one expected.
Dates on the wire are `YYYYMMDDZZZZHHMMSS` (ZZZZ: blank for local time or "   Z" for UTC).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from selfcheck.central.backends.sip2.codec import Message, Sip2ProtocolError

REPLY_TO = {"93": "94", "99": "98", "23": "24", "63": "64", "11": "12", "09": "10",
            "29": "30", "65": "66", "17": "18", "35": "36", "37": "38"}

# Patron status: 14 flags, "Y" where the privilege is denied or the limit reached.
CHARGE_DENIED, RENEW_DENIED, CARD_LOST, TOO_MANY_CHARGED, TOO_MANY_OVERDUE = 0, 1, 4, 5, 6
EXCESSIVE_FINES, EXCESSIVE_FEES = 10, 11

# Item circulation status (18 reply).
CHARGED = "04"
ON_HOLD_SHELF = "08"
# Out with a reader: charged (04), charged and not to be recalled yet (05), recalled (07: still
# charged, asked back). Koha puts in transit (10), claimed returned (11) and lost (12) before
# charged, so a loan shows there only by its due date (AH, sent whenever there is a checkout).
ON_LOAN = frozenset({CHARGED, "05", "07"})


def sip_date(when: dt.datetime) -> str:
    """18-character SIP2 timestamp; UTC times carry the "   Z" zone."""
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
        return when.strftime("%Y%m%d") + "   Z" + when.strftime("%H%M%S")
    return when.strftime("%Y%m%d") + "    " + when.strftime("%H%M%S")


def local_date(when: dt.datetime) -> str:
    """18-character SIP2 timestamp in this machine's local time (blank zone). Koha reads the
    dates of 09 and 11 by position and ignores the zone, as its own local time: a UTC time
    there would move a return made before 07:00 in Vietnam to the day before."""
    if when.tzinfo is not None:
        when = when.astimezone().replace(tzinfo=None)
    return sip_date(when)


_DATE = re.compile(r"([0-9]{4})-?([0-9]{2})-?([0-9]{2})")


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes '²' or '٣', which int() then refuses."""
    return text.isascii() and text.isdigit()


def _count(text: str | None) -> int | None:
    """An optional count field (CB, CF): None unless 1 to 9 ASCII digits (a longer one is
    noise, and int() refuses past 4,300 digits)."""
    digits = (text or "").strip(" ")
    return int(digits) if _digits(digits) and len(digits) <= 9 else None


def parse_due(text: str | None) -> dt.date | None:
    """The due date (AH). SIP2 leaves its format to the ACS: accept the SIP2 timestamp and
    ISO-like dates (Koha sends "YYYYMMDD    HHMMSS", Evergreen ISO); None if unreadable."""
    if not text:
        return None
    m = _DATE.match(text.strip())
    if not m:
        return None
    try:
        return dt.date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


def _yn(value: bool) -> str:
    return "Y" if value else "N"


def _opt(*pairs: tuple[str, str | None]) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in pairs if v is not None)


# -- requests
def login(user: str, password: str, location: str | None = None) -> Message:
    return Message("93", "00", _opt(("CN", user), ("CO", password), ("CP", location)))


def sc_status(print_width: int = 40) -> Message:
    return Message("99", f"0{print_width:03d}2.00")


def patron_status(inst: str, patron: str, now: dt.datetime, terminal_pw: str = "",
                  patron_pw: str = "", *, language: str = "000") -> Message:
    return Message("23", language + sip_date(now),
                   (("AO", inst), ("AA", patron), ("AC", terminal_pw), ("AD", patron_pw)))


# Summary positions of 63: which item list the reply carries (one at a time, says SIP2).
HOLD_ITEMS, OVERDUE_ITEMS, CHARGED_ITEMS, FINE_ITEMS, RECALL_ITEMS, UNAVAILABLE_HOLDS = range(6)


def patron_information(inst: str, patron: str, now: dt.datetime, *, charged: bool = False,
                       terminal_pw: str = "", patron_pw: str | None = None,
                       items: int | None = None, language: str = "000") -> Message:
    """63. `items`: a summary position above (`charged=True` is CHARGED_ITEMS)."""
    if charged:
        items = CHARGED_ITEMS
    summary = "".join("Y" if n == items else " " for n in range(10))
    return Message("63", language + sip_date(now) + summary,
                   _opt(("AO", inst), ("AA", patron), ("AC", terminal_pw), ("AD", patron_pw)))


def checkout(inst: str, patron: str, item: str, when: dt.datetime, terminal_pw: str = "",
             *, renewal_policy: bool = True, no_block: bool = False) -> Message:
    """11. `when`: when the loan was made. no_block: made offline (store and forward), which
    the library system must accept. The nb due date carries `when` too: Koha takes a no-block
    checkout's nb due date as the time the loan was made and counts the due date from it
    (strict servers want a date there even with no block = N)."""
    date = local_date(when)
    return Message("11", _yn(renewal_policy) + _yn(no_block) + date + date,
                   (("AO", inst), ("AA", patron), ("AB", item), ("AC", terminal_pw)))


def checkin(inst: str, item: str, location: str, when: dt.datetime,
            terminal_pw: str = "", *, no_block: bool = False) -> Message:
    """09. `when`: when the book came back, the return date too: Koha returns the loan, and
    charges any overdue fine, as of that date. no_block: done offline (store and forward)."""
    date = local_date(when)
    return Message("09", _yn(no_block) + date + date,
                   (("AP", location), ("AO", inst), ("AB", item), ("AC", terminal_pw)))


def renew(inst: str, patron: str, item: str, now: dt.datetime, terminal_pw: str = "") -> Message:
    return Message("29", "NN" + sip_date(now) + sip_date(now),
                   (("AO", inst), ("AA", patron), ("AB", item), ("AC", terminal_pw)))


def renew_all(inst: str, patron: str, now: dt.datetime, terminal_pw: str = "") -> Message:
    return Message("65", sip_date(now), (("AO", inst), ("AA", patron), ("AC", terminal_pw)))


def item_information(inst: str, item: str, now: dt.datetime, terminal_pw: str = "") -> Message:
    return Message("17", sip_date(now), (("AO", inst), ("AB", item), ("AC", terminal_pw)))


def end_session(inst: str, patron: str, now: dt.datetime, terminal_pw: str = "") -> Message:
    return Message("35", sip_date(now), (("AO", inst), ("AA", patron), ("AC", terminal_pw)))


def fee_paid(inst: str, patron: str, amount: str, now: dt.datetime, *, fee_type: str = "01",
             payment_type: str = "00", currency: str = "VND", fee_id: str | None = None,
             transaction_id: str | None = None, terminal_pw: str = "") -> Message:
    if len(fee_type) != 2 or len(payment_type) != 2 or len(currency) != 3:
        raise Sip2ProtocolError("fee", "fee type and payment type take 2 characters, "
                                "currency 3")
    return Message("37", sip_date(now) + fee_type + payment_type + currency,
                   _opt(("BV", amount), ("AO", inst), ("AA", patron), ("AC", terminal_pw),
                        ("CG", fee_id), ("BK", transaction_id)))


# -- replies
def expect(reply: Message, request: Message) -> Message:
    want = REPLY_TO[request.command]
    if reply.command != want:
        raise Sip2ProtocolError("command", f"expected {want} for {request.command}, "
                                f"got {reply.command}")
    return reply


def _flag(reply: Message, pos: int, allowed: str, what: str) -> str:
    value = reply.fixed[pos]
    if value not in allowed:
        raise Sip2ProtocolError(what, f"{value!r} is not one of {allowed!r}")
    return value


@dataclass(frozen=True)
class Screen:
    """What the ACS wants the reader to see or have printed."""

    screen: tuple[str, ...] = ()
    print_lines: tuple[str, ...] = ()

    @classmethod
    def of(cls, reply: Message) -> Screen:
        return cls(tuple(reply.all("AF")), tuple(reply.all("AG")))


@dataclass(frozen=True)
class CircResult:
    """A checkout (12), checkin (10) or renew (30) reply."""

    ok: bool
    item_id: str
    title: str | None
    due: dt.date | None
    security: bool | None  # desensitize (12, 30) or resensitize (10); None when unknown
    alert: bool
    alert_type: str | None
    sort_bin: str | None
    patron_id: str | None
    text: Screen
    destination: str | None = None  # CT (10): where the book goes (transit)
    hold_patron: str | None = None  # CY (10): the hold's patron id (a card: never forward it)


def circulation(reply: Message) -> CircResult:
    if reply.command not in ("12", "10", "30"):
        raise Sip2ProtocolError("command", f"{reply.command} is not a circulation reply")
    ok = _flag(reply, 0, "01", "ok") == "1"
    if reply.command == "10":
        security_flag = _flag(reply, 1, "YNU", "resensitize")
        alert = _flag(reply, 3, "YN", "alert") == "Y"
    else:
        _flag(reply, 1, "YN", "renewal ok")
        security_flag = _flag(reply, 3, "YNU", "desensitize")
        alert = False
    item = reply.get("AB")
    if item is None:
        raise Sip2ProtocolError("AB", "item identifier missing")
    return CircResult(
        ok=ok, item_id=item, title=reply.get("AJ") or None, due=parse_due(reply.get("AH")),
        security={"Y": True, "N": False}.get(security_flag), alert=alert,
        alert_type=reply.get("CV"), sort_bin=reply.get("CL") or None,
        patron_id=reply.get("AA"), text=Screen.of(reply),
        destination=reply.get("CT") or None, hold_patron=reply.get("CY") or None)


@dataclass(frozen=True)
class PatronInfo:
    """A patron status (24) or patron information (64) reply."""

    patron_id: str
    name: str
    status: str  # the 14 flags
    valid: bool | None  # BL
    charged_count: int | None
    charged_limit: int | None
    charged_items: tuple[str, ...]
    text: Screen
    valid_password: bool | None = None  # CQ; None when the ACS did not say
    hold_items: tuple[str, ...] = ()  # AS: available holds
    overdue_items: tuple[str, ...] = ()  # AT
    fine_items: tuple[str, ...] = ()  # AV: free text per fine
    unavailable_holds: tuple[str, ...] = ()  # CD
    fee_amount: str | None = None  # BV
    currency: str | None = None  # BH

    def denied(self, pos: int) -> bool:
        return self.status[pos] == "Y"


def patron(reply: Message) -> PatronInfo:
    if reply.command not in ("24", "64"):
        raise Sip2ProtocolError("command", f"{reply.command} is not a patron reply")
    status = reply.fixed[:14]
    if any(c not in "Y " for c in status):
        raise Sip2ProtocolError("patron status", f"{status!r}: flags are 'Y' or blank")
    count: int | None = None
    if reply.command == "64":
        text = reply.fixed[43:47]
        digits = text.strip(" ")  # str.strip() would also take \x1f, which int() refuses
        if not _digits(digits):
            raise Sip2ProtocolError("charged items count", f"{text!r} is not a number")
        count = int(digits)
    limit = reply.get("CB")
    bl = reply.get("BL")
    cq = reply.get("CQ")
    return PatronInfo(
        patron_id=reply.get("AA") or "", name=reply.get("AE") or "", status=status,
        valid=None if bl is None else bl == "Y", charged_count=count,
        charged_limit=_count(limit),
        charged_items=tuple(reply.all("AU")), text=Screen.of(reply),
        valid_password=None if cq is None else cq == "Y", hold_items=tuple(reply.all("AS")),
        overdue_items=tuple(reply.all("AT")), fine_items=tuple(reply.all("AV")),
        unavailable_holds=tuple(reply.all("CD")), fee_amount=reply.get("BV") or None,
        currency=reply.get("BH") or None)


@dataclass(frozen=True)
class ItemInfo:
    item_id: str
    circulation_status: str
    title: str | None
    due: dt.date | None
    text: Screen
    hold_pickup_date: dt.date | None = None  # CM
    hold_queue_length: int | None = None  # CF
    permanent_location: str | None = None  # AQ: Koha's home branch
    current_location: str | None = None  # AP: Koha's holding branch

    @property
    def known(self) -> bool:
        """Koha answers a barcode it does not have with status 01, the barcode echoed, an
        empty title and nothing else (no AQ); a known item always has its home branch."""
        return bool(self.title or self.permanent_location)

    @property
    def on_loan(self) -> bool:
        return self.circulation_status in ON_LOAN or self.due is not None


def item(reply: Message) -> ItemInfo:
    if reply.command != "18":
        raise Sip2ProtocolError("command", f"{reply.command} is not an item information reply")
    status = reply.fixed[:2]
    if not _digits(status):
        raise Sip2ProtocolError("circulation status", f"{status!r} is not two digits")
    return ItemInfo(item_id=reply.get("AB") or "", circulation_status=status,
                    title=reply.get("AJ") or None, due=parse_due(reply.get("AH")),
                    text=Screen.of(reply), hold_pickup_date=parse_due(reply.get("CM")),
                    hold_queue_length=_count(reply.get("CF")),
                    permanent_location=reply.get("AQ") or None,
                    current_location=reply.get("AP") or None)


@dataclass(frozen=True)
class RenewAllResult:
    ok: bool
    renewed: tuple[str, ...]
    unrenewed: tuple[str, ...]
    text: Screen


def renew_all_result(reply: Message) -> RenewAllResult:
    if reply.command != "66":
        raise Sip2ProtocolError("command", f"{reply.command} is not a renew all reply")
    for name, start in (("renewed count", 1), ("unrenewed count", 5)):
        if not _digits(reply.fixed[start:start + 4]):
            raise Sip2ProtocolError(name, f"{reply.fixed[start:start + 4]!r} is not 4 digits")
    return RenewAllResult(ok=_flag(reply, 0, "01", "ok") == "1", renewed=tuple(reply.all("BM")),
                          unrenewed=tuple(reply.all("BN")), text=Screen.of(reply))


@dataclass(frozen=True)
class EndSessionResult:
    ended: bool
    patron_id: str
    text: Screen


def end_session_result(reply: Message) -> EndSessionResult:
    if reply.command != "36":
        raise Sip2ProtocolError("command", f"{reply.command} is not an end session reply")
    return EndSessionResult(ended=_flag(reply, 0, "YN", "end session") == "Y",
                            patron_id=reply.get("AA") or "", text=Screen.of(reply))


@dataclass(frozen=True)
class FeePaidResult:
    accepted: bool
    patron_id: str
    transaction_id: str | None  # BK, echoed when the ACS keeps it
    text: Screen


def fee_paid_result(reply: Message) -> FeePaidResult:
    if reply.command != "38":
        raise Sip2ProtocolError("command", f"{reply.command} is not a fee paid reply")
    return FeePaidResult(accepted=_flag(reply, 0, "YN", "payment accepted") == "Y",
                         patron_id=reply.get("AA") or "", transaction_id=reply.get("BK"),
                         text=Screen.of(reply))


def login_ok(reply: Message) -> bool:
    if reply.command != "94":
        raise Sip2ProtocolError("command", f"{reply.command} is not a login reply")
    return _flag(reply, 0, "01", "ok") == "1"


def acs_online(reply: Message) -> bool:
    if reply.command != "98":
        raise Sip2ProtocolError("command", f"{reply.command} is not an ACS status reply")
    return _flag(reply, 0, "YN", "online status") == "Y"
