"""The operators' web server itself: HTTPS directly with a certificate (and HSTS), and
connections that stall or vanish never hold the others or the shutdown."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfcheck.central.fleet.service import FleetService
from selfcheck.lab.broker import Broker


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "fleet.crt", tmp_path / "fleet.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def https_fleet(tmp_path: Path, broker: Broker,
                certificate: tuple[Path, Path]) -> Iterator[FleetService]:
    svc = FleetService(broker.address, f"sqlite:///{tmp_path / 'fleet.db'}",
                       tls=(str(certificate[0]), str(certificate[1])))
    svc.start()
    assert svc.connected.wait(10)
    yield svc
    svc.stop()


def _get(url: str, cafile: Path) -> list[object]:
    ctx = ssl.create_default_context(cafile=str(cafile))
    with urllib.request.urlopen(f"{url}/api/stations", context=ctx, timeout=10) as resp:
        # Served over TLS: browsers are told to come back only over TLS.
        assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
        return list(json.load(resp))


def test_https_with_a_stalled_handshake_and_a_vanished_connection(
        https_fleet: FleetService, certificate: tuple[Path, Path]) -> None:
    url = https_fleet.url
    assert url.startswith("https://")
    assert _get(url, certificate[0]) == []
    host, port = url.removeprefix("https://").split(":")
    # A client that connects and never says a word (no TLS handshake), and one that is gone
    # before the server accepts it.
    stalled = socket.create_connection((host, int(port)))
    gone = socket.create_connection((host, int(port)))
    gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    gone.close()  # a reset
    try:
        started = time.monotonic()
        assert _get(url, certificate[0]) == []  # the others are still served
        assert time.monotonic() - started < 5
        # Plain HTTP on the HTTPS port is refused, not served.
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://{host}:{port}/api/stations", timeout=10)
    finally:
        stalled.close()
    # The shutdown does not wait for anyone.
    done = threading.Event()

    def stop() -> None:
        if https_fleet.web:
            https_fleet.web.stop()
        done.set()

    threading.Thread(target=stop, daemon=True).start()
    assert done.wait(10), "the web server did not stop"
