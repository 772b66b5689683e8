"""What the central's database says of a stolen station's credentials, for the fleet's
alerts: `pin_guessing` while a station's PIN checks are paused over its wrong-PIN budget
(central/pin_guard.py), `tx_clock` when a transaction of it was applied at the central's time
because its clock was out of bounds (central/tx_clock.py) within the last day. Read with the
order gaps (service.refresh_order), from the same database."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import DBAPIError

from selfcheck.central.fleet.state import ORDER_RECENT_S, FleetState, Station
from selfcheck.central.schema import pin_stations, reconciliation

log = logging.getLogger(__name__)

KINDS = ("pin_guessing", "tx_clock")


def signals(engine: Engine, now: float) -> dict[tuple[str, str], set[str]] | None:
    """Per station, the kinds that hold now; None when the central's tables are not in this
    database."""
    at = dt.datetime.fromtimestamp(now, dt.UTC)
    recent = dt.datetime.fromtimestamp(now - ORDER_RECENT_S, dt.UTC)
    r = reconciliation.c
    try:
        with engine.connect() as conn:
            paused = conn.execute(select(pin_stations.c.site, pin_stations.c.station).where(
                pin_stations.c.paused_until > at)).all()
            clocks = conn.execute(select(r.site, r.station, func.count()).where(
                r.station_at.is_not(None), r.recorded_at >= recent)
                .group_by(r.site, r.station)).all()
    except DBAPIError as exc:  # a fleet database without the central's tables
        log.debug("wrong PINs and clocks not readable: %s", exc)
        return None
    out: dict[tuple[str, str], set[str]] = {}
    for site, station in paused:
        out.setdefault((site, station), set()).add("pin_guessing")
    for site, station, _ in clocks:
        out.setdefault((site, station), set()).add("tx_clock")
    return out


def apply(state: FleetState, held: dict[tuple[str, str], set[str]],
          now: float) -> list[Station]:
    """Take the kinds that hold per station; the stations whose alerts changed."""
    changed = []
    with state.lock:
        for key in set(held) | set(state.stations):
            rec = state.get(*key)
            rec.pending -= set(KINDS)  # restored alerts of these kinds: known again
            rec.guard = held.get(key, set())
            if rec.refresh(now):
                changed.append(rec)
    return changed
