"""Tagging the collection at the central: what a station needs to write a book's tag (its
`req/item` answer) and the record of every tag written (`tx/tagged`, once per msg_id), with
the progress report per branch that `selfcheck central report --tagging` prints and exports.

The item data comes from the central database's catalogue (the embedded store's items, or
the copy a SIP2/Koha central imports): a barcode it does not hold is refused, so that no tag
is written for a book the library system would not know at the self-check.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from typing import IO

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError

from selfcheck.central.schema import items, tagged_items, tagging_items
from selfcheck.mqtt import messages

NO_BRANCH = "-"  # items with no home branch, in the report


def lookup(engine: Engine, item_id: str, default_isil: str | None = None) -> messages.ItemRes:
    """The answer to `req/item`: the title, the owner's ISIL (the item's own, else the
    central's default, else None: the station's own) and the number of parts of its set."""
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
