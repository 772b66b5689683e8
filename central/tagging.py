"""Tagging the collection at the central: what a station needs to write a book's tag (its
`req/item` answer) and the record of every tag written (`tx/tagged`, once per msg_id), with
the progress report per branch that `selfcheck central report --tagging` prints and exports.

The item data comes from the library system: the embedded store's catalogue, or for SIP2
and Koha the library system itself (ItemLookup), asked at each look-up, since the copy the
central imported may be older than the book. A barcode it does not hold is refused, so that no
tag is written for a book the library system would not know at the self-check; when it cannot
answer, the request is left unanswered (BackendUnavailable), which the station takes as no
answer (try again, or tag offline where the station allows it). The parts of a set and the
owner's ISIL are the central's own (tagging_items) either way.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from typing import IO

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError

from selfcheck.central.backend import BackendUnavailable, ItemLookup
from selfcheck.central.schema import items, tagged_items, tagging_items
from selfcheck.mqtt import messages

NO_BRANCH = "-"  # items with no home branch, in the report


def lookup(engine: Engine, item_id: str, default_isil: str | None = None,
           library: ItemLookup | None = None) -> messages.ItemRes:
    """The answer to `req/item`: the title, the owner's ISIL (the item's own, else the
    central's default, else None: the station's own) and the number of parts of its set.
    `library`: a SIP2 or Koha backend, asked first (BackendUnavailable when it cannot say)."""
    if library is not None:
        return _remote(engine, item_id, default_isil, library)
    with engine.connect() as conn:
        row = conn.execute(
            select(items.c.title, items.c.home_site, items.c.not_for_loan,
                   tagging_items.c.parts_in_item,
                   tagging_items.c.owner_isil)
            .select_from(items.outerjoin(tagging_items,
                                         tagging_items.c.item_id == items.c.item_id))
            .where(items.c.item_id == item_id)).first()
    if row is None:
        return messages.ItemRes(ok=False, reason="unknown_item", item_id=item_id)
    return messages.ItemRes(ok=True, item_id=item_id, title=row.title,
                            owner_isil=row.owner_isil or default_isil,
                            parts_in_item=row.parts_in_item or 1, home_site=row.home_site,
                            not_for_loan=bool(row.not_for_loan))


def _remote(engine: Engine, item_id: str, default_isil: str | None,
            library: ItemLookup) -> messages.ItemRes:
    info = library.item_info(item_id)
    if info is None:
        raise BackendUnavailable("the library system did not answer the item look-up")
    if not info.known:
        return messages.ItemRes(ok=False, reason="unknown_item", item_id=item_id)
    with engine.connect() as conn:
        ours = conn.execute(select(items.c.title, items.c.home_site, items.c.not_for_loan)
                            .where(items.c.item_id == item_id)).first()
        parts = conn.execute(select(tagging_items.c.parts_in_item, tagging_items.c.owner_isil)
                             .where(tagging_items.c.item_id == item_id)).first()
    # What the library system does not say (SIP2: not for loan, site codes; a title SIP2
    # could not give a Koha central) is the imported catalogue's, if it has the item.
    title = info.title or (ours.title if ours is not None else None)
    not_for_loan = info.not_for_loan
    if not_for_loan is None:
        not_for_loan = bool(ours.not_for_loan) if ours is not None else False
    return messages.ItemRes(
        ok=True, item_id=item_id,
        title=title[:500] if title else None,
        owner_isil=(parts.owner_isil if parts is not None else None) or default_isil,
        parts_in_item=(parts.parts_in_item if parts is not None else None) or 1,
        home_site=info.home_site or (ours.home_site if ours is not None else None),
        not_for_loan=not_for_loan)


def set_parts(engine: Engine, item_id: str, parts_in_item: int,
              owner_isil: str | None = None) -> None:
    """Record that an item is a set of `parts_in_item` (staff tools, imports, tests)."""
    with engine.begin() as conn:
        conn.execute(tagging_items.delete().where(tagging_items.c.item_id == item_id))
        conn.execute(tagging_items.insert().values(item_id=item_id, parts_in_item=parts_in_item,
                                                   owner_isil=owner_isil))


def record(engine: Engine, tx: messages.TxTagged,
           now: dt.datetime | None = None) -> messages.AckTx:
    """Keep one row per msg_id (a repeat from the station's outbox is answered, not added)."""
    now = now or dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        known = conn.execute(select(items.c.item_id).where(
            items.c.item_id == tx.item_id)).first() is not None
        try:
            with conn.begin_nested():
                conn.execute(tagged_items.insert().values(
                    msg_id=tx.msg_id, item_id=tx.item_id, tag_uid=tx.tag_uid,
                    part_number=tx.part_number, parts_in_item=tx.parts_in_item, site=tx.site,
                    station=tx.station, staff_ref=tx.staff_ref, tagged_at=tx.at,
                    received_at=now, overwrote=tx.overwrote, offline=tx.offline, known=known))
            repeat = False
        except IntegrityError:
            repeat = True
    return messages.AckTx(msg_id=tx.msg_id, ok=True, item_id=tx.item_id, repeat=repeat)


@dataclass(frozen=True)
class BranchProgress:
    branch: str
    items: int  # in the catalogue, by home branch
    tagged: int  # of those, with every part's tag written at least once
    tags_written: int  # rows, overwrites and re-tags included

    @property
    def percent(self) -> float:
        return 100.0 * self.tagged / self.items if self.items else 0.0


def progress(engine: Engine) -> list[BranchProgress]:
    """Per home branch: items, items fully tagged (every part), tags written. Tags of
    barcodes the catalogue does not hold (written offline) show under their station's site."""
    with engine.connect() as conn:
        totals: dict[str, int] = dict(conn.execute(
            select(func.coalesce(items.c.home_site, NO_BRANCH), func.count())
            .group_by(func.coalesce(items.c.home_site, NO_BRANCH))).all())
        parts = {r.item_id: (r.parts, r.branch) for r in conn.execute(
            select(tagged_items.c.item_id,
                   func.count(func.distinct(tagged_items.c.part_number)).label("parts"),
                   func.coalesce(items.c.home_site, func.min(tagged_items.c.site),
                                 NO_BRANCH).label("branch"),
                   func.max(func.coalesce(tagging_items.c.parts_in_item, 1)).label("need"))
            .select_from(tagged_items.outerjoin(items, items.c.item_id == tagged_items.c.item_id)
                         .outerjoin(tagging_items,
                                    tagging_items.c.item_id == tagged_items.c.item_id))
            .group_by(tagged_items.c.item_id, items.c.home_site)).all()
            if r.parts >= r.need}
        written: dict[str, int] = dict(conn.execute(
            select(func.coalesce(items.c.home_site, tagged_items.c.site), func.count())
            .select_from(tagged_items.outerjoin(items, items.c.item_id == tagged_items.c.item_id))
            .group_by(func.coalesce(items.c.home_site, tagged_items.c.site))).all())
    done: dict[str, int] = {}
    for _parts, branch in parts.values():
        done[branch] = done.get(branch, 0) + 1
    branches = sorted(set(totals) | set(done) | set(written))
    return [BranchProgress(b, totals.get(b, 0), done.get(b, 0), written.get(b, 0))
            for b in branches]


CSV_FIELDS = ("tagged_at", "item_id", "tag_uid", "part_number", "parts_in_item", "site",
              "station", "staff_ref", "overwrote", "offline", "known")


def export_csv(engine: Engine, out: IO[str], since: dt.datetime | None = None) -> int:
    """Every tag written (oldest first) as CSV; returns the number of rows."""
    query = select(*(tagged_items.c[f] for f in CSV_FIELDS)).order_by(
        tagged_items.c.tagged_at, tagged_items.c.msg_id)
    if since is not None:
        query = query.where(tagged_items.c.tagged_at >= since)
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    count = 0
    with engine.connect() as conn:
        for row in conn.execute(query):
            writer.writerow(["" if v is None else v for v in row])
            count += 1
    return count
