"""The ledger: exactly-once and per-station order, in the central's database, in front of any
backend (central/backend.py).

- Each (site, station, msg_id) is applied once: its `processed` row holds the ack as sent, and
  a repeat (a resend, a redelivery, a second copy in one batch) is answered from it, marked
  `repeat`, and never reaches the backend again.
- A backend that shares this database (the embedded store) applies inside the ledger's
  transaction: effect and `processed` row commit together. Another bridge committing the same
  msg_id or item first makes the commit fail on a key; the batch is then read and applied
  again, and sees what the other one did.
- A remote backend (SIP2, Koha) cannot: a claim row is committed for each msg_id before any
  request goes out; the `processed` row and the removal of the claim commit together after
  the answer. A crash (or a timeout, or a dropped connection) in between leaves the claim: the
  outcome is unknown, and whoever meets the claim after its lease has run out has the backend
  *ask before acting*. A claim still inside its lease belongs to a bridge at work on it (any
  bridge of the shared subscription group): no answer now, the station sends it again and
  then meets the stored result.
- An offline transaction refused on arrival gets a `reconciliation` row with its `processed`
  row: the reader was told yes while offline, and staff must follow it up. So does a return a
  station sent by itself to undo a loan made after the reader was told it was not
  (`compensates`): what the reader was last shown is what the library system ends up holding.
- Per-station order (central/ledger/order.py): a transaction that came before a predecessor is held
  until the gap fills, or until the order wait gives the gap up (`order_gaps`).
- A transaction's own time (`at`) is the station's word: far in the past or ahead of the
  central's clock (central/tx_clock.py) it is applied at the central's time instead, with a
  `reconciliation` row keeping the station's (`station_at`).
- Patron sessions (central/sessions.py, when given): an online loan or renewal with no session
  open for its reader at its station is refused (`no_session`) before any backend sees it, so
  one check holds for every backend. A repeat is still answered from its stored ack.

The database is migrated once, by whoever opens it at start-up (`open_db`), never by a
backend.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Engine, Table, bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from selfcheck.central.backend import KIND, Claim, LocalBackend, Outcome, RemoteBackend, Tx
from selfcheck.central.engine import open_engine
from selfcheck.central.ledger.order import Admitted, Key, StationOrder, key_of
from selfcheck.central.schema import order_gaps, processed, reconciliation, sip2_claims
from selfcheck.central.sessions import Sessions, needs_session
from selfcheck.central.tx_clock import ClockBounds, Verdict, judge
from selfcheck.mqtt.messages import AckTx, TxLoan

log = logging.getLogger(__name__)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # an expired lease: the next one asks first
TRIES = 3  # a local batch that collides with another bridge's commit is applied again

__all__ = ["Admitted", "Key", "Ledger", "gaps", "key_of", "open_db", "open_engine",
           "refused_offline"]


def open_db(url: str) -> Engine:
    """The central's database, brought to the newest schema revision: the start-up's step."""
    from selfcheck.central import migrations  # Alembic only where the database is set up

    engine = open_engine(url)
    migrations.upgrade(engine)
    return engine


def aware(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)  # SQLite drops the zone


def _moved(tx: Tx, now: dt.datetime) -> dict[str, dt.datetime]:
    """A transaction's times on the central's clock: `at` now, and a loan's deadline as far
    after it as the station set it after its own `at` (both read on the station's clock: a
    clock far behind would otherwise have every online loan refused as late)."""
    moved = {"at": now}
    if isinstance(tx, TxLoan):
        try:
            moved["deadline"] = now + (aware(tx.deadline) - aware(tx.at))
        except OverflowError:  # a deadline near year 1 or 9999: the station's word stands
            pass
    return moved


def _key(tx: Tx) -> tuple[str, str, str]:
    return (tx.site, tx.station, tx.msg_id)


# The dedupe read of every batch, built once (building one costs more than running it).
_STORED = (select(processed.c.site, processed.c.station, processed.c.msg_id, processed.c.result)
           .where(processed.c.msg_id.in_(bindparam("ids", expanding=True))))


def _repeat(result: str) -> AckTx:
    return AckTx.model_validate_json(result).model_copy(update={"repeat": True})


class Ledger:
    def __init__(self, engine: Engine, backend: LocalBackend | RemoteBackend, *,
                 owner: str = "bridge", order_wait_s: float = 30.0,
                 sessions: Sessions | None = None) -> None:
        self.engine = engine
        self.backend = backend
        self.owner = owner  # who holds a claim, for whoever looks at the rows
        self.sessions = sessions  # None: no session needed (tools and tests that apply)
        self.order = StationOrder(engine, wait_s=order_wait_s)
        self.clock = ClockBounds()  # `selfcheck central --tx-past-days/--tx-future-minutes`
        # Transactions applied at our time instead of their station's, per (site, station),
        # since this process started: the central's metrics, for the fleet's alert.
        self.clock_wrong: collections.Counter[tuple[str, str]] = collections.Counter()
        # This batch's: (site, station, msg_id) -> why, and the station's time.
        self._clocks: dict[tuple[str, str, str], tuple[Verdict, dt.datetime]] = {}

    # -- per-station order (central/ledger/order.py)
    def admit(self, txs: Sequence[Tx], now: dt.datetime | None = None) -> Admitted:
        return self.order.admit(txs, now)

    def release(self, keys: Iterable[Key], now: dt.datetime | None = None) -> list[Tx]:
        return self.order.release(keys, now)

    def release_due(self, now: dt.datetime | None = None) -> list[Tx]:
        return self.order.release_due(now)

    def held_count(self) -> int:
        return self.order.held_count()

    @property
    def admits_with_apply(self) -> bool:
        """Whether `admit_apply` admits and applies in one database transaction (a backend
        that shares this database); else the held ones that a concurrent apply let through
        are for `release` after the apply."""
        return isinstance(self.backend, LocalBackend)

    def admit_apply(self, txs: Sequence[Tx], now: dt.datetime | None = None
                    ) -> tuple[Admitted, list[AckTx | None]]:
        """Admit in each station's order and apply what is ready: the acks of `ready`, each
        only after its `processed` row is committed. On a backend that shares this database,
        one transaction, one commit: a batch pays one fsync, not one for the order and one
        for the ledger."""
        now = now or dt.datetime.now(dt.UTC)
        if not isinstance(self.backend, LocalBackend):
            admitted = self.order.admit(txs, now)
            return admitted, self.apply(admitted.ready, now) if admitted.ready else []
        for attempt in range(TRIES):
            try:
                with self.engine.begin() as conn:
                    admitted = self.order.admit_in(conn, txs, now)
                    batch = self._on_our_clock(admitted.ready, now)
                    acks = self._local_in(conn, self.backend, batch, now)
                return admitted, acks
            except IntegrityError:
                if attempt == TRIES - 1:
                    raise
                log.info("batch collided with another bridge; applying it again")
        raise AssertionError("unreachable")

    # -- exactly once
    def apply(self, batch: Sequence[Tx], now: dt.datetime | None = None) -> list[AckTx | None]:
        """One ack (or None: no answer now) per transaction, in order, each only after its
        `processed` row is committed."""
        now = now or dt.datetime.now(dt.UTC)
        batch = self._on_our_clock(batch, now)
        if isinstance(self.backend, LocalBackend):
            return self._apply_local(self.backend, batch, now)
        return self._apply_remote(self.backend, batch, now)

    def _on_our_clock(self, batch: Sequence[Tx], now: dt.datetime) -> list[Tx]:
        """The batch with each time out of bounds replaced by ours (noted for `_record`)."""
        self._clocks = {}
        out = []
        for tx in batch:
            verdict = judge(tx.at, now, self.clock)
            if verdict is not None:
                self._clocks[_key(tx)] = (verdict, tx.at)
                self.clock_wrong[(tx.site, tx.station)] += 1
                log.warning("%s dated %s by its station, %s: applied at the central's time",
                            KIND[type(tx)], tx.at.isoformat()[:40], verdict,
                            extra={"station": tx.station, "msg_id": tx.msg_id})
                tx = tx.model_copy(update=_moved(tx, now))
            out.append(tx)
        return out

    def _sort(self, conn: Connection, batch: Sequence[Tx]
              ) -> tuple[list[AckTx | None], list[int], dict[int, int]]:
        """The stored answers, the indexes still to apply, and the second copies of a message
        in the batch (index -> the first's), which the first one answers."""
        wanted = {_key(tx) for tx in batch}
        stored = {(r.site, r.station, r.msg_id): r.result for r in conn.execute(
            _STORED, {"ids": [k[2] for k in wanted]})
            if (r.site, r.station, r.msg_id) in wanted}  # no station's passes for another's
        results: list[AckTx | None] = [None] * len(batch)
        todo: list[int] = []
        copies: dict[int, int] = {}
        first: dict[tuple[str, str, str], int] = {}
        for i, tx in enumerate(batch):
            if (result := stored.get(_key(tx))) is not None:
                results[i] = _repeat(result)
            elif _key(tx) in first:
                copies[i] = first[_key(tx)]
            else:
                first[_key(tx)] = i
                todo.append(i)
        return results, todo, copies

    @staticmethod
    def _copies(results: list[AckTx | None], copies: dict[int, int]) -> list[AckTx | None]:
        for i, j in copies.items():
            ack = results[j]
            results[i] = None if ack is None else _repeat(ack.model_dump_json(by_alias=True))
        return results

    def _without_session(self, conn: Connection, batch: Sequence[Tx], todo: list[int],
                         now: dt.datetime) -> dict[int, AckTx]:
        """The refusals of online loans and renewals whose reader has no session open at
        their station (the others' sessions are extended in `conn`)."""
        if self.sessions is None:
            return {}
        gated = [(i, tx) for i in todo if needs_session(tx := batch[i])]
        allowed = self.sessions.admit(
            conn, [(tx.site, tx.station, tx.patron_ref, tx.at) for _, tx in gated], now)
        refused: dict[int, AckTx] = {}
        for (i, tx), ok in zip(gated, allowed, strict=True):
            if not ok:
                refused[i] = AckTx(msg_id=tx.msg_id, ok=False, reason="no_session",
                                   item_id=tx.item_id)
                log.info("%s refused: no session for patron %s at this station",
                         KIND[type(tx)], tx.patron_ref,
                         extra={"station": tx.station, "msg_id": tx.msg_id})
        return refused

    def _apply_local(self, backend: LocalBackend, batch: Sequence[Tx],
                     now: dt.datetime) -> list[AckTx | None]:
        for attempt in range(TRIES):
            try:
                with self.engine.begin() as conn:
                    results = self._local_in(conn, backend, batch, now)
                return results
            except IntegrityError:
                if attempt == TRIES - 1:
                    raise
                log.info("batch collided with another bridge; applying it again")
        raise AssertionError("unreachable")

    def _local_in(self, conn: Connection, backend: LocalBackend, batch: Sequence[Tx],
                  now: dt.datetime) -> list[AckTx | None]:
        """The acks of a batch applied in `conn`: to hand out only once it has committed."""
        if not batch:
            return []
        results, todo, copies = self._sort(conn, batch)
        refused = self._without_session(conn, batch, todo, now)
        todo = [i for i in todo if i not in refused]
        acks = backend.apply_in(conn, [batch[i] for i in todo], now)
        done = {**refused, **dict(zip(todo, acks, strict=True))}
        self._record(conn, batch, done, now)
        for i, ack in done.items():
            results[i] = ack
        return self._copies(results, copies)

    def _apply_remote(self, backend: RemoteBackend, batch: Sequence[Tx],
                      now: dt.datetime) -> list[AckTx | None]:
        """One local transaction claims the batch, the backend sends, and one local
        transaction commits the results: two commits a batch rather than two a transaction."""
        for attempt in range(TRIES):
            try:
                with self.engine.begin() as conn:
                    results, todo, copies = self._sort(conn, batch)
                    refused = self._without_session(conn, batch, todo, now)
                    self._record(conn, batch, refused, now)
                break
            except IntegrityError:  # another bridge answered one of them meanwhile
                if attempt == TRIES - 1:
                    raise
        for i, ack in refused.items():
            results[i] = ack
        todo = [i for i in todo if i not in refused]
        txs = [batch[i] for i in todo]
        claims = self._claim([tx.msg_id for tx in txs], backend.lease)
        ours = [claims[tx.msg_id] for tx in txs]
        out = backend.apply(txs, now, ours) if txs else Outcome([])
        for i, ack in self._commit(txs, ours, out, now).items():
            results[todo[i]] = ack
        return self._copies(results, copies)

    def _claim(self, msg_ids: list[str], lease: dt.timedelta) -> dict[str, Claim]:
        """Claim each msg_id (see Claim)."""
        if not msg_ids:
            return {}
        now = dt.datetime.now(dt.UTC)
        out: dict[str, Claim] = {}
        try:
            with self.engine.begin() as conn:
                held = {r.msg_id: r.claimed_at for r in conn.execute(
                    select(sip2_claims.c.msg_id, sip2_claims.c.claimed_at)
                    .where(sip2_claims.c.msg_id.in_(msg_ids)))}
                fresh = [i for i in msg_ids if i not in held]
                if fresh:
                    conn.execute(insert(sip2_claims), [
                        {"msg_id": i, "owner": self.owner, "claimed_at": now} for i in fresh])
                out.update(dict.fromkeys(fresh, "new"))
                for msg_id, claimed_at in held.items():
                    if aware(claimed_at) > now - lease:
                        out[msg_id] = "busy"
                        continue
                    taken = conn.execute(
                        update(sip2_claims).where(sip2_claims.c.msg_id == msg_id,
                                                  sip2_claims.c.claimed_at == claimed_at)
                        .values(owner=self.owner, claimed_at=now)).rowcount
                    out[msg_id] = "taken_over" if taken == 1 else "busy"
            return out
        except IntegrityError:  # another bridge claimed one of them meanwhile: one by one
            if len(msg_ids) == 1:
                return {msg_ids[0]: "busy"}
            return {i: c for one in msg_ids for i, c in self._claim([one], lease).items()}

    def _commit(self, txs: list[Tx], claims: list[Claim], out: Outcome,
                now: dt.datetime) -> dict[int, AckTx]:
        """The results and their `processed` rows in one transaction, claims settled with
        them: removed for answered ones and for requests that surely did not go out; kept
        with an expired lease where the outcome is unknown, so the next attempt asks first;
        a busy one's left to the bridge at work on it."""
        done = {i: ack for i, ack in enumerate(out.acks) if ack is not None}
        unanswered = [i for i, ack in enumerate(out.acks) if ack is None and claims[i] != "busy"]
        gone = [txs[i].msg_id for i in unanswered if i not in out.unsure]
        unknown = [txs[i].msg_id for i in unanswered if i in out.unsure]

        def settle(conn: Connection, items: dict[int, AckTx]) -> None:
            self._record(conn, txs, items, now)
            ids = [txs[i].msg_id for i in items] + gone
            if ids:
                conn.execute(delete(sip2_claims).where(sip2_claims.c.msg_id.in_(ids)))
            if unknown:
                conn.execute(update(sip2_claims).where(sip2_claims.c.msg_id.in_(unknown))
                             .values(claimed_at=EPOCH))

        try:
            with self.engine.begin() as conn:
                settle(conn, done)
            return done
        except IntegrityError:  # a bridge that outlived its lease got there first: one by one
            kept: dict[int, AckTx] = {}
            for i, ack in done.items():
                try:
                    with self.engine.begin() as conn:
                        self._record(conn, txs, {i: ack}, now)
                        conn.execute(delete(sip2_claims)
                                     .where(sip2_claims.c.msg_id == txs[i].msg_id))
                    kept[i] = ack
                except IntegrityError:
                    with self.engine.connect() as conn:
                        stored, _, _ = self._sort(conn, [txs[i]])
                    if stored[0] is not None:
                        kept[i] = stored[0]
            done = {}
            with self.engine.begin() as conn:
                settle(conn, done)
            return kept

    def _record(self, conn: Connection, batch: Sequence[Tx], acks: dict[int, AckTx],
                now: dt.datetime) -> None:
        """The `processed` rows of answered transactions, and a `reconciliation` row for each
        offline one refused on arrival, for each compensating return (done or not) and for
        each applied at our time instead of its station's (`station_at`)."""
        if not acks:
            return
        conn.execute(insert(processed), [
            {"msg_id": batch[i].msg_id, "site": batch[i].site, "station": batch[i].station,
             "journal": batch[i].journal or "", "seq": batch[i].seq,
             "kind": KIND[type(batch[i])], "result": ack.model_dump_json(by_alias=True),
             "applied_at": now} for i, ack in acks.items()])
        follow_up = []
        reason: str
        for i, ack in acks.items():
            tx = batch[i]
            undone = getattr(tx, "compensates", None)
            clock = self._clocks.get(_key(tx))
            if undone is not None:
                reason = "compensated" if ack.ok else ack.reason or "refused"
            elif tx.offline and not ack.ok:
                reason = ack.reason or "refused"
            elif clock is not None:
                reason = clock[0]
            else:
                continue
            follow_up.append({"msg_id": tx.msg_id, "site": tx.site, "station": tx.station,
                              "kind": KIND[type(tx)], "item_id": tx.item_id,
                              "patron_ref": getattr(tx, "patron_ref", None), "reason": reason,
                              "at": tx.at, "recorded_at": now, "compensates": undone,
                              "station_at": clock[1] if clock else None})
        if follow_up:
            conn.execute(insert(reconciliation), follow_up)

    # -- for staff: what needs following up, oldest first
    def reconciliation(self, site: str | None = None,
                       since: dt.datetime | None = None) -> list[dict[str, Any]]:
        return refused_offline(self.engine, site, since)

    def gaps(self, site: str | None = None,
             since: dt.datetime | None = None) -> list[dict[str, Any]]:
        return gaps(self.engine, site, since)


def refused_offline(engine: Engine, site: str | None = None,
                    since: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Offline transactions refused on arrival and compensating returns (`reconciliation`),
    oldest first."""
    return _rows(engine, reconciliation, reconciliation.c.at, site, since,
                 reconciliation.c.msg_id)


def gaps(engine: Engine, site: str | None = None,
         since: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Order gaps given up and late arrivals (`order_gaps`), oldest first."""
    return _rows(engine, order_gaps, order_gaps.c.recorded_at, site, since, order_gaps.c.id)


def _rows(engine: Engine, table: Table, when: Any, site: str | None,
          since: dt.datetime | None, tie: Any) -> list[dict[str, Any]]:
    query = select(table).order_by(when, tie)
    if site is not None:
        query = query.where(table.c.site == site)
    if since is not None:
        query = query.where(when >= since)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]
