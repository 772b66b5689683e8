"""Opening hours per site, in the library's local time: a station switched off while its site
is closed is expected, not an alert (on the page and in Prometheus alike).

A spec is one or more comma-separated spans, each "DAYS HH:MM-HH:MM" or "HH:MM-HH:MM" (every
day): `Mon-Fri 07:30-17:00,Sat 08:00-12:00`. Days are Mon..Sun (or T2..T7, CN), alone or as a
range (`Sat-Mon` wraps); a span whose end is not after its start runs past midnight (`Fri
20:00-02:00` is open until 02:00 on Saturday); `24:00` is the end of the day; days named in no
span are closed. `closed` alone: never open.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from zoneinfo import ZoneInfo

ALL_DAY = "00:00-24:00"
DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6,
        "t2": 0, "t3": 1, "t4": 2, "t5": 3, "t6": 4, "t7": 5, "cn": 6}
_SPAN = re.compile(r"^(?:(?P<days>\w+(?:-\w+)?)\s+)?"
                   r"(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})$")
WEEK = 7 * 1440

# (start, end) in minutes from Monday 00:00; end may pass the week's end (a Sunday night span).
Span = tuple[int, int]


def _minute(text: str, spec: str) -> int:
    h, m = (int(x) for x in text.split(":"))
    if not (0 <= h <= 24 and 0 <= m < 60) or (h == 24 and m):
        raise ValueError(f"opening hours {spec!r}: {text} is not a time of day")
    return h * 60 + m


def _days(text: str | None, spec: str) -> list[int]:
    if text is None:
        return list(range(7))
    first, _, last = text.lower().partition("-")
    try:
        a, b = DAYS[first], DAYS[last or first]
    except KeyError:
        raise ValueError(f"opening hours {spec!r}: days are Mon..Sun (or T2..T7, CN), "
                         f"not {text!r}") from None
    return [(a + i) % 7 for i in range((b - a) % 7 + 1)]


def parse(spec: str) -> list[Span]:
    """The week's open spans of a spec (see the module's doc); ValueError if it is not one."""
    text = spec.strip()
    if text.lower() == "closed":
        return []
    spans = []
    for part in text.split(","):
        m = _SPAN.match(part.strip())
        if m is None:
            raise ValueError(f"opening hours {spec!r}: expected e.g. 'Mon-Fri 07:30-17:00,Sat "
                             f"08:00-12:00' or '07:00-21:00'")
        start, end = _minute(m["start"], spec), _minute(m["end"], spec)
        if end <= start:
            end += 1440  # past midnight, into the next day
        spans += [(d * 1440 + start, d * 1440 + end) for d in _days(m["days"], spec)]
    return spans


class OpeningHours:
    """Opening hours by site, with a default for sites not named (every hour unless told)."""

    def __init__(self, default: str = ALL_DAY, per_site: dict[str, str] | None = None,
                 tz: str = "Asia/Ho_Chi_Minh") -> None:
        self.tz = ZoneInfo(tz)
        self.default = parse(default)
        self.per_site = {s: parse(v) for s, v in (per_site or {}).items()}
        self.specs = {"": default, **(per_site or {})}
        # The answer only changes on the minute: a page of a thousand stations asks once a site.
        self._minute = -1
        self._cache: dict[str, bool] = {}
        self._lock = threading.Lock()

    def is_open(self, site: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        minute = int(now // 60)
        with self._lock:
            if minute == self._minute and site in self._cache:
                return self._cache[site]
        local = dt.datetime.fromtimestamp(now, self.tz)
        at = local.weekday() * 1440 + local.hour * 60 + local.minute
        spans = self.per_site.get(site, self.default)
        answer = any(s <= t < e for s, e in spans for t in (at, at + WEEK))
        with self._lock:
            if minute != self._minute:
                self._minute, self._cache = minute, {}
            self._cache[site] = answer
        return answer
