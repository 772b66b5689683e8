"""The fleet service's HTTP side (stdlib only): `/` the live page, `/events` server-sent
events, `/api/stations` a JSON snapshot, `/i18n.json?lang=vi|en` the page's words,
`/metrics` for Prometheus."""

from __future__ import annotations

import json
import logging
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from central.fleet.i18n import LANGS, catalog
from central.fleet.state import FleetState

log = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("page.html")
CLIENT_QUEUE = 10_000  # a client this far behind is dropped (it reconnects and resyncs)


class Hub:
    """Fans station updates out to every connected SSE client."""

    def __init__(self) -> None:
        self._clients: set[queue.Queue[bytes | None]] = set()
        self._lock = threading.Lock()

    def subscribe(self) -> queue.Queue[bytes | None]:
        q: queue.Queue[bytes | None] = queue.Queue(CLIENT_QUEUE)
        with self._lock:
            self._clients.add(q)
        return q

    def unsubscribe(self, q: queue.Queue[bytes | None]) -> None:
        with self._lock:
            self._clients.discard(q)

    def publish(self, event: str, data: Any) -> None:
        frame = f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
        with self._lock:
            clients = list(self._clients)
        for q in clients:
            try:
                q.put_nowait(frame)
            except queue.Full:
                self.unsubscribe(q)
                q.queue.clear()
                q.put_nowait(None)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients), set()
        for q in clients:
            q.put(None)


class WebServer:
    def __init__(self, addr: tuple[str, int], state: FleetState, hub: Hub,
                 registry: CollectorRegistry) -> None:
        handler = type("Handler", (_Handler,), {"state": state, "hub": hub,
                                                "registry": registry})
        self.httpd = ThreadingHTTPServer(addr, handler)
        self.httpd.daemon_threads = True
        self.hub = hub
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="fleet-http",
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.hub.close()
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    state: FleetState
    hub: Hub
    registry: CollectorRegistry
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)

    def _send(self, body: bytes, ctype: str, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        site: str | None = (parse_qs(url.query).get("site") or [""])[0] or None
        if url.path == "/":
            self._send(PAGE.read_bytes(), "text/html; charset=utf-8")
        elif url.path == "/api/stations":
            body = json.dumps(self.state.rows(site), ensure_ascii=False).encode()
            self._send(body, "application/json")
        elif url.path == "/api/commands":
            with self.state.lock:
                body = json.dumps(list(self.state.commands.values())[-200:]).encode()
            self._send(body, "application/json")
        elif url.path == "/i18n.json":
            lang = (parse_qs(url.query).get("lang") or ["vi"])[0]
            if lang not in LANGS:
                self._send(b"lang: vi or en\n", "text/plain", 400)
                return
            self._send(json.dumps(catalog(lang), ensure_ascii=False).encode(),
                       "application/json")
        elif url.path == "/metrics":
            self._send(generate_latest(self.registry), CONTENT_TYPE_LATEST)
        elif url.path == "/events":
            self._events(site)
        else:
            self._send(b"not found\n", "text/plain", 404)

    def _events(self, site: str | None) -> None:
        q = self.hub.subscribe()  # before the snapshot, so no update falls in between
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            snapshot = json.dumps(self.state.rows(site), ensure_ascii=False)
            self.wfile.write(f"event: snapshot\ndata: {snapshot}\n\n".encode())
            self.wfile.flush()
            while True:
                try:
                    frame = q.get(timeout=15)
                except queue.Empty:
                    frame = b": keep-alive\n\n"
                if frame is None:
                    return
                if site is not None and b'"site": "' + site.encode() + b'"' not in frame \
                        and frame.startswith(b"event: station"):
                    continue
                self.wfile.write(frame)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            self.hub.unsubscribe(q)
            self.close_connection = True
