"""Patron sessions: the central, not the station, says for whom a station may act.

A successful patron check (with the PIN, when the rule wants one: central/pin_rules.py) opens
a session for (site, station, patron_ref). That station's account requests, online loans and
online renewals for that reader need it open: a bare reference (from a receipt, a journal, a
log, another station's answer) buys nothing. Each use extends it by `idle`, so a reader who
keeps going is never cut off; a reader who walks away leaves it to end by itself.

- A transaction that arrives after its session ended (an outage, the order wait, a resend) is
  judged by its `at`: accepted if it was done before the end, give or take CLOCK_SLACK for the
  station's clock. The trade-off: `at` is the station's word, so a station that lies about its
  time can stretch the sessions it opened itself, never another station's, and only for as
  long as the ended rows are kept (KEEP). Judging by arrival alone would refuse the honest
  loans an outage delayed.
- Offline transactions have no session: the reader was checked against the offline list while
  the central could not be reached. They are accepted as before, and recorded for
  reconciliation when refused.

The rows are in the central's database (`patron_sessions`), so every bridge of the shared group
sees the sessions the others opened. `judge` is the policy, pure, with the clock passed in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TypeGuard

from sqlalchemy import Engine, delete, insert, select, tuple_, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from selfcheck.central.backend import Tx
from selfcheck.central.schema import patron_sessions as ps
from selfcheck.mqtt.messages import TxLoan, TxRenew

# Well above a station's inactivity (45 s, with its "more time?" offers) and the ack wait.
IDLE = dt.timedelta(minutes=10)
CLOCK_SLACK = dt.timedelta(minutes=2)  # a station's clock may be this far ahead
KEEP = dt.timedelta(days=1)  # ended sessions, for transactions that arrive late

Key = tuple[str, str, str]  # site, station, patron_ref


def _aware(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)  # SQLite drops the zone


def judge(ends_at: dt.datetime | None, now: dt.datetime, idle: dt.timedelta,
          at: dt.datetime | None = None) -> dt.datetime | None:
    """The session's new end if this use is allowed, else None. In time (`now` before the
    end): allowed, and the session extended. Late: allowed when done (`at`) before the end,
    without extending it; a request (no `at`) is never late."""
    if ends_at is None:
        return None
    if now <= ends_at:
        return max(ends_at, now + idle)
    if at is not None and at <= ends_at + CLOCK_SLACK:
        return ends_at
    return None


def needs_session(tx: Tx) -> TypeGuard[TxLoan | TxRenew]:
    """Online loans and renewals; returns need no reader, offline ones have no session."""
    return isinstance(tx, TxLoan | TxRenew) and not tx.offline


class Sessions:
    def __init__(self, engine: Engine, idle: dt.timedelta = IDLE) -> None:
        if idle <= dt.timedelta(0):
            raise ValueError("session idle time must be above 0")
        self.engine = engine
        self.idle = idle

    def open(self, site: str, station: str, patron_ref: str, now: dt.datetime) -> None:
        """After a successful patron check; a session still open is extended."""
        key = (ps.c.site == site) & (ps.c.station == station) & (ps.c.patron_ref == patron_ref)
        ends = now + self.idle
        for _ in range(2):  # another bridge may insert the same key between our two steps
            try:
                with self.engine.begin() as conn:
                    conn.execute(delete(ps).where(ps.c.ends_at < now - KEEP))
                    if conn.execute(update(ps).where(key).values(
                            opened_at=now, ends_at=ends)).rowcount == 0:
                        conn.execute(insert(ps).values(site=site, station=station,
                                                       patron_ref=patron_ref, opened_at=now,
                                                       ends_at=ends))
                return
            except IntegrityError:
                continue
        raise RuntimeError("patron session: could not be opened")

    def use(self, site: str, station: str, patron_ref: str, now: dt.datetime) -> bool:
        """A request (the account): allowed only in an open session, which it extends."""
        with self.engine.begin() as conn:
            return self.admit(conn, [(site, station, patron_ref, None)], now)[0]

    def admit(self, conn: Connection,
              uses: Sequence[tuple[str, str, str, dt.datetime | None]],
              now: dt.datetime) -> list[bool]:
        """For each (site, station, patron_ref, at): allowed or not, in `conn` (the caller's
        transaction); the sessions used in time are extended."""
        keys = {(s, st, ref) for s, st, ref, _ in uses}
        if not keys:
            return []
        ends: dict[Key, dt.datetime] = {
            (r.site, r.station, r.patron_ref): _aware(r.ends_at) for r in conn.execute(
                select(ps.c.site, ps.c.station, ps.c.patron_ref, ps.c.ends_at)
                .where(tuple_(ps.c.site, ps.c.station, ps.c.patron_ref).in_(list(keys))))}
        allowed, moved = [], {}
        for site, station, ref, at in uses:
            key = (site, station, ref)
            new = judge(ends.get(key), now, self.idle, at)
            allowed.append(new is not None)
            if new is not None and new != ends[key]:
                ends[key] = moved[key] = new
        for (site, station, ref), new in moved.items():
            conn.execute(update(ps).where(ps.c.site == site, ps.c.station == station,
                                          ps.c.patron_ref == ref).values(ends_at=new))
        return allowed
