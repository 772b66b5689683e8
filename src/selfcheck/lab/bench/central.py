"""Bench: transactions per second through the central bridge, as `selfcheck central` processes
behind a real Mosquitto, with 1, 2 and 4 bridges in one shared-subscription group, on:
- the embedded store on SQLite (WAL, synchronous=FULL: every batch is an fsync);
- the embedded store on the local PostgreSQL (skipped when there is none);
- SIP2 against a real SIP2 server (pysip2, lab/standins/sip2_server.py) answering each request after
  a fixed delay, each bridge with a pool of 4 connections.

Stations publish returns (QoS 1) as fast as the broker takes them; the time runs from the first
publish to the last ack/tx. A return is one write in the store, one round trip over SIP2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from selfcheck.lab.bench.cmd import Figure, figure
from selfcheck.lab.broker import Broker
from selfcheck.lab.stack import CentralProcess
from selfcheck.mqtt import messages, topics
from selfcheck.mqtt.connection import BrokerAddress, make_client
from selfcheck.mqtt.ids import uuid7

SITE = "bench"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SIP2_DELAY_S = 0.005
SIP2_POOL = 4


def _publish_all(broker: BrokerAddress, count: int, stations: int = 4,
                 timeout_s: float = 55.0) -> float:
    """Returns of items 49000001.. from `stations` clients; seconds until the last ack."""
    acked = 0
    done = threading.Event()
    lock = threading.Lock()

    def on_ack(client: object, userdata: object, m: object) -> None:
        nonlocal acked
        with lock:
            acked += 1
            if acked >= count:
                done.set()

    clients = []
    for s in range(stations):
        c = make_client(f"bench-st-{s}", max_inflight=500)
        c.on_message = on_ack
        c.connect(broker.host, broker.port)
        c.subscribe(topics.ack_tx(SITE, f"st-{s}"), qos=1)
        c.loop_start()
        clients.append(c)
    time.sleep(0.3)  # subscriptions in place
    now = dt.datetime.now(dt.UTC)
    start = time.perf_counter()
    for n in range(count):
        s = n % stations
        tx = messages.TxReturn(msg_id=uuid7(), seq=n + 1, site=SITE, station=f"st-{s}", at=now,
                               item_id=f"49{n + 1:06d}")
        clients[s].publish(topics.tx(SITE, f"st-{s}", "return"), messages.encode(tx), qos=1)
    finished = done.wait(timeout_s)
    took = time.perf_counter() - start
    for c in clients:
        c.disconnect()
        c.loop_stop()
    if not finished:
        raise TimeoutError(f"{acked} of {count} acks in {timeout_s} s")
    return took


def _run(workdir: Path, db: str, bridges: int, count: int, ils: str | None = None,
         ils_password_file: Path | None = None) -> float:
    broker = Broker(workdir / "broker").start()
    procs: list[CentralProcess] = []
    try:
        for n in range(1, bridges + 1):
            p = CentralProcess(broker.address, db, client_id=f"central-bridge-{n}",
                               sample=ils is None and n == 1, sample_items=count,
                               log=workdir / f"bridge-{n}.log")
            if ils:
                p.args += ["--ils", ils]
            if ils_password_file:
                p.args += ["--ils-password-file", str(ils_password_file)]
            procs.append(p.start())
        return _publish_all(broker.address, count)
    finally:
        for p in procs:
            p.stop()
        broker.stop()


def _pg_database() -> tuple[str, object] | None:
    try:
        from sqlalchemy import create_engine, text

        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        name = "selfcheck_bench_" + secrets.token_hex(4)
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception:
        return None

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()

    return f"postgresql://postgres@127.0.0.1:5432/{name}", drop


def run(args: argparse.Namespace) -> Iterator[Figure]:
    count = 500 if args.quick else 2000
    counts = (1, 2) if args.quick else (1, 2, 4)
    with tempfile.TemporaryDirectory(prefix="bench-central-") as tmp:
        root = Path(tmp)
        for bridges in counts:
            work = root / f"sqlite-{bridges}"
            took = _run(work, f"sqlite:///{work / 'central.db'}", bridges, count)
            yield figure("central_tx_per_s_sqlite", count / took, "tx/s", bridges=bridges,
                         transactions=count)
        for bridges in counts:
            pg = _pg_database()
            if pg is None:
                yield figure("central_tx_per_s_postgresql", 0, "tx/s", bridges=bridges,
                             skipped="no PostgreSQL on 127.0.0.1:5432")
                continue
            url, drop = pg
            try:
                took = _run(root / f"pg-{bridges}", url, bridges, count)
            finally:
                drop()  # type: ignore[operator]
            yield figure("central_tx_per_s_postgresql", count / took, "tx/s", bridges=bridges,
                         transactions=count)
        yield from _sip2(root, count, counts)


def _sip2(root: Path, count: int, counts: tuple[int, ...]) -> Iterator[Figure]:
    try:  # the stand-ins need the development dependencies (pysip2, jsonschema)
        from selfcheck.lab.standins.sip2_server import Item, Library, running
    except ImportError as exc:
        yield figure("central_tx_per_s_sip2", 0, "tx/s", skipped=f"no SIP2 test server: {exc}")
        return
    lib = Library(items={f"49{n:06d}": Item(f"Sách thử nghiệm số {n}")
                         for n in range(1, count + 1)}, delay_s=SIP2_DELAY_S)
    with running(lib) as (server, _proxy):
        for bridges in counts:
            work = root / f"sip2-{bridges}"
            work.mkdir(parents=True, exist_ok=True)
            secret = work / "ils.pass"
            secret.write_text(lib.password + "\n")
            secret.chmod(0o600)
            ils = (f"sip2://{lib.user}@127.0.0.1:{server.port}"
                   f"?institution=bench&location=bench&pool={SIP2_POOL}")
            took = _run(work, f"sqlite:///{work / 'dedupe.db'}", bridges, count, ils, secret)
            ceiling = bridges * SIP2_POOL / SIP2_DELAY_S
            yield figure("central_tx_per_s_sip2", count / took, "tx/s", bridges=bridges,
                         transactions=count, ils_delay_ms=SIP2_DELAY_S * 1000,
                         pool_per_bridge=SIP2_POOL, ceiling_tx_per_s=round(ceiling))
