"""A seeded mutational generator: valid seeds, bent by a few random edits each (bit flips,
inserted tokens repeated up to thousands of times, spliced seeds, cut and doubled ranges).
The same seed gives the same inputs, so a failure found once is found again."""

from __future__ import annotations

import random
from collections.abc import Iterator

MAX_LEN = 24 * 1024  # above the MQTT limit, so that the size checks are exercised too

_INTERESTING = (b"0", b"-1", b"65535", b"65536", b"4294967296", b"9223372036854775808",
                b"\x00", b"\x7f", b"\x80", b"\xff", b"\xc3\xa9", "²".encode(), "１".encode(),
                b'"', b"\\", b"\r\n", b" ")


class Mutator:
    def __init__(self, seeds: tuple[bytes, ...], tokens: tuple[bytes, ...], seed: int,
                 max_len: int = MAX_LEN) -> None:
        self.seeds = seeds or (b"",)
        self.max_len = max_len
        self.tokens = tokens + _INTERESTING
        self.rnd = random.Random(seed)

    def inputs(self, count: int) -> Iterator[bytes]:
        rnd = self.rnd
        current = rnd.choice(self.seeds)
        for _ in range(count):
            roll = rnd.random()
            if roll < 0.02:  # plain noise now and then
                data = rnd.randbytes(rnd.randrange(64))
            else:
                # mostly from a seed, sometimes a walk on from the last input
                base = current if roll < 0.3 else rnd.choice(self.seeds)
                data = self.mutate(base, rnd.randint(1, 4))
            current = data if len(data) < 4096 else rnd.choice(self.seeds)
            yield data

    def mutate(self, data: bytes, edits: int) -> bytes:
        rnd = self.rnd
        buf = bytearray(data)
        for _ in range(edits):
            op = rnd.randrange(9)
            pos = rnd.randint(0, len(buf))
            if op == 0 and buf:  # flip a bit
                i = rnd.randrange(len(buf))
                buf[i] ^= 1 << rnd.randrange(8)
            elif op == 1 and buf:  # any byte
                buf[rnd.randrange(len(buf))] = rnd.randrange(256)
            elif op == 2:  # a few random bytes
                buf[pos:pos] = rnd.randbytes(rnd.randint(1, 8))
            elif op == 3 and buf:  # cut a range
                end = min(len(buf), pos + rnd.randint(1, 16))
                del buf[pos:end]
            elif op == 4 and buf:  # double a range, sometimes many times
                start = rnd.randrange(len(buf))
                piece = buf[start:start + rnd.randint(1, 32)]
                buf[pos:pos] = piece * (rnd.randint(2, 400) if rnd.random() < 0.2 else 2)
            elif op in (5, 6):  # a token, sometimes thousands of times (nesting, quotes)
                token = rnd.choice(self.tokens)
                times = rnd.choice((1, 1, 1, 2, 40, 400, 5000))
                buf[pos:pos] = token * times
            elif op == 7:  # splice another seed in
                other = rnd.choice(self.seeds)
                cut = rnd.randint(0, len(other))
                buf = buf[:pos] + other[cut:]
            elif op == 8 and buf:  # truncate
                del buf[rnd.randint(0, len(buf)):]
            if len(buf) > self.max_len:
                del buf[self.max_len:]
        return bytes(buf)
