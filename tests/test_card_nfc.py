"""The nfcpy card reader against cards emulated by nfcpy itself over its `udp` device.

Both ends are real nfcpy stacks: the reader side senses, activates and presence-checks
exactly as with a PN532, the card side answers over loopback UDP. Each test gets its own
port because the card side binds one.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import nfc
import nfc.clf
import pytest

from selfcheck.drivers.card import open_card_reader
from selfcheck.drivers.card.debounce import PresenceDebouncer
from selfcheck.drivers.card.nfc_reader import NfcCardReader
from selfcheck.drivers.card.uid_mapping import UidFormat, UidMapping
from tests.conftest import wait_until

FELICA_IDM = bytes.fromhex("0102030405060708")
FELICA_PMM = bytes.fromhex("03014b024f4993ff")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmulatedCard:
    """A card on the 'field' of udp:localhost:port, served by nfcpy in a thread."""

    def __init__(self, port: int, serve: Callable[[Any, threading.Event], None]) -> None:
        self.port = port
        self._serve = serve
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def present(self) -> EmulatedCard:
        self._stop.clear()
        clf = nfc.ContactlessFrontend(f"udp:localhost:{self.port}")

        def main() -> None:
            try:
                self._serve(clf, self._stop)
            finally:
                clf.close()

        self._thread = threading.Thread(target=main, daemon=True)
        self._thread.start()
        return self

    def remove(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            assert not self._thread.is_alive()


def felica(idm: bytes) -> Callable[[Any, threading.Event], None]:
    """FeliCa card through nfcpy's own Type 3 Tag emulation (as tagtool's emulate)."""

    def on_startup(target: Any) -> Any:
        target.brty = "212F"
        target.sensf_res = bytearray(b"\x01" + idm + FELICA_PMM + b"\x12\xfc")
        return target

    def serve(clf: Any, stop: threading.Event) -> None:
        while not stop.is_set():
            clf.connect(card={"on-startup": on_startup, "on-connect": lambda tag: True},
                        terminate=stop.is_set)

    return serve


def type_a(uid: bytes, sel_res: int, answer_read: bool) -> Callable[[Any, threading.Event], None]:
    """ISO 14443-A card: nfcpy's udp listen_tta does anticollision with our UID; we answer
    Type 2 READ (page 0) so presence checks pass, or stay mute like a MIFARE Classic
    that wants authentication first."""
    target = nfc.clf.LocalTarget("106A", sens_res=bytearray.fromhex("4400"),
                                 sdd_res=bytearray(uid), sel_res=bytearray([sel_res]))

    def serve(clf: Any, stop: threading.Event) -> None:
        while not stop.is_set():
            activated = clf.listen(target, 0.3)
            cmd = activated.tt2_cmd if activated else None
            while cmd is not None and not stop.is_set():
                if not (answer_read and cmd[:1] == b"\x30"):
                    break  # a real Type 2 tag goes mute on a command it does not support
                try:
                    cmd = clf.exchange(bytes(uid[:4]) + bytes(12), 0.3)
                except nfc.clf.CommunicationError:
                    break

    return serve


def type_b(pupi: bytes) -> Callable[[Any, threading.Event], None]:
    """ISO 14443-B card that answers SENSB_REQ but never ATTRIB, so nfcpy cannot activate
    it: the reader must still report it, from the discovery response."""
    sensb_res = bytearray(b"\x50" + pupi + bytes(4) + bytes.fromhex("008185"))
    target = nfc.clf.LocalTarget("106B", sensb_res=sensb_res)

    def serve(clf: Any, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                clf.listen(target, 0.3)
            except nfc.clf.CommunicationError:
                pass

    return serve


@pytest.fixture
def port() -> int:
    return free_udp_port()


def test_felica_idm_reported_once_while_held_and_again_after_removal(port, run_reader):
    card = EmulatedCard(port, felica(FELICA_IDM)).present()
    reader = NfcCardReader(f"udp:localhost:{port}", targets=["212F"], release_s=0.5)
    running = run_reader(reader)
    assert running.next_card() == "0102030405060708"
    running.assert_no_card(within=2.0)  # held: nfcpy's presence check keeps it connected
    card.remove()
    # nfcpy's presence check notices the removal; then the card must stay away for release_s
    wait_until(lambda: reader._held is None, 10, "nfcpy to notice the removal")
    time.sleep(0.5 + 0.2)
    card.present()
    try:
        assert running.next_card() == "0102030405060708"
        running.assert_no_card(within=1.0)
    finally:
        card.remove()
    assert reader.stats.cards == 2


@pytest.mark.parametrize(
    ("uid", "expected"),
    [
        (bytes.fromhex("11223344"), "11223344"),  # single-size UID
        (bytes.fromhex("04A1B2C3D4E5F6"), "04A1B2C3D4E5F6"),  # NXP 7-byte, cascade level 2
    ],
)
def test_type_a_uid_through_anticollision(port, run_reader, uid, expected):
    card = EmulatedCard(port, type_a(uid, sel_res=0x00, answer_read=True)).present()
    try:
        running = run_reader(NfcCardReader(f"udp:localhost:{port}", targets=["106A"]))
        assert running.next_card() == expected
        running.assert_no_card(within=1.5)
    finally:
        card.remove()


def test_mifare_classic_like_card_is_debounced(port, run_reader):
    # sel_res 08 and no answer to READ: nfcpy's presence check fails at once, so the
    # card is sensed again and again while it lies there; it must be reported once.
    card = EmulatedCard(port, type_a(bytes.fromhex("DEADBEEF"), 0x08, False)).present()
    try:
        reader = NfcCardReader(f"udp:localhost:{port}", targets=["106A"], release_s=1.0)
        running = run_reader(reader)
        assert running.next_card() == "DEADBEEF"
        running.assert_no_card(within=2.5)
        assert reader.stats.cards == 1
    finally:
        card.remove()


def test_type_b_reported_from_discovery_even_without_activation(port, run_reader):
    card = EmulatedCard(port, type_b(bytes.fromhex("A1B2C3D4"))).present()
    try:
        running = run_reader(NfcCardReader(f"udp:localhost:{port}", targets=["106B"]))
        assert running.next_card() == "A1B2C3D4"
        running.assert_no_card(within=1.5)
    finally:
        card.remove()


@pytest.mark.parametrize(
    ("fmt", "pad", "expected"),
    [
        ("hex", 0, "0102030405060708"),
        ("hex-reversed", 0, "0807060504030201"),
        ("decimal", 0, str(0x0102030405060708)),
        ("decimal-reversed", 24, str(0x0807060504030201).zfill(24)),
    ],
)
def test_factory_reader_applies_site_mapping(port, run_reader, fmt, pad, expected):
    card = EmulatedCard(port, felica(FELICA_IDM)).present()
    try:
        reader = open_card_reader("nfc", f"udp:localhost:{port}", format=fmt, pad=pad,
                                  targets=["212F"])
        assert run_reader(reader).next_card() == expected
    finally:
        card.remove()


def test_reopens_when_device_is_missing_then_appears(port, run_reader):
    # A PN532 that is not there yet: nfcpy raises OSError(ENODEV) from the constructor.
    attempts: list[str] = []

    def frontend(path: str) -> Any:
        attempts.append(path)
        if len(attempts) < 3:
            raise OSError(errno.ENODEV, "No such device")
        return nfc.ContactlessFrontend(path)

    card = EmulatedCard(port, felica(FELICA_IDM)).present()
    try:
        reader = NfcCardReader(f"udp:localhost:{port}", targets=["212F"],
                               frontend_factory=frontend, reopen_delay_s=0.05)
        assert run_reader(reader).next_card() == "0102030405060708"
        assert len(attempts) == 3
        assert reader.stats.reconnects == 1
    finally:
        card.remove()


def test_reopens_when_device_fails_mid_run(port, run_reader):
    # nfcpy turns an I/O error of the device into connect() == False; the reader must
    # close the frontend and open a new one rather than spin on the dead one.
    opened: list[Any] = []

    class DyingFrontend:
        def __init__(self, path: str) -> None:
            self.clf = nfc.ContactlessFrontend(path)
            self.closed = False

        def connect(self, **kw: Any) -> Any:
            if len(opened) == 1:
                return False  # the first device "disappears" at once
            return self.clf.connect(**kw)

        def close(self) -> None:
            self.closed = True
            self.clf.close()

    def frontend(path: str) -> Any:
        opened.append(DyingFrontend(path))
        return opened[-1]

    card = EmulatedCard(port, felica(FELICA_IDM)).present()
    try:
        reader = NfcCardReader(f"udp:localhost:{port}", targets=["212F"],
                               frontend_factory=frontend, reopen_delay_s=0.05)
        assert run_reader(reader).next_card() == "0102030405060708"
        assert len(opened) == 2 and opened[0].closed
        assert reader.stats.reconnects == 1
    finally:
        card.remove()


def test_stop_returns_promptly_with_no_card(port, run_reader):
    running = run_reader(NfcCardReader(f"udp:localhost:{port}", targets=["212F"]))
    time.sleep(0.5)
    started = time.monotonic()
    running.close()
    assert time.monotonic() - started < 3.0


def test_bad_targets_rejected():
    with pytest.raises(ValueError, match="nfc targets"):
        NfcCardReader("udp", targets=["106X"])


def test_debouncer_rule():
    d = PresenceDebouncer(release_s=1.0)
    a, b = b"\x01", b"\x02"
    assert d.seen(a, 0.0)
    assert not d.seen(a, 0.9)  # still held
    assert d.seen(b, 1.0)  # a second card on the pad is its own presentation
    assert not d.seen(a, 1.5)
    assert not d.seen(b, 1.5)
    assert d.seen(a, 3.0)  # gone for more than release_s: a new tap


def test_mapping_used_by_reader_is_site_config():
    r = NfcCardReader("udp", UidMapping(format=UidFormat.DECIMAL_REVERSED, pad=10))
    assert r.mapping.format is UidFormat.DECIMAL_REVERSED


def test_unexpected_nfcpy_exception_reopens_instead_of_crashing(port, run_reader):
    calls: list[int] = []

    class Flaky:
        def __init__(self, path: str) -> None:
            self.clf = nfc.ContactlessFrontend(path)

        def connect(self, **kw: Any) -> Any:
            calls.append(1)
            if len(calls) == 1:
                raise IndexError("bytearray index out of range")  # as from a short frame
            return self.clf.connect(**kw)

        def close(self) -> None:
            self.clf.close()

    card = EmulatedCard(port, felica(FELICA_IDM)).present()
    try:
        reader = NfcCardReader(f"udp:localhost:{port}", targets=["212F"],
                               frontend_factory=Flaky, reopen_delay_s=0.05)
        assert run_reader(reader).next_card() == "0102030405060708"
        assert reader.stats.rejected == {"driver-error": 1}
    finally:
        card.remove()
