"""Resynchronising frame scanner shared by the binary reader codecs. Sans-IO.

A serial line delivers garbage (a cable plugged in mid-frame, noise, a reader booting), so the
decoders never trust the byte after a bad frame to be a frame start. They look for the earliest
position where a complete frame with a good CRC sits and drop what came before it. A plausible
but incomplete frame start is kept only while no complete good frame follows it, so a garbage
byte that looks like a long length field cannot stall the decoder.

Decoders never raise on their input. Each run of bytes thrown away counts once in `errors`.
"""

from __future__ import annotations

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
        # Positions below `_scanned` were probed; of those, only the SHORT ones can still
        # become frames: (position, buffer length at which to probe it again). Probing only
        # these keeps a noisy line linear instead of rescanning the buffer for every byte.
        self._scanned = 0
        self._short: list[tuple[int, int]] = []

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
        self._buf.clear()
        self._in_garbage = False
        self._scanned = 0
        self._short.clear()

    @property
    def pending(self) -> int:
        return len(self._buf)

    def _drop(self, n: int) -> None:
        """Remove the first n bytes, shifting what is known about the rest."""
        del self._buf[:n]
        self._scanned = max(0, self._scanned - n)
        self._short = [(i - n, w - n) for i, w in self._short if i >= n]

    def _discard(self, n: int) -> None:
        if n <= 0:
            return
        self._drop(n)
        if not self._in_garbage:
            self.errors += 1
            self._in_garbage = True

    def _find(self) -> tuple[int, int] | None:
        """The earliest complete good frame (start, end), noting SHORT starts on the way."""
        buf = self._buf
        for k, (i, wanted) in enumerate(self._short):
            if wanted > len(buf):
                continue
            end = self._probe(buf, i)
            if end > 0:
                return i, end
            if end == SHORT:
                self._short[k] = (i, max(self._wanted(buf, i), len(buf) + 1))
            else:
                self._short[k] = (i, -1)  # BAD for good: dropped below
        self._short = [c for c in self._short if c[1] >= 0]
        for i in range(self._scanned, len(buf)):
            end = self._probe(buf, i)
            if end > 0:
                self._scanned = i  # positions from here on are probed again after the cut
                return i, end
            if end == SHORT:
                self._short.append((i, max(self._wanted(buf, i), len(buf) + 1)))
        self._scanned = len(buf)
        return None

    def _frames(self) -> Iterator[F]:
        buf = self._buf
        while buf:
            hit = self._find()
            if hit is not None:
                i, end = hit
                raw = bytes(buf[i:end])
                self._discard(i)
                self._drop(end - i)
                frame = self._build(raw)
                if frame is None:
                    self._discard_counted()
                else:
                    self._in_garbage = False
                    yield frame
                continue
            # No complete frame: keep from the first plausible start, drop what is before it.
            self._discard(self._short[0][0] if self._short else len(buf))
            if len(buf) > self.max_buffer:
                self._discard(len(buf) - self.max_buffer)
            return

    def _discard_counted(self) -> None:
        if not self._in_garbage:
            self.errors += 1
            self._in_garbage = True
