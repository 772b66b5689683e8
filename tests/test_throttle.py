"""Each station's share of a bridge: a station flooding valid loans is held to its share, and
the other stations are still answered."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from selfcheck.central.backends.store import CirculationStore
from selfcheck.central.bridge import Bridge
from selfcheck.central.metrics import BridgeCollector
from selfcheck.central.throttle import MAX_STATIONS, StationThrottle, Verdict
from selfcheck.lab.broker import Broker
from selfcheck.mqtt import topics
from tests.conftest import wait_until
from tests.test_cli_errors import selfcheck
from tests.test_poison import SITE, Client, _tx, running_bridge


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate() -> None:
    clock = Clock()
    t = StationThrottle(2.0, 5, clock=clock)
    assert [t.take("s", "a") for _ in range(5)] == [Verdict.OK] * 5
    assert t.take("s", "a") is Verdict.STARTED  # said once
    assert t.take("s", "a") is Verdict.REFUSED
    assert t.take("s", "b") is Verdict.OK  # another station has its own share
    assert t.take("s", "a", "req") is Verdict.OK  # and so do its requests
    clock.now += 10  # refilled (capped at the burst)
    assert [t.take("s", "a") for _ in range(6)] == [Verdict.OK] * 5 + [Verdict.STARTED]
    assert t.refused == {"s/a": 3}


def test_a_refused_station_resumes_only_with_a_tenth_of_its_burst() -> None:
    # One message let through now and then would leave gaps in the station's order: it
    # resumes once it can take a run of them.
    clock = Clock()
    t = StationThrottle(1.0, 50, clock=clock)
    for _ in range(50):
        t.take("s", "a")
    assert t.take("s", "a") is Verdict.STARTED
    clock.now += 4.5  # 4.5 tokens: enough for some, not the 5 needed to resume
    assert t.take("s", "a") is Verdict.REFUSED
    clock.now += 0.5
    assert [t.take("s", "a") for _ in range(5)] == [Verdict.OK] * 5
    assert t.take("s", "a") is Verdict.STARTED


def test_rate_zero_lets_everything_in_and_bad_shares_are_refused() -> None:
    t = StationThrottle(0, 1)
    assert all(t.take("s", "a") is Verdict.OK for _ in range(10_000))
    with pytest.raises(ValueError, match="burst >= 1"):
        StationThrottle(1, 0)
    with pytest.raises(ValueError, match="rate must be >= 0"):
        StationThrottle(-1, 10)


def test_idle_stations_are_forgotten_beyond_the_limit() -> None:
    clock = Clock()
    t = StationThrottle(1.0, 2, clock=clock)
    for n in range(MAX_STATIONS):
        t.take("s", f"st-{n}")
    t.take("s", "busy")
    t.take("s", "busy")
    clock.now += 1.5  # everyone refilled, except "busy", which spent its burst
    t.take("s", "new")
    assert len(t._buckets) == 2  # "busy" and "new"
    assert t.take("s", "busy") is Verdict.OK and t.take("s", "busy") is Verdict.STARTED


@pytest.fixture
def shared_bridge(store: CirculationStore, broker: Broker) -> Iterator[Bridge]:
    # Next to no refill: what gets in does not depend on how long the flood takes to send.
    with running_bridge(store, broker, station_rate_per_s=0.001, station_burst=20) as b:
        yield b


def test_a_flooding_station_is_held_to_its_share_and_the_others_are_answered(
        broker: Broker, shared_bridge: Bridge, store: CirculationStore) -> None:
    bridge = shared_bridge
    c = Client(broker, f"lib/v1/{SITE}/+/ack/tx", f"lib/v1/{SITE}/+/res/#")
    flood = [_tx("loan", "st-evil", f"3990{n:04d}", seq=n + 1) for n in range(300)]
    for body in flood:
        c.send(topics.tx(SITE, "st-evil", "loan"), body)
    good = _tx("return", "st-good", "39000003", seq=1)
    c.send(topics.tx(SITE, "st-good", "return"), good)
    c.send(topics.req(SITE, "st-good", "offline-list"), {"schema": "req.offline-list/1"},
           ResponseTopic=topics.res(SITE, "st-good", "offline-list"), CorrelationData=b"good")
    wait_until(lambda: good["msg_id"] in [a.msg_id for a in c.acks()], 15,
               "the other station's ack")
    wait_until(lambda: any(getattr(m.properties, "CorrelationData", b"") == b"good"
                           for m in c.got), 15, "the other station's answer")
    wait_until(lambda: bridge.counters.throttled + bridge.counters.applied
               + bridge.order.counters.held >= 301, 15,
               "every message of the flood taken or refused")
    # Only its share went in, the oldest 20; the rest were left for its outbox.
    assert bridge.counters.throttled == 280
    wait_until(lambda: len(c.acks()) == 21, 10, "the share answered")
    assert {a.msg_id for a in c.acks()} == {b["msg_id"] for b in flood[:20]} | {good["msg_id"]}
    c.close()
    assert bridge.throttle.refused == {f"{SITE}/st-evil": 280}
    registry = CollectorRegistry()
    registry.register(BridgeCollector(bridge))
    text = generate_latest(registry).decode()
    assert f'selfcheck_bridge_throttled_total{{station="{SITE}/st-evil"}} 280.0' in text


def test_the_share_is_set_from_the_command_line() -> None:
    out = selfcheck("central", "--station-rate", "-1")
    assert out.returncode == 2 and "'-1': give 0 to 100000 messages a second" in out.stderr
    out = selfcheck("central", "--station-burst", "1.5")
    assert out.returncode == 2 and "'1.5' is not a number of messages" in out.stderr
    assert "Traceback" not in out.stderr
    assert "--station-rate" in selfcheck("central", "--help").stdout
