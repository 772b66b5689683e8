"""The project's own broker config (deploy/mosquitto/selfcheck.conf), as the demo runs it."""

from __future__ import annotations

import threading

from selfcheck.lab.broker import Broker
from selfcheck.mqtt.connection import make_client


def test_retained_status_survives_a_broker_restart(broker: Broker) -> None:
    pub = make_client("persist-pub")
    pub.connect(broker.address.host, broker.address.port)
    pub.loop_start()
    pub.publish("lib/v1/a/b/status", b'{"online": true}', qos=1, retain=True).wait_for_publish(5)
    pub.disconnect()
    pub.loop_stop()
    broker.restart()  # SIGTERM: Mosquitto writes its persistence file on the way out
    got = threading.Event()
    seen: list[bytes] = []
    sub = make_client("persist-sub")
    sub.on_connect = lambda c, u, f, rc, p=None: c.subscribe("lib/v1/+/+/status", 1)
    sub.on_message = lambda c, u, m: (seen.append(m.payload), got.set())
    sub.connect(broker.address.host, broker.address.port)
    sub.loop_start()
    assert got.wait(5), "the retained status was lost"
    assert seen == [b'{"online": true}']
    sub.disconnect()
    sub.loop_stop()
    assert "Permission denied" not in (broker.datadir / "mosquitto.log").read_text()
