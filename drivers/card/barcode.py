"""Barcode scanner input, sans-IO: bytes or key events in, checked card numbers out.

The transports (serial port, text stream, Linux input device) live in
`barcode_serial.py` and `barcode_wedge.py`; everything here is pure and testable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from selfcheck.drivers.card.base import OnCard
from selfcheck.drivers.card.stats import CardReaderStats

log = logging.getLogger(__name__)


class BarcodeOptions(BaseModel):
    """How a site's scanner frames a card number."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str = ""  # removed when present (scanners can be set to add one)
    suffix: str = ""
    # Library card numbers are short; a longer line is line noise or a wrong symbol.
    max_len: int = Field(default=64, ge=1, le=4096)


class BadBarcode(ValueError):
    """A scanned line that is not a card number; `reason` is a short counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def clean_barcode(raw: bytes, opts: BarcodeOptions) -> str | None:
    """The card number in one scanned line (terminator already removed).

    Returns None for a blank line (CR LF pairs, a bare Enter), raises BadBarcode
    for a garbled one.
    """
    if len(raw) > opts.max_len:
        raise BadBarcode("too-long", f"{len(raw)} bytes, limit {opts.max_len}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBarcode("not-utf8", f"undecodable byte at position {exc.start}") from None
    text = text.strip(" ")
    if not text:
        return None
    if opts.prefix and text.startswith(opts.prefix):
        text = text[len(opts.prefix):]
    if opts.suffix and text.endswith(opts.suffix):
        text = text[: len(text) - len(opts.suffix)]
    for i, ch in enumerate(text):
        if not ch.isprintable():
            raise BadBarcode("non-printable", f"character U+{ord(ch):04X} at position {i}")
    text = text.strip(" ")
    if not text:
        raise BadBarcode("empty", "nothing left after removing prefix/suffix")
    return text


@dataclass(frozen=True)
class LineTooLong:
    """Event: a line overran the buffer limit and was discarded up to its terminator."""

    length: int


class LineSplitter:
    """Split a byte stream into lines ended by CR, LF or CR LF, with a size limit.

    Empty lines are dropped, so CR LF gives one line. An overlong line is reported
    once and skipped up to its terminator rather than buffered without bound.
    """

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self._buf = bytearray()
        self._skipped = 0  # > 0 while discarding an overlong line

    def reset(self) -> None:
        self._buf.clear()
        self._skipped = 0

    def feed(self, data: bytes) -> list[bytes | LineTooLong]:
        out: list[bytes | LineTooLong] = []
        start = 0
        for i, b in enumerate(data):
            if b in (0x0A, 0x0D):
                self._take(data[start:i])
                if self._skipped:
                    out.append(LineTooLong(self._skipped))
                elif self._buf:
                    out.append(bytes(self._buf))
                self._buf.clear()
                self._skipped = 0
                start = i + 1
        self._take(data[start:])
        return out

    def _take(self, chunk: bytes) -> None:
        if self._skipped:
            self._skipped += len(chunk)
        elif len(self._buf) + len(chunk) > self.max_len:
            self._skipped = len(self._buf) + len(chunk)
            self._buf.clear()
        else:
            self._buf += chunk


class BarcodeSink:
    """Check each line and hand good card numbers to `on_card`; count and log the rest."""

    def __init__(self, opts: BarcodeOptions, stats: CardReaderStats, on_card: OnCard) -> None:
        self.opts = opts
        self.stats = stats
        self.on_card = on_card

    def handle(self, item: bytes | LineTooLong) -> None:
        try:
            if isinstance(item, LineTooLong):
                raise BadBarcode("too-long", f"{item.length} bytes, limit {self.opts.max_len}")
            card = clean_barcode(item, self.opts)
        except BadBarcode as exc:
            self.stats.count_reject(exc.reason)
            # The reason only: a garbled line may still hold most of a card number.
            log.warning("barcode line dropped: %s", exc)
            return
        if card is None:
            return
        self.stats.count_card()
        log.info("card scanned (%d characters)", len(card))
        try:
            self.on_card(card)
        except Exception:
            log.exception("on_card handler failed")


# Linux input event codes (linux/input-event-codes.h) -> (plain, shifted) on a US layout,
# which is what scanners emulate unless told otherwise.
_KEYS: dict[int, tuple[str, str]] = {
    **{code: (p, s) for code, p, s in zip(range(2, 12), "1234567890", "!@#$%^&*()", strict=True)},
    12: ("-", "_"), 13: ("=", "+"), 26: ("[", "{"), 27: ("]", "}"), 39: (";", ":"),
    40: ("'", '"'), 41: ("`", "~"), 43: ("\\", "|"), 51: (",", "<"), 52: (".", ">"),
    53: ("/", "?"), 57: (" ", " "),
    **{code: (c, c.upper()) for code, c in zip(range(16, 26), "qwertyuiop", strict=True)},
    **{code: (c, c.upper()) for code, c in zip(range(30, 39), "asdfghjkl", strict=True)},
    **{code: (c, c.upper()) for code, c in zip(range(44, 51), "zxcvbnm", strict=True)},
    # keypad, as sent by scanners in "numeric keypad" mode
    71: ("7", "7"), 72: ("8", "8"), 73: ("9", "9"), 75: ("4", "4"), 76: ("5", "5"),
    77: ("6", "6"), 79: ("1", "1"), 80: ("2", "2"), 81: ("3", "3"), 82: ("0", "0"),
    83: (".", "."), 55: ("*", "*"), 74: ("-", "-"), 78: ("+", "+"), 98: ("/", "/"),
}
_SHIFT_KEYS = frozenset({42, 54})  # KEY_LEFTSHIFT, KEY_RIGHTSHIFT
_ENTER_KEYS = frozenset({28, 96})  # KEY_ENTER, KEY_KPENTER
_IGNORED_KEYS = frozenset({29, 97, 56, 100, 58})  # ctrl, alt, caps lock: no text
EV_KEY = 1
KEY_RELEASE, KEY_PRESS, KEY_REPEAT = 0, 1, 2


class KeyDecoder:
    """Turn Linux key events from a keyboard-wedge scanner into text lines.

    Returns byte lines so they go through the same LineSplitter/BarcodeSink as the
    serial scanner (Enter becomes CR). A key with no mapping becomes NUL, which the
    sink rejects as non-printable: better a dropped scan than a wrong card number.
    """

    def __init__(self) -> None:
        self._shift = 0

    def feed(self, ev_type: int, code: int, value: int) -> bytes:
        if ev_type != EV_KEY:
            return b""
        if code in _SHIFT_KEYS:
            if value == KEY_PRESS:
                self._shift += 1
            elif value == KEY_RELEASE:
                self._shift = max(0, self._shift - 1)
            return b""
        if value != KEY_PRESS:  # scanners do not autorepeat; ignore repeats and releases
            return b""
        if code in _ENTER_KEYS:
            return b"\r"
        if code in _IGNORED_KEYS:
            return b""
        pair = _KEYS.get(code)
        if pair is None:
            return b"\x00"
        return pair[1 if self._shift else 0].encode("ascii")
