"""A card reader that goes away and comes back is reported: events, state, fleet alert."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from pathlib import Path

from selfcheck.drivers.card.barcode_serial import SerialBarcodeOptions, SerialBarcodeReader
from selfcheck.drivers.pad.simulated import SimulatedPad
from selfcheck.kiosk.runtime.station import StationRuntime
from selfcheck.kiosk.settings import StationSettings
from selfcheck.lab.broker import Broker, free_port
from selfcheck.mqtt.connection import make_client


def test_station_reports_card_reader_lost_and_back(tmp_path: Path, broker: Broker) -> None:
    seen: list[tuple[str, dict[str, object]]] = []
    ready = threading.Event()
    spy = make_client("spy-card-health")
    spy.on_connect = lambda c, u, f, rc, p=None: c.subscribe("lib/v1/lib-a/st-c/#", 1)
    spy.on_subscribe = lambda *a: ready.set()
    spy.on_message = lambda c, u, m: seen.append((m.topic.split("/", 4)[4],
                                                  json.loads(m.payload)))
    spy.connect(broker.address.host, broker.address.port)
    spy.loop_start()
    assert ready.wait(5)
    port = free_port()  # nothing listens yet: the scanner is unplugged
    card = SerialBarcodeReader(f"socket://127.0.0.1:{port}",
                               SerialBarcodeOptions(reopen_delay_s=0.1, reopen_max_s=0.2))
    settings = StationSettings(site="lib-a", station="st-c", broker=str(broker.address),
                               journal=tmp_path / "j.db", card_reader="barcode-serial",
                               card_url=f"socket://127.0.0.1:{port}")

    def kinds() -> list[str]:
        return [str(body.get("kind")) for topic, body in seen if topic.startswith("evt/")]

    def last_state() -> dict[str, object]:
        return next((b for t, b in reversed(seen) if t == "state"), {})

    async def scenario() -> None:
        rt = StationRuntime(settings, SimulatedPad(), card)
        task = asyncio.ensure_future(rt.run())
        loop = asyncio.get_running_loop()

        async def until(check, what: str) -> None:  # type: ignore[no-untyped-def]
            deadline = loop.time() + 15
            while not check():
                assert loop.time() < deadline, what
                await asyncio.sleep(0.05)

        await until(lambda: "card_reader_lost" in kinds(), "card_reader_lost")
        await until(lambda: last_state().get("card_ok") is False, "state card_ok false")
        server = socket.create_server(("127.0.0.1", port))  # plugged in
        conns: list[object] = []  # held open: a closed connection would be another unplug
        threading.Thread(target=lambda: conns.append(server.accept()), daemon=True).start()
        await until(lambda: "card_reader_back" in kinds(), "card_reader_back")
        await until(lambda: last_state().get("card_ok") is True, "state card_ok true")
        rt.stop()
        await task
        server.close()

    asyncio.run(scenario())
    assert kinds().count("card_reader_lost") == 1  # once, not at every retry
    spy.loop_stop()
    spy.disconnect()
