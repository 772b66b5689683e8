"""Wrong PINs counted per station, over every card, in the central's database (so every
bridge of the group sees the same counts); and the PIN events staff see.

A stolen station's credentials can ask about any card. Counting per card only (central/pin.py)
would let them lock one reader's card after another; here the station itself has a budget:
past `budget` wrong PINs within `window`, its PIN checks are refused ("try later") for a pause
that doubles at each further pause within a day, up to `max_pause`, before any card is
looked at or counted. With the defaults an honest station (a few mistyped PINs an hour) never
meets it, and a hammering one gets about a hundred wrong PINs in its first day (10, then
pauses of 15, 30, 60, 120, then 240 minutes) and about sixty a day after, instead of
hundreds of thousands; each card then also slows and locks on its own count. The cap is the
trade-off: without it the pause reached days (about ten after ten pauses), and a station
that met its budget by mischance (a class mistyping, a card reader gone wrong) stayed out of
PIN checks as long; with it a thief gets a few dozen guesses a day more per station.

The cards' wrong PINs are on the patron rows (the embedded store) or on `patron_refs`
(SIP2, Koha); this module only writes the station counts and the events.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from selfcheck.central import pin as pins
from selfcheck.central.schema import patron_refs, patrons, pin_events, pin_stations
from selfcheck.mqtt.messages import PatronCheckRes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StationBudget:
    budget: int = 10  # wrong PINs a station may give within the window; 0: no budget
    window: dt.timedelta = dt.timedelta(minutes=15)
    pause: dt.timedelta = dt.timedelta(minutes=15)  # the first pause; doubled at each next
    max_pause: dt.timedelta = dt.timedelta(hours=4)  # ...up to this (never below `pause`)
    pauses_forgotten: dt.timedelta = dt.timedelta(days=1)  # after a quiet day: the first again


def aware(when: dt.datetime | None) -> dt.datetime | None:
    return when if when is None or when.tzinfo else when.replace(tzinfo=dt.UTC)


class PinGuard:
    def __init__(self, engine: Engine, budget: StationBudget | None = None) -> None:
        self.engine = engine
        self.budget = budget or StationBudget()

    def paused(self, site: str | None, station: str | None,
               now: dt.datetime) -> PatronCheckRes | None:
        """The refusal for a PIN check from a station over its budget, else None. Nothing is
        said of the card: it was not looked at."""
        if site is None or station is None:
            return None
        with self.engine.connect() as conn:
            until = aware(conn.execute(select(pin_stations.c.paused_until).where(
                pin_stations.c.site == site, pin_stations.c.station == station)
            ).scalar_one_or_none())
        if until is None or until <= now:
            return None
        return PatronCheckRes(ok=False, reason="pin_paused", pin_locked_until=until)

    def wrong(self, site: str | None, station: str | None, patron_ref: str | None,
              before: pins.PinState, after: pins.PinState, now: dt.datetime,
              policy: pins.PinPolicy) -> None:
        """Count a wrong PIN for the station, and note a card that began a wait or a lock."""
        with self.engine.begin() as conn:
            if after.locked_until is not None and after.locked_until != before.locked_until:
                kind = "locked" if after.failures >= policy.lock_after else "slowed"
                self._event(conn, now, site, station, patron_ref, kind, after.locked_until)
            if site is not None and station is not None:
                self._count(conn, site, station, now)

    def right(self, site: str | None, station: str | None, patron_ref: str | None,
              before: pins.PinState, now: dt.datetime) -> None:
        """A right PIN after wrong ones: the card's count starts again (logged)."""
        if before.failures or before.locked_until is not None:
            with self.engine.begin() as conn:
                self._event(conn, now, site, station, patron_ref, "unlocked", None)

    def _count(self, conn: Connection, site: str, station: str, now: dt.datetime) -> None:
        b = self.budget
        where = (pin_stations.c.site == site, pin_stations.c.station == station)
        # Locked for the update: two bridges counting one station at once lose no count.
        row = conn.execute(select(pin_stations).where(*where).with_for_update()
                           ).mappings().first()
        if row is None:
            try:
                with conn.begin_nested():
                    conn.execute(insert(pin_stations).values(
                        site=site, station=station, window_start=now, failures=1, total=1,
                        pauses=0, paused_until=None, last_at=now))
                return
            except IntegrityError:  # another bridge made it meanwhile: count on it, locked
                row = conn.execute(select(pin_stations).where(*where).with_for_update()
                                   ).mappings().one()
        start = aware(row["window_start"]) or now
        failures = row["failures"] + 1 if now - start < b.window else 1
        start = start if failures > 1 else now
        pauses = row["pauses"] if now - (aware(row["last_at"]) or now) < b.pauses_forgotten \
            else 0
        values: dict[str, Any] = dict(window_start=start, failures=failures,
                                      total=row["total"] + 1, last_at=now, pauses=pauses)
        if b.budget and failures >= b.budget:
            until = now + min(b.pause * 2 ** min(pauses, 10), max(b.max_pause, b.pause))
            values.update(paused_until=until, pauses=pauses + 1, failures=0, window_start=now)
            self._event(conn, now, site, station, None, "station_paused", until)
            log.warning("station %s/%s gave %d wrong PINs within %s: its PIN checks pause "
                        "until %s", site, station, failures, b.window, until.isoformat(),
                        extra={"station": station})
        conn.execute(update(pin_stations).where(*where).values(**values))

    @staticmethod
    def _event(conn: Connection, now: dt.datetime, site: str | None, station: str | None,
               patron_ref: str | None, kind: str, until: dt.datetime | None,
               by: str | None = None) -> None:
        conn.execute(insert(pin_events).values(at=now, site=site, station=station,
                                               patron_ref=patron_ref, kind=kind, until=until,
                                               by=by))


def station_counts(engine: Engine) -> list[dict[str, Any]]:
    """Per station: wrong PINs since counting began, and until when its PIN checks pause."""
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(pin_stations).order_by(
            pin_stations.c.site, pin_stations.c.station)).mappings()]


def events(engine: Engine, since: dt.datetime | None = None) -> list[dict[str, Any]]:
    query = select(pin_events).order_by(pin_events.c.at, pin_events.c.id)
    if since is not None:
        query = query.where(pin_events.c.at >= since)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def cards(engine: Engine, now: dt.datetime,
          policy: pins.PinPolicy | None = None) -> list[dict[str, Any]]:
    """Cards with wrong PINs counted (the embedded store's and the library system's), for
    staff: patron_ref, failures, until, stage (central/pin.py); the card number never."""
    policy = policy or pins.PinPolicy()
    out = []
    with engine.connect() as conn:
        for table in (patrons, patron_refs):
            for r in conn.execute(select(table.c.ref, table.c.pin_failures,
                                         table.c.pin_locked_until)
                                  .where(table.c.pin_failures > 0)):
                state = pins.PinState(r.pin_failures, aware(r.pin_locked_until))
                out.append({"patron_ref": r.ref, "failures": r.pin_failures,
                            "until": state.locked_until,
                            "stage": pins.stage(state, now, policy)})
    return sorted(out, key=lambda c: (c["stage"] != "locked", c["patron_ref"]))


def unlock(engine: Engine, patron_ref: str, by: str, now: dt.datetime) -> bool:
    """Staff: the card's wrong PINs forgotten and its wait or lock lifted, logged with who
    did it; False for a reference no table knows."""
    with engine.begin() as conn:
        done = sum(conn.execute(update(table).where(table.c.ref == patron_ref).values(
            pin_failures=0, pin_locked_until=None)).rowcount for table in (patrons, patron_refs))
        if done:
            PinGuard._event(conn, now, None, None, patron_ref, "unlocked", None, by=by)
    return bool(done)
