"""The parts of `selfcheck central report` on a stolen station's traces, in the staff's
language: transactions applied at the central's time because their station's clock was wrong,
cards waiting or locked after wrong PINs, stations by wrong PINs, and the PIN events (waits,
locks, unlocks and by whom)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from selfcheck.cli.errors import t

CLOCK_REASONS = ("clock_past", "clock_future")


def print_table(table: Sequence[Sequence[object]]) -> None:
    widths = [max(len(str(row[n])) for row in table) for n in range(len(table[0]))]
    for row in table:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "-"


def _station_time(value: dt.datetime) -> str:
    return value.isoformat(timespec="minutes")  # any year: 0001 and 9999 are what staff see


def clock_and_pins(url: str, rows: list[dict[str, Any]], site: str | None,
                   since: dt.datetime | None, lang: str) -> None:
    from selfcheck.central import pin_guard
    from selfcheck.central.engine import open_engine

    clock = [r for r in rows if r.get("station_at") is not None]
    print_table([t("report.clock.head", lang).split("|")] + [
        (_when(r["at"]), r["site"], r["station"], r["kind"], r["item_id"],
         _station_time(r["station_at"]),
         t(f"report.clock.{r['reason']}", lang) if r["reason"] in CLOCK_REASONS
         else r["reason"]) for r in clock])
    print(t("report.clock", lang, n=len(clock)))
    print()
    now = dt.datetime.now(dt.UTC)
    engine = open_engine(url)
    try:
        cards = pin_guard.cards(engine, now)
        stations = [s for s in pin_guard.station_counts(engine)
                    if site is None or s["site"] == site]
        events = [e for e in pin_guard.events(engine, since)
                  if site is None or e["site"] in (None, site)]
    finally:
        engine.dispose()
    print_table([t("report.pin.cards.head", lang).split("|")] + [
        (c["patron_ref"], c["failures"], _when(c["until"]),
         t(f"report.pin.stage.{c['stage']}", lang)) for c in cards])
    print(t("report.pin.cards", lang, n=len(cards),
            locked=sum(c["stage"] == "locked" for c in cards)))
    print()
    paused = [s for s in stations
              if (until := pin_guard.aware(s["paused_until"])) is not None and until > now]
    print_table([t("report.pin.stations.head", lang).split("|")] + [
        (s["site"], s["station"], s["total"],
         _when(pin_guard.aware(s["paused_until"])) if s in paused else "-")
        for s in stations])
    print(t("report.pin.stations", lang, n=len(stations), paused=len(paused)))
    print()
    print_table([t("report.pin.events.head", lang).split("|")] + [
        (_when(e["at"]), t(f"report.pin.event.{e['kind']}", lang),
         f"{e['site']}/{e['station']}" if e["station"] else "-", e["patron_ref"] or "-",
         _when(e["until"]), e["by"] or "-") for e in events])
    print(t("report.pin.events", lang, n=len(events)))
