"""Stock-takes: staff count a place (a shelf, a call-number range, a branch's collection) with
a station's pad, a stack at a time, and the central says what was found, missing, misplaced,
seen while on loan, and unknown.

The expected list is the central's catalogue: the `items` table, which the embedded store
keeps and which the import fills for SIP2 and Koha sites too (central/importer.py). On loan
is the `loans` table and, with a SIP2 or Koha backend (ItemLookup), what the library system
says of the items seen: the central's loans table knows only the loans made at its stations.
Its word is asked as a batch comes (kept SAID_FOR_S, so a stack costs its own books) and kept
with each sighting, so that the console, which asks no library system, reports what the
station was told; a report asks again for at most LIBRARY_ASKS seen items without a word. Its
`note` says when some have none (not asked, or not answered: the loans table's word). An
expected item not seen is not asked about (a whole collection), so one lent at a desk is still
listed missing. A stock-take reads, and changes no loan.

A stock-take is one row (open, paused, closed) that any station of its site may take up; the
sightings are kept once per tag (its first sighting). Batches arrive through the station's
stock-take outbox, sent again until answered: each batch id is taken in once
(stocktake_batches), and a repeat is answered from what is stored, in the same database
transaction as the sightings.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Engine, and_, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from selfcheck.central.backend import ItemLookup
from selfcheck.central.schema import items, loans, stocktake_batches, stocktake_seen, stocktakes
from selfcheck.mqtt import messages
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.messages import Place, StocktakeInfo

PLACES_SHOWN = 40  # what res.stocktake may carry (messages.StocktakeRes.places)
GOING_SHOWN = 20
TITLE_SHOWN = 80
# Seen items whose loan a report asks the library system about (SIP2: one request each, over
# the backend's connections at once; Koha: one request per 50): each batch's answer rebuilds
# the report.
LIBRARY_ASKS = 100
# What the library system said of an item's loan, kept that long (and that many) by this
# process: a stock-take's stacks come minutes apart, a loan made meanwhile is rare.
SAID_FOR_S = 600.0
SAID_MAX = 50_000
_said: weakref.WeakKeyDictionary[ItemLookup, dict[str, tuple[bool, float]]] = (
    weakref.WeakKeyDictionary())  # by library system (the backend object)
_said_lock = threading.Lock()


def place_label(place: Place) -> str:
    """How a place is written for people: codes and call numbers, alike in both languages
    (the station writes it the same way: kiosk/stocktake.py)."""
    if place.kind == "calls":
        return f"{place.value} – {place.upto or place.value}"
    return place.value


def _place_of(row: object) -> Place:
    return Place(kind=row.kind, value=row.value, upto=row.upto)  # type: ignore[attr-defined]


def _where(place: Place, site: str):  # type: ignore[no-untyped-def]
    """The catalogue's items in `place`; a branch's items, or those with no home branch."""
    here = or_(items.c.home_site == site, items.c.home_site.is_(None))
    if place.kind == "collection":
        return items.c.home_site == place.value
    if place.kind == "shelf":
        return and_(here, items.c.sort_bin == place.value)
    call = func.upper(items.c.call_number)
    low, high = place.value.upper(), (place.upto or place.value).upper()
    # A call number that starts with the range's end is within it ("895.9 N" to "895.9 T"
    # takes "895.9 T123").
    return and_(here, call >= low, or_(call <= high, call.like(high + "%")))


@dataclass
class Line:
    """One row of a report."""

    verdict: str  # found, missing, misplaced, on_loan, unknown
    item_id: str | None
    uid: str | None
    title: str | None
    call_number: str | None
    shelf: str | None
    station: str | None
    seen_at: dt.datetime | None


@dataclass
class Report:
    stocktake_id: str
    site: str
    place: Place
    status: str
    opened_at: dt.datetime
    closed_at: dt.datetime | None
    expected: int
    lines: list[Line] = field(default_factory=list)
    stations: list[str] = field(default_factory=list)
    # Where "on loan" came from: the central's loans table only ("central": no library system
    # to ask, or not asked), with the library system's word on the items seen ("library"),
    # on the latest LIBRARY_ASKS of them ("partial"), or the loans table because the library
    # system did not answer ("fallback").
    on_loan_from: Literal["central", "library", "partial", "fallback"] = "central"
    note: str | None = None  # says why, for the operator (English, as the CSV)
    unasked: int = 0  # books seen with no word from the library system ("partial", "fallback")

    def of(self, verdict: str) -> list[Line]:
        return [x for x in self.lines if x.verdict == verdict]

    def counts(self) -> dict[str, int]:
        out = {v: 0 for v in ("found", "missing", "misplaced", "on_loan", "unknown")}
        for x in self.lines:
            out[x.verdict] += 1
        return out

    def info(self) -> StocktakeInfo:
        c = self.counts()
        return StocktakeInfo(stocktake_id=self.stocktake_id, place=self.place,
                             status=self.status,
                             expected=self.expected,
                             seen=c["found"] + c["misplaced"] + c["on_loan"] + c["unknown"],
                             stations=self.stations[:20], **c)

    def csv(self) -> str:
        """The report as CSV (UTF-8; the verdicts and columns in English, for spreadsheets
        and scripts; the console shows them in the operator's language)."""
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["verdict", "item_id", "tag_uid", "title", "call_number", "shelf",
                    "station", "seen_at"])
        order = {"missing": 0, "misplaced": 1, "on_loan": 2, "unknown": 3, "found": 4}
        for x in sorted(self.lines, key=lambda x: (order[x.verdict], x.call_number or "",
                                                   x.item_id or x.uid or "")):
            w.writerow([x.verdict, x.item_id or "", x.uid or "", x.title or "",
                        x.call_number or "", x.shelf or "", x.station or "",
                        x.seen_at.astimezone(dt.UTC).isoformat() if x.seen_at else ""])
        return out.getvalue()


def _aware(when: dt.datetime | None) -> dt.datetime | None:
    return when if when is None or when.tzinfo else when.replace(tzinfo=dt.UTC)


class Stocktakes:
    """The central's stock-takes, in its database (the embedded store's, or the one the
    SIP2/Koha bridge keeps its rows in, with the imported catalogue)."""

    def __init__(self, engine: Engine, library: ItemLookup | None = None) -> None:
        """`library`: a SIP2 or Koha backend, asked whether the items seen are on loan."""
        self.engine = engine
        self.library = library

    def _ask(self, ids: Iterable[str], asked: _Asked) -> None:
        """What the library system says of `ids` not asked yet in this report (not at all
        once it did not answer)."""
        todo = [i for i in dict.fromkeys(ids) if i not in asked.lent]
        if self.library is None or asked.down or not todo:
            return
        # Each batch's answer rebuilds the report: what was said a few minutes ago still
        # holds, so a stack costs the library system its own items, not the whole list again.
        now = time.monotonic()
        with _said_lock:
            said_here = _said.setdefault(self.library, {})
            for i in todo:
                said = said_here.get(i)
                if said is not None and now - said[1] < SAID_FOR_S:
                    asked.lent[i] = said[0]
        todo = [i for i in todo if i not in asked.lent]
        if not todo:
            return
        got = self.library.items_info(todo)
        if got is None:
            asked.down = True
            return
        with _said_lock:
            said_here = _said.setdefault(self.library, {})
            if len(said_here) + len(todo) > SAID_MAX:
                said_here.clear()
            for i in todo:
                info = got.get(i)
                asked.lent[i] = info is not None and info.known and info.on_loan
                said_here[i] = (asked.lent[i], now)

    # -- places and stock-takes
    def places(self, site: str) -> list[messages.PlaceInfo]:
        """The site's shelves (by shelving location) with their item counts, most first."""
        here = or_(items.c.home_site == site, items.c.home_site.is_(None))
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(items.c.sort_bin, func.count()).where(here, items.c.sort_bin.is_not(None))
                .group_by(items.c.sort_bin).order_by(func.count().desc(), items.c.sort_bin)
                .limit(PLACES_SHOWN - 1)).all()
            whole = conn.execute(select(func.count()).select_from(items).where(
                items.c.home_site == site)).scalar_one()
        out = [messages.PlaceInfo(place=Place(kind="shelf", value=r[0]), items=r[1])
               for r in rows]
        if whole:  # the branch's whole collection, last: a day's work, not a shelf's
            out.append(messages.PlaceInfo(place=Place(kind="collection", value=site),
                                          items=whole))
        return out

    def going(self, site: str) -> list[StocktakeInfo]:
        with self.engine.connect() as conn:
            ids = conn.execute(select(stocktakes.c.id).where(
                stocktakes.c.site == site, stocktakes.c.status != "closed")
                .order_by(stocktakes.c.opened_at.desc()).limit(GOING_SHOWN)).scalars().all()
        # The list of a site's stock-takes: their counts by the central's loans table only
        # (one library system round per stock-take would be too many for one answer).
        return [self.report(i, remote=False).info() for i in ids]

    def reports(self, sites: Iterable[str] | None = None) -> list[Report]:
        query = select(stocktakes.c.id).order_by(stocktakes.c.opened_at.desc()).limit(200)
        if sites is not None:
            query = query.where(stocktakes.c.site.in_(list(sites)))
        with self.engine.connect() as conn:
            ids = conn.execute(query).scalars().all()
        return [self.report(i) for i in ids]

    def open(self, site: str, station: str, place: Place | None, stocktake_id: str | None,
             now: dt.datetime) -> messages.StocktakeRes:
        """Start a stock-take of `place`, or take up the one not closed there (or the one
        named): a stock-take paused at one station goes on at another."""
        with self.engine.begin() as conn:
            row = None
            if stocktake_id is not None:
                row = conn.execute(select(stocktakes).where(
                    stocktakes.c.id == stocktake_id, stocktakes.c.site == site)).first()
                if row is None:
                    return messages.StocktakeRes(ok=False, reason="unknown_stocktake")
                if row.status == "closed":
                    return messages.StocktakeRes(ok=False, reason="closed")
            elif place is not None:
                if place.kind == "calls" and place.upto is not None \
                        and place.upto.upper() < place.value.upper():
                    return messages.StocktakeRes(ok=False, reason="bad_request")
                row = conn.execute(select(stocktakes).where(
                    stocktakes.c.site == site, stocktakes.c.status != "closed",
                    stocktakes.c.kind == place.kind, stocktakes.c.value == place.value,
                    (stocktakes.c.upto == place.upto) if place.upto is not None
                    else stocktakes.c.upto.is_(None))).first()
                if row is None:
                    count = conn.execute(select(func.count()).select_from(items)
                                         .where(_where(place, site))).scalar_one()
                    if not count:
                        return messages.StocktakeRes(ok=False, reason="empty_place")
                    new_id = uuid7()
                    conn.execute(insert(stocktakes).values(
                        id=new_id, site=site, kind=place.kind, value=place.value,
                        upto=place.upto, status="open", station=station, opened_at=now,
                        updated_at=now))
                    stocktake_id = new_id
            else:
                return messages.StocktakeRes(ok=False, reason="bad_request")
            if row is not None:
                stocktake_id = row.id
                conn.execute(update(stocktakes).where(stocktakes.c.id == row.id).values(
                    status="open", station=station, updated_at=now))
        assert stocktake_id is not None
        return messages.StocktakeRes(ok=True, stocktake=self.report(stocktake_id).info())

    def set_status(self, site: str, station: str, stocktake_id: str, status: str,
                   now: dt.datetime) -> messages.StocktakeRes:
        with self.engine.begin() as conn:
            row = conn.execute(select(stocktakes.c.status).where(
                stocktakes.c.id == stocktake_id, stocktakes.c.site == site)).first()
            if row is None:
                return messages.StocktakeRes(ok=False, reason="unknown_stocktake")
            if row.status == "closed":
                return messages.StocktakeRes(ok=False, reason="closed")
            conn.execute(update(stocktakes).where(stocktakes.c.id == stocktake_id).values(
                status=status, station=station, updated_at=now,
                closed_at=now if status == "closed" else None))
        return messages.StocktakeRes(ok=True, stocktake=self.report(stocktake_id).info())

    # -- sightings
    def seen(self, site: str, station: str, req: messages.StocktakeSeenReq,
             now: dt.datetime) -> messages.StocktakeSeenRes:
        """Take in a batch once; answer each tag with its verdict (a repeat alike). The
        library system is asked before the database transaction, which it must not hold
        open meanwhile."""
        asked = _Asked()
        self._ask((t.item_id for t in req.tags if t.item_id), asked)
        with self.engine.begin() as conn:
            row = conn.execute(select(stocktakes).where(
                stocktakes.c.id == req.stocktake_id, stocktakes.c.site == site)).first()
            if row is None:
                return messages.StocktakeSeenRes(ok=False, reason="unknown_stocktake",
                                                 batch_id=req.batch_id)
            new = self._take_batch(conn, req, station, now)
            if new and row.status == "closed":
                # Counted after the close would change a final report: refused, and the
                # station drops the batch (staff were told it is closed).
                raise _Closed
            if new:
                self._record(conn, req, station, asked.lent)
                conn.execute(update(stocktakes).where(stocktakes.c.id == row.id).values(
                    updated_at=now, station=station))
            books = self._verdicts(conn, _place_of(row), site, req.tags, asked.on_loan())
        return messages.StocktakeSeenRes(ok=True, batch_id=req.batch_id, books=books,
                                         stocktake=self.report(req.stocktake_id,
                                                               asked=asked).info())

    def seen_or_closed(self, site: str, station: str, req: messages.StocktakeSeenReq,
                       now: dt.datetime) -> messages.StocktakeSeenRes:
        try:
            return self.seen(site, station, req, now)
        except _Closed:
            return messages.StocktakeSeenRes(ok=False, reason="closed", batch_id=req.batch_id)

    @staticmethod
    def _take_batch(conn: Connection, req: messages.StocktakeSeenReq, station: str,
                    now: dt.datetime) -> bool:
        """True the first time this batch comes (its row written in the caller's
        transaction), False for a repeat."""
        known = conn.execute(select(func.count()).select_from(stocktake_batches).where(
            stocktake_batches.c.stocktake_id == req.stocktake_id,
            stocktake_batches.c.batch_id == req.batch_id)).scalar_one()
        if known:
            return False
        conn.execute(insert(stocktake_batches).values(
            stocktake_id=req.stocktake_id, batch_id=req.batch_id, station=station,
            received_at=now))
        return True

    @staticmethod
    def _record(conn: Connection, req: messages.StocktakeSeenReq, station: str,
                lent_there: dict[str, bool]) -> None:
        tags = {(t.item_id or "uid:" + t.uid): t for t in req.tags}
        have = set(conn.execute(select(stocktake_seen.c.tag).where(
            stocktake_seen.c.stocktake_id == req.stocktake_id,
            stocktake_seen.c.tag.in_(list(tags)))).scalars())
        rows = [{"stocktake_id": req.stocktake_id, "tag": tag, "item_id": t.item_id,
                 "uid": t.uid, "station": station, "seen_at": req.at,
                 "lent_there": lent_there.get(t.item_id) if t.item_id else None}
                for tag, t in tags.items() if tag not in have]
        if rows:  # two bridges with the same tag at once: one fails, its batch is sent again
            conn.execute(insert(stocktake_seen), rows)

    @staticmethod
    def _verdicts(conn: Connection, place: Place, site: str, tags: list[messages.SeenEntry],
                  out_there: set[str]) -> list[messages.SeenBook]:
        """`out_there`: items the library system says are on loan."""
        ids = [t.item_id for t in tags if t.item_id]
        known = {r.item_id: r for r in conn.execute(
            select(items.c.item_id, items.c.title).where(items.c.item_id.in_(ids)))}
        here = set(conn.execute(select(items.c.item_id).where(
            items.c.item_id.in_(ids), _where(place, site))).scalars())
        lent = out_there | set(conn.execute(select(loans.c.item_id).where(
            loans.c.item_id.in_(ids))).scalars())
        out = []
        for t in tags:
            item = known.get(t.item_id) if t.item_id else None
            verdict = ("unknown" if item is None else "on_loan" if t.item_id in lent
                       else "found" if t.item_id in here else "misplaced")
            out.append(messages.SeenBook(
                uid=t.uid, item_id=t.item_id, verdict=verdict,
                title=item.title[:TITLE_SHOWN] if item is not None else None))
        return out

    # -- the report
    def report(self, stocktake_id: str, *, remote: bool = True,
               asked: _Asked | None = None) -> Report:
        """Per place: found, missing, misplaced, on loan but seen, unknown tags. `remote`:
        ask the library system (if any) about the items seen; `asked`: what it said already
        in this round."""
        with self.engine.connect() as conn:
            row = conn.execute(select(stocktakes).where(stocktakes.c.id == stocktake_id)).one()
            place = _place_of(row)
            expected = {r.item_id: r for r in conn.execute(
                select(items.c.item_id, items.c.title, items.c.call_number, items.c.sort_bin)
                .where(_where(place, row.site)))}
            seen = conn.execute(select(stocktake_seen).where(
                stocktake_seen.c.stocktake_id == stocktake_id)).all()
            seen_ids = [s.item_id for s in seen if s.item_id]
            others = {r.item_id: r for r in conn.execute(
                select(items.c.item_id, items.c.title, items.c.call_number, items.c.sort_bin)
                .where(items.c.item_id.in_([i for i in seen_ids if i not in expected])))}
            lent = set(conn.execute(select(loans.c.item_id).where(
                loans.c.item_id.in_([*expected, *seen_ids]))).scalars())
        rep = Report(stocktake_id=row.id, site=row.site, place=place, status=row.status,
                     opened_at=_aware(row.opened_at) or row.opened_at,
                     closed_at=_aware(row.closed_at), expected=len(expected),
                     stations=sorted({s.station for s in seen} | {row.station}))
        lent |= self._library_loans(rep, seen, expected.keys() | others.keys(), lent,
                                    asked or _Asked(), remote)
        seen_items = set()
        for s in seen:
            item = expected.get(s.item_id) or others.get(s.item_id) if s.item_id else None
            if item is None:
                verdict = "unknown"
            else:
                seen_items.add(s.item_id)
                verdict = ("on_loan" if s.item_id in lent else
                           "found" if s.item_id in expected else "misplaced")
            rep.lines.append(Line(verdict, s.item_id, s.uid, item.title if item else None,
                                  item.call_number if item else None,
                                  item.sort_bin if item else None, s.station,
                                  _aware(s.seen_at)))
        for item_id, item in expected.items():
            if item_id not in seen_items and item_id not in lent:
                rep.lines.append(Line("missing", item_id, None, item.title, item.call_number,
                                      item.sort_bin, None, None))
        return rep

    def _library_loans(self, rep: Report, seen: Sequence[Any], known: set[str],
                       lent: set[str], asked: _Asked, remote: bool) -> set[str]:
        """The seen items the library system says are on loan: its word kept with each
        sighting, and (`remote`, with a library system) asked now for the latest
        LIBRARY_ASKS seen without one that the loans table does not already have. The
        report says where on loan came from."""
        said = {s.item_id: bool(s.lent_there) for s in seen
                if s.item_id in known and s.lent_there is not None}
        oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
        latest = sorted(seen, key=lambda s: _aware(s.seen_at) or oldest, reverse=True)
        unsaid = list(dict.fromkeys(s.item_id for s in latest if s.item_id in known
                                    and s.item_id not in lent and s.item_id not in said))
        if remote and self.library is not None:
            self._ask(unsaid[:LIBRARY_ASKS], asked)
            said.update(asked.lent)
            unsaid = [i for i in unsaid if i not in said]
        elif not said:  # no library system in this stock-take: the loans table's word
            return set()
        rep.unasked = len(unsaid)
        if not unsaid:
            rep.on_loan_from = "library"
        elif asked.down:
            rep.on_loan_from = "fallback"
            rep.note = (f"The library system did not answer: on loan for {len(unsaid)} of "
                        f"the books seen is the central's loans table only (the loans made "
                        f"at the stations).")
        else:
            rep.on_loan_from = "partial"
            rep.note = (f"On loan for {len(unsaid)} of the books seen was not asked of the "
                        f"library system: the central's loans table only.")
        return {i for i, out in said.items() if out}

@dataclass
class _Asked:
    """What the library system said in one round (a report, or a batch and its report)."""

    lent: dict[str, bool] = field(default_factory=dict)  # item id -> on loan there
    down: bool = False  # it did not answer: not asked again in this round

    def on_loan(self) -> set[str]:
        return {i for i, out in self.lent.items() if out}


class _Closed(Exception):
    """A new batch for a closed stock-take: rolls its transaction back."""


def answer(engine: Engine, site: str, station: str, req: messages.Message,
           now: dt.datetime | None = None,
           library: ItemLookup | None = None) -> messages.Message:
    """The bridge's answer to req/stocktake and req/stocktake-seen; `library`: a SIP2 or
    Koha backend (BackendUnavailable never comes out: without it, the loans table)."""
    now = now or dt.datetime.now(dt.UTC)
    st = Stocktakes(engine, library)
    if isinstance(req, messages.StocktakeSeenReq):
        return st.seen_or_closed(site, station, req, now)
    assert isinstance(req, messages.StocktakeReq)
    if req.action == "places":
        return messages.StocktakeRes(ok=True, places=st.places(site), going=st.going(site))
    if req.action == "open":
        return st.open(site, station, req.place, req.stocktake_id, now)
    if req.stocktake_id is None:
        return messages.StocktakeRes(ok=False, reason="bad_request")
    return st.set_status(site, station, req.stocktake_id,
                         "paused" if req.action == "pause" else "closed", now)
