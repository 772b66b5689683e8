"""Tagging the collection (converting a library to RFID) at a station in staff mode: the
desk's state machine, with no I/O, no clock and no Kivy (like kiosk/core.py).

Staff scan a book's barcode, the station looks the item up at the central, staff put the
book (every part of a set) on the pad, the station writes an ISO 28560-3 tag, reads it back
and records it. Events in (a barcode, the central's answer, the tags on the pad, a button,
the write's outcome, an ack), actions out (look up, write, record, sound); the runtime
(kiosk/runtime/tagging.py) performs them and the screen renders `view()`.

What it refuses: a barcode the library system does not know; more tags on the pad than the
item has parts (two books at once would get one item's data); and it never writes over a tag
that holds data unless staff confirm.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from selfcheck.drivers.seen import SeenTag, TagUid

if TYPE_CHECKING:
    from selfcheck.system.i18n import Catalog

Phase = Literal["scan", "lookup", "place", "confirm", "writing"]
Tone = Literal["ok", "error", "info"]
Press = Literal["overwrite", "cancel", "retry"]
WriteProblem = Literal["holds_data", "write", "verify", "gone"]
MAX_BARCODE = 64
LAST_SHOWN = 10
CIRCULATING, NOT_FOR_LOAN = 1, 2  # ISO 28560 type of usage
UID_MODEL = "uid"  # drivers/tags/fallback.py: no data, the UID stands in for the item id


def holds_data(tag: SeenTag) -> bool:
    """The tag carries an item's data (a blank tag's item id is its UID: the "uid" model;
    data that fits no model is found by the write's own check, `holds_data`)."""
    return tag.item is not None and tag.item.model != UID_MODEL


@dataclass(frozen=True)
class ItemInfo:
    item_id: str
    title: str | None = None
    owner_isil: str | None = None
    parts_in_item: int = 1
    not_for_loan: bool = False


# -- events
@dataclass(frozen=True)
class Barcode:
    code: str


@dataclass(frozen=True)
class ItemLooked:
    """The central's answer to a look-up: `info` None with `unknown` False is no answer."""

    barcode: str
    info: ItemInfo | None
    unknown: bool = False


@dataclass(frozen=True)
class Tags:
    tags: tuple[SeenTag, ...]


@dataclass(frozen=True)
class Pressed:
    button: Press


@dataclass(frozen=True)
class TagResult:
    uid: TagUid
    ok: bool
    problem: WriteProblem | None = None


@dataclass(frozen=True)
class Written:
    item_id: str
    results: tuple[TagResult, ...]


@dataclass(frozen=True)
class Acked:
    msg_id: str


TaggingEvent = Barcode | ItemLooked | Tags | Pressed | Written | Acked


# -- actions
@dataclass(frozen=True)
class LookUp:
    barcode: str


@dataclass(frozen=True)
class TagWrite:
    uid: TagUid
    part_number: int


@dataclass(frozen=True)
class WriteTags:
    """Write the item's data on each tag (part numbers in UID order), read it back, then set
    the site's 'in library' AFI. Without `overwrite` the runtime first checks the tag is
    blank and answers `holds_data` if not."""

    item: ItemInfo
    owner_isil: str | None
    type_of_usage: int
    writes: tuple[TagWrite, ...]
    overwrite: bool


@dataclass(frozen=True)
class RecordTagged:
    msg_id: str
    item_id: str
    tag_uid: TagUid
    part_number: int
    parts_in_item: int
    overwrote: bool
    offline: bool
    at: dt.datetime


@dataclass(frozen=True)
class Sound:
    ok: bool


TaggingAction = LookUp | WriteTags | RecordTagged | Sound


# -- what the screen shows
@dataclass(frozen=True)
class DoneItem:
    item_id: str
    title: str | None
    parts: int
    at: dt.datetime
    msg_ids: tuple[str, ...]
    offline: bool
    recorded: bool = False  # the central has it (every part's ack came)


@dataclass(frozen=True)
class TaggingView:
    phase: Phase
    item: ItemInfo | None
    offline_item: bool  # the item was not looked up (no answer): tagged as one part
    message: str | None  # a key of kiosk/locale/*/tagging.po
    message_args: tuple[tuple[str, str], ...]
    tone: Tone
    holds: str | None  # what the tag on the pad already holds (confirm)
    on_pad: int
    session: int
    hour: int
    today: int
    last: tuple[DoneItem, ...]
    queued: int  # tags written and not yet acknowledged by the central


@dataclass
class TaggingConfig:
    owner_isil: str | None = None  # the station's library, for items the central gives none
    offline_tagging: bool = True  # no answer from the central: tag as a one-part item


@dataclass
class TaggingDesk:
    config: TaggingConfig
    new_id: Callable[[], str]
    staff_ref: str = ""
    phase: Phase = "scan"
    item: ItemInfo | None = None
    offline_item: bool = False
    present: tuple[SeenTag, ...] = ()
    holds: str | None = None
    message: tuple[str, tuple[tuple[str, str], ...], Tone] | None = None
    history: list[dt.datetime] = field(default_factory=list)  # this station's items, today
    session_count: int = 0
    last: deque[DoneItem] = field(default_factory=lambda: deque(maxlen=LAST_SHOWN))
    unacked: set[str] = field(default_factory=set)
    _barcode: str | None = None  # the look-up in flight
    _overwriting: bool = False  # the write in flight goes over data staff saw

    def start(self, staff_ref: str, history: list[dt.datetime]) -> None:
        """A staff member opens the desk; `history`: when this station tagged items today."""
        self.staff_ref = staff_ref
        self.history = list(history)
        self.session_count = 0
        self.phase, self.item, self.holds, self.message = "scan", None, None, None
        self._say("tagging.scan", "info")

    # -- reading
    def view(self, now: dt.datetime) -> TaggingView:
        hour = now.replace(minute=0, second=0, microsecond=0)
        day = hour.replace(hour=0)
        key, args, tone = self.message or (None, (), "info")
        return TaggingView(
            phase=self.phase, item=self.item, offline_item=self.offline_item, message=key,
            message_args=args, tone=tone, holds=self.holds, on_pad=len(self.present),
            session=self.session_count, hour=sum(1 for t in self.history if t >= hour),
            today=sum(1 for t in self.history if t >= day), last=tuple(reversed(self.last)),
            queued=len(self.unacked))

    # -- writing
    def handle(self, event: TaggingEvent, now: dt.datetime) -> list[TaggingAction]:
        if isinstance(event, Barcode):
            return self._barcode_read(event.code)
        if isinstance(event, ItemLooked):
            return self._looked(event)
        if isinstance(event, Tags):
            self.present = event.tags
            return self._evaluate() if self.phase in ("place", "confirm") else []
        if isinstance(event, Pressed):
            return self._press(event.button)
        if isinstance(event, Written):
            return self._written(event, now)
        if isinstance(event, Acked):
            return self._acked(event.msg_id)
        raise TypeError(f"not a tagging event: {event!r}")

    def _say(self, key: str, tone: Tone, **args: object) -> None:
        self.message = (key, tuple((k, str(v)) for k, v in args.items()), tone)

    def _refuse(self, key: str, **args: object) -> list[TaggingAction]:
        self._say(key, "error", **args)
        return [Sound(False)]

    def _barcode_read(self, code: str) -> list[TaggingAction]:
        code = code.strip()
        if self.phase == "writing":
            return self._refuse("tagging.busy")  # the write in flight decides first
        if not code or len(code) > MAX_BARCODE or not code.isprintable():
            return self._refuse("tagging.bad_barcode")
        self._barcode = code
        self.phase, self.item, self.holds, self.offline_item = "lookup", None, None, False
        self._say("tagging.looking", "info", barcode=code)
        return [LookUp(code)]

    def _looked(self, event: ItemLooked) -> list[TaggingAction]:
        if self.phase != "lookup" or event.barcode != self._barcode:
            return []  # an answer for a barcode staff have since replaced
        if event.info is None:
            if event.unknown:
                self.phase = "scan"
                return self._refuse("tagging.unknown", barcode=event.barcode)
            if not self.config.offline_tagging:
                self.phase = "scan"
                return self._refuse("tagging.no_answer", barcode=event.barcode)
            # No answer: tagged as one part with this library's ISIL; the central sees it
            # when back (kept as not looked up in the report)
            self.item, self.offline_item = ItemInfo(event.barcode), True
        else:
            self.item = event.info
        self.phase = "place"
        return self._evaluate()

    def _evaluate(self, overwrite: bool = False) -> list[TaggingAction]:
        item = self.item
        assert item is not None
        need, tags = item.parts_in_item, self.present
        self.holds = None
        if len(tags) == 0 or len(tags) < need:
            self.phase = "place"
            key = "tagging.place_offline" if self.offline_item else "tagging.place"
            if need > 1:
                self._say("tagging.place_parts", "info", have=len(tags), need=need)
            else:
                self._say(key, "info")
            return []
        if len(tags) > need:
            self.phase = "place"
            return self._refuse("tagging.too_many", have=len(tags), need=need)
        held = [t.item.primary_item_id for t in tags if t.item is not None and holds_data(t)]
        if held and not overwrite:
            self.phase = "confirm"
            self.holds = ", ".join(sorted(set(held)))
            self._say("tagging.holds_data", "error", holds=self.holds)
            return [Sound(False)]
        return self._write(overwrite)

    def _write(self, overwrite: bool) -> list[TaggingAction]:
        item = self.item
        assert item is not None
        self.phase, self._overwriting = "writing", overwrite
        self._say("tagging.writing", "info")
        uids = sorted(t.uid for t in self.present)
        writes = tuple(TagWrite(uid, n) for n, uid in enumerate(uids, start=1))
        usage = NOT_FOR_LOAN if item.not_for_loan else CIRCULATING
        return [WriteTags(item, item.owner_isil or self.config.owner_isil, usage, writes,
                          overwrite)]

    def _press(self, button: Press) -> list[TaggingAction]:
        if button == "cancel" and self.phase in ("lookup", "place", "confirm"):
            self.phase, self.item, self.holds, self._barcode = "scan", None, None, None
            self._say("tagging.cancelled", "info")
            return []
        if button in ("overwrite", "retry") and self.phase in ("confirm", "place") \
                and self.item is not None and self.present:
            # staff's yes: the tag's data (or a failed write's remains) is written over
            return self._evaluate(overwrite=True)
        return []

    def _written(self, event: Written, now: dt.datetime) -> list[TaggingAction]:
        item = self.item
        if self.phase != "writing" or item is None or event.item_id != item.item_id:
            return []
        failed = [r for r in event.results if not r.ok]
        if any(r.problem == "holds_data" for r in failed):
            self.phase, self.holds = "confirm", "?"
            self._say("tagging.holds_unreadable", "error")
            return [Sound(False)]
        if failed:
            self.phase = "place"  # lifted and put back, or retry: tried again
            problem = failed[0].problem or "write"
            return self._refuse(f"tagging.failed_{problem}")
        parts = {w.uid: n for n, w in enumerate(sorted(event.results, key=lambda r: r.uid),
                                                 start=1)}
        actions: list[TaggingAction] = []
        ids = []
        for uid, part in parts.items():
            msg_id = self.new_id()
            ids.append(msg_id)
            actions.append(RecordTagged(msg_id, item.item_id, uid, part, item.parts_in_item,
                                        overwrote=self._overwriting, offline=self.offline_item,
                                        at=now))
        self.unacked.update(ids)
        self.session_count += 1
        self.history.append(now)
        self.last.append(DoneItem(item.item_id, item.title, item.parts_in_item, now,
                                  tuple(ids), self.offline_item))
        self._say("tagging.done", "ok", item=item.item_id)
        self.phase, self.item, self.holds, self._barcode = "scan", None, None, None
        self.offline_item = False
        return [*actions, Sound(True)]

    def _acked(self, msg_id: str) -> list[TaggingAction]:
        if msg_id not in self.unacked:
            return []
        self.unacked.discard(msg_id)
        for i, done in enumerate(self.last):
            if msg_id in done.msg_ids and not (set(done.msg_ids) & self.unacked):
                self.last[i] = DoneItem(done.item_id, done.title, done.parts, done.at,
                                        done.msg_ids, done.offline, recorded=True)
        return []


def text(key: str, lang: str, **args: object) -> str:
    """A tagging desk text (kiosk/locale/*/LC_MESSAGES/tagging.po)."""
    from selfcheck.kiosk.i18n import LOCALE_DIR
    from selfcheck.system.i18n import Catalog

    global _TEXTS
    if _TEXTS is None:
        _TEXTS = Catalog(LOCALE_DIR, "tagging")
    return _TEXTS.t(key, lang, **args)


def message_text(view: TaggingView, lang: str) -> str:
    """The desk's message in `lang`, with its arguments."""
    return text(view.message, lang, **dict(view.message_args)) if view.message else ""


_TEXTS: Catalog | None = None
