"""Privacy (DESIGN.md invariant 5): a full session with known patron values, then every log
record, every message published on the broker and the station journal are searched for them."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
import unicodedata
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from selfcheck.central.backends.store import CirculationStore
from selfcheck.central.bridge import Bridge
from selfcheck.drivers.card.base import SimulatedCardReader
from selfcheck.drivers.pad.simulated import SimulatedPad
from selfcheck.drivers.tags import iso28560_3
from selfcheck.kiosk import core
from selfcheck.kiosk.runtime.station import StationRuntime
from selfcheck.kiosk.settings import StationSettings
from selfcheck.lab.broker import Broker
from selfcheck.mqtt import topics
from selfcheck.mqtt.connection import make_client, publish_properties

CARD = "DG0001"  # the sample library's patron card
NAME = "Nguyễn Văn An"  # and that patron's name
GIVEN = "An"  # all a patron check gives: the full name goes nowhere, not even to the station
SITE, STATION = "thu-vien-test", "st-priv"
# The patron check must carry the card number to the central and its answer the name to the
# screen: those two channels only, which the ACL keeps between this station and the bridge
# (tests/test_broker_security.py) and TLS keeps off the wire.
ALLOWED = {topics.req(SITE, STATION, "patron"): CARD, topics.res(SITE, STATION, "patron"): GIVEN}


def forms(value: str) -> set[str]:
    """The value as it could appear: as is, lower case, JSON-escaped, without diacritics."""
    ascii_ = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    ascii_ = ascii_.replace("Đ", "D").replace("đ", "d")
    return {value, value.lower(), json.dumps(value)[1:-1], ascii_, ascii_.lower()}


def found(text: str, value: str) -> bool:
    return any(f in text for f in forms(value))


def test_no_card_number_or_name_in_logs_messages_or_journal(
        tmp_path: Path, broker: Broker, bridge: Bridge, store: CirculationStore,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every level
    published: list[paho.MQTTMessage] = []
    ready = threading.Event()
    spy = make_client("privacy-spy")
    spy.on_connect = lambda c, u, f, rc, p=None: c.subscribe("#", 1)
    spy.on_subscribe = lambda *a: ready.set()
    spy.on_message = lambda c, u, m: published.append(m)
    spy.connect(broker.address.host, broker.address.port)
    spy.loop_start()
    assert ready.wait(5)

    settings = StationSettings(site=SITE, station=STATION, broker=str(broker.address),
                               journal=tmp_path / "station.db")
    pad, card = SimulatedPad(), SimulatedCardReader()

    async def until(check, timeout_s: float = 15) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout_s
        while not check():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.02)

    async def session() -> None:
        rt = StationRuntime(settings, pad, card)
        task = asyncio.ensure_future(rt.run())
        await until(lambda: rt.view().online)
        card.present(CARD)
        await until(lambda: rt.view().mode is core.Mode.BORROW)
        assert rt.view().patron_name == GIVEN  # the values really went through
        uid = bytes.fromhex("E004010000000001")
        pad.place(uid, iso28560_3.encode("39000001"))
        await until(lambda: any(ln.status is core.Status.DONE for ln in rt.view().lines))
        await until(lambda: pad.afi_of(uid) == settings.afi_on_loan)
        rt.feed(core.Touch("finish"))
        rt.feed(core.Touch("done"))
        rt.feed(core.Touch("return"))
        await until(lambda: any(ln.status is core.Status.DONE for ln in rt.view().lines))
        await until(lambda: rt.journal.depth()[0] == 0)
        rt.stop()
        await task

    asyncio.run(session())
    # Malformed messages that carry the values: the rejections are logged, the values not.
    before = bridge.counters.rejected
    req = topics.req(SITE, STATION, "patron")
    props = publish_properties(ResponseTopic=topics.res(SITE, STATION, "patron"),
                               CorrelationData=b"1")
    for junk in ({"schema": "req.patron/1", "card_id": CARD, "pin": "4711", "name": NAME},
                 {"schema": "req.patron/1", "card_id": CARD * 20},
                 {"schema": "tx.loan/1", "patron": NAME, "card_id": CARD}):
        spy.publish(req, json.dumps(junk).encode(), qos=1, properties=props)
    deadline = time.monotonic() + 10
    while bridge.counters.rejected < before + 3:
        assert time.monotonic() < deadline, "the bridge did not reject the junk"
        time.sleep(0.02)
    time.sleep(0.5)  # the last acks and statuses reach the spy
    spy.loop_stop()
    spy.disconnect()
    assert ("loan", "39000001") in [(r["kind"], r["item_id"]) for r in store.history()]

    # -- published messages: topic and payload of each
    channels = {m.topic.split("/")[4] for m in published if m.topic.startswith("lib/v1/")}
    assert {"tx", "ack", "req", "res", "status"} <= channels  # the whole session was seen
    leaks = []
    for m in published:
        if m.properties is not None and getattr(m.properties, "CorrelationData", None) == b"1":
            continue  # the test's own junk above
        text = m.topic + " " + m.payload.decode("utf-8", "replace")
        for value in (CARD, NAME):
            if found(text, value) and ALLOWED.get(m.topic) != value:
                leaks.append((m.topic, value))
    assert leaks == []
    for m in published:
        if m.topic in ALLOWED:
            assert not m.retain  # nothing kept on the broker for later readers

    # -- log records, with their arguments and tracebacks
    rejections = [r for r in caplog.records if r.name == "selfcheck.central.bridge"]
    assert len(rejections) >= 3, "the rejections were not logged"
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "") + repr(record.args)
        assert not found(text, CARD), record
        assert not found(text, NAME), record

    # -- the station journal on disk (SQLite file, WAL included)
    for path in tmp_path.glob("station.db*"):
        data = path.read_bytes().decode("utf-8", "replace")
        assert not found(data, CARD), path
        assert not found(data, NAME), path


PIN, WRONG_PIN = "1234", "8642"  # DG0001's sample PIN, and a wrong one typed first


def pin_found(text: str, pin: str) -> bool:
    """The PIN as a token of its own: not inside a hex id, a timestamp's fraction, ..."""
    return re.search(rf"(?<![0-9A-Fa-f]){pin}(?![0-9A-Fa-f])", text) is not None


def test_pin_session_keeps_pin_card_and_name_out_of_logs_messages_and_journal(
        tmp_path: Path, broker: Broker, bridge: Bridge, store: CirculationStore,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    published: list[paho.MQTTMessage] = []
    ready = threading.Event()
    spy = make_client("privacy-spy-pin")
    spy.on_connect = lambda c, u, f, rc, p=None: c.subscribe("#", 1)
    spy.on_subscribe = lambda *a: ready.set()
    spy.on_message = lambda c, u, m: published.append(m)
    spy.connect(broker.address.host, broker.address.port)
    spy.loop_start()
    assert ready.wait(5)
    settings = StationSettings(site=SITE, station=STATION, broker=str(broker.address),
                               journal=tmp_path / "station.db", pin="always")
    pad, card = SimulatedPad(), SimulatedCardReader()

    async def until(check, timeout_s: float = 15) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout_s
        while not check():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.02)

    async def session() -> None:
        rt = StationRuntime(settings, pad, card)
        task = asyncio.ensure_future(rt.run())
        await until(lambda: rt.view().online)
        card.present(CARD)
        await until(lambda: rt.view().mode is core.Mode.PIN)
        rt.feed(core.PinEntered(WRONG_PIN))
        await until(lambda: rt.view().pin_error == "wrong_pin")
        rt.feed(core.PinEntered(PIN))
        await until(lambda: rt.view().mode is core.Mode.BORROW)
        assert rt.view().patron_name == GIVEN
        uid = bytes.fromhex("E004010000000002")
        pad.place(uid, iso28560_3.encode("39000002"))
        await until(lambda: any(ln.status is core.Status.DONE for ln in rt.view().lines))
        rt.feed(core.Touch("finish"))
        rt.feed(core.Touch("done"))
        await until(lambda: rt.journal.depth()[0] == 0)
        rt.stop()
        await task

    asyncio.run(session())
    time.sleep(0.5)
    spy.loop_stop()
    spy.disconnect()
    assert ("loan", "39000002") in [(r["kind"], r["item_id"]) for r in store.history()]

    req, res = topics.req(SITE, STATION, "patron"), topics.res(SITE, STATION, "patron")
    pins_sent = [json.loads(m.payload).get("pin") for m in published if m.topic == req]
    assert pins_sent == [WRONG_PIN, PIN]  # the PIN went to the central, once per try
    leaks = []
    for m in published:
        text = m.topic + " " + m.payload.decode("utf-8", "replace")
        if m.topic == req:
            assert not m.retain
            continue  # card id and PIN go to the central here, by design
        if m.topic == res:
            assert '"pin"' not in text and not m.retain  # the answer never repeats the PIN
        for pin in (PIN, WRONG_PIN):
            if pin_found(text, pin):
                leaks.append((m.topic, "PIN"))
        if found(text, CARD):
            leaks.append((m.topic, "card"))
        if found(text, NAME):
            leaks.append((m.topic, "name"))
    assert leaks == []

    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "") + repr(record.args)
        assert not pin_found(text, PIN) and not pin_found(text, WRONG_PIN), record
        assert not found(text, CARD) and not found(text, NAME), record

    for path in tmp_path.glob("station.db*"):
        data = path.read_bytes().decode("utf-8", "replace")
        assert '"pin"' not in data, path
        assert not pin_found(data, PIN) and not pin_found(data, WRONG_PIN), path
        assert not found(data, CARD) and not found(data, NAME), path
