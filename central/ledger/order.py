"""The ledger's per-station order (central/ledger/): each station's transactions reach the
backend in `seq` order.

A station numbers the transactions of its journal 1, 2, 3, ... and the central's effect must
equal applying them in that order, whatever reaches which bridge when. So, in front of any
backend:

- a transaction whose predecessors are all applied is ready (so are the ones right behind it
  in the same batch, and a repeat of one already applied);
- one that came before a predecessor is held, in the central's database so that any bridge of
  the shared group can release it, and released as soon as the gap fills;
- a gap that does not fill within the order wait is given up: the held ones are applied and
  the missing numbers recorded (`order_gaps`, kind 'gap'); a missing one that comes later is
  applied when it comes and recorded too (kind 'late'): both are for reconciliation
  (`ledger.gaps`).
- after a restore of the store from a backup (`store_restores`), the stations have numbered on
  while the backup aged: the restored store has never seen their last numbers, and never will
  (the station dropped each one at its ack). The station says where it is: a transaction
  carries `acked_below`, the lowest seq waiting in its journal's outbox when it was written
  (every seq below it acknowledged). After a restore the journal's mark is raised to
  max(mark, acked_below - 1), recorded as kind 'rebase' (numbers first_seq..last_seq
  skipped, msg_id the transaction that said so). Not from the first transaction to commit:
  with a shared subscription a station's seq 10 and 11 may reach two bridges, and 11 taken
  as where the numbering goes on would make 10 a late one applied after it.

  Why any arrival order is safe: each seq below acked_below was acknowledged by the central
  of its day, and the station deleted it from its outbox then, so the station never sends it
  again. The value is fixed in the payload when the transaction is journalled, so a resend
  (or a redelivery of an old copy) may carry a lower value than the station's present one:
  lower only skips less, never a seq that may still come. It never passes a row still
  waiting either: one journalled before it was in the outbox when the value was taken, one
  journalled after it has a higher seq. At worst a stale value
  leaves a gap of numbers acknowledged but lost with the backup; it is held like any gap and
  given up after the order wait, then recorded as 'rebase', not 'gap'.

  A station too old to send acked_below is held the same way: the order wait, then the gap
  recorded as 'rebase'. That is what `restore_numbering` is for: the first new transaction
  of each journal after a restore (a repeat of one the restored store already holds says
  nothing of where the station is now), so that a gap given up before the journal got past
  it is the restore's, and one after it a real gap.

How far a journal is applied (`station_order.applied`) moves on lazily from the dedupe rows:
a bridge killed between the ledger's commit and any bookkeeping here leaves nothing wrong,
and a held row lost with a bridge comes back with the station's next resend (the station keeps
every transaction until its ack).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import (
    ColumnElement,
    Engine,
    Table,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from selfcheck.central.backend import Tx
from selfcheck.central.schema import (
    held_tx,
    order_gaps,
    processed,
    restore_numbering,
    station_order,
    store_restores,
)
from selfcheck.mqtt import messages

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # site, station, journal
HELD_MAX = 1000  # per journal: a station that skips numbers cannot fill the database
# The mark is worked out from the dedupe rows; written back only every so often, so that the
# usual batch costs no write here, and the rows read past it stay few.
MARK_WRITE_EVERY = 64


def key_of(tx: Tx) -> Key:
    return (tx.site, tx.station, tx.journal or "")


# The statements on the path of every transaction, built once: building one costs more than
# running it. Parameters: _params(key), and `mark`.
def _keyed(table: Table) -> tuple[ColumnElement[bool], ...]:
    c = table.c
    return (c.site == bindparam("k_site"), c.station == bindparam("k_station"),
            c.journal == bindparam("k_journal"))


def _params(key: Key) -> dict[str, str]:
    return {"k_site": key[0], "k_station": key[1], "k_journal": key[2]}


# The mark (locked: PostgreSQL's FOR UPDATE; SQLite's BEGIN IMMEDIATE already serialises
# writers), the last restore, whether anything of the journal is held. No aggregate beside
# FOR UPDATE: PostgreSQL refuses one.
_STATE = (select(station_order.c.applied,
                 select(store_restores.c.id).order_by(store_restores.c.id.desc()).limit(1)
                 .scalar_subquery(),
                 exists().where(*_keyed(held_tx)))
          .where(*_keyed(station_order)).with_for_update())
_AFTER_MARK = (select(processed.c.seq)
               .where(*_keyed(processed), processed.c.seq > bindparam("mark"))
               .order_by(processed.c.seq))


@dataclass
class OrderCounters:
    held: int = 0  # transactions that came before a predecessor
    released: int = 0  # held ones applied once their gap filled or was given up
    gaps: int = 0  # gaps given up after the order wait
    late: int = 0  # transactions that came after their gap was given up
    refused: int = 0  # over HELD_MAX: not held, the station sends them again
    rebased: int = 0  # numberings taken from a station after a restore (order_gaps 'rebase')


@dataclass
class Admitted:
    ready: list[Tx] = field(default_factory=list)  # per journal in seq order
    held: list[Tx] = field(default_factory=list)


class StationOrder:
    def __init__(self, engine: Engine, *, wait_s: float = 30.0) -> None:
        self.engine = engine
        self.wait = dt.timedelta(seconds=wait_s)
        self.counters = OrderCounters()

    # -- what the bridge calls
    def admit(self, txs: Sequence[Tx], now: dt.datetime | None = None) -> Admitted:
        """Sort a batch into what may be applied now and what waits for a predecessor."""
        with self.engine.begin() as conn:
            return self.admit_in(conn, txs, now or dt.datetime.now(dt.UTC))

    def admit_in(self, conn: Connection, txs: Sequence[Tx], now: dt.datetime) -> Admitted:
        """`admit` inside the caller's database transaction: the ledger applies what is ready
        in the same one (one commit a batch), and since each journal's mark stays locked
        until that commit, nothing another bridge holds meanwhile can follow on from it."""
        out = Admitted()
        groups: dict[Key, list[Tx]] = {}
        for tx in txs:
            groups.setdefault(key_of(tx), []).append(tx)
        for key in sorted(groups):
            mark, restore, others_held = self._lock_state(conn, key, now)
            group = sorted(groups[key], key=lambda t: t.seq)
            if restore is not None:
                mark = self._after_restore(conn, key, group, mark, restore, now)
            done = self._processed(conn, key, [t.msg_id for t in group if t.seq <= mark])
            ready: list[Tx] = []
            nxt = mark + 1
            for tx in group:
                if tx.seq < nxt:
                    if tx.seq <= mark and tx.msg_id not in done:
                        self._late(conn, key, tx, now)
                        done.add(tx.msg_id)
                    ready.append(tx)
                elif tx.seq == nxt:
                    ready.append(tx)
                    nxt += 1
                elif self._hold(conn, key, tx, now):
                    out.held.append(tx)
            # Only what was held before this batch can follow on from it: once one of the
            # batch is held, the rest of the batch is past the gap too.
            if others_held:
                ready += self._pull(conn, key, nxt)
            out.ready += sorted(ready, key=lambda t: t.seq)
        return out

    def release(self, keys: Iterable[Key], now: dt.datetime | None = None) -> list[Tx]:
        """Held transactions of these journals whose gap has filled (after an apply)."""
        now = now or dt.datetime.now(dt.UTC)
        out: list[Tx] = []
        wanted = sorted(set(keys))
        if not wanted:
            return out
        with self.engine.begin() as conn:
            waiting = self._held_keys(conn, wanted)
            for key in wanted:
                if key in waiting:
                    out += self._pull(conn, key, self._lock(conn, key, now) + 1)
        return out

    def release_due(self, now: dt.datetime | None = None) -> list[Tx]:
        """Give up the gaps that have waited longer than the order wait: record them and
        release what was held behind them."""
        now = now or dt.datetime.now(dt.UTC)
        out: list[Tx] = []
        given_up = 0
        with self.engine.begin() as conn:
            keys = sorted({(r.site, r.station, r.journal) for r in conn.execute(
                select(held_tx.c.site, held_tx.c.station, held_tx.c.journal)
                .where(held_tx.c.received_at < now - self.wait).distinct())})
            for key in keys:
                mark = self._lock(conn, key, now)
                first = conn.execute(
                    select(held_tx.c.seq).where(*self._is(held_tx, key))
                    .order_by(held_tx.c.seq).limit(1)).scalar_one_or_none()
                if first is not None and first > mark + 1:
                    if self._restore_gap(conn, key, mark):
                        # Numbers the restored store never saw, from a station that did not
                        # say where it is (or said it before more of its acks): its restore.
                        held = conn.execute(
                            select(held_tx.c.msg_id).where(*self._is(held_tx, key),
                                                           held_tx.c.seq == first)).scalar_one()
                        self._rebased(conn, key, mark + 1, first - 1, held, now)
                    else:
                        conn.execute(insert(order_gaps).values(
                            site=key[0], station=key[1], journal=key[2], kind="gap",
                            first_seq=mark + 1, last_seq=first - 1, msg_id=None,
                            recorded_at=now))
                        given_up += 1
                        log.warning("order gap given up: site=%s station=%s seq=%d..%d",
                                    key[0], key[1], mark + 1, first - 1)
                    self._set_mark(conn, key, first - 1, now)
                    mark = first - 1
                out += self._pull(conn, key, mark + 1)
        # Counted once committed, and after what it released: whoever sees the gap counted
        # sees the release too.
        self.counters.gaps += given_up
        return out

    def _last_restore(self, conn: Connection) -> int | None:
        return conn.execute(select(func.max(store_restores.c.id))).scalar_one_or_none()

    def _after_restore(self, conn: Connection, key: Key, group: list[Tx], mark: int,
                       restore: int, now: dt.datetime) -> int:
        """The journal's mark, raised to where the station says it is after the restore
        `restore` (see the module's docstring)."""
        taken = conn.execute(select(restore_numbering.c.seq).where(
            *self._is(restore_numbering, key),
            restore_numbering.c.restore_id == restore)).scalar_one_or_none()
        if taken is None:
            done = self._processed(conn, key, [t.msg_id for t in group])
            new = [t for t in group if t.msg_id not in done]
            if new:
                conn.execute(insert(restore_numbering).values(
                    site=key[0], station=key[1], journal=key[2], restore_id=restore,
                    seq=new[0].seq, taken_at=now))
        said = [t for t in group if t.acked_below is not None]
        if not said:
            return mark  # an older station: held like any gap (release_due)
        carrier = max(said, key=lambda t: t.acked_below or 0)
        below = int(carrier.acked_below or 0)
        if below - 1 <= mark:  # follows on from the restored store: nothing to take
            return mark
        self._rebased(conn, key, mark + 1, below - 1, carrier.msg_id, now)
        self._set_mark(conn, key, below - 1, now)
        return below - 1

    def _rebased(self, conn: Connection, key: Key, first: int, last: int, msg_id: str | None,
                 now: dt.datetime) -> None:
        conn.execute(insert(order_gaps).values(
            site=key[0], station=key[1], journal=key[2], kind="rebase", first_seq=first,
            last_seq=last, msg_id=msg_id, recorded_at=now))
        self.counters.rebased += 1
        log.warning("numbering taken from station %s at seq %d after restore (site=%s; "
                    "seq %d..%d not in the restored store)", key[1], last + 1, key[0],
                    first, last)

    def _restore_gap(self, conn: Connection, key: Key, mark: int) -> bool:
        """Whether a gap given up now after `mark` is the last restore's: the journal has not
        got past its first new transaction since the restore (see the module's docstring)."""
        restore = self._last_restore(conn)
        if restore is None:
            return False
        taken = conn.execute(select(restore_numbering.c.seq).where(
            *self._is(restore_numbering, key),
            restore_numbering.c.restore_id == restore)).scalar_one_or_none()
        return taken is None or taken > mark

    def held_count(self) -> int:
        with self.engine.connect() as conn:
            return len(conn.execute(select(held_tx.c.seq)).all())

    # -- the steps, inside one database transaction
    @staticmethod
    def _is(table: Table, key: Key) -> tuple[ColumnElement[bool], ...]:
        c = table.c
        return (c.site == key[0], c.station == key[1], c.journal == key[2])

    def _lock_state(self, conn: Connection, key: Key, now: dt.datetime
                    ) -> tuple[int, int | None, bool]:
        """`_lock`, and with it the last restore (`_last_restore`) and whether anything of this
        journal is held: one statement in the usual case, not three, on the path of every
        transaction (built once, _STATE)."""
        row = conn.execute(_STATE, _params(key)).first()
        if row is None:  # a new journal: made by `_lock`, the rest asked on its own
            return self._lock(conn, key, now), self._last_restore(conn), True
        return self._advance(conn, key, int(row[0]), now), row[1], bool(row[2])

    def _lock(self, conn: Connection, key: Key, now: dt.datetime) -> int:
        """The journal's mark, locked for this transaction (PostgreSQL: FOR UPDATE; SQLite's
        BEGIN IMMEDIATE already serialises writers) and moved on past the dedupe rows."""
        query = select(station_order.c.applied).where(*self._is(station_order, key))
        mark = conn.execute(query.with_for_update()).scalar_one_or_none()
        if mark is None:
            try:
                with conn.begin_nested():
                    conn.execute(insert(station_order).values(
                        site=key[0], station=key[1], journal=key[2], applied=0,
                        updated_at=now))
                mark = 0
            except IntegrityError:  # another bridge made it just now
                mark = conn.execute(query.with_for_update()).scalar_one()
        return self._advance(conn, key, int(mark), now)

    def _advance(self, conn: Connection, key: Key, mark: int, now: dt.datetime) -> int:
        """The mark moved on past the dedupe rows that follow it (written back now and then)."""
        start = mark
        for seq in conn.execute(_AFTER_MARK, {**_params(key), "mark": mark}).scalars():
            if seq > mark + 1:
                break
            mark = seq
        if mark - start >= MARK_WRITE_EVERY:
            self._set_mark(conn, key, mark, now)
        return int(mark)

    def _set_mark(self, conn: Connection, key: Key, mark: int, now: dt.datetime) -> None:
        conn.execute(update(station_order).where(*self._is(station_order, key))
                     .values(applied=mark, updated_at=now))

    def _processed(self, conn: Connection, key: Key, msg_ids: list[str]) -> set[str]:
        if not msg_ids:
            return set()
        return set(conn.execute(select(processed.c.msg_id).where(
            processed.c.site == key[0], processed.c.station == key[1],
            processed.c.msg_id.in_(msg_ids))).scalars())

    def _late(self, conn: Connection, key: Key, tx: Tx, now: dt.datetime) -> None:
        """A number at or below the mark that was never applied: its gap was given up."""
        conn.execute(insert(order_gaps).values(
            site=key[0], station=key[1], journal=key[2], kind="late", first_seq=tx.seq,
            last_seq=tx.seq, msg_id=tx.msg_id, recorded_at=now))
        self.counters.late += 1
        log.warning("late transaction applied out of order: site=%s station=%s seq=%d "
                    "msg_id=%s", key[0], key[1], tx.seq, tx.msg_id)

    def _hold(self, conn: Connection, key: Key, tx: Tx, now: dt.datetime) -> bool:
        """Keep it until its gap fills; the first copy's arrival starts the order wait."""
        present = conn.execute(select(held_tx.c.msg_id).where(
            *self._is(held_tx, key), held_tx.c.seq == tx.seq)).scalar_one_or_none()
        if present is not None:
            return True
        count = len(conn.execute(select(held_tx.c.seq).where(*self._is(held_tx, key))
                                 .limit(HELD_MAX)).all())
        if count >= HELD_MAX:
            self.counters.refused += 1
            return False
        conn.execute(insert(held_tx).values(
            site=key[0], station=key[1], journal=key[2], seq=tx.seq, msg_id=tx.msg_id,
            payload=messages.encode(tx).decode(), received_at=now))
        self.counters.held += 1
        log.info("held until its predecessor comes: site=%s station=%s seq=%d msg_id=%s",
                 key[0], key[1], tx.seq, tx.msg_id)
        return True

    def _held_keys(self, conn: Connection, keys: list[Key]) -> set[Key]:
        rows = conn.execute(select(held_tx.c.site, held_tx.c.station, held_tx.c.journal)
                            .where(held_tx.c.station.in_({k[1] for k in keys})).distinct())
        return {(r.site, r.station, r.journal) for r in rows} & set(keys)

    def _pull(self, conn: Connection, key: Key, nxt: int) -> list[Tx]:
        """Take out the held transactions that now follow on from the mark."""
        out: list[Tx] = []
        taken: list[int] = []
        for seq, payload in conn.execute(
                select(held_tx.c.seq, held_tx.c.payload).where(*self._is(held_tx, key))
                .order_by(held_tx.c.seq)).all():
            if seq > nxt:
                break
            taken.append(seq)
            nxt = max(nxt, seq + 1)
            try:
                out.append(messages.decode_tx(payload.encode()))
            except messages.MessageError as exc:  # held by an older version: cannot be
                log.warning("held transaction unreadable, dropped: %s", exc)
        if taken:
            conn.execute(delete(held_tx).where(*self._is(held_tx, key),
                                               held_tx.c.seq.in_(taken)))
            self.counters.released += len(out)
        return out
