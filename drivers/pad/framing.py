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

    def _probe(self, buf: bytearray, i: int) -> int:
        """End offset of a complete good frame starting at `i`, or SHORT, or BAD."""
        raise NotImplementedError

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

    @property
    def pending(self) -> int:
        return len(self._buf)

    def _discard(self, n: int) -> None:
        if n <= 0:
            return
        del self._buf[:n]
        if not self._in_garbage:
            self.errors += 1
            self._in_garbage = True

    def _frames(self) -> Iterator[F]:
        buf = self._buf
        while buf:
            first_short = -1
            found = False
            for i in range(len(buf)):
                end = self._probe(buf, i)
                if end > 0:
                    raw = bytes(buf[i:end])
                    self._discard(i)
                    del buf[:end - i]
                    frame = self._build(raw)
                    if frame is None:
                        self._discard_counted()
                    else:
                        self._in_garbage = False
                        yield frame
                    found = True
                    break
                if end == SHORT and first_short < 0:
                    first_short = i
            if found:
                continue
            # No complete frame: keep from the first plausible start, drop what is before it.
            self._discard(len(buf) if first_short < 0 else first_short)
            if len(buf) > self.max_buffer:
                self._discard(len(buf) - self.max_buffer)
            return

    def _discard_counted(self) -> None:
        if not self._in_garbage:
            self.errors += 1
            self._in_garbage = True
