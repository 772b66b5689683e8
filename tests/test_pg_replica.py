"""The central store on PostgreSQL with a streaming replica: the primary is killed (every one of
its processes, as when its machine dies) while stations lend and return, the standby is
promoted, and the bridges, started on a libpq multi-host URL with target_session_attrs=
read-write, find it by themselves. Every transaction a station got an answer for is in the
promoted store exactly once, in its station's order, and every outbox drains.

Replication is synchronous (synchronous_standby_names on the primary): a commit returns only
once the standby has it on disk, so an acknowledged transaction cannot die with the primary."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from selfcheck.lab.broker import free_port
from selfcheck.lab.chaos import Run, journal_counts
from tests.conftest import wait_until

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class Cluster:
    """A PostgreSQL cluster of its own, run as the postgres user (it refuses root)."""

    def __init__(self, data: Path, port: int) -> None:
        self.data, self.port = data, port

    def run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / tool), *args],
                              capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.data.parent /
                 f"pg-{self.port}.log"), "-w", "-o", f"-p {self.port}", "start")

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)

    def url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def sql(self, query: str, db: str = "postgres") -> object:
        engine = create_engine(self.url(db), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                result = conn.execute(text(query))
                return result.scalar() if result.returns_rows else None
        finally:
            engine.dispose()

    def crash(self) -> None:
        """SIGKILL to the postmaster and every process it started, at once."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        children = [int(p) for p in _children(pid)]
        for p in (pid, *children):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _children(pid: int) -> list[str]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return out.split()


@pytest.fixture
def pair() -> Iterator[tuple[Cluster, Cluster]]:
    if shutil.which("runuser") is None or not (PG_BIN / "initdb").exists() or os.getuid():
        pytest.skip("needs root (to run PostgreSQL as postgres) and PostgreSQL 15")
    # Under /tmp with its own owner: the test's tmp_path is root's, closed to postgres.
    home = Path(tempfile.mkdtemp(prefix="selfcheck-pg-"))
    shutil.chown(home, "postgres")
    primary = Cluster(home / "primary", free_port())
    standby = Cluster(home / "standby", free_port())
    try:
        primary.run("initdb", "-D", str(primary.data), "-U", "postgres", "--auth=trust",
                    "--no-sync")
        with open(primary.data / "postgresql.conf", "a") as conf:
            conf.write(f"listen_addresses = '127.0.0.1'\nunix_socket_directories = '{home}'\n"
                       "wal_level = replica\nmax_wal_senders = 5\nfsync = on\n")
        primary.start()
        primary.sql("CREATE DATABASE selfcheck")
        # -R: standby.signal and primary_conninfo; the standby streams from the primary.
        primary.run("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U",
                    "postgres", "-D", str(standby.data), "-R", "-X", "stream")
        standby.start()
        # Set after the copy, so the standby (once promoted, alone) does not wait for a
        # standby of its own on every commit.
        primary.sql("ALTER SYSTEM SET synchronous_standby_names = '*'")
        primary.sql("SELECT pg_reload_conf()")
        wait_until(lambda: primary.sql(
            "SELECT sync_state FROM pg_stat_replication") == "sync", 30, "a sync standby")
        yield primary, standby
    finally:
        standby.stop()
        primary.stop()
        shutil.rmtree(home, ignore_errors=True)


class FailoverRun(Run):
    """The chaos run's stations, readers and checks; its one fault: the primary dies."""

    primary: Cluster
    standby: Cluster
    seqs_at_crash = 0

    def faults(self) -> None:
        # Some transactions through the primary first.
        wait_until(lambda: self._seqs() >= 3, 90, "transactions before the crash")
        self.primary.crash()
        self.seqs_at_crash = self._seqs()
        self.log("primary killed")
        self.report.kills["primary"] += 1
        self.standby.run("pg_ctl", "-D", str(self.standby.data), "-w", "promote")
        self.log("standby promoted")
        # On until the stations have done more through the promoted store.
        wait_until(lambda: self._seqs() >= self.seqs_at_crash + 3, 120,
                   "transactions after the promotion")

    def _seqs(self) -> int:
        return sum(journal_counts(j)[1] for j in self.journals if j.exists())


def test_a_multi_host_url_reaches_the_driver_with_every_host() -> None:
    from selfcheck.central.engine import multi_host, open_engine

    url = ("postgresql://central:pw@db1:5432,db2:5433/central"
           "?target_session_attrs=read-write&connect_timeout=3")
    assert multi_host("postgresql+psycopg" + url.removeprefix("postgresql")) == (
        "postgresql+psycopg://central:pw@/central?host=db1:5432&host=db2:5433"
        "&target_session_attrs=read-write&connect_timeout=3")
    engine = open_engine(url)
    _args, kwargs = engine.dialect.create_connect_args(engine.url)
    assert (kwargs["host"], kwargs["port"]) == ("db1,db2", "5432,5433")
    assert kwargs["target_session_attrs"] == "read-write" and kwargs["password"] == "pw"
    # One host: as it was.
    assert multi_host("postgresql+psycopg://u@db1:5432/c") == "postgresql+psycopg://u@db1:5432/c"


@pytest.mark.slow
def test_primary_killed_standby_promoted_nothing_acknowledged_is_lost(
        pair: tuple[Cluster, Cluster], tmp_path: Path) -> None:
    primary, standby = pair
    url = (f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}"
           f"/selfcheck?target_session_attrs=read-write&connect_timeout=3")
    args = argparse.Namespace(seed=11, stations=2, visits=3, db=url, outage=0.0, kills=0,
                              order_wait=10.0)
    workdir = tmp_path / "run"
    workdir.mkdir()
    run = FailoverRun(args, workdir)
    run.primary, run.standby = primary, standby
    try:
        run.start()
        readers = [threading.Thread(target=run.reader, args=(n,), daemon=True)
                   for n in range(args.stations)]
        for t in readers:
            t.start()
        run.faults()
        run.faults_over.set()
        for t in readers:
            t.join(300)
        started = time.monotonic()
        run.report.drained = run.drain()
        drain_s = time.monotonic() - started
        # The bridges are still the ones started before the crash: they reconnected.
        assert all(b.alive() for b in run.bridges.values())
    finally:
        run.stop()
    run.save_events()
    run.check()  # through the same multi-host URL: only the promoted standby answers
    print(run.report.as_json(), f"drained in {drain_s:.1f} s")
    assert standby.sql("SELECT pg_is_in_recovery()") is False
    assert run.report.ok, run.report.as_json()
    assert run.report.transactions >= run.seqs_at_crash + 3
    assert sum(run.report.shown.values()) > 0
