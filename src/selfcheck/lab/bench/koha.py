"""Bench: the Koha backend (REST, with SIP2 for titles) beside the SIP2 backend, in one run,
with both test servers answering every request after the same delay: 5 ms (a library system
on the LAN) and 50 ms (a distant or busy one).

- Loans per second: batches of loans from 4 stations, as the bridge gives them, each
  station's loans in one chain, the chains in parallel over a pool of 4. SIP2: one 11 a loan.
  REST: GET /items, GET /checkouts/availability, POST /checkouts, and a SIP2 17 for the title
  of a biblio not seen before.
- A heavy reader's account (25 loans, 30 holds, 3 fines), p50 and p99 over repeated asks:
  SIP2's five 63s and a 17 per item and hold; REST's four rounds of requests at once, titles
  over SIP2 17 kept by biblio (the first account, with none known yet, is its own figure).

The SIP2 server is the real one (pysip2, lab/standins/sip2_server.py); Koha is our stand-in
(lab/standins/koha_standin.py, every request and answer checked against Koha's specification) in its
own process, as a real Koha is. Requests are counted by the clients.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

from selfcheck.lab.bench.cmd import Figure, figure
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.messages import TxLoan

DELAYS_S = (0.005, 0.05)
POOL = 4
STATIONS = 4
BATCH = 32


def _loans(backend: Any, refs: list[str | None], barcodes: list[str]) -> float:
    """Seconds to lend every barcode, round robin over the stations' patrons."""
    from selfcheck.central.ledger import Ledger

    if None in refs:
        raise RuntimeError("a bench patron was refused")
    now = dt.datetime.now(dt.UTC)
    txs = [TxLoan(msg_id=uuid7(), seq=n // STATIONS + 1, site="bench",
                  station=f"st-{n % STATIONS}", at=now, item_id=b,
                  patron_ref=str(refs[n % STATIONS]), deadline=now + dt.timedelta(hours=1))
           for n, b in enumerate(barcodes)]
    ledger = Ledger(backend.engine, backend, owner="bench")
    start = time.perf_counter()
    for i in range(0, len(txs), BATCH):
        acks = ledger.apply(txs[i:i + BATCH])
        if not all(a is not None and a.ok for a in acks):
            raise RuntimeError("a loan was not made")
    return time.perf_counter() - start


def _counted(backend: Any) -> Callable[[], int]:
    """The number of SIP2 messages the backend has sent since."""
    sent = [0]
    call = backend.pool.call

    def counting(msg: Any, **kw: Any) -> Any:
        sent[0] += 1
        return call(msg, **kw)

    backend.pool.call = counting
    return lambda: sent[0]


def _accounts(backend: Any, card: str, times: int,
              counts: Callable[[], tuple[int, int]]) -> dict[str, Any]:
    """The first account (titles not yet known) and `times` after it: milliseconds, and
    (REST, SIP2) requests of the first and per later one."""
    ref = backend.check_patron(card).patron_ref
    took = []
    marks = [counts()]
    for _ in range(times + 1):
        start = time.perf_counter()
        res = backend.account(ref)
        took.append((time.perf_counter() - start) * 1000)
        marks.append(counts())
        if not res.ok or len(res.loans) != 25 or len(res.fines) != 3:
            raise RuntimeError("the heavy reader's account is not whole")
    first = tuple(b - a for a, b in zip(marks[0], marks[1], strict=True))
    later = tuple((b - a) / times for a, b in zip(marks[1], marks[-1], strict=True))
    return {"first_ms": took[0], "ms": took[1:], "first": first, "later": later}


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] \
        if len(values) > 1 else values[0]


def run(args: argparse.Namespace) -> Iterator[Figure]:
    try:  # the stand-ins need the development dependencies (pysip2, jsonschema)
        from selfcheck.lab.standins.koha_standin import HEAVY, bench_library
        from selfcheck.lab.standins.sip2_server import running
    except ImportError as exc:
        yield figure("koha_loans_per_s", 0, "loans/s", skipped=f"no test servers: {exc}")
        return
    for delay in DELAYS_S:
        yield from _at(args, delay, HEAVY, bench_library, running)


def _at(args: argparse.Namespace, delay: float, heavy: str,
        bench_library: Any, running: Any) -> Iterator[Figure]:
    from selfcheck.central.backends import BackendChoice, open_backend
    from selfcheck.central.backends.koha.backend import KohaBackend
    from selfcheck.central.backends.koha.client import KohaConfig
    from selfcheck.central.backends.sip2.backend import Sip2Backend
    from selfcheck.central.backends.sip2.client import Sip2Config

    ms = round(delay * 1000)
    count = (200 if args.quick else 1000) if delay < 0.01 else (40 if args.quick else 200)
    asks = (10 if args.quick else 30) if delay < 0.01 else (3 if args.quick else 8)
    cards = [f"DG{n:04d}" for n in range(STATIONS)]
    lib, _ = bench_library(2 * count, STATIONS, delay)
    barcodes = [b for b in lib.items if b.startswith("49")]
    common = {"delay_ms": ms, "pool": POOL, "stations": STATIONS}
    with tempfile.TemporaryDirectory(prefix="bench-koha-") as tmp, \
            running(lib) as (server, _proxy):
        sip2 = Sip2Config.parse(f"sip2://{lib.user}:{lib.password}@127.0.0.1:{server.port}"
                                f"?institution=bench&location=bench&pool={POOL}")
        # as the central opens them (passwords in the URLs: the bench's own servers)
        sip2_backend = open_backend(BackendChoice("sip2", f"sqlite:///{tmp}/sip2.db",
                                                  sip2=sip2))
        assert isinstance(sip2_backend, Sip2Backend)
        try:
            sent = _counted(sip2_backend)
            refs = [sip2_backend.check_patron(c).patron_ref for c in cards]
            took = _loans(sip2_backend, refs, barcodes[:count])
            sip2_loans = count / took
            by_sip2 = _accounts(sip2_backend, heavy, asks, lambda: (0, sent()))
        finally:
            sip2_backend.close()
        # Koha in its own process, as a real one is: its work does not take our GIL.
        koha = subprocess.Popen(
            [sys.executable, "-m", "selfcheck.lab.standins.koha_standin", "--items", str(2 * count),
             "--patrons", str(STATIONS), "--delay", str(delay)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert koha.stdin is not None and koha.stdout is not None
        try:
            hello = json.loads(koha.stdout.readline())
            url = (f"koha+http://{hello['user']}:{quote(hello['password'])}@127.0.0.1:"
                   f"{hello['port']}?pool={POOL}&library=TVTINH")
            rest = open_backend(BackendChoice("koha", f"sqlite:///{tmp}/koha.db", sip2=sip2,
                                              koha=KohaConfig.parse(url)))
            assert isinstance(rest, KohaBackend)
            try:
                sent = _counted(rest)

                def both() -> tuple[int, int]:
                    return rest.client.counters.requests, sent()

                # patron ids known, as in a running bridge
                refs = [rest.check_patron(c).patron_ref for c in cards]
                before = both()
                took = _loans(rest, refs, barcodes[count:])
                rest_loans = count / took
                per_loan = [(b - a) / count for a, b in zip(before, both(), strict=True)]
                by_rest = _accounts(rest, heavy, asks, both)
            finally:
                rest.close()
        finally:
            koha.stdin.close()
            bye = json.loads(koha.stdout.readline() or "{}")
            koha.wait(10)
    violations = len(bye.get("violations", [None]))
    yield figure(f"koha_loans_per_s_{ms}ms", rest_loans, "loans/s", sip2_loans, loans=count,
                 **common, rest_requests_per_loan=round(per_loan[0], 2),
                 sip2_requests_per_loan_rest=round(per_loan[1], 2),
                 sip2_requests_per_loan_sip2=1, spec_violations=violations)
    for q in (50, 99):
        yield figure(f"koha_account_p{q}_{ms}ms", _p(by_rest["ms"], q), "ms",
                     _p(by_sip2["ms"], q), accounts=asks, loans=25, holds=30, fines=3,
                     **common, rest_requests_per_account=round(by_rest["later"][0], 1),
                     sip2_requests_per_account_rest=round(by_rest["later"][1], 1),
                     sip2_requests_per_account_sip2=round(by_sip2["later"][1], 1))
    yield figure(f"koha_account_first_{ms}ms", by_rest["first_ms"], "ms",
                 by_sip2["first_ms"], **common, rest_requests=by_rest["first"][0],
                 sip2_requests_rest=by_rest["first"][1], sip2_requests_sip2=by_sip2["first"][1],
                 note="the first account: no title known yet, one SIP2 17 a biblio")
