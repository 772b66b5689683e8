"""The content of a receipt, built from a session summary: pure data in, lines out.

No I/O, no printer: the lines are a `selfcheck.drivers.printer.document.Receipt`, which the
printer turns into ESC/POS and `selfcheck.drivers.printer.mail` into an e-mail. The words live in
kiosk/locale/{vi,en}/LC_MESSAGES/receipt.po.

Privacy (Decree 13/2023): a receipt can be left on the station or read by anyone nearby, so it
carries the reader's given name, a masked initial or nothing; never a card number or full name.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from selfcheck.drivers.printer.document import Receipt, ReceiptLine
from selfcheck.kiosk import i18n

Outcome = Literal[
    "borrowed", "borrowed_offline", "renewed", "returned", "returned_offline", "refused",
    "not_borrowed", "pending"
]
NameStyle = Literal["given", "masked", "none"]
NameOrder = Literal["family-first", "given-first"]


@dataclass(frozen=True)
class ReceiptItem:
    item_id: str
    title: str | None
    outcome: Outcome
    due: dt.date | None = None
    reason: str | None = None  # a reason code: reason.<code> in kiosk.po
    notes: tuple[str, ...] = ()  # the library system's own receipt lines (SIP2 AG)


@dataclass(frozen=True)
class SessionSummary:
    library: str
    station: str
    when: dt.datetime
    patron_name: str | None  # as the library system gave it; shortened here
    items: tuple[ReceiptItem, ...]


catalog = i18n.RECEIPT.texts
t = i18n.RECEIPT.t


_DIGITS = re.compile(r"\d")


def display_name(full: str | None, style: NameStyle = "given",
                 order: NameOrder = "family-first") -> str | None:
    """The given name only ("Nguyễn Văn An" -> "An" in Vietnamese order), or its initial
    masked ("A***"), or None. Words holding digits are dropped: a card number that slipped
    into a name field must never reach paper."""
    if style == "none" or not full:
        return None
    words = [w for w in unicodedata.normalize("NFC", full).split() if not _DIGITS.search(w)]
    if not words:
        return None
    given = words[-1] if order == "family-first" else words[0]
    return given if style == "given" else given[0] + "***"


def build_receipt(summary: SessionSummary, lang: str, *, name_style: NameStyle = "given",
                  name_order: NameOrder = "family-first") -> Receipt:
    """The receipt lines for `summary` in `lang` ("vi" or "en")."""
    catalog(lang)  # refuses an unknown language before anything else
    when = f"{i18n.date(summary.when.date(), lang)} {summary.when:%H:%M}"
    is_loan = any(i.outcome in ("borrowed", "borrowed_offline", "renewed", "not_borrowed")
                  for i in summary.items)
    lines = [
        ReceiptLine(summary.library, "title"),
        ReceiptLine(t("receipt.title.loan" if is_loan else "receipt.title.return", lang),
                    "center"),
        ReceiptLine("", "rule"),
        ReceiptLine(t("receipt.station", lang, station=summary.station)),
        ReceiptLine(t("receipt.when", lang, when=when)),
    ]
    name = display_name(summary.patron_name, name_style, name_order)
    if name:
        lines.append(ReceiptLine(t("receipt.patron", lang, name=name)))
    lines.append(ReceiptLine("", "rule"))
    for n, item in enumerate(summary.items, 1):
        title = item.title or t("receipt.unknown_title", lang)
        lines += [
            ReceiptLine(f"{n}. {title}", "bold"),
            ReceiptLine(t("receipt.item_id", lang, item=item.item_id)),
            ReceiptLine(_outcome_text(item, lang)),
            *(ReceiptLine(note) for note in item.notes),
        ]
    lines.append(ReceiptLine("", "rule"))
    borrowed = sum(i.outcome in ("borrowed", "borrowed_offline", "renewed")
                   for i in summary.items)
    returned = sum(i.outcome in ("returned", "returned_offline") for i in summary.items)
    refused = sum(i.outcome in ("refused", "not_borrowed") for i in summary.items)
    if borrowed:
        lines.append(ReceiptLine(t("receipt.total.borrowed", lang, n=borrowed), "bold"))
    if returned:
        lines.append(ReceiptLine(t("receipt.total.returned", lang, n=returned), "bold"))
    if refused:
        lines.append(ReceiptLine(t("receipt.total.refused", lang, n=refused), "bold"))
    lines.append(ReceiptLine("", "blank"))
    if borrowed:
        lines.append(ReceiptLine(t("receipt.footer.due", lang), "center"))
    lines.append(ReceiptLine(t("receipt.footer", lang), "center"))
    subject = t("receipt.mail.subject", lang, library=summary.library,
                date=i18n.date(summary.when.date(), lang))
    return Receipt(lang=lang, subject=subject, lines=tuple(lines))


def _outcome_text(item: ReceiptItem, lang: str) -> str:
    due = i18n.date(item.due, lang) if item.due else "?"
    match item.outcome:
        case "borrowed":
            return t("receipt.borrowed_until", lang, date=due)
        case "renewed":
            return t("receipt.renewed_until", lang, date=due)
        case "returned":
            return t("receipt.returned", lang)
        case "borrowed_offline":
            return t("receipt.borrowed_offline", lang)
        case "returned_offline":
            return t("receipt.returned_offline", lang)
        case "refused":
            return t("receipt.refused", lang, reason=i18n.reason_text(item.reason, lang))
        case "not_borrowed":
            return t("receipt.not_borrowed", lang, reason=i18n.reason_text(item.reason, lang))
        case _:
            return t("receipt.pending", lang)


def items_from_lines(lines: Iterable[Any]) -> tuple[ReceiptItem, ...]:
    """ReceiptItems from the self-check core's screen lines (kiosk.core.Line), read by
    attribute so that this module does not depend on the core's internals. Unreadable tags
    have no item id and are left out."""
    out = []
    for line in lines:
        status, kind = str(line.status), str(line.kind)
        if status == "unreadable" or not line.item_id:
            continue
        outcome: Outcome
        if status == "done":
            outcome = ("borrowed" if kind == "loan" else "renewed" if kind == "renew"
                       else "returned")
        elif status == "offline":
            outcome = "borrowed_offline" if kind == "loan" else "returned_offline"
        elif status == "refused":
            outcome = "refused"
        elif status == "unconfirmed":
            outcome = "not_borrowed"
        else:
            outcome = "pending"
        out.append(ReceiptItem(item_id=line.item_id, title=line.title, outcome=outcome,
                               due=line.due, reason=line.reason,
                               notes=tuple(getattr(line, "print_lines", ()))))
    return tuple(out)
