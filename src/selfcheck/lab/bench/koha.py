"""Bench: loans per second through the Koha backend's REST path beside the SIP2 path, in one
run, with both test servers answering every request after the same delay (5 ms).

The backends are driven directly (no broker): batches of loans from 4 stations, as the bridge
gives them, each station's loans in one chain, the chains in parallel over a pool of 4.
- SIP2: the SIP2 backend against the real SIP2 server (pysip2, tests/sip2_server.py):
  one 11 per loan.
- REST: the Koha backend against our Koha stand-in (tests/koha_standin.py, every request and
  answer checked against Koha's specification) in its own process, as a real Koha is:
  GET /items, GET /checkouts/availability, POST /checkouts per loan, and a SIP2 17 for the
  title (the REST subset has no biblios).
Requests per loan are counted by the client.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from selfcheck.lab.bench.cmd import Figure, figure
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.messages import TxLoan

DELAY_S = 0.005
POOL = 4
STATIONS = 4
BATCH = 32


def _loans(backend: Any, cards: list[str], barcodes: list[str]) -> float:
    from selfcheck.central.ledger import Ledger

    """Seconds to lend every barcode, round robin over the stations' patrons."""
    refs = [backend.check_patron(c).patron_ref for c in cards]
    now = dt.datetime.now(dt.UTC)
    txs = [TxLoan(msg_id=uuid7(), seq=n // STATIONS + 1, site="bench",
                  station=f"st-{n % STATIONS}", at=now, item_id=b,
                  patron_ref=refs[n % STATIONS], deadline=now + dt.timedelta(hours=1))
           for n, b in enumerate(barcodes)]
    ledger = Ledger(backend.engine, backend, owner="bench")
    start = time.perf_counter()
    for i in range(0, len(txs), BATCH):
        acks = ledger.apply(txs[i:i + BATCH])
        if not all(a is not None and a.ok for a in acks):
            raise RuntimeError("a loan was not made")
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> Iterator[Figure]:
    checkout = str(Path(__file__).resolve().parents[4])
    if checkout not in sys.path:
        sys.path.append(checkout)
    try:  # the test servers: dev dependencies and tests/ from a checkout
        import tests.koha_standin  # noqa: F401 -- run below as its own process
        from tests.sip2_server import Item, Library, Patron, running
    except ImportError as exc:
        yield figure("koha_loans_per_s_rest", 0, "loans/s", skipped=f"no test servers: {exc}")
        return
    from selfcheck.central.koha.backend import KohaBackend
    from selfcheck.central.koha.client import KohaConfig
    from selfcheck.central.ledger import open_db
    from selfcheck.central.sip2.backend import Sip2Backend
    from selfcheck.central.sip2.client import Sip2Config

    count = 200 if args.quick else 1000
    cards = [f"DG{n:04d}" for n in range(STATIONS)]
    lib = Library(patrons={c: Patron(f"Bạn đọc số {n}", limit=9999)
                           for n, c in enumerate(cards)},
                  items={f"49{n:06d}": Item(f"Sách thử nghiệm số {n}")
                         for n in range(1, 2 * count + 1)}, delay_s=DELAY_S)
    barcodes = list(lib.items)
    with tempfile.TemporaryDirectory(prefix="bench-koha-") as tmp, \
            running(lib) as (server, _proxy):
        sip2 = Sip2Config.parse(f"sip2://{lib.user}:{lib.password}@127.0.0.1:{server.port}"
                                f"?institution=bench&location=bench&pool={POOL}")
        sip2_backend = Sip2Backend(sip2, open_db(f"sqlite:///{tmp}/sip2.db"))
        try:
            before = len(lib.log)
            took = _loans(sip2_backend, cards, barcodes[:count])
        finally:
            sip2_backend.close()
        yield figure("koha_loans_per_s_sip2", count / took, "loans/s", loans=count,
                     delay_ms=DELAY_S * 1000, pool=POOL, stations=STATIONS,
                     sip2_requests_per_loan=1, checkouts=len(lib.log) - before)
        # Koha in its own process, as a real one is: its work does not take our GIL.
        koha = subprocess.Popen(
            [sys.executable, "-m", "tests.koha_standin", "--items", str(2 * count),
             "--patrons", str(STATIONS), "--delay", str(DELAY_S)], cwd=checkout,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert koha.stdin is not None and koha.stdout is not None
        try:
            hello = json.loads(koha.stdout.readline())
            url = (f"koha+http://{hello['user']}:{quote(hello['password'])}@127.0.0.1:"
                   f"{hello['port']}?pool={POOL}")
            rest = KohaBackend(KohaConfig.parse(url), sip2,
                               open_db(f"sqlite:///{tmp}/koha.db"))
            try:
                _loans(rest, cards, [])  # patron ids cached, as in a running bridge
                sent_before = rest.client.counters.requests
                took = _loans(rest, cards, barcodes[count:])
                per_loan = (rest.client.counters.requests - sent_before) / count
                titles = len(rest._titles) / count  # SIP2 17s: one per barcode never seen
            finally:
                rest.close()
        finally:
            koha.stdin.close()
            bye = json.loads(koha.stdout.readline() or "{}")
            koha.wait(10)
        yield figure("koha_loans_per_s_rest", count / took, "loans/s", loans=count,
                     delay_ms=DELAY_S * 1000, pool=POOL, stations=STATIONS,
                     rest_requests_per_loan=round(per_loan, 2),
                     sip2_requests_per_loan=round(titles, 2),
                     spec_violations=len(bye.get("violations", [None])))
