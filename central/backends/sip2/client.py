"""SIP2 over TCP: site config, one connection, and a small pool with reconnect and keepalive.

All protocol decisions are in session.py and codec.py; this module only moves bytes, keeps
time and decides when a connection is no longer worth keeping.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from selfcheck.central.backend import BackendUnavailable, ils_number
from selfcheck.central.backends.sip2 import messages as m
from selfcheck.central.backends.sip2.codec import Message, Profile, Sip2Error, Sip2ProtocolError
from selfcheck.central.backends.sip2.session import Reply, Session, Write
from selfcheck.system.secrets import read_secret

log = logging.getLogger(__name__)


class Sip2Unavailable(Sip2Error, BackendUnavailable):
    """No answer from the ACS. `sent` says whether the request may have reached it: then the
    outcome is unknown and the caller must find out before doing it again."""

    def __init__(self, reason: str, *, sent: bool) -> None:
        super().__init__(reason)
        self.sent = sent


class Sip2Timeout(Sip2Unavailable):
    pass


class Sip2LoginRefused(Sip2Unavailable):
    """93 answered with a refusal: a wrong user, password or location, not a network fault."""


@dataclass(frozen=True)
class Sip2Config:
    host: str
    port: int
    institution: str
    user: str = ""
    password: str = ""
    location: str = ""  # CP of the login (93), and AP of check-ins unless checkin_location
    terminal_password: str = ""
    profile: Profile = field(default_factory=Profile)
    timeout_s: float = 5.0
    pool_size: int = 4
    keepalive_s: float = 30.0
    checkin_location: str = ""
    # The SIP2 language code in 23 and 63. SIP2 2.00 has none for Vietnamese: 000 (unknown)
    # lets the library system use its own default, where 001 would ask it for English.
    language: str = "000"
    # Where `password` came from (--ils-password-file): read again at every login, so that a
    # password fixed there is used at the next try, without a restart.
    password_file: Path | None = None

    def login_password(self) -> str:
        """The 93 login's password: the file's first line as it is now, else (no file, or
        one that cannot be read just now) the one read at start."""
        if self.password_file is None:
            return self.password
        try:
            return read_secret(self.password_file, "--ils-password-file")[0]
        except ValueError:
            return self.password

    @property
    def checkin_ap(self) -> str:
        return self.checkin_location or self.location

    @classmethod
    def parse(cls, url: str) -> Sip2Config:
        """`sip2://USER:PASSWORD@HOST:PORT?institution=ID` with optional `&KEY=VALUE`:
        location, checkin_location, encoding (utf-8, ascii or a single-byte code page),
        timeout, pool, keepalive, error_detection, terminal_password, language.
        Percent-encode reserved characters in the user, password and values (`#` as %23,
        `+` is taken as itself, not as a space). Raises ValueError naming the part that is
        wrong."""
        if "#" in url:
            # urlsplit would cut the URL there and the rest (a password's end, say) vanish.
            raise ValueError("ils: a '#' in the URL must be written %23 (in a password too)")
        parts = urlsplit(url)
        if parts.scheme != "sip2":
            raise ValueError(f"ils: scheme {parts.scheme!r} is not sip2://")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("ils: port is not a number (a ':', '/' or '?' in the password "
                             "must be percent-encoded: %3A, %2F, %3F)") from None
        if not parts.hostname or port is None:
            raise ValueError("ils: HOST:PORT is required")
        query: dict[str, str] = {}
        for pair in filter(None, parts.query.split("&")):
            key, _, value = pair.partition("=")
            # unquote, not unquote_plus: a '+' in a terminal password stays a '+'.
            query[unquote(key)] = unquote(value)
        known = {"institution", "location", "checkin_location", "encoding", "timeout", "pool",
                 "keepalive", "error_detection", "terminal_password", "language"}
        if unknown := set(query) - known:
            raise ValueError(f"ils: unknown parameter {sorted(unknown)[0]!r}")
        if not query.get("institution"):
            raise ValueError("ils: institution=ID is required")
        language = query.get("language", "000")
        if not (len(language) == 3 and language.isdigit()):
            raise ValueError("ils: language is a 3-digit SIP2 code (000 unknown, 001 English, "
                             "...)")

        try:
            profile = Profile(query.get("encoding", "utf-8").lower(),
                              error_detection=query.get("error_detection", "1") != "0")
        except ValueError as exc:
            raise ValueError(f"ils: {exc}") from None
        password = unquote(parts.password or "")
        for name, secret, fid in (("password", password, "CO"),
                                  ("terminal_password", query.get("terminal_password", ""),
                                   "AC")):
            try:
                profile.encode(secret, fid)
            except Sip2Error:
                raise ValueError(f"ils: the {name} has characters that encoding "
                                 f"{profile.name} cannot carry, and a password is never "
                                 "changed to fit: use encoding=utf-8 or a code page that has "
                                 "them") from None
        return cls(host=parts.hostname, port=port, institution=query["institution"],
                   user=unquote(parts.username or ""), password=password,
                   location=query.get("location", ""),
                   checkin_location=query.get("checkin_location", ""),
                   terminal_password=query.get("terminal_password", ""), profile=profile,
                   timeout_s=ils_number(query, "timeout", 5.0, 0.05, 300),
                   pool_size=int(ils_number(query, "pool", 4, 1, 64)),
                   keepalive_s=ils_number(query, "keepalive", 30.0, 0.1, 3600), language=language)

    def __str__(self) -> str:  # never the password
        return f"sip2://{self.user}@{self.host}:{self.port}?institution={self.institution}"


class Connection:
    """One logged-in TCP connection to the ACS."""

    def __init__(self, cfg: Sip2Config) -> None:
        self.cfg = cfg
        self.session = Session(cfg.profile)
        self.last_used = time.monotonic()
        try:
            self.sock = socket.create_connection((cfg.host, cfg.port), timeout=cfg.timeout_s)
        except OSError as exc:
            raise Sip2Unavailable(f"cannot connect to {cfg.host}:{cfg.port}: {exc}",
                                  sent=False) from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if cfg.user:
                if not m.login_ok(self.call(m.login(cfg.user, cfg.login_password(), cfg.location))):
                    raise Sip2LoginRefused("the ACS refused the login", sent=False)
            if not m.acs_online(self.call(m.sc_status())):
                raise Sip2Unavailable("the ACS says it is offline", sent=False)
        except Sip2Unavailable as exc:
            self.close()
            # A timeout stays one: its cure (timeout= in the URL) is not a down server's.
            kind = type(exc) if isinstance(exc, (Sip2LoginRefused, Sip2Timeout)) \
                else Sip2Unavailable
            raise kind(str(exc), sent=False) from None

    def call(self, msg: Message) -> Message:
        """Send one request and return its reply; on any failure the connection is closed."""
        deadline = time.monotonic() + self.cfg.timeout_s
        try:
            self.sock.sendall(self.session.send(msg))
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Sip2Timeout(f"no reply to {msg.command} in {self.cfg.timeout_s:g} s",
                                      sent=True)
                self.sock.settimeout(left)
                try:
                    data = self.sock.recv(65536)
                except TimeoutError:
                    continue  # the deadline check above raises
                if not data:
                    raise Sip2Unavailable(f"the ACS closed the connection during {msg.command}",
                                          sent=True)
                for event in self.session.receive(data):
                    if isinstance(event, Write):
                        self.sock.sendall(event.data)
                    elif isinstance(event, Reply):
                        self.last_used = time.monotonic()
                        return m.expect(event.message, msg)
        except Sip2Unavailable:
            self.close()
            raise
        except Sip2ProtocolError as exc:
            self.close()
            raise Sip2Unavailable(f"reply to {msg.command} out of spec: {exc}", sent=True
                                  ) from exc
        except OSError as exc:
            self.close()
            raise Sip2Unavailable(f"connection lost during {msg.command}: {exc}", sent=True
                                  ) from None

    def close(self) -> None:
        self.session.reset()
        try:
            self.sock.close()
        except OSError:
            pass


class Sip2Pool:
    """Up to `pool_size` connections, opened on demand, dropped on any failure, and kept alive
    with 99 (SC status) when idle: many ACS close a silent connection after a few minutes."""

    def __init__(self, cfg: Sip2Config,
                 connect: Callable[[Sip2Config], Connection] = Connection) -> None:
        self.cfg = cfg
        self._connect = connect
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(cfg.pool_size)
        self._stop = threading.Event()
        self._keepalive = threading.Thread(target=self._keep_alive, name="sip2-keepalive",
                                           daemon=True)
        self._keepalive.start()
        self.failures = 0
        self.reconnects = 0

    def call(self, msg: Message, *, idempotent: bool = False) -> Message:
        """The reply to `msg`. A request that does not change anything (idempotent) is tried
        once more on a fresh connection, since a pooled one may have been closed by the ACS."""
        with self._slots:
            for attempt in (1, 2):
                conn = self._take()
                try:
                    reply = conn.call(msg)
                except Sip2Unavailable as exc:
                    self.failures += 1
                    if attempt == 2 or not idempotent or isinstance(exc, Sip2Timeout):
                        raise
                    log.info("retrying %s on a new connection: %s", msg.command, exc)
                    continue
                with self._lock:
                    self._idle.append(conn)
                return reply
        raise AssertionError("unreachable")

    def _take(self) -> Connection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        self.reconnects += 1
        return self._connect(self.cfg)

    def _keep_alive(self) -> None:
        period = self.cfg.keepalive_s
        while not self._stop.wait(min(period / 2, 5.0)):
            now = time.monotonic()
            with self._lock:
                stale = [c for c in self._idle if now - c.last_used >= period]
                self._idle = [c for c in self._idle if c not in stale]
            for conn in stale:
                try:
                    conn.call(m.sc_status())
                except Sip2Unavailable as exc:
                    log.info("keepalive dropped a connection: %s", exc)
                    continue
                with self._lock:
                    self._idle.append(conn)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
