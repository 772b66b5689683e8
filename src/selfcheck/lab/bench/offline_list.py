"""How long a brute force of a stolen station's offline list takes on this machine.

The list keys each patron by HMAC-SHA256(site salt, card number), and the salt is stored beside
it (the station needs it to look cards up offline). Whoever holds the disk can therefore try
every card number of the library's format: one pass over the format recovers every patron on
the list at once, since they share the salt. This measures that pass for the sample library's
formats (DG + 4 digits, TN + 5 digits) with the real list the central sends, and extrapolates
from the measured rate to longer formats. One Python process on one core: a C or GPU cracker
is faster, so these are upper bounds on the attacker's time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hmac
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from selfcheck.lab.bench.cmd import Figure, figure

SITE = "thu-vien-hn"
# Card-number spaces libraries use, for the extrapolated figures.
FORMATS = {
    "8 digits (barcode)": 10**8,
    "10 digits (barcode)": 10**10,
    "4-byte NFC UID (MIFARE Classic)": 2**32,
    "7-byte NFC UID": 2**56,
}


def _crack(salt: str, wanted: set[str], prefix: str, digits: int) -> tuple[int, int, float]:
    """Try every PREFIX + DIGITS card number; (tried, found, seconds)."""
    key = hmac.new(bytes.fromhex(salt), digestmod="sha256")  # keyed once, copied per try
    found = 0
    start = time.perf_counter()
    for n in range(10**digits):
        h = key.copy()
        h.update(f"{prefix}{n:0{digits}d}".encode())
        if h.hexdigest()[:32] in wanted:
            found += 1
    return 10**digits, found, time.perf_counter() - start


def run(args: argparse.Namespace) -> Iterator[Figure]:
    from selfcheck.central.backends.store import CirculationStore
    from selfcheck.central.sample import load_sample

    extra = 2_000 if args.quick else 20_000
    with tempfile.TemporaryDirectory() as tmp:
        store = CirculationStore(f"sqlite:///{Path(tmp) / 'central.db'}")
        load_sample(store, extra_patrons=extra)
        now = dt.datetime.now(dt.UTC)
        first = store.offline_list(SITE, now=now)
        entries = [e for page in range(1, first.pages + 1)
                   for e in store.offline_list(SITE, page, now=now).entries]
        store.close()
    wanted = {e.card_hash for e in entries}
    rate = 0.0
    for prefix, digits in (("DG", 4), ("TN", 5)):
        tried, found, took = _crack(first.salt, wanted, prefix, digits)
        rate = max(rate, tried / took)
        yield figure("offline_list_bruteforce_s", took, "s", card_format=f"{prefix}+{digits} "
                     "digits", tried=tried, patrons_recovered=found, list_size=len(entries))
    yield figure("offline_list_hmac_per_s", rate, "hashes/s", cores=1,
                 note="Python hashlib, one core: an upper bound on an attacker's time")
    for name, space in FORMATS.items():
        yield figure("offline_list_bruteforce_estimate_s", space / rate, "s", card_format=name,
                     days=round(space / rate / 86400, 3), cores=1)
