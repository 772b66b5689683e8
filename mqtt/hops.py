"""Where a transaction's time goes: a timestamp at each hop of its round trip, for the
benchmark's breakdown (`selfcheck bench --only mqtt`) only.

Nothing is recorded unless a hook is installed: the call sites test `HOOKS` (an empty list by
default) before anything else, so the hot path pays one truth test. Times are
`time.monotonic()` seconds in the recording process; the benchmark measures each process's
offset from its own clock by a ping exchange (`serve_clock`), so it does not rely on the
processes sharing a clock.

In a child process (`selfcheck central`), `from_env()` installs a recorder when the benchmark
asks for one (SELFCHECK_HOPS_FILE, SELFCHECK_HOPS_CLOCK_PORT) and `Recorder.dump` writes what
it kept when the process ends.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

Hook = Callable[[str, str, float], None]  # hop, msg_id, monotonic seconds
HOOKS: list[Hook] = []

FILE_ENV = "SELFCHECK_HOPS_FILE"
CLOCK_ENV = "SELFCHECK_HOPS_CLOCK_PORT"
KEEP_ENV = "SELFCHECK_HOPS_KEEP"  # the marks to keep: the sample's, not a later load's
KEEP_MAX = 200_000  # a recorder left on by mistake stops growing here


def mark(hop: str, msg_id: str, at: float | None = None) -> None:
    """Call only behind `if HOOKS:`; `at` is a time taken earlier (paho's receipt time)."""
    when = time.monotonic() if at is None else at
    for hook in HOOKS:
        hook(hop, msg_id, when)


class Recorder:
    """Keeps every mark: (hop, msg_id, time). A list append is atomic under the GIL, so the
    threads that mark need no lock."""

    def __init__(self, keep: int = KEEP_MAX) -> None:
        self.marks: list[tuple[str, str, float]] = []
        self.keep = keep

    def __call__(self, hop: str, msg_id: str, at: float) -> None:
        if len(self.marks) < self.keep:
            self.marks.append((hop, msg_id, at))

    def install(self) -> Recorder:
        HOOKS.append(self)
        return self

    def remove(self) -> None:
        if self in HOOKS:
            HOOKS.remove(self)

    def dump(self, path: Path | str) -> None:
        tmp = Path(f"{path}.part")
        tmp.write_text(json.dumps(self.marks))
        tmp.replace(path)


def serve_clock(port: int) -> socket.socket:
    """Answer each datagram on 127.0.0.1:`port` with this process's monotonic clock (a double),
    from a daemon thread: the other side's ping exchange gives the offset between the two."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))

    def answer() -> None:
        while True:
            try:
                _, peer = sock.recvfrom(64)
                sock.sendto(struct.pack("!d", time.monotonic()), peer)
            except OSError:  # closed: the process is ending
                return

    threading.Thread(target=answer, name="hops-clock", daemon=True).start()
    return sock


def clock_offset(port: int, pings: int = 50) -> tuple[float, float]:
    """(offset, uncertainty) in seconds of the clock served on `port` from ours: the other's
    time minus ours, from the ping with the shortest round trip (NTP's estimate: the answer
    was taken halfway), give or take half that round trip."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        best: tuple[float, float] | None = None
        for _ in range(pings):
            sent = time.monotonic()
            sock.sendto(b"t", ("127.0.0.1", port))
            try:
                data = sock.recv(64)
            except TimeoutError:
                continue
            back = time.monotonic()
            (theirs,) = struct.unpack("!d", data)
            rtt = back - sent
            if best is None or rtt < 2 * best[1]:
                best = (theirs - (sent + back) / 2, rtt / 2)
        if best is None:
            raise TimeoutError(f"no clock answer on port {port}")
        return best


def from_env() -> Recorder | None:
    """The recorder the benchmark asked this process for, installed, else None."""
    if not os.environ.get(FILE_ENV):
        return None
    port = os.environ.get(CLOCK_ENV)
    if port:
        serve_clock(int(port))
    return Recorder(int(os.environ.get(KEEP_ENV) or KEEP_MAX)).install()


def dump_to_env(recorder: Recorder | None) -> None:
    if recorder is not None:
        recorder.dump(os.environ[FILE_ENV])
