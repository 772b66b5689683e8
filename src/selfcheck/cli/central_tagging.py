"""`selfcheck central report --tagging [--csv FILE]`: how far the collection's conversion to
RFID has come, per branch (items, items with every part tagged, tags written), and every tag
written as CSV for the library's records."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

HEAD = {"vi": ("chi nhánh", "tài liệu", "đã gắn thẻ", "%", "số thẻ đã ghi"),
        "en": ("branch", "items", "tagged", "%", "tags written")}
TOTAL = {"vi": "Tổng", "en": "Total"}
EXPORTED = {"vi": "Đã xuất {n} thẻ vào {path}", "en": "Exported {n} tags to {path}"}


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tagging", action="store_true",
                   help="instead: progress of tagging the collection (RFID conversion) per "
                   "branch")
    p.add_argument("--csv", type=Path, metavar="FILE",
                   help="with --tagging: also write every tag written to FILE as CSV "
                   "('-': standard output)")


def report(engine: Engine, lang: str, csv_path: Path | None,
           since: dt.date | None = None) -> int:
    from selfcheck.central import tagging

    rows = tagging.progress(engine)
    table: list[tuple[object, ...]] = [HEAD[lang]]
    for r in rows:
        table.append((r.branch, r.items, r.tagged, f"{r.percent:.1f}", r.tags_written))
    items = sum(r.items for r in rows)
    done = sum(r.tagged for r in rows)
    table.append((TOTAL[lang], items, done, f"{100 * done / items if items else 0:.1f}",
                  sum(r.tags_written for r in rows)))
    widths = [max(len(str(row[i])) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if csv_path is not None:
        start = None if since is None else dt.datetime.combine(since, dt.time(), dt.UTC)
        if str(csv_path) == "-":
            tagging.export_csv(engine, sys.stdout, start)
        else:
            with open(csv_path, "w", newline="", encoding="utf-8") as out:
                n = tagging.export_csv(engine, out, start)
            print(EXPORTED[lang].format(n=n, path=csv_path))
    return 0
