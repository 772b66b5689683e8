"""The benchmark's baseline bridge (`selfcheck central --no-order`) really is the one without
per-station order: a transaction that comes before its predecessor is applied at once, where
the shipped bridge holds it."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from sqlalchemy import create_engine, func, select

from selfcheck.central.schema import held_tx
from selfcheck.lab.broker import Broker
from selfcheck.lab.stack import CentralProcess
from selfcheck.mqtt import messages, topics
from selfcheck.mqtt.connection import make_client
from selfcheck.mqtt.ids import uuid7
from tests.conftest import wait_until


def held(db: str) -> int:
    engine = create_engine(db)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(held_tx)).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.parametrize("order", [True, False])
def test_a_later_seq_alone_is_held_only_with_order(tmp_path: Path, broker: Broker,
                                                    order: bool) -> None:
    db = f"sqlite:///{tmp_path / 'central.db'}"
    acks: list[str] = []
    got = threading.Event()
    subscribed = threading.Event()
    client = make_client("test-no-order")
    client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topics.ack_tx("s", "st-1"), 1)
    client.on_subscribe = lambda *a: subscribed.set()

    def on_message(c: paho.Client, u: object, m: paho.MQTTMessage) -> None:
        ack = messages.decode(m.payload, messages.AckTx)
        assert isinstance(ack, messages.AckTx)
        acks.append(ack.msg_id)
        got.set()

    client.on_message = on_message
    client.connect(broker.address.host, broker.address.port)
    client.loop_start()
    try:
        assert subscribed.wait(10)
        with CentralProcess(broker.address, db, sample_items=5, order=order):
            seq3 = messages.TxReturn(msg_id=uuid7(), seq=3, journal="0" * 32, site="s",
                                     station="st-1", at=dt.datetime.now(dt.UTC),
                                     item_id="49000001")
            client.publish(topics.tx("s", "st-1", "return"), messages.encode(seq3), qos=1)
            if order:  # seq 1 and 2 have not come: held, no answer yet
                wait_until(lambda: held(db) == 1, what="seq 3 held")
                assert acks == []
            else:
                assert got.wait(10), "no ack"
                assert acks == [seq3.msg_id] and held(db) == 0
    finally:
        client.disconnect()
        client.loop_stop()
