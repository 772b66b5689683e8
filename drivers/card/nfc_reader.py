"""Patron cards through nfcpy: PN532 on a Pi UART (`tty:AMA0:pn532`), nfcpy's USB readers,
or `udp:host:port` for tests.

The card is reported from its discovery response (ISO 14443-A UID, 14443-B PUPI, FeliCa
IDm), before activation, so cards nfcpy cannot activate (MIFARE Classic presence checks,
odd Type 4 cards) are still read. Activation then follows only so that nfcpy's presence
loop can hold the card without re-sensing; the debouncer covers cards that drop out of it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from selfcheck.drivers.card.base import OnCard
from selfcheck.drivers.card.debounce import PresenceDebouncer
from selfcheck.drivers.card.stats import CardReaderStats
from selfcheck.drivers.card.uid_mapping import UidMapping, map_uid
from selfcheck.drivers.reopen import keep_open

log = logging.getLogger(__name__)

# nfcpy bitrate/technology strings a reader can poll for patron cards.
SUPPORTED_TARGETS = ("106A", "106B", "212F", "424F")
DEFAULT_TARGETS = ("106A", "106B", "212F")

FrontendFactory = Callable[[str], Any]


def _nfcpy_frontend(path: str) -> Any:
    import nfc  # imported late: the station may run a barcode reader only

    return nfc.ContactlessFrontend(path)


def target_uid(target: Any) -> bytes | None:
    """The card identifier in an nfcpy RemoteTarget's discovery response, if any."""
    if getattr(target, "sdd_res", None):  # type A: nfcpy strips cascade tags already
        return bytes(target.sdd_res)
    if getattr(target, "sensb_res", None) and len(target.sensb_res) >= 5:
        return bytes(target.sensb_res[1:5])  # type B: PUPI
    if getattr(target, "sensf_res", None) and len(target.sensf_res) >= 9:
        return bytes(target.sensf_res[1:9])  # FeliCa: IDm
    if getattr(target, "rid_res", None) and len(target.rid_res) >= 6:
        return bytes(target.rid_res[2:6])  # type 1 (Topaz): UID0-3
    return None


def _close(clf: Any) -> None:
    try:
        clf.close()
    except OSError:
        pass


class NfcCardReader:
    def __init__(
        self,
        path: str,
        mapping: UidMapping | None = None,
        *,
        targets: Sequence[str] = DEFAULT_TARGETS,
        release_s: float = 1.0,
        reopen_delay_s: float = 0.5,
        reopen_max_s: float = 10.0,
        frontend_factory: FrontendFactory = _nfcpy_frontend,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        bad = [t for t in targets if t not in SUPPORTED_TARGETS]
        if bad or not targets:
            raise ValueError(f"nfc targets must be some of {SUPPORTED_TARGETS}, got {targets!r}")
        self.path = path
        self.mapping = mapping or UidMapping()
        self.targets = list(targets)
        self.reopen_delay_s = reopen_delay_s
        self.reopen_max_s = reopen_max_s
        self.stats = CardReaderStats()
        self._debounce = PresenceDebouncer(release_s)
        self._factory = frontend_factory
        self._clock = clock
        self._held: bytes | None = None  # UID inside nfcpy's presence loop

    def run(self, on_card: OnCard, stop: threading.Event) -> None:
        # nfcpy raises OSError(ENODEV) for a missing reader; keep trying, the reader may be
        # plugged in later.
        keep_open(f"card reader {self.path}", lambda: self._factory(self.path),
                  lambda clf: self._poll(clf, on_card, stop), _close, stats=self.stats,
                  stop=stop, delay_s=self.reopen_delay_s, max_delay_s=self.reopen_max_s,
                  errors=(OSError, ValueError), clock=self._clock)

    def _poll(self, clf: Any, on_card: OnCard, stop: threading.Event) -> None:
        """Poll until `stop` is set (returns) or the device fails (returns too)."""
        self._held = None

        def on_discover(target: Any) -> bool:
            uid = target_uid(target)
            if uid is None:
                self.stats.count_reject("no-uid")
                log.warning("card without a usable identifier: %s", type(target).__name__)
                return False
            if self._debounce.seen(uid, self._clock()):
                self._deliver(uid, on_card)
            return True

        def on_connect(tag: Any) -> bool:
            self._held = bytes(tag.identifier)
            return True  # let nfcpy wait here until the card leaves

        def on_release(tag: Any) -> bool:
            if self._held is not None:
                self._debounce.seen(self._held, self._clock())
            self._held = None
            return True

        def terminate() -> bool:
            # Called between sense passes and every 0.1 s while a card is held: use it
            # to keep a held card fresh in the debouncer.
            if self._held is not None:
                self._debounce.seen(self._held, self._clock())
            return stop.is_set()

        rdwr = {
            "targets": self.targets,
            "on-discover": on_discover,
            "on-connect": on_connect,
            "on-release": on_release,
            # One pass per connect() so `stop` is checked often; sensing itself
            # waits for the card's answer, so this does not spin.
            "iterations": 1,
            "beep-on-connect": False,
        }
        while not stop.is_set():
            try:
                result = clf.connect(rdwr=rdwr, terminate=terminate)
            except OSError as exc:
                log.warning("card reader %s failed: %s", self.path, exc)
                return
            except Exception:
                # A frame nfcpy did not expect (noise, an exotic card) must not end
                # card reading for the station: count it and start over with the device.
                self.stats.count_reject("driver-error")
                log.exception("nfcpy failed on %s; reopening", self.path)
                return
            if result is False:
                # nfcpy swallows IOError / unsupported target into False: the device
                # is gone or unusable, so reopen it.
                return

    def _deliver(self, uid: bytes, on_card: OnCard) -> None:
        try:
            card_id = map_uid(uid, self.mapping)
        except ValueError as exc:
            self.stats.count_reject("bad-uid")
            log.warning("card UID dropped: %s", exc)
            return
        self.stats.count_card()
        # No card number in the log (privacy, DESIGN invariant 5).
        log.info("card presented (%d-byte UID)", len(uid))
        try:
            on_card(card_id)
        except Exception:
            log.exception("on_card handler failed")
