"""Polls a book pad in one thread: reports the set of tags present whenever it changes, and
performs security writes between polls so that only this thread ever talks to the pad."""

from __future__ import annotations

import errno
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from selfcheck.drivers.pad.base import AfiPolicy, BookPad
from selfcheck.drivers.seen import SeenTag, tag_uid
from selfcheck.drivers.tags import TagDecodeError, decode_tag, truncated
from selfcheck.system.faults import Fault, backoff

RETRY_MAX_S = 30.0  # a pad gone for a day is asked about 3,000 times, not 86,000

log = logging.getLogger(__name__)


OnTags = Callable[[tuple[SeenTag, ...]], None]
OnHealth = Callable[[bool], None]
T = TypeVar("T")


class PadWatcher:
    def __init__(self, pad: BookPad, on_tags: OnTags, *, afi: AfiPolicy | None = None,
                 on_health: OnHealth = lambda ok: None, poll_s: float = 0.1,
                 blocks: int = 9, max_blocks: int = 64) -> None:
        self.pad = pad
        self.afi = afi or AfiPolicy()
        self._on_tags = on_tags
        self._on_health = on_health
        self._poll_s = poll_s
        self._blocks = blocks  # first read: a 28560-3 basic block with room for its end byte
        self._max_blocks = max(blocks, max_blocks)  # longer data (28560-2 titles) up to this
        self._known: dict[bytes, SeenTag] = {}
        self._reported: tuple[SeenTag, ...] | None = None
        self._writes: queue.Queue[tuple[bytes, int, Future[None]]] = queue.Queue()
        self._jobs: queue.Queue[tuple[Callable[[BookPad], Any], Future[Any]]] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pad-watcher", daemon=True)
        self._healthy: bool | None = None
        link = getattr(pad, "link", None)
        self.fault = Fault(log, "pad.up", url=getattr(link, "url", None) or
                           getattr(pad, "url", None) or type(pad).__name__)
        self.failures = 0  # in a row; the wait before the next try grows with it

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def write_security(self, uid: bytes, state: str) -> Future[None]:
        """Queue an AFI write ('on_loan' or 'in_library'); the future says how it went."""
        afi = self.afi.on_loan if state == "on_loan" else self.afi.in_library
        future: Future[None] = Future()
        self._writes.put((uid, afi, future))
        return future

    def on_pad(self, job: Callable[[BookPad], T]) -> Future[T]:
        """Run `job(pad)` on the polling thread between two polls (staff tools: writing a
        tag's data); the tags it touched are read again at the next poll."""
        future: Future[T] = Future()
        self._jobs.put((job, future))
        return future

    def _health(self, ok: bool) -> None:
        if ok != self._healthy:
            self._healthy = ok
            self._on_health(ok)

    def alive(self) -> bool:
        """False once the polling thread has ended without being stopped."""
        return self._thread.ident is None or self._thread.is_alive() or self._stop.is_set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._do_writes()
                self._poll()
                self._health(True)
            except Exception as exc:  # a reader fault must not end the station
                self.failures += 1
                self.fault.down(pad_fault(exc), reason=str(exc)[:200], most=RETRY_MAX_S)
                self._health(False)
                self._stop.wait(backoff(self.failures, 1.0, RETRY_MAX_S))
                continue
            if self.failures:
                self.failures = 0
                self.fault.up()
            self._stop.wait(self._poll_s)

    def _do_writes(self) -> None:
        while True:
            try:
                job, done = self._jobs.get_nowait()
            except queue.Empty:
                break
            self._known.clear()  # what it wrote is read again, not taken from the cache
            try:
                done.set_result(job(self.pad))
            except Exception as exc:
                done.set_exception(exc)
        while True:
            try:
                uid, afi, future = self._writes.get_nowait()
            except queue.Empty:
                return
            try:
                self.pad.write_afi(uid, afi)
                future.set_result(None)
            except Exception as exc:
                future.set_exception(exc)

    def _poll(self) -> None:
        uids = self.pad.inventory()
        present: dict[bytes, SeenTag] = {}
        for uid in uids:
            seen = self._known.get(uid)
            if seen is None:
                seen = self._read(uid)
                if seen is None:
                    continue  # read failed (tag moving): try again next poll
            present[uid] = seen
        self._known = present
        snapshot = tuple(sorted(present.values(), key=lambda s: s.uid))
        if snapshot != self._reported:
            self._reported = snapshot
            self._on_tags(snapshot)

    def _read(self, uid: bytes) -> SeenTag | None:
        data = self._read_data(uid)
        if data is None:
            return None
        try:
            return SeenTag(tag_uid(uid), decode_tag(data, uid=uid))
        except TagDecodeError as exc:
            return SeenTag(tag_uid(uid), None, str(exc))

    def _read_data(self, uid: bytes) -> bytes | None:
        try:
            return read_tag_data(self.pad, uid, self._blocks, self._max_blocks)
        except Exception as exc:
            log.info("read of %s failed: %s", tag_uid(uid), exc)
            return None


def pad_fault(exc: BaseException) -> str:
    """The faults key for why the pad cannot be used: its port is not there (unplugged,
    wrong `pad_url`), the station's user may not open it (not in the dialout group), or it
    does not answer."""
    seen: BaseException | None = exc
    while seen is not None:
        code = getattr(seen, "errno", None)
        if code == errno.ENOENT:
            return "pad.absent"
        if code in (errno.EACCES, errno.EPERM):
            return "pad.permission"
        seen = seen.__cause__ or seen.__context__
    return "pad.down"


def read_tag_data(pad: BookPad, uid: bytes, blocks: int = 9, max_blocks: int = 64) -> bytes:
    """A tag's library data: `blocks` blocks first, then more while the data decodes as cut
    short (28560-2 elements or 28560-3 optional blocks running past the end), up to
    `max_blocks`. Reading past the end of a tag's memory fails, so the step halves until the
    end is found, and what was read by then is returned. A tag smaller than the first read
    (ICODE SLIX-L: 8 blocks of 4 bytes) is read as 8 blocks. Raises what the first read
    raised if the tag cannot be read at all."""
    first = blocks
    try:
        data = pad.read_blocks(uid, 0, first)
    except Exception:
        if first <= 8:
            raise
        first = 8
        data = pad.read_blocks(uid, 0, first)
    if not data:
        return data
    size = max(1, len(data) // first)
    have = step = first
    while have < max_blocks and step and truncated(data):
        n = min(step, max_blocks - have)
        try:
            more = pad.read_blocks(uid, have, n)
        except Exception:
            step //= 2  # past the end of memory (or a moving tag): try a shorter read
            continue
        data += more
        have += max(1, len(more) // size)
    return data
