"""Station and central through a real Mosquitto started with the project's config."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from pathlib import Path

import paho.mqtt.client as paho

from selfcheck.central.backends.store import CirculationStore
from selfcheck.central.bridge import Bridge
from selfcheck.drivers.card.base import SimulatedCardReader
from selfcheck.drivers.pad.simulated import SimulatedPad
from selfcheck.drivers.tags import iso28560_3
from selfcheck.kiosk import core
from selfcheck.kiosk.runtime.journal import Journal
from selfcheck.kiosk.runtime.station import StationRuntime
from selfcheck.kiosk.settings import StationSettings
from selfcheck.lab.broker import Broker
from selfcheck.mqtt import messages, topics
from selfcheck.mqtt.connection import make_client
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.outbox import Outbox
from selfcheck.mqtt.station_link import StationLink
from tests.conftest import wait_until

SITE = "thu-vien-test"


def uid(n: int) -> bytes:
    return bytes.fromhex(f"E00401000000{n:04X}")


def book(n: int, item: str) -> tuple[bytes, bytes]:
    return uid(n), iso28560_3.encode(item)


async def _until(check, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_station_borrows_and_returns_through_broker_and_bridge(
        tmp_path: Path, broker: Broker, bridge: Bridge, store: CirculationStore) -> None:
    settings = StationSettings(site=SITE, station="st-1", broker=str(broker.address),
                               journal=tmp_path / "station.db")
    pad, card = SimulatedPad(), SimulatedCardReader()

    async def scenario() -> None:
        rt = StationRuntime(settings, pad, card)
        task = asyncio.ensure_future(rt.run())
        view = rt.view
        await _until(lambda: view().online)
        card.present("DG0001")
        await _until(lambda: view().mode is core.Mode.BORROW)
        assert view().patron_name == "An"  # the central gives the given name only
        for n, item in enumerate(("39000001", "39000007"), start=1):
            pad.place(*book(n, item))
        await _until(lambda: len(view().lines) == 2 and all(
            ln.status in (core.Status.DONE, core.Status.REFUSED) for ln in view().lines))
        by_item = {ln.item_id: ln for ln in view().lines}
        assert by_item["39000001"].status is core.Status.DONE
        assert by_item["39000001"].title == "Truyện Kiều"
        assert by_item["39000007"].reason == "not_for_loan"
        # tag second: only the accepted loan had its security state changed
        await _until(lambda: pad.afi_of(uid(1)) == 0xC2)
        assert pad.afi_of(uid(2)) == 0x07
        assert rt.journal.depth()[0] == 0  # acked rows leave the journal
        rt.feed(core.Touch("finish"))
        rt.feed(core.Touch("done"))
        rt.feed(core.Touch("return"))
        await _until(lambda: any(ln.status is core.Status.DONE for ln in view().lines))
        await _until(lambda: pad.afi_of(uid(1)) == 0x07)
        rt.stop()
        await task

    asyncio.run(scenario())
    kinds = [(r["kind"], r["item_id"]) for r in store.history()]
    assert ("loan", "39000001") in kinds and ("return", "39000001") in kinds
    assert ("loan", "39000007") not in kinds
    assert store.on_loan() == {}


def _tx(item: str, seq: int, station: str = "st-2") -> messages.TxReturn:
    return messages.TxReturn(msg_id=uuid7(), seq=seq, site=SITE, station=station,
                             at=dt.datetime.now(dt.UTC), item_id=item)


def _collector(broker: Broker, topic: str) -> tuple[paho.Client, list[paho.MQTTMessage]]:
    got: list[paho.MQTTMessage] = []
    ready = threading.Event()
    client = make_client("observer-" + uuid7()[-6:])
    client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, 1)
    client.on_subscribe = lambda *a: ready.set()  # listening only once the SUBACK is back
    client.on_message = lambda c, u, m: got.append(m)
    client.connect(broker.address.host, broker.address.port)
    client.loop_start()
    assert ready.wait(5)
    return client, got


def test_repeat_gets_the_stored_result_and_malformed_messages_are_counted(
        broker: Broker, bridge: Bridge, store: CirculationStore) -> None:
    client, acks = _collector(broker, topics.ack_tx(SITE, "st-2"))
    tx = _tx("39000002", 1)
    payload = messages.encode(tx)
    for _ in range(3):
        client.publish(topics.tx(SITE, "st-2", "return"), payload, qos=1)
    bad = [b"garbage", b'{"schema": "tx.return/1"}', json.dumps(
        {**json.loads(payload), "station": "st-9"}).encode(), b"x" * 20_000]
    for junk in bad:
        client.publish(topics.tx(SITE, "st-2", "return"), junk, qos=1)
    wait_until(lambda: len(acks) == 3 and bridge.counters.rejected == 4, what="acks")
    decoded = [messages.decode(m.payload, messages.AckTx) for m in acks]
    assert [a.repeat for a in decoded]  # type: ignore[attr-defined] == [False, True, True]
    assert len(store.history(["39000002"])) == 1
    client.loop_stop()
    client.disconnect()


def test_patron_request_response_and_foreign_response_topic_refused(
        tmp_path: Path, broker: Broker, bridge: Bridge) -> None:
    journal = Journal(tmp_path / "j.db")
    link = StationLink(SITE, "st-3", broker.address, version="t",
                       next_session=journal.next_session, on_ack=lambda a: None)
    link.start()
    assert link.connected.wait(5)
    res = link.request("patron", messages.PatronCheckReq(card_id="DG0002")).result(5)
    assert isinstance(res, messages.PatronCheckRes)
    assert res.ok and res.display_name == "Ngọc"
    assert res.patron_ref and res.patron_ref.startswith("p-")
    res = link.request("patron", messages.PatronCheckReq(card_id="XX")).result(5)
    assert isinstance(res, messages.PatronCheckRes) and res.reason == "unknown_patron"
    # a request asking for its answer on another station's topic is refused
    spy, seen = _collector(broker, topics.res(SITE, "victim", "patron"))
    before = bridge.counters.rejected
    from selfcheck.mqtt.connection import publish_properties

    spy.publish(topics.req(SITE, "st-3", "patron"),
                messages.encode(messages.PatronCheckReq(card_id="DG0002")), qos=1,
                properties=publish_properties(
                    ResponseTopic=topics.res(SITE, "victim", "patron"), CorrelationData=b"1"))
    wait_until(lambda: bridge.counters.rejected > before, what="the refusal")
    assert seen == []
    link.stop()
    spy.loop_stop()
    spy.disconnect()
    journal.close()


def test_outbox_holds_until_ack_and_survives_broker_restart(
        tmp_path: Path, broker: Broker, bridge: Bridge, store: CirculationStore) -> None:
    journal = Journal(tmp_path / "j.db")
    outbox: Outbox
    link = StationLink(SITE, "st-4", broker.address, version="t",
                       next_session=journal.next_session,
                       on_ack=lambda a: outbox.on_ack(a.msg_id),
                       on_connected=lambda up: up and outbox.on_connected())
    outbox = Outbox(journal, link.send, resend_after_s=1)
    link.start()
    assert link.connected.wait(5)
    broker.kill()  # SIGKILL: whatever it held in memory is gone
    wait_until(lambda: not link.connected.is_set(), what="the disconnect")
    ids = []
    for n in range(5):
        topic = topics.tx(SITE, "st-4", "return")
        msg = journal.add("return", topic, lambda seq, n=n: _tx(f"4900000{n + 1}", seq, "st-4"))
        ids.append(msg.msg_id)
        outbox.submit(msg.msg_id, topic, messages.encode(msg))
    assert journal.depth()[0] == 5  # nothing sent, nothing lost
    broker.start()
    # As the runtime does every second: the bridge may subscribe after the station reconnected.
    wait_until(lambda: outbox.resend_due() >= 0 and journal.depth()[0] == 0, timeout_s=20,
               what="the outbox to drain")
    applied = [r["msg_id"] for r in store.history()]
    assert sorted(applied) == sorted(ids)
    link.stop()
    journal.close()


def test_status_birth_and_will_carry_the_session_counter(
        tmp_path: Path, broker: Broker) -> None:
    spy, statuses = _collector(broker, topics.status(SITE, "st-5"))
    journal = Journal(tmp_path / "j.db")
    link = StationLink(SITE, "st-5", broker.address, version="9.9", keepalive_s=2,
                       next_session=journal.next_session, on_ack=lambda a: None)
    link.start()
    wait_until(lambda: statuses, what="the birth")
    birth = messages.decode(statuses[-1].payload, messages.Status)
    assert isinstance(birth, messages.Status) and birth.online and birth.version == "9.9"
    # A dead station: stop its network loop without DISCONNECT, so the broker sends the will.
    link._client.loop_stop()
    link._client.socket().close()  # type: ignore[union-attr]
    wait_until(lambda: any(not json.loads(m.payload)["online"] for m in statuses),
               timeout_s=10, what="the will")
    will = [json.loads(m.payload) for m in statuses if not json.loads(m.payload)["online"]][-1]
    assert will["session"] == birth.session
    assert journal.next_session() == birth.session + 1
    spy.loop_stop()
    spy.disconnect()
    journal.close()
