"""The fleet service's HTTP side: a Starlette app served by uvicorn (h11).

Open to anyone who reaches the port: `/` the page (it asks for a login), `/i18n.json`,
`/metrics` (Prometheus; bind it to a private address). Behind a login: `/events` server-sent
events, `/api/stations`, `/api/station`, `/api/ils` (each bridge's library system),
`/api/commands` (each with its expiry; `expired` once past it unanswered), `/api/stats`,
`/stats.csv`; with the operator role `POST /api/ack` (a station's alert, or with `bridge` a
library-system alert, for operators of every site only), `POST /api/ack_bulk` (every open alert
of a site and/or a kind the operator sees) and `POST /api/command` (a site-wide one to more than
one station only with `confirm` equal to the number of stations; an answer lists the targets
that are offline or silent: the command is sent all the same and waits at the broker until it
expires); admins `GET /api/audit` (filtered, paged by `before`; an admin of some sites reads
only their rows) and `/api/audit.csv`. Every
POST needs the `X-Requested-With: fleet` header (a cross-site form
cannot send it), an `Origin`, when the browser sends one, of this very host, and once logged
in the session's CSRF token in `X-CSRF-Token`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from selfcheck.central.fleet import actions
from selfcheck.central.fleet.auth import AUDIT_PAGE, Auth, LoginRefused, Session, User
from selfcheck.central.fleet.i18n import LANGS, catalog
from selfcheck.central.fleet.state import FleetState
from selfcheck.central.fleet.stocktake_page import routes as stocktake_routes
from selfcheck.central.fleet.updates import routes as updates_routes
from selfcheck.mqtt.messages import MessageError

log = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("page.html")
CLIENT_QUEUE = 10_000  # a client this far behind is dropped (it reconnects and resyncs)
COOKIE = "fleet_session"
MAX_BODY = 64 * 1024
MAX_HEADERS = 16 * 1024  # h11's limit on a request line and headers not yet complete
KEEP_ALIVE_S = 5.0  # an idle kept-alive connection is closed after this
MAX_CONNECTIONS = 500  # beyond this uvicorn answers 503 rather than take more
HSTS = "max-age=31536000"
# Password checks at once: argon2id takes 64 MiB and a core each; more queue (without a thread).
HASH_SLOTS = max(1, min(2, os.cpu_count() or 1))
EVENTS_CHECK_S = 1.0  # how soon an open stream notices a revocation by this process
REVALIDATE_S = 5.0  # ... and one by another (`selfcheck fleet user remove` writes the store)
KEEPALIVE_FRAME_S = 15.0

CMD_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class Commander(Protocol):
    """Sends one command to one station; its id. Raises MessageError on bad arguments."""

    def __call__(self, site: str, station: str, name: str, args: dict[str, Any], by: str, *,
                 expires_s: float = ..., cmd_id: str | None = None) -> str: ...


Frame = tuple[str | None, bytes] | None


class _Client:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Frame] = asyncio.Queue(CLIENT_QUEUE)

    def put(self, item: Frame) -> None:  # in the event loop
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)


class Hub:
    """Fans station updates out to every connected SSE client; publish() from any thread."""

    def __init__(self) -> None:
        self._clients: set[_Client] = set()
        self._lock = threading.Lock()

    def subscribe(self) -> _Client:
        c = _Client(asyncio.get_running_loop())
        with self._lock:
            self._clients.add(c)
        return c

    def unsubscribe(self, c: _Client) -> None:
        with self._lock:
            self._clients.discard(c)

    def _send(self, item: Frame) -> None:
        with self._lock:
            clients = list(self._clients)
        for c in clients:
            try:
                c.loop.call_soon_threadsafe(c.put, item)
            except RuntimeError:  # its loop is closed: the server stopped
                self.unsubscribe(c)

    def publish(self, event: str, data: Any, site: str | None = None) -> None:
        if site is None and isinstance(data, dict):
            site = data.get("site")
        self._send((site, f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
                    .encode()))

    def close(self) -> None:
        self._send(None)
        with self._lock:
            self._clients = set()
class WebServer:
    def __init__(self, addr: tuple[str, int], state: FleetState, hub: Hub,
                 registry: CollectorRegistry, *, auth: Auth | None = None,
                 commander: Commander | None = None, names: dict[str, Any] | None = None,
                 details: Callable[[str, str], dict[str, Any]] | None = None,
                 stats: Any = None, persist: Callable[[Any], None] | None = None,
                 tls: tuple[str, str] | None = None, secure_cookie: bool = False,
                 updates: Path | None = None, central_db: Any = None) -> None:
        self.state, self.hub, self.registry, self.auth = state, hub, registry, auth
        self.commander, self.details, self.stats, self.persist = commander, details, stats, persist
        self.names = names or {"sites": {}, "stations": {}}
        # Without logins (tests, a loopback-only service) the page still needs a token.
        self.open_csrf = secrets.token_urlsafe(24)
        self.tls = tls is not None
        self.secure_cookie = secure_cookie or self.tls
        self.scheme = "https" if tls else "http"
        self._hash_slots: asyncio.Semaphore | None = None  # made in the server's loop
        self.updates = updates
        self.app = Starlette(routes=[
            Route("/", self.page), Route("/i18n.json", self.i18n),
            Route("/metrics", self.metrics), Route("/api/me", self.me),
            Route("/api/stations", self.stations), Route("/api/ils", self.ils),
            Route("/api/station", self.station), Route("/api/commands", self.commands),
            Route("/api/audit", self.audit), Route("/api/audit.csv", self.audit_csv),
            Route("/api/stats", self.stats_json),
            Route("/stats.csv", self.stats_csv), Route("/events", self.events),
            Route("/api/login", self.login, methods=["POST"]),
            Route("/api/logout", self.logout, methods=["POST"]),
            Route("/api/ack", self.post, methods=["POST"]),
            Route("/api/ack_bulk", self.post, methods=["POST"]),
            Route("/api/command", self.post, methods=["POST"]),
            Route("/api/releases", self.releases),
            # The stations' releases (read only, no login: see fleet/updates.py).
            *(updates_routes(updates) if updates is not None else []),
            # The stock-take reports, from the central's database (fleet/stocktake_page.py).
            *(stocktake_routes(self, central_db) if central_db is not None else []),
        ])
        # The socket is bound here so that the address (port 0: any) is known before start.
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(addr)
        self._sock.listen(128)
        self.server = uvicorn.Server(uvicorn.Config(
            self._headers(self.app), http="h11", ws="none", lifespan="off",
            log_level="warning", access_log=False, server_header=False, date_header=False,
            h11_max_incomplete_event_size=MAX_HEADERS, timeout_keep_alive=int(KEEP_ALIVE_S),
            limit_concurrency=MAX_CONNECTIONS, timeout_graceful_shutdown=2,
            ssl_certfile=tls[0] if tls else None, ssl_keyfile=tls[1] if tls else None))
        self._thread = threading.Thread(target=self._run, name="fleet-http", daemon=True)

    def _headers(self, app: Any) -> Any:
        """Headers every answer carries (HSTS only over TLS: a browser ignores it otherwise)."""
        extra = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                 (b"referrer-policy", b"no-referrer")]
        if self.tls:
            extra.append((b"strict-transport-security", HSTS.encode()))

        async def wrapped(scope: Any, receive: Any, send: Any) -> None:
            async def send_with(message: Any) -> None:
                if message["type"] == "http.response.start":
                    headers = [*message.get("headers", []), *extra]
                    # The cookie's Max-Age slides with the session's expiry in the store.
                    token = scope.get("state", {}).get("slide")
                    if token and not any(k == b"set-cookie" for k, _ in headers):
                        headers.append((b"set-cookie", self._cookie(
                            token, int(self.auth.session_s if self.auth else 0)).encode()))
                    message = {**message, "headers": headers}
                await send(message)
            await app(scope, receive, send_with)
        return wrapped

    @property
    def url(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"{self.scheme}://{host!s}:{port}"

    def _run(self) -> None:
        self.server.run(sockets=[self._sock])

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and self._thread.is_alive() \
                and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self) -> None:
        self.hub.close()
        self.server.should_exit = True
        self._thread.join(10)
        self._sock.close()

    # -- answers
    @staticmethod
    def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return JSONResponse(data, status, headers={"Cache-Control": "no-store",
                                                   **(headers or {})})

    @staticmethod
    def _text(body: str, status: int) -> Response:
        return Response(body, status, media_type="text/plain",
                        headers={"Cache-Control": "no-store"})

    # -- who is asking
    def _session(self, request: Request) -> Session | None:
        if self.auth is None:
            return Session(User("local", "admin"), self.open_csrf)
        token = request.cookies.get(COOKIE)
        s = self.auth.session(token)
        if s is not None:
            request.state.slide = token  # read by _headers: the answer renews the cookie
        return s

    def _need(self, request: Request, role: str = "viewer", site: str | None = None,
              action: str = "", target: str = "") -> Session | Response:
        """The session if it may do this; otherwise the refusal to send."""
        s = self._session(request)
        if s is None:
            return self._json({"error": "login"}, 401)
        if not s.user.may(role) or (site is not None and not s.user.sees(site)):
            if action and self.auth is not None:  # a refused action is an action too
                self.auth.audit(s.user.name, action, target or site or "", "forbidden",
                                addr=self._addr(request), site=site or "")
            return self._json({"error": "forbidden"}, 403)
        return s

    @staticmethod
    def _addr(request: Request) -> str:
        """The client's address as the socket has it (behind a reverse proxy: the proxy's)."""
        return request.client.host if request.client else ""

    @staticmethod
    def _site(request: Request) -> str | None:
        return request.query_params.get("site") or None

    @staticmethod
    def _visible(s: Session, site: str | None) -> Callable[[str], bool]:
        return lambda st: s.user.sees(st) and (site is None or st == site)

    # -- GET (sync: Starlette runs them in its thread pool, beside the store's locks)
    def page(self, request: Request) -> Response:
        return Response(PAGE.read_bytes(), media_type="text/html; charset=utf-8", headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'self'; style-src 'self' "
            "'unsafe-inline'; script-src 'self' 'unsafe-inline'; img-src 'self' data:"})

    def i18n(self, request: Request) -> Response:
        lang = request.query_params.get("lang", "vi")
        if lang not in LANGS:
            return self._text("lang: vi or en\n", 400)
        return self._json(catalog(lang))

    def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    def me(self, request: Request) -> Response:
        s = self._session(request)
        if s is None:
            return self._json({"error": "login"}, 401)
        return self._json({"user": s.user.info(), "csrf": s.csrf, "names": self._names(s),
                           "login": self.auth is not None})

    def _names(self, s: Session) -> dict[str, Any]:
        """The human names of the sites and stations this user sees, not every branch's."""
        sites = self.names.get("sites", {})
        stations = self.names.get("stations", {})
        return {"sites": {k: v for k, v in sites.items() if s.user.sees(k)},
                "stations": {k: v for k, v in stations.items()
                             if s.user.sees(k.partition("/")[0])}}

    def stations(self, request: Request) -> Response:
        s = self._need(request)
        if isinstance(s, Response):
            return s
        return self._json(self._rows(s, self._site(request)))

    def ils(self, request: Request) -> Response:
        s = self._need(request)  # the library system is every site's concern
        return s if isinstance(s, Response) else self._json(self.state.ils_rows())

    def station(self, request: Request) -> Response:
        site = self._site(request)
        if not site:
            return self._json({"error": "site"}, 400)
        s = self._need(request, "viewer", site)
        if isinstance(s, Response):
            return s
        return self._json(self._detail(site, request.query_params.get("station", "")))

    def releases(self, request: Request) -> Response:
        """The stations' releases this service serves, for the page's `update` form."""
        s = self._need(request, "operator")
        if isinstance(s, Response):
            return s
        from selfcheck.central.fleet.updates import releases

        return self._json(releases(self.updates) if self.updates is not None else [])

    def commands(self, request: Request) -> Response:
        s = self._need(request)
        if isinstance(s, Response):
            return s
        cmd_id = request.query_params.get("cmd_id")
        now = time.time()
        with self.state.lock:
            cmds = [dict(c) for c in ([self.state.commands[cmd_id]]
                                      if cmd_id in self.state.commands else [])] \
                if cmd_id else [dict(c) for c in self.state.commands.values()]
        for c in cmds:  # the service's tick marks them too; an answer is never behind it
            if actions.expired(c, now):
                c["state"] = actions.EXPIRED
        visible = self._visible(s, self._site(request))
        return self._json([c for c in cmds if visible(c["site"])][-200:])

    def audit(self, request: Request) -> Response:
        s = self._need(request, "admin", self._site(request))
        if isinstance(s, Response):
            return s
        if self.auth is None:
            return self._json([])
        q = dict(request.query_params)
        try:
            limit = int(q.get("limit") or AUDIT_PAGE)
            return self._json(self.auth.audit_rows(q, s.user.sites, limit))
        except ValueError as exc:
            return self._json({"error": str(exc)}, 400)

    def audit_csv(self, request: Request) -> Response:
        s = self._need(request, "admin", self._site(request))
        if isinstance(s, Response):
            return s
        try:
            body = self.auth.audit_csv(dict(request.query_params), s.user.sites) \
                if self.auth is not None else ""
        except ValueError as exc:
            return self._json({"error": str(exc)}, 400)
        name = time.strftime("fleet-audit-%Y%m%d-%H%M.csv", time.gmtime())
        return Response(body.encode("utf-8-sig"), media_type="text/csv; charset=utf-8",
                        headers={"Cache-Control": "no-store",
                                 "Content-Disposition": f'attachment; filename="{name}"'})

    def stats_json(self, request: Request) -> Response:
        return self._stats(request, csv=False)

    def stats_csv(self, request: Request) -> Response:
        return self._stats(request, csv=True)

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

    def _stats(self, request: Request, csv: bool) -> Response:
        s = self._need(request, "viewer", self._site(request))
        if isinstance(s, Response):
            return s
        if self.stats is None:
            return self._json({"error": "no_store"}, 404)
        q = {k: request.query_params.getlist(k) for k in request.query_params}
        sites = None if not s.user.sites else set(s.user.sites)
        try:
            if csv:
                table = (q.get("table") or ["periods"])[0]
                name, body = self.stats.csv(q, sites, table)
                return Response(body.encode("utf-8-sig"), media_type="text/csv; charset=utf-8",
                                headers={"Cache-Control": "no-store", "Content-Disposition":
                                         f'attachment; filename="{name}"'})
            return self._json(self.stats.report(q, sites))
        except ValueError as exc:
            return self._json({"error": str(exc)}, 400)

    # -- server-sent events
    async def events(self, request: Request) -> Response:
        site = self._site(request)
        s = await run_in_threadpool(self._need, request, "viewer", site)
        if isinstance(s, Response):
            return s
        client = self.hub.subscribe()  # before the snapshot, so no update falls in between
        snapshot = json.dumps(self._rows(s, site), ensure_ascii=False)
        ils = json.dumps(self.state.ils_rows(), ensure_ascii=False)
        return StreamingResponse(self._stream(request, s, site, client, snapshot, ils),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    async def _stream(self, request: Request, s: Session, site: str | None, client: _Client,
                      snapshot: str, ils: str) -> AsyncIterator[bytes]:
        visible = self._visible(s, site)
        token = request.cookies.get(COOKIE)
        revoked = self.auth.revoked if self.auth is not None else 0
        checked = sent = time.monotonic()
        try:
            yield f"event: snapshot\ndata: {snapshot}\n\nevent: ils\ndata: {ils}\n\n".encode()
            while True:
                try:
                    item: Frame = await asyncio.wait_for(client.queue.get(), EVENTS_CHECK_S)
                except TimeoutError:
                    item = (None, b"")
                now = time.monotonic()
                # A logout, a password change or a removal: is this session still on? (Checked
                # on a busy stream too: a stream of frames must not keep a revoked one open.)
                auth = self.auth
                if auth is not None and (auth.revoked != revoked or now - checked >= REVALIDATE_S):
                    revoked, checked = auth.revoked, now
                    # A look, not activity: watching does not keep an idle session on.
                    if await run_in_threadpool(partial(auth.session, token, touch=False)) is None:
                        return
                if item is None:
                    return
                frame_site, frame = item
                if not frame:
                    if now - sent < KEEPALIVE_FRAME_S:
                        continue
                    frame = b": keep-alive\n\n"
                if frame_site is None or visible(frame_site):
                    sent = now
                    yield frame
        finally:
            self.hub.unsubscribe(client)

    # -- POST
    def _refused(self, request: Request) -> Response | None:
        """The cross-site checks every POST passes before its body is looked at."""
        if request.headers.get("x-requested-with") != "fleet":
            return self._json({"error": "csrf"}, 403)
        origin = request.headers.get("origin")
        if origin is not None:
            o = urlparse(origin)
            if f"{o.scheme}://{o.netloc}" != f"{request.url.scheme}://" \
                                             f"{request.headers.get('host', '')}":
                return self._json({"error": "origin"}, 403)
        return None

    async def _body(self, request: Request) -> dict[str, Any] | Response:
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            return self._json({"error": "too_large"}, 413)
        raw = b""
        try:
            async for chunk in request.stream():
                raw += chunk
                if len(raw) > MAX_BODY:  # a chunked body has no length to check first
                    return self._json({"error": "too_large"}, 413)
        except ClientDisconnect:
            return self._json({"error": "json"}, 400)
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return self._json({"error": "json"}, 400)
        return data

    async def login(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        auth = self.auth
        if auth is None:
            return self._json({"error": "no_login"}, 404)
        name, password = str(body.get("name") or "")[:64], str(body.get("password") or "")
        addr = request.client.host if request.client else ""
        if self._hash_slots is None:
            self._hash_slots = asyncio.Semaphore(HASH_SLOTS)
        try:
            # The limits first (no hashing for those refused), then a slot for the check:
            # a crowd of logins waits here, without a thread or 64 MiB each.
            await run_in_threadpool(auth.may_try, name, addr)
            async with self._hash_slots:
                token, s = await run_in_threadpool(auth.login, name, password, None, addr)
        except LoginRefused as exc:
            await run_in_threadpool(partial(auth.audit, name or "?", "login", name or "?",
                                            exc.reason, addr=addr))
            status = {"locked": 423, "slow": 429}.get(exc.reason, 401)
            headers = {}
            if exc.until is not None and exc.reason == "slow":
                headers["Retry-After"] = str(max(1, int(exc.until - time.time() + 0.999)))
            # A client is told "locked" for both: the page shows when to try again.
            reason = "locked" if exc.reason == "slow" else exc.reason
            return self._json({"error": reason, "until": exc.until}, status, headers)
        await run_in_threadpool(partial(auth.audit, s.user.name, "login", s.user.name, "ok",
                                        addr=addr))
        return self._json({"user": s.user.info(), "csrf": s.csrf, "names": self._names(s),
                           "login": True},
                          headers={"Set-Cookie": self._cookie(token, int(auth.session_s))})

    async def logout(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        token = request.cookies.get(COOKIE)
        if self.auth is not None and token:
            s = await run_in_threadpool(self.auth.session, token)
            await run_in_threadpool(self.auth.logout, token)
            if s is not None:
                await run_in_threadpool(partial(self.auth.audit, s.user.name, "logout",
                                                s.user.name, "ok", addr=self._addr(request)))
        return self._json({"ok": True}, headers={"Set-Cookie": self._cookie("", 0)})

    async def post(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        return await run_in_threadpool(self._post, request, body)

    def _post(self, request: Request, body: dict[str, Any]) -> Response:
        path = request.url.path
        s = self._session(request)
        if s is None:
            return self._json({"error": "login"}, 401)
        if not hmac.compare_digest(request.headers.get("x-csrf-token", ""), s.csrf):
            return self._json({"error": "csrf"}, 403)
        site, station = str(body.get("site") or ""), str(body.get("station") or "")
        target = f"{site}/{station or '*'}"
        addr = self._addr(request)
        if path == "/api/ack" and body.get("bridge"):
            bridge, kind = str(body["bridge"])[:64], str(body.get("kind") or "")
            need = self._need(request, "operator", None, "ack", f"bridge {bridge} {kind}")
            if not isinstance(need, Response) and not need.user.everywhere:
                # The library system is every branch's: a branch's operator does not say
                # for all the others that it is seen to.
                if self.auth is not None:
                    self.auth.audit(s.user.name, "ack", f"bridge {bridge} {kind}", "forbidden",
                                    addr=addr)
                return self._json({"error": "forbidden"}, 403)
            return need if isinstance(need, Response) else self._ack_ils(s, bridge, kind, addr)
        if path == "/api/ack_bulk":
            kind = str(body.get("kind") or "")[:32]
            need = self._need(request, "operator", site or None, "ack_bulk",
                              f"{site or '*'}/* {kind or '*'}")
            return need if isinstance(need, Response) else self._ack_bulk(s, site, kind, addr)
        if path == "/api/ack":
            kind = str(body.get("kind") or "")
            need = self._need(request, "operator", site, "ack", f"{target} {kind}")
            return need if isinstance(need, Response) else self._ack(s, site, station, kind,
                                                                     addr)
        need = self._need(request, "operator", site, str(body.get("name") or "command")[:32],
                          target)
        return need if isinstance(need, Response) else self._command(s, site, body, addr)

    def _cookie(self, value: str, max_age: int) -> str:
        secure = "; Secure" if self.secure_cookie else ""
        return f"{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"

    def _ack(self, s: Session, site: str, station: str, kind: str, addr: str) -> Response:
        rec = self.state.ack(site, station, kind, s.user.name)
        result = "ok" if rec is not None else "not_active"
        if self.auth is not None:
            self.auth.audit(s.user.name, "ack", f"{site}/{station} {kind}", result, addr=addr,
                            site=site)
        if rec is None:
            return self._json({"error": result}, 409)
        with self.state.lock:
            row = rec.row(time.time())
            if self.persist is not None:
                self.persist(rec)
        self.hub.publish("station", row)
        return self._json(row)

    def _ack_bulk(self, s: Session, site: str, kind: str, addr: str) -> Response:
        """Every open alert the user sees, of `site` and/or of `kind` (at least one): one
        press for a storm of the same alert, one row in the audit log per site naming its
        stations (so an admin of one site reads what was done there, not at the others)."""
        if not site and not kind:
            return self._json({"error": "scope"}, 400)
        now = time.time()
        done: dict[str, list[str]] = {}  # by site
        rows: list[dict[str, Any]] = []
        with self.state.lock:
            for (si, st), rec in sorted(self.state.stations.items()):
                if not s.user.sees(si) or (site and si != site):
                    continue
                kinds = [k for k, a in rec.active.items()
                         if a.acked_at is None and (not kind or k == kind)]
                for k in kinds:
                    if rec.ack(k, s.user.name, now):
                        done.setdefault(si, []).append(f"{st} {k}")
                if kinds:
                    rec.changed = now
                    rows.append(rec.row(now))
                    if self.persist is not None:
                        self.persist(rec)
        if self.auth is not None:
            for si, acked in sorted(done.items()) or [(site, [])]:
                self.auth.audit(s.user.name, "ack_bulk", f"{si or '*'}/* {kind or '*'}",
                                "ok" if acked else "not_active",
                                json.dumps({"count": len(acked), "acked": acked},
                                           ensure_ascii=False), addr=addr, site=si)
        for row in rows:
            self.hub.publish("station", row)
        return self._json({"count": sum(map(len, done.values())), "rows": rows})

    def _ack_ils(self, s: Session, bridge: str, kind: str, addr: str) -> Response:
        done = self.state.ack_ils(bridge, kind, s.user.name)
        result = "ok" if done else "not_active"
        if self.auth is not None:
            self.auth.audit(s.user.name, "ack", f"bridge {bridge} {kind}", result, addr=addr)
        if not done:
            return self._json({"error": result}, 409)
        rows = self.state.ils_rows()
        self.hub.publish("ils", rows)
        return self._json(rows)

    def _command(self, s: Session, site: str, body: dict[str, Any], addr: str) -> Response:
        name = str(body.get("name") or "")
        args = body.get("args") or {}
        station = body.get("station")
        cmd_id = body.get("cmd_id")
        if self.commander is None or not isinstance(args, dict):
            return self._json({"error": "no_commands"}, 400)
        target = f"{site}/{station}" if station else f"{site}/*"

        def refused(field: str, reason: str) -> Response:
            if self.auth is not None:
                self.auth.audit(s.user.name, name[:32] or "command", target, "refused",
                                f"{field}: {reason}", addr=addr, site=site)
            return self._json({"error": "invalid", "field": field, "reason": reason}, 400)

        try:
            expires_s = float(body.get("expires_s") or actions.DEFAULT_EXPIRES_S)
        except (TypeError, ValueError):
            expires_s = -1.0
        if not actions.MIN_EXPIRES_S <= expires_s <= actions.MAX_EXPIRES_S:
            return refused("expires_s", f"{actions.MIN_EXPIRES_S:.0f} to "
                                        f"{actions.MAX_EXPIRES_S:.0f} seconds")
        if cmd_id is not None and (not station or not isinstance(cmd_id, str)
                                   or not CMD_ID.match(cmd_id)):
            return refused("cmd_id", "for one station: letters, digits and _.:- (at most 64)")
        now = time.time()
        with self.state.lock:
            recs = [rec for (si, st), rec in sorted(self.state.stations.items())
                    if si == site and (station is None or st == station)]
            # Sent all the same (it waits at the broker until it expires), but the operator
            # is told which stations will not act on it now.
            away = [{"station": r.station, "state": "offline" if r.online is False else "silent"}
                    for r in recs if r.online is False or r.silent(now)]
        if not recs:
            return self._json({"error": "unknown_station"}, 404)
        if station is None and len(recs) > 1 and body.get("confirm") != len(recs):
            # A whole site at once is asked twice, with the number of stations it stops:
            # `confirm` must be that number, so a site that grew meanwhile is asked again.
            return self._json({"error": "confirm", "count": len(recs), "away": away}, 409)
        sent = []
        for rec in recs:
            try:
                sent.append(self.commander(site, rec.station, name, args, s.user.name,
                                           expires_s=expires_s, cmd_id=cmd_id))
            except MessageError as exc:
                return refused(exc.field, exc.reason)
        if self.auth is not None:
            self.auth.audit(s.user.name, name, target, "sent", json.dumps(
                {"args": args, "cmd_ids": sent, "expires_s": expires_s,
                 "away": [a["station"] for a in away]}, ensure_ascii=False), addr=addr,
                site=site)
        return self._json({"cmd_ids": sent, "expires_at": now + expires_s, "away": away})
