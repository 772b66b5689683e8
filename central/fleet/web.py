"""The fleet service's HTTP side (stdlib only).

Open to anyone who reaches the port: `/` the page (it asks for a login), `/i18n.json`,
`/metrics` (Prometheus; bind it to a private address). Behind a login: `/events` server-sent
events, `/api/stations`, `/api/station`, `/api/ils` (each bridge's library system),
`/api/commands`, `/api/stats`, `/stats.csv`; with the operator role `POST /api/ack` (a
station's alert, or with `bridge` a library-system alert) and `POST /api/command`; admins
`GET /api/audit`. Every POST needs the `X-Requested-With: fleet` header (a cross-site form
cannot send it) and, once logged in, the session's CSRF token in `X-CSRF-Token`.
"""

from __future__ import annotations

import hmac
import json
import logging
import queue
import secrets
import ssl
import threading
import time
from collections.abc import Callable
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from selfcheck.central.fleet.auth import Auth, LoginRefused, Session, User
from selfcheck.central.fleet.i18n import LANGS, catalog
from selfcheck.central.fleet.state import FleetState
from selfcheck.mqtt.messages import MessageError

log = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("page.html")
CLIENT_QUEUE = 10_000  # a client this far behind is dropped (it reconnects and resyncs)
COOKIE = "fleet_session"
MAX_BODY = 64 * 1024

# (site, station, command, args, by) -> cmd_id; raises MessageError on bad arguments.
Commander = Callable[[str, str, str, dict[str, Any], str], str]


class Hub:
    """Fans station updates out to every connected SSE client."""

    def __init__(self) -> None:
        self._clients: set[queue.Queue[tuple[str | None, bytes] | None]] = set()
        self._lock = threading.Lock()

    def subscribe(self) -> queue.Queue[tuple[str | None, bytes] | None]:
        q: queue.Queue[tuple[str | None, bytes] | None] = queue.Queue(CLIENT_QUEUE)
        with self._lock:
            self._clients.add(q)
        return q

    def unsubscribe(self, q: queue.Queue[tuple[str | None, bytes] | None]) -> None:
        with self._lock:
            self._clients.discard(q)

    def publish(self, event: str, data: Any, site: str | None = None) -> None:
        if site is None and isinstance(data, dict):
            site = data.get("site")
        frame = f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
        with self._lock:
            clients = list(self._clients)
        for q in clients:
            try:
                q.put_nowait((site, frame))
            except queue.Full:
                self.unsubscribe(q)
                q.queue.clear()
                q.put_nowait(None)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients), set()
        for q in clients:
            q.put(None)


HANDSHAKE_S = 30.0  # a TLS client gets this long to finish its handshake


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    tls: ssl.SSLContext | None = None  # HTTPS directly, without a reverse proxy

    def server_activate(self) -> None:
        super().server_activate()
        # accept() must never wait: a connection gone between select() and accept() (a port
        # scan, a client that gave up) would hold the whole server, and its shutdown, until
        # the next one came.
        self.socket.setblocking(False)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        sock.setblocking(True)
        if self.tls is not None:
            # The handshake is done in the request's own thread (finish_request), not here:
            # a client that never finishes it must not hold the others.
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            request.settimeout(HANDSHAKE_S)
            request.do_handshake()
            request.settimeout(None)
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError | TimeoutError):
            return  # a browser that went away (a page reload, a closed tab), a bad handshake
        super().handle_error(request, client_address)


class WebServer:
    def __init__(self, addr: tuple[str, int], state: FleetState, hub: Hub,
                 registry: CollectorRegistry, *, auth: Auth | None = None,
                 commander: Commander | None = None, names: dict[str, Any] | None = None,
                 details: Callable[[str, str], dict[str, Any]] | None = None,
                 stats: Any = None, persist: Callable[[Any], None] | None = None,
                 tls: tuple[str, str] | None = None, secure_cookie: bool = False) -> None:
        def fn(f: Callable[..., Any] | None) -> Any:  # a function kept as is, not as a method
            return staticmethod(f) if f is not None else None

        handler = type("Handler", (_Handler,), {
            "state": state, "hub": hub, "registry": registry, "auth": auth,
            "commander": fn(commander), "names": names or {"sites": {}, "stations": {}},
            "details": fn(details), "stats": stats, "persist": fn(persist),
            # Without logins (tests, a loopback-only service) the page still needs a token.
            "open_csrf": secrets.token_urlsafe(24),
            "secure_cookie": secure_cookie or tls is not None})
        self.httpd = _Server(addr, handler)
        self.scheme = "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(*tls)
            self.httpd.tls = ctx
            self.scheme = "https"
        self.hub = hub
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="fleet-http",
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{self.scheme}://{host!s}:{port}"

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
    auth: Auth | None
    commander: Commander | None
    names: dict[str, Any]
    details: Callable[[str, str], dict[str, Any]] | None
    stats: Any
    persist: Callable[[Any], None] | None
    open_csrf: str
    secure_cookie: bool
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)

    def _send(self, body: bytes, ctype: str, status: int = 200,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(json.dumps(data, ensure_ascii=False).encode(), "application/json", status,
                   headers)

    # -- who is asking
    def _token(self) -> str | None:
        cookie = SimpleCookie(self.headers.get("Cookie", ""))
        morsel = cookie.get(COOKIE)
        return morsel.value if morsel else None

    def _session(self) -> Session | None:
        if self.auth is None:
            return Session(User("local", "admin"), self.open_csrf)
        return self.auth.session(self._token())

    def _need(self, role: str = "viewer", site: str | None = None, action: str = "",
              target: str = "") -> Session | None:
        """The session if it may do this; otherwise the refusal is sent and None returned."""
        s = self._session()
        if s is None:
            self._json({"error": "login"}, 401)
            return None
        if not s.user.may(role) or (site is not None and not s.user.sees(site)):
            self._json({"error": "forbidden"}, 403)
            if action and self.auth is not None:  # a refused action is an action too
                self.auth.audit(s.user.name, action, target or site or "", "forbidden")
            return None
        return s

    def _visible(self, s: Session, site: str | None) -> Callable[[str], bool]:
        return lambda st: s.user.sees(st) and (site is None or st == site)

    # -- GET
    def do_GET(self) -> None:
        url = urlparse(self.path)
        q = parse_qs(url.query)
        site: str | None = (q.get("site") or [""])[0] or None
        path = url.path
        if path == "/":
            self._send(PAGE.read_bytes(), "text/html; charset=utf-8", headers={
                "Content-Security-Policy": "default-src 'self'; style-src 'self' "
                "'unsafe-inline'; script-src 'self' 'unsafe-inline'; img-src 'self' data:"})
        elif path == "/i18n.json":
            lang = (q.get("lang") or ["vi"])[0]
            if lang not in LANGS:
                self._send(b"lang: vi or en\n", "text/plain", 400)
                return
            self._json(catalog(lang))
        elif path == "/metrics":
            self._send(generate_latest(self.registry), CONTENT_TYPE_LATEST)
        elif path == "/api/me":
            s = self._session()
            if s is None:
                self._json({"error": "login"}, 401)
                return
            self._json({"user": s.user.info(), "csrf": s.csrf, "names": self.names,
                        "login": self.auth is not None})
        elif path == "/api/stations":
            if (s := self._need()) is not None:
                self._json(self._rows(s, site))
        elif path == "/api/ils":
            if self._need() is not None:  # the library system is every site's concern
                self._json(self.state.ils_rows())
        elif path == "/api/station":
            station = (q.get("station") or [""])[0]
            if site and (s := self._need("viewer", site)) is not None:
                self._json(self._detail(site, station))
            elif not site:
                self._json({"error": "site"}, 400)
        elif path == "/api/commands":
            if (s := self._need()) is not None:
                with self.state.lock:
                    cmds = list(self.state.commands.values())
                self._json([c for c in cmds if self._visible(s, site)(c["site"])][-200:])
        elif path == "/api/audit":
            if (s := self._need("admin")) is not None and self.auth is not None:
                self._json(self.auth.audit_rows())
            elif s is not None:
                self._json([])
        elif path in ("/api/stats", "/stats.csv"):
            if (s := self._need("viewer", site)) is not None:
                self._stats(s, q, csv=path.endswith(".csv"))
        elif path == "/events":
            if (s := self._need("viewer", site)) is not None:
                self._events(s, site)
        else:
            self._send(b"not found\n", "text/plain", 404)

    def _rows(self, s: Session, site: str | None) -> list[dict[str, Any]]:
        visible = self._visible(s, site)
        return [r for r in self.state.rows() if visible(r["site"])]

    def _detail(self, site: str, station: str) -> dict[str, Any]:
        now = time.time()
        with self.state.lock:
            rec = self.state.stations.get((site, station))
            row = rec.row(now) if rec else None
            history = list(rec.history) if rec else []
            cmds = [c for c in self.state.commands.values()
                    if c["site"] == site and c["station"] == station]
        commands, events = cmds[-30:][::-1], []
        if self.details is not None:
            extra = self.details(site, station)
            events = extra.get("events", [])
            # The last day from the store, then the live samples newer than those.
            stored = extra.get("health", [])
            last = stored[-1]["at"] if stored else 0.0
            history = stored + [h for h in history if h["at"] > last]
            known = {c["cmd_id"] for c in cmds}
            commands += [c for c in extra.get("commands", []) if c["cmd_id"] not in known]
        return {"row": row, "history": history, "commands": commands, "events": events}

    def _stats(self, s: Session, q: dict[str, list[str]], csv: bool) -> None:
        if self.stats is None:
            self._json({"error": "no_store"}, 404)
            return
        sites = None if not s.user.sites else set(s.user.sites)
        try:
            if csv:
                table = (q.get("table") or ["periods"])[0]
                name, body = self.stats.csv(q, sites, table)
                self._send(body.encode("utf-8-sig"), "text/csv; charset=utf-8", headers={
                    "Content-Disposition": f'attachment; filename="{name}"'})
            else:
                self._json(self.stats.report(q, sites))
        except ValueError as exc:
            self._json({"error": str(exc)}, 400)

    def _events(self, s: Session, site: str | None) -> None:
        visible = self._visible(s, site)
        q = self.hub.subscribe()  # before the snapshot, so no update falls in between
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            snapshot = json.dumps(self._rows(s, site), ensure_ascii=False)
            self.wfile.write(f"event: snapshot\ndata: {snapshot}\n\n".encode())
            ils = json.dumps(self.state.ils_rows(), ensure_ascii=False)
            self.wfile.write(f"event: ils\ndata: {ils}\n\n".encode())
            self.wfile.flush()
            while True:
                try:
                    item = q.get(timeout=15)
                except queue.Empty:
                    item = (None, b": keep-alive\n\n")
                if item is None:
                    return
                frame_site, frame = item
                if frame_site is not None and not visible(frame_site):
                    continue
                self.wfile.write(frame)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        finally:
            self.hub.unsubscribe(q)
            self.close_connection = True

    # -- POST
    def _body(self) -> dict[str, Any] | None:
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            self._json({"error": "too_large"}, 413)
            return None
        try:
            data = json.loads(self.rfile.read(n) or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            self._json({"error": "json"}, 400)
            return None
        return data

    def do_POST(self) -> None:
        path = urlparse(self.path).path
        if self.headers.get("X-Requested-With") != "fleet":
            self._json({"error": "csrf"}, 403)
            return
        body = self._body()
        if body is None:
            return
        if path == "/api/login":
            self._login(body)
            return
        if path == "/api/logout":
            token = self._token()
            if self.auth is not None and token:
                self.auth.logout(token)
            self._json({"ok": True}, headers={"Set-Cookie": self._cookie("", 0)})
            return
        s = self._session()
        if s is None:
            self._json({"error": "login"}, 401)
            return
        if not hmac.compare_digest(self.headers.get("X-CSRF-Token", ""), s.csrf):
            self._json({"error": "csrf"}, 403)
            return
        site, station = str(body.get("site") or ""), str(body.get("station") or "")
        target = f"{site}/{station or '*'}"
        if path == "/api/ack" and body.get("bridge"):
            bridge, kind = str(body["bridge"])[:64], str(body.get("kind") or "")
            if self._need("operator", None, "ack", f"bridge {bridge} {kind}") is not None:
                self._ack_ils(s, bridge, kind)
        elif path == "/api/ack":
            kind = str(body.get("kind") or "")
            if self._need("operator", site, "ack", f"{target} {kind}") is not None:
                self._ack(s, site, station, kind)
        elif path == "/api/command":
            if self._need("operator", site, str(body.get("name") or "command")[:32],
                          target) is not None:
                self._command(s, site, body)
        else:
            self._json({"error": "not found"}, 404)

    def _cookie(self, value: str, max_age: int) -> str:
        secure = "; Secure" if self.secure_cookie else ""
        return f"{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"

    def _login(self, body: dict[str, Any]) -> None:
        if self.auth is None:
            self._json({"error": "no_login"}, 404)
            return
        name, password = str(body.get("name") or "")[:64], str(body.get("password") or "")
        try:
            token, s = self.auth.login(name, password)
        except LoginRefused as exc:
            self.auth.audit(name or "?", "login", "", exc.reason)
            self._json({"error": exc.reason, "until": exc.until},
                       423 if exc.reason == "locked" else 401)
            return
        self.auth.audit(s.user.name, "login", "", "ok")
        self._json({"user": s.user.info(), "csrf": s.csrf, "names": self.names, "login": True},
                   headers={"Set-Cookie": self._cookie(token, int(self.auth.session_s))})

    def _ack(self, s: Session, site: str, station: str, kind: str) -> None:
        rec = self.state.ack(site, station, kind, s.user.name)
        result = "ok" if rec is not None else "not_active"
        if self.auth is not None:
            self.auth.audit(s.user.name, "ack", f"{site}/{station} {kind}", result)
        if rec is None:
            self._json({"error": result}, 409)
            return
        with self.state.lock:
            row = rec.row(time.time())
            if self.persist is not None:
                self.persist(rec)
        self.hub.publish("station", row)
        self._json(row)

    def _ack_ils(self, s: Session, bridge: str, kind: str) -> None:
        done = self.state.ack_ils(bridge, kind, s.user.name)
        result = "ok" if done else "not_active"
        if self.auth is not None:
            self.auth.audit(s.user.name, "ack", f"bridge {bridge} {kind}", result)
        if not done:
            self._json({"error": result}, 409)
            return
        rows = self.state.ils_rows()
        self.hub.publish("ils", rows)
        self._json(rows)

    def _command(self, s: Session, site: str, body: dict[str, Any]) -> None:
        name = str(body.get("name") or "")
        args = body.get("args") or {}
        station = body.get("station")
        if self.commander is None or not isinstance(args, dict):
            self._json({"error": "no_commands"}, 400)
            return
        with self.state.lock:
            targets = [st for (si, st) in self.state.stations if si == site
                       and (station is None or st == station)]
        if not targets:
            self._json({"error": "unknown_station"}, 404)
            return
        target = f"{site}/{station}" if station else f"{site}/*"
        sent = []
        for st in sorted(targets):
            try:
                sent.append(self.commander(site, st, name, args, s.user.name))
            except MessageError as exc:
                if self.auth is not None:
                    self.auth.audit(s.user.name, name or "command", target, "refused",
                                    str(exc))
                self._json({"error": "invalid", "field": exc.field, "reason": exc.reason}, 400)
                return
        if self.auth is not None:
            self.auth.audit(s.user.name, name, target, "sent",
                            json.dumps({"args": args, "cmd_ids": sent}, ensure_ascii=False))
        self._json({"cmd_ids": sent})
