"""Taking stock at a station, without I/O: which tags on the pad are new to this stock-take,
the batches to send, and what the central said of each book.

Staff put a shelf's books on the pad a stack at a time. Each stack's tags not seen before
make one batch (at most BATCH tags: the request's limit); the runtime journals it and sends it
through its stock-take outbox (kiosk/runtime/stocktake.py), offline too. A book shows at once
as "seen" (with its item id from the tag) and gets its verdict and title when the central
answers: found, misplaced, on loan, unknown.

Events and where they lead (the state is `phase`):

| phase   | event      | next    |
|---------|------------|---------|
| idle    | Begin      | running |
| running | Tags       | running (new tags become a batch) |
| running | Answered   | running |
| running | Pause/Close| idle    |
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from selfcheck.drivers.seen import SeenTag

if TYPE_CHECKING:
    from selfcheck.mqtt.messages import Place

BATCH = 40  # tags per req.stocktake-seen (messages.StocktakeSeenReq.tags)
SHOWN = 12  # the newest books on the screen


# What a call number is typed with at the station: digits, letters, the dot and a space
# ("895.922 NG-D" is typed "895.922 NG"; the central compares without case and takes a call
# number that starts with the range's end as within it).
CALL_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ. ")
CALL_MAX = 40  # longer than any shelf mark; the request allows 255


def call_key(text: str, ch: str | None) -> str:
    """`text` with the key `ch` typed (None: the last character deleted). Letters go upper
    case, as call numbers are written; a character not in CALL_CHARS, a leading space, a
    second space in a row and anything past CALL_MAX are not taken."""
    if ch is None:
        return text[:-1]
    ch = ch.upper()
    if (len(ch) != 1 or ch not in CALL_CHARS or len(text) >= CALL_MAX
            or (ch == " " and (not text or text.endswith(" ")))):
        return text
    return text + ch


def call_range(value: str, upto: str) -> tuple[str, str] | str:
    """The range staff typed, as (value, upto) for a Place of kind "calls"; an empty To
    means the one call number From (its prefix: "895.9" takes "895.9 N01"). Else why not:
    "need_from" (From is empty) or "order" (To comes before From, which the central would
    refuse as bad_request: the same comparison, without case)."""
    value, upto = value.strip().upper(), upto.strip().upper() or value.strip().upper()
    if not value:
        return "need_from"
    if upto < value:
        return "order"
    return value, upto


def place_label(place: Place) -> str:
    """How a place is written for people: codes and call numbers, alike in both languages."""
    if place.kind == "calls":
        return f"{place.value} – {place.upto or place.value}"
    return place.value


class Phase(StrEnum):
    IDLE = "idle"
    RUNNING = "running"


@dataclass
class Book:
    uid: str
    item_id: str | None
    title: str | None = None
    verdict: str | None = None  # None until the central answered: found, misplaced, ...
    sent: bool = False


@dataclass(frozen=True)
class Batch:
    """New tags of one stack: (uid, item_id) pairs, sent as one request."""

    tags: tuple[tuple[str, str | None], ...]


@dataclass
class Counts:
    expected: int = 0
    seen: int = 0
    found: int = 0
    missing: int = 0
    misplaced: int = 0
    on_loan: int = 0
    unknown: int = 0


@dataclass
class StocktakeRun:
    phase: Phase = Phase.IDLE
    stocktake_id: str | None = None
    label: str = ""
    books: dict[str, Book] = field(default_factory=dict)  # by uid, first seen first
    counts: Counts = field(default_factory=Counts)  # as the central last said
    on_pad: int = 0  # tags on the pad now

    def begin(self, stocktake_id: str, label: str, counts: Counts) -> None:
        if self.stocktake_id != stocktake_id:  # another one: this station's list starts anew
            self.books = {}
        self.phase, self.stocktake_id, self.label, self.counts = (
            Phase.RUNNING, stocktake_id, label, counts)

    def end(self) -> None:
        self.phase = Phase.IDLE

    def tags(self, tags: Sequence[SeenTag]) -> list[Batch]:
        """The pad's tags now: the ones new to this stock-take, in batches."""
        self.on_pad = len(tags)
        if self.phase is not Phase.RUNNING:
            return []
        new: list[tuple[str, str | None]] = []
        for t in tags:
            if t.uid in self.books:
                continue
            item_id = t.item.primary_item_id if t.item is not None else None
            self.books[t.uid] = Book(t.uid, item_id or None, sent=True)
            new.append((t.uid, item_id or None))
        return [Batch(tuple(new[i:i + BATCH])) for i in range(0, len(new), BATCH)]

    def answered(self, verdicts: Sequence[tuple[str, str | None, str | None, str]],
                 counts: Counts | None) -> None:
        """(uid, item_id, title, verdict) of a batch the central took in."""
        for uid, item_id, title, verdict in verdicts:
            book = self.books.setdefault(uid, Book(uid, item_id))
            book.title, book.verdict = title, verdict
        if counts is not None:
            self.counts = counts

    @property
    def waiting(self) -> int:
        """Books seen here that the central has not answered yet (offline: all new ones)."""
        return sum(1 for b in self.books.values() if b.verdict is None)

    def newest(self, n: int = SHOWN) -> list[Book]:
        return list(self.books.values())[-n:][::-1]
