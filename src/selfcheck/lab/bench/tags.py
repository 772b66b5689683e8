"""Tag decoding speed: decodes per second for each data model, and for auto detection.

A pad reports a few tags a second, but a stock-take wand or a sorter reads hundreds, and the
station decodes every tag on every inventory round: decoding must cost next to nothing.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable, Iterator

from selfcheck.drivers.tags import decode_tag, fallback, iso28560_2, iso28560_3
from selfcheck.lab.bench.cmd import Figure, figure


def _rate(fn: Callable[[], object], n: int) -> float:
    fn()  # warm up
    best = 0.0
    for _ in range(3):  # best of three: the figure is the code's speed, not the machine's noise
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = max(best, n / (time.perf_counter() - start))
    return best


def samples() -> dict[str, bytes]:
    return {
        "28560-3": iso28560_3.encode("0123456789", owner_isil="VN-HN0001"),
        "28560-3 nibble-swapped": iso28560_3.encode("0123456789", owner_isil="VN-HN0001",
                                                    type_of_usage=2, variant="nibble-swapped"),
        "28560-2": iso28560_2.encode("HN-000123", owner_isil="VN-HN0001", type_of_usage=1,
                                     parts_in_item=1, part_number=1, title="Truyện Kiều"),
        "barcode": fallback.encode_barcode("30012345", 32),
    }


def run(args: argparse.Namespace) -> Iterator[Figure]:
    n = 2_000 if getattr(args, "quick", False) else 50_000
    data = samples()
    direct = {
        "28560-3": iso28560_3.decode,
        "28560-3 nibble-swapped": iso28560_3.decode,
        "28560-2": iso28560_2.decode,
        "barcode": fallback.decode_barcode,
    }
    for name, decoder in direct.items():
        yield figure(f"tags.decode.{name.replace(' ', '_')}",
                     _rate(functools.partial(decoder, data[name]), n), "decodes/s",
                     iterations=n)
    for name, raw in data.items():
        if name == "28560-3 nibble-swapped":
            continue
        yield figure(f"tags.decode_auto.{name}", _rate(functools.partial(decode_tag, raw), n),
                     "decodes/s", iterations=n)
    uid = bytes.fromhex("E004010012345678")
    yield figure("tags.decode_auto.uid", _rate(lambda: decode_tag(bytes(32), uid=uid), n),
                 "decodes/s", iterations=n)
    yield figure("tags.encode.28560-3",
                 _rate(lambda: iso28560_3.encode("0123456789", owner_isil="VN-HN0001"), n),
                 "encodes/s", iterations=n)
    yield figure("tags.encode.28560-2",
                 _rate(lambda: iso28560_2.encode("HN-000123", owner_isil="VN-HN0001",
                                                 title="Truyện Kiều"), n),
                 "encodes/s", iterations=n)
