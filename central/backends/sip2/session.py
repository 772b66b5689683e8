"""One SIP2 conversation as a state machine without I/O (the h11 shape).

`send(msg)` gives the bytes to write; `receive(data)` gives what to do next:
- Reply(message): the answer to the request in flight;
- Write(bytes): send these (a resend after the ACS asked with 96, or a 97 asking the ACS to
  resend after a reply with a bad checksum) and keep waiting.
One request at a time: SIP2 has no pipelining.
"""

from __future__ import annotations

from dataclasses import dataclass

from selfcheck.central.backends.sip2 import codec
from selfcheck.central.backends.sip2.codec import (
    Framer,
    Message,
    Profile,
    Sip2ChecksumError,
    Sip2ProtocolError,
)

MAX_RESENDS = 3  # per request, each way; after that the connection is not trusted


@dataclass(frozen=True)
class Reply:
    message: Message


@dataclass(frozen=True)
class Write:
    data: bytes


Event = Reply | Write


class Session:
    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._framer = Framer()
        self._seq = -1
        self._pending: Message | None = None
        self._frame = b""
        self._resends = 0

    @property
    def busy(self) -> bool:
        return self._pending is not None

    def send(self, msg: Message) -> bytes:
        if self._pending is not None:
            raise Sip2ProtocolError("session", "a request is already waiting for its reply")
        self._seq = (self._seq + 1) % 10
        self._pending = msg
        self._resends = 0
        self._frame = codec.encode(msg, self.profile, self._seq)
        return self._frame

    def receive(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for frame in self._framer.feed(data):
            event = self._frame_in(frame)
            if event is not None:
                events.append(event)
        return events

    def _frame_in(self, frame: bytes) -> Event | None:
        if self._pending is None:
            raise Sip2ProtocolError("frame", "a reply came with no request waiting")
        try:
            msg = codec.decode(frame, self.profile)
        except Sip2ChecksumError:
            return self._again(codec.encode(Message("97"), self.profile))
        if msg.command == "96":  # the ACS got our frame garbled: send the same frame again
            return self._again(self._frame)
        if (self.profile.error_detection and msg.sequence is not None
                and msg.sequence != self._seq):
            raise Sip2ProtocolError("AY", f"reply for sequence {msg.sequence}, "
                                    f"expected {self._seq}")
        self._pending = None
        return Reply(msg)

    def _again(self, data: bytes) -> Write:
        self._resends += 1
        if self._resends > MAX_RESENDS:
            raise Sip2ProtocolError("AZ", f"still garbled after {MAX_RESENDS} resends")
        return Write(data)

    def reset(self) -> None:
        """After a timeout or a broken connection: nothing is in flight any more."""
        self._pending = None
        self._framer.clear()
