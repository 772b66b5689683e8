"""SIP2 2.00 wire codec, sans-IO: frames in, messages out, and back.

A frame is `CMD | fixed fields | XXvalue| ... | AY<seq>AZ<checksum> | CR` (the ACS may end it
with CR LF). The checksum is the two's complement of the 16-bit sum of every byte from the
first one up to and including `AZ`, written as four upper-case hex digits.

No charset is negotiated in SIP2, so the profile is per-site config (see Profile): "utf-8" for
servers that take Vietnamese as is, "ascii" for servers on cp850 / ASCII, where outgoing text
loses its diacritics (fold()) and replies are read as cp850, or a single-byte code page.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from dataclasses import dataclass, field

MAX_FRAME = 8192  # bytes; a longer run without CR is not SIP2


class Sip2Error(Exception):
    """Base of the SIP2 errors."""


class Sip2ProtocolError(Sip2Error):
    """A frame out of spec. `field` names where it went wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Sip2ChecksumError(Sip2ProtocolError):
    def __init__(self, reason: str) -> None:
        super().__init__("AZ", reason)


# Width of the fixed-length part of each message, by command id. Requests first, then replies.
FIXED_WIDTH: dict[str, int] = {
    "93": 2, "99": 8, "23": 21, "63": 31, "11": 38, "09": 37, "29": 38, "65": 18, "17": 18,
    "35": 18, "37": 25, "97": 0,
    "94": 1, "98": 34, "24": 35, "64": 59, "12": 22, "10": 22, "30": 22, "66": 27, "18": 24,
    "36": 19, "38": 19, "96": 0,
}

# Fields that may occur more than once in a message.
REPEATABLE = frozenset({"AF", "AG", "AS", "AT", "AU", "AV", "BU", "CD", "BM", "BN"})

_HEX4 = re.compile(rb"[0-9A-Fa-f]{4}")
_FOLD_EXTRA = str.maketrans({"đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "ø": "o", "Ø": "O",
                             "ł": "l", "Ł": "L", "ß": "ss", "æ": "ae", "Æ": "AE"})


def fold(text: str) -> str:
    """Vietnamese (and other Latin) text without diacritics, for ASCII-only servers.

    NFD splits "ệ" into "e" plus combining marks, which are dropped; "đ" has no decomposition
    and is mapped by hand. Anything still not ASCII becomes "?".
    """
    plain = "".join(c for c in unicodedata.normalize("NFD", text.translate(_FOLD_EXTRA))
                    if not unicodedata.combining(c))
    return plain.encode("ascii", "replace").decode("ascii")


def single_byte(name: str) -> str | None:
    """The codec's canonical name when `name` is a single-byte code page that keeps ASCII as
    is (cp850, cp1258, latin1, ...): SIP2's field ids and delimiters must stay one ASCII byte."""
    try:
        info = codecs.lookup(name)
    except LookupError:
        return None
    try:
        every = bytes(range(256)).decode(info.name, errors="replace")
        ascii_ok = bytes(range(0x20, 0x7F)).decode(info.name) == "".join(
            map(chr, range(0x20, 0x7F)))
    except (UnicodeDecodeError, TypeError, LookupError):
        return None
    return info.name if len(every) == 256 and ascii_ok else None


# Fields sent exactly as typed, never folded: a changed password is a wrong password.
EXACT_FIELDS = frozenset({"CO", "AC", "AD"})


@dataclass(frozen=True)
class Profile:
    """How text travels (SIP2 negotiates no charset, so it is per-site config):

    - "utf-8": as is;
    - "ascii": Vietnamese diacritics folded away (fold()); replies read as cp850;
    - a single-byte code page Python knows ("cp850", "cp1258", "latin1", ...): text in that
      code page, each character it lacks first tried with its marks split (cp1258 writes
      "ệ" as "ê" plus a combining dot below), else folded; replies read in it.

    Passwords (CO, AC, AD) are never folded: one the encoding cannot carry is refused.
    """

    name: str = "utf-8"
    delimiter: str = "|"
    error_detection: bool = True  # send AY/AZ

    def __post_init__(self) -> None:
        if self.name in ("utf-8", "ascii"):
            return
        if single_byte(self.name) is None:
            raise ValueError(f"encoding {self.name!r}: use utf-8, ascii or a single-byte code "
                             "page such as cp850 or cp1258")

    @property
    def charset(self) -> str:
        """What the bytes are in: ascii means cp850 replies; a code page, itself."""
        return {"utf-8": "utf-8", "ascii": "cp850"}.get(self.name, self.name)

    def encode(self, text: str, fid: str = "") -> bytes:
        if self.name == "utf-8":
            return text.encode("utf-8")
        if fid in EXACT_FIELDS:
            try:
                return text.encode("ascii" if self.name == "ascii" else self.name)
            except UnicodeEncodeError:
                raise Sip2ProtocolError(fid, f"has characters that {self.name} cannot carry; "
                                        "it is never changed to fit: use encoding=utf-8 or "
                                        "change it") from None
        if self.name == "ascii":
            return fold(text).encode("ascii")
        return b"".join(self._char(c) for c in text)

    def _char(self, c: str) -> bytes:
        try:
            return c.encode(self.name)
        except UnicodeEncodeError:
            pass
        decomposed = unicodedata.normalize("NFD", c)
        base, marks = decomposed[:1], list(decomposed[1:])
        # The base with one of its marks composed, the other marks combining after it.
        for i in range(len(marks)):
            rest = marks[:i] + marks[i + 1:]
            try:
                return (unicodedata.normalize("NFC", base + marks[i]) + "".join(rest)).encode(
                    self.name)
            except UnicodeEncodeError:
                continue
        try:
            return (base + "".join(marks)).encode(self.name)
        except UnicodeEncodeError:
            return fold(c).encode(self.name, errors="replace")

    def decode(self, data: bytes, where: str) -> str:
        if self.name != "utf-8":  # every byte is a character of a single-byte code page
            return unicodedata.normalize("NFC", data.decode(self.charset))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Sip2ProtocolError(where, f"not UTF-8 ({exc.reason} at byte {exc.start})"
                                    ) from None


@dataclass(frozen=True)
class Message:
    """One SIP2 message: command id, the fixed part as text, and the variable fields in order."""

    command: str
    fixed: str = ""
    fields: tuple[tuple[str, str], ...] = ()
    sequence: int | None = None  # AY, when the frame carried one

    def get(self, fid: str) -> str | None:
        for key, value in self.fields:
            if key == fid:
                return value
        return None

    def all(self, fid: str) -> list[str]:
        return [value for key, value in self.fields if key == fid]

    def flag(self, start: int, width: int = 1) -> str:
        return self.fixed[start:start + width]


def checksum(data: bytes) -> bytes:
    return f"{(-sum(data)) & 0xFFFF:04X}".encode("ascii")


def encode(msg: Message, profile: Profile, sequence: int | None = None) -> bytes:
    """The frame of `msg`, with AY/AZ when the profile uses error detection. Ends with CR."""
    width = FIXED_WIDTH.get(msg.command)
    if width is None or len(msg.command) != 2:
        raise Sip2ProtocolError("command", f"{msg.command!r} is not a SIP2 2.00 message")
    fixed = msg.fixed.encode("ascii")
    if len(fixed) != width:
        raise Sip2ProtocolError("fixed", f"{msg.command} needs {width} characters, got "
                                f"{len(fixed)}")
    out = bytearray(msg.command.encode("ascii") + fixed)
    delim = profile.delimiter.encode("ascii")
    for fid, value in msg.fields:
        data = profile.encode(value, fid)
        if delim in data or b"\r" in data or b"\n" in data or b"\0" in data:
            raise Sip2ProtocolError(fid, "value contains a delimiter, CR, LF or NUL")
        out += fid.encode("ascii") + data + delim
    if not profile.error_detection:
        return bytes(out) + b"\r"
    if msg.command not in ("96", "97"):
        if sequence is None or not 0 <= sequence <= 9:
            raise Sip2ProtocolError("AY", f"sequence {sequence!r} is not 0-9")
        out += b"AY" + str(sequence).encode("ascii")
    out += b"AZ"
    return bytes(out) + checksum(bytes(out)) + b"\r"


def decode(frame: bytes, profile: Profile) -> Message:
    """Parse one frame (with or without its CR / CR LF). Raises Sip2ChecksumError on a bad AZ,
    Sip2ProtocolError for anything else out of spec."""
    body = frame.rstrip(b"\r\n")
    if b"\r" in body or b"\0" in body:
        raise Sip2ProtocolError("frame", "embedded CR or NUL")
    sequence: int | None = None
    az = body.rfind(b"AZ")
    if az != -1 and len(body) - az == 6:
        text = body[az + 2:]
        if not _HEX4.fullmatch(text):  # int(.., 16) alone would take '-9F9' or ' 9F9'
            raise Sip2ChecksumError(f"{text!r} is not four hex digits")
        value = int(text, 16)
        if (sum(body[:az + 2]) + value) & 0xFFFF:
            raise Sip2ChecksumError(f"{text.decode('ascii', 'replace')} does not match")
        body = body[:az]
        if len(body) >= 3 and body[-3:-1] == b"AY" and body[-1:].isdigit():
            sequence = int(body[-1:])
            body = body[:-3]
    try:
        command = body[:2].decode("ascii")
    except UnicodeDecodeError:
        raise Sip2ProtocolError("command", "not ASCII") from None
    width = FIXED_WIDTH.get(command)
    if width is None:
        raise Sip2ProtocolError("command", f"{command!r} is not a SIP2 2.00 message")
    fixed_bytes = body[2:2 + width]
    if len(fixed_bytes) != width:
        raise Sip2ProtocolError("fixed", f"{command} needs {width} characters, got "
                                f"{len(fixed_bytes)}")
    try:
        fixed = fixed_bytes.decode("ascii")
    except UnicodeDecodeError:
        raise Sip2ProtocolError("fixed", "not ASCII") from None
    fields: list[tuple[str, str]] = []
    rest = body[2 + width:]
    delim = profile.delimiter.encode("ascii")
    while rest:
        if len(rest) < 2:
            raise Sip2ProtocolError("fields", f"stray bytes {rest!r} at the end")
        try:
            fid = rest[:2].decode("ascii")
        except UnicodeDecodeError:
            raise Sip2ProtocolError("fields", f"field id {rest[:2]!r} is not ASCII") from None
        end = rest.find(delim, 2)
        if end == -1:  # many servers leave the last delimiter off
            end = len(rest)
        fields.append((fid, profile.decode(rest[2:end], fid)))
        rest = rest[end + 1:]
    seen = set()
    for fid, _ in fields:
        if fid in seen and fid not in REPEATABLE:
            raise Sip2ProtocolError(fid, "appears twice")
        seen.add(fid)
    return Message(command, fixed, tuple(fields), sequence)


@dataclass
class Framer:
    """Splits a byte stream into frames on CR; a LF after the CR (CR LF servers) is dropped."""

    _buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        frames: list[bytes] = []
        while True:
            while self._buffer[:1] == b"\n":  # the LF of a CR LF, or noise between frames
                del self._buffer[:1]
            cr = self._buffer.find(b"\r")
            if cr == -1:
                if len(self._buffer) > MAX_FRAME:
                    self._buffer.clear()
                    raise Sip2ProtocolError("frame", f"over {MAX_FRAME} bytes without CR")
                return frames
            frames.append(bytes(self._buffer[:cr + 1]))
            del self._buffer[:cr + 1]

    def clear(self) -> None:
        self._buffer.clear()
