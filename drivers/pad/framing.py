"""Resynchronising frame scanner shared by the binary reader codecs. Sans-IO.

A serial line delivers garbage (a cable plugged in mid-frame, noise, a reader booting), so the
decoders never trust the byte after a bad frame to be a frame start. They look for the earliest
position where a complete frame with a good CRC sits and drop what came before it. A plausible
but incomplete frame start is kept only while no complete good frame follows it, so a garbage
byte that looks like a long length field cannot stall the decoder.

Decoders never raise on their input. Each run of bytes thrown away counts once in `errors`.
"""

from __future__ import annotations

import collections
import heapq
from collections.abc import Iterator
from typing import Generic, TypeVar

F = TypeVar("F")

# What `_probe` says about a candidate frame start.
BAD = -1  # not a frame here (impossible header, or complete with a bad CRC)
SHORT = 0  # could be a frame; more bytes needed to tell


class FrameDecoder(Generic[F]):
    """Feed bytes, iterate frames. Subclasses implement `_probe` and `_build`."""

    #: The buffer never holds more than this: a longer stretch without a frame is garbage.
    max_buffer = 4096

    def __init__(self) -> None:
        self._buf = bytearray()
        self._in_garbage = False
        self.errors = 0
        # Positions are absolute (stream offsets; `_base` is that of the buffer's first byte)
        # so that dropping bytes shifts nothing. Every position below `_scanned` was probed
        # once; of those only the SHORT ones (`_live`) can still become frames, and each is
        # probed again only when the buffer reaches the length it wants (`_due`, a heap).
        # That keeps a noisy line linear instead of rescanning the buffer for every byte.
        self._base = 0
        self._scanned = 0
        self._due: list[tuple[int, int]] = []  # (stream length wanted, position)
        self._live: set[int] = set()
        self._starts: collections.deque[int] = collections.deque()  # live, in order

    def _probe(self, buf: bytearray, i: int) -> int:
        """End offset of a complete good frame starting at `i`, or SHORT, or BAD."""
        raise NotImplementedError

    def _wanted(self, buf: bytearray, i: int) -> int:
        """For a SHORT start at `i`: the buffer length at which its answer can change (the
        end of its header or of its frame). By default: the next byte."""
        return len(buf) + 1

    def _build(self, raw: bytes) -> F | None:
        """Turn one good raw frame into a frame object (None: drop it as garbage)."""
        raise NotImplementedError

    def feed(self, data: bytes) -> list[F]:
        self._buf += data
        return list(self._frames())

    def reset(self) -> None:
        """Forget buffered bytes (before a new request: stale bytes are not an answer)."""
        self._base += len(self._buf)
        self._buf.clear()
        self._in_garbage = False
        self._scanned = self._base
        self._due.clear()
        self._live.clear()
        self._starts.clear()

    @property
    def pending(self) -> int:
        return len(self._buf)

    def _drop(self, n: int) -> None:
        del self._buf[:n]
        self._base += n
        self._scanned = max(self._scanned, self._base)

    def _discard(self, n: int) -> None:
        if n <= 0:
            return
        self._drop(n)
        if not self._in_garbage:
            self.errors += 1
            self._in_garbage = True

    def _short(self, pos: int) -> None:
        """Note a SHORT start: probe it again once the bytes it wants are in."""
        buf, base = self._buf, self._base
        wanted = max(self._wanted(buf, pos - base), len(buf) + 1) + base
        heapq.heappush(self._due, (wanted, pos))

    def _find(self) -> tuple[int, int] | None:
        """The earliest complete good frame (absolute start, end), or None."""
        buf, base = self._buf, self._base
        have = base + len(buf)
        hits: list[tuple[int, int]] = []
        while self._due and self._due[0][0] <= have:
            _, pos = heapq.heappop(self._due)
            if pos < base or pos not in self._live:
                continue  # dropped with the bytes before a frame or the buffer limit
            end = self._probe(buf, pos - base)
            if end > 0:
                hits.append((pos, end + base))
            elif end == SHORT:
                self._short(pos)
            else:
                self._live.discard(pos)
        if hits:
            hits.sort()
            for pos, _ in hits[1:]:  # still frames if the cut leaves them: look again
                heapq.heappush(self._due, (have, pos))
            return hits[0]
        for pos in range(self._scanned, have):
            end = self._probe(buf, pos - base)
            if end > 0:
                self._scanned = pos
                return pos, end + base
            if end == SHORT:
                self._live.add(pos)
                self._starts.append(pos)
                self._short(pos)
        self._scanned = have
        return None

    def _first_start(self) -> int | None:
        starts = self._starts
        while starts and (starts[0] < self._base or starts[0] not in self._live):
            self._live.discard(starts.popleft())
        return starts[0] if starts else None

    def _frames(self) -> Iterator[F]:
        buf = self._buf
        while buf:
            hit = self._find()
            if hit is not None:
                start, end = hit
                raw = bytes(buf[start - self._base:end - self._base])
                self._discard(start - self._base)
                self._drop(end - start)
                frame = self._build(raw)
                if frame is None:
                    self._discard_counted()
                else:
                    self._in_garbage = False
                    yield frame
                continue
            # No complete frame: keep from the first plausible start, drop what is before it.
            first = self._first_start()
            self._discard(len(buf) if first is None else first - self._base)
            if len(buf) > self.max_buffer:
                self._discard(len(buf) - self.max_buffer)
            return

    def _discard_counted(self) -> None:
        if not self._in_garbage:
            self.errors += 1
            self._in_garbage = True
