"""What the library serves, for its managers: loans, returns and renewals per day, week or
month, per branch (site, by its name) and station; busiest hours; the share the library system
accepted; how often staff were called and the share done without them; refusals by reason;
offline transactions the library system refused afterwards and order gaps.

Read from the central store's `circulation`, `processed`, `reconciliation` and `order_gaps`
tables, and the staff calls from the fleet's own events (`fleet_events`, kept for
KEEP_EVENTS_S). Only counts leave this module: no item, no patron reference, no title.
"""

from __future__ import annotations

import collections
import csv
import datetime as dt
import io
import json
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError

from selfcheck.central.engine import open_engine
from selfcheck.central.fleet.events_bound import KEEP_EVENTS_S
from selfcheck.central.fleet.schema import fleet_events
from selfcheck.central.schema import circulation, order_gaps, processed, reconciliation

PERIODS = ("day", "week", "month")
KINDS = ("loan", "return", "renew")
MAX_DAYS = 800
TABLES = ("periods", "hours", "refusals", "offline", "sites")
COUNTS = (*KINDS, "accepted", "answered", "staff_calls")


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t  # SQLite gives naive UTC


class Stats:
    def __init__(self, url: str, tz: str = "Asia/Ho_Chi_Minh", *,
                 names: dict[str, Any] | None = None, events_url: str | None = None) -> None:
        self.url = url
        self.tz = ZoneInfo(tz)
        self._engine: Engine | None = None
        # Branch names (the fleet's --names file) for the per-branch totals and their CSV.
        self.site_names: dict[str, str] = dict((names or {}).get("sites") or {})
        # The fleet's store, where the staff calls are (the circulation may be elsewhere).
        self.events_url = events_url
        self._events_engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = open_engine(self.url)
        return self._engine

    @property
    def events_engine(self) -> Engine:
        if self.events_url is None or self.events_url == self.url:
            return self.engine
        if self._events_engine is None:
            self._events_engine = open_engine(self.events_url)
        return self._events_engine

    def close(self) -> None:
        for engine in (self._engine, self._events_engine):
            if engine is not None:
                engine.dispose()

    def site_name(self, site: str) -> str:
        return self.site_names.get(site) or site

    def _staff_calls(self, since: dt.datetime, now: dt.datetime,
                     keep: Any) -> collections.Counter[tuple[str, str]] | None:
        """Staff-needed events per station since then; None when not known for the whole
        window (older than the events are kept, or no fleet events in this store)."""
        if (now - since).total_seconds() > KEEP_EVENTS_S:
            return None
        calls: collections.Counter[tuple[str, str]] = collections.Counter()
        try:
            with self.events_engine.connect() as conn:
                for s, st in conn.execute(select(fleet_events.c.site, fleet_events.c.station)
                                          .where(fleet_events.c.kind == "staff_needed",
                                                 fleet_events.c.at >= since.timestamp())):
                    if keep(s, st):
                        calls[(s, st)] += 1
        except DBAPIError:
            return None
        return calls

    def _label(self, t: dt.datetime, period: str) -> str:
        local = _utc(t).astimezone(self.tz)
        if period == "day":
            return local.strftime("%Y-%m-%d")
        if period == "week":
            year, week, _ = local.isocalendar()
            return f"{year}-W{week:02d}"
        return local.strftime("%Y-%m")

    @staticmethod
    def _params(q: dict[str, list[str]]) -> tuple[str, int, str | None, str | None]:
        period = (q.get("period") or ["day"])[0]
        if period not in PERIODS:
            raise ValueError(f"period: one of {', '.join(PERIODS)}")
        try:
            days = int((q.get("days") or ["30"])[0])
        except ValueError:
            raise ValueError("days: a whole number") from None
        if not 1 <= days <= MAX_DAYS:
            raise ValueError(f"days: 1 to {MAX_DAYS}")
        site = (q.get("site") or [""])[0] or None
        station = (q.get("station") or [""])[0] or None
        return period, days, site, station

    def report(self, q: dict[str, list[str]], sites: set[str] | None,
               now: dt.datetime | None = None) -> dict[str, Any]:
        period, days, site, station = self._params(q)
        now = now or dt.datetime.now(dt.UTC)
        since = now - dt.timedelta(days=days)

        def keep(row_site: str, row_station: str) -> bool:
            return (sites is None or row_site in sites) and (site is None or row_site == site) \
                and (station is None or row_station == station)

        per: dict[tuple[str, str, str], collections.Counter[str]] = collections.defaultdict(
            collections.Counter)
        hours: collections.Counter[int] = collections.Counter()
        refusals: collections.Counter[str] = collections.Counter()
        offline: collections.Counter[str] = collections.Counter()
        branches: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter)
        ok = total = 0
        try:
            with self.engine.connect() as conn:
                for kind, s, st, at in conn.execute(select(
                        circulation.c.kind, circulation.c.site, circulation.c.station,
                        circulation.c.at).where(circulation.c.at >= since)):
                    if keep(s, st):
                        per[(self._label(at, period), s, st)][kind] += 1
                        branches[s][kind] += 1
                        hours[_utc(at).astimezone(self.tz).hour] += 1
                for s, st, result in conn.execute(select(
                        processed.c.site, processed.c.station, processed.c.result).where(
                        processed.c.applied_at >= since)):
                    if not keep(s, st):
                        continue
                    total += 1
                    branches[s]["answered"] += 1
                    ack = json.loads(result)
                    if ack.get("ok"):
                        ok += 1
                        branches[s]["accepted"] += 1
                    else:
                        refusals[ack.get("reason") or "refused"] += 1
                for s, st, reason, undone in conn.execute(select(
                        reconciliation.c.site, reconciliation.c.station, reconciliation.c.reason,
                        reconciliation.c.compensates).where(reconciliation.c.at >= since)):
                    if keep(s, st):  # a compensating return: a loan the reader did not get
                        offline[f"refused.{reason}" if undone is None else
                                f"undone.{reason}"] += 1
                for s, st, kind in conn.execute(select(
                        order_gaps.c.site, order_gaps.c.station, order_gaps.c.kind).where(
                        order_gaps.c.recorded_at >= since)):
                    if keep(s, st):
                        offline[f"order.{kind}"] += 1
        except DBAPIError:  # no circulation store here (a fleet database of its own)
            return {"available": False, "period": period, "days": days}
        rows = [{"period": p, "site": s, "station": st, **{k: c[k] for k in KINDS}}
                for (p, s, st), c in sorted(per.items())]
        calls = self._staff_calls(since, now, keep)
        for (s, _), n in (calls or {}).items():
            branches[s]["staff_calls"] += n
        n_calls = sum(calls.values()) if calls is not None else None
        per_site = [{"site": s, "name": self.site_name(s), **{k: c[k] for k in COUNTS},
                     "staff_calls": c["staff_calls"] if calls is not None else None,
                     "without_staff": _without(c["accepted"], c["answered"],
                                               c["staff_calls"] if calls is not None else None)}
                    for s, c in sorted(branches.items(), key=lambda x: self.site_name(x[0]))]
        return {
            "available": True, "period": period, "days": days, "since": since.isoformat(),
            "rows": rows,
            "hours": [hours[h] for h in range(24)],
            # What the library system accepted: not the same as done without staff (a reader
            # may have called for help and then succeeded).
            "accepted": {"ok": ok, "total": total,
                         "share": round(ok / total, 4) if total else None},
            # Done without staff, estimated: the accepted ones less one per staff call; unknown
            # (None) when the staff calls are not known for the whole window.
            "self_service": {"accepted": ok, "total": total, "staff_calls": n_calls,
                             "share": _without(ok, total, n_calls),
                             "calls_kept_days": round(KEEP_EVENTS_S / 86_400)},
            "sites": per_site,
            "refusals": dict(refusals.most_common()),
            "offline": dict(sorted(offline.items())),
        }

    def csv(self, q: dict[str, list[str]], sites: set[str] | None,
            table: str) -> tuple[str, str]:
        if table not in TABLES:
            raise ValueError(f"table: one of {', '.join(TABLES)}")
        rep = self.report(q, sites)
        out = io.StringIO()
        w = csv.writer(out)
        if not rep["available"]:
            w.writerow(["no circulation data"])
        elif table == "periods":
            w.writerow(["period", "site", "station", *KINDS])
            for r in rep["rows"]:
                w.writerow([r["period"], r["site"], r["station"], *(r[k] for k in KINDS)])
        elif table == "hours":
            w.writerow(["hour", "transactions"])
            for h, n in enumerate(rep["hours"]):
                w.writerow([f"{h:02d}:00", n])
        elif table == "refusals":
            w.writerow(["reason", "count"])
            for reason, n in rep["refusals"].items():
                w.writerow([reason, n])
            w.writerow(["(accepted)", rep["accepted"]["ok"]])
            w.writerow(["(all answered)", rep["accepted"]["total"]])
            calls = rep["self_service"]["staff_calls"]
            w.writerow(["(staff calls)", "" if calls is None else calls])
        elif table == "sites":
            # Branches by name first (what a manager reads), the code beside for joins.
            w.writerow(["branch", "site", *COUNTS, "without_staff_share"])
            for r in rep["sites"]:
                w.writerow([r["name"], r["site"], *("" if r[k] is None else r[k]
                                                    for k in COUNTS),
                            "" if r["without_staff"] is None else r["without_staff"]])
        else:
            w.writerow(["what", "count"])
            for what, n in rep["offline"].items():
                w.writerow([what, n])
        return f"selfcheck-{table}-{rep['period']}-{rep['days']}d.csv", out.getvalue()


def _without(accepted: int, answered: int, calls: int | None) -> float | None:
    """The share done without staff: accepted, less one per staff call, of all answered."""
    if calls is None or not answered:
        return None
    return round(max(0, accepted - calls) / answered, 4)
