"""Who may use the operators' page: users with argon2id password hashes, sessions with an
idle expiry that are revoked on logout, password change, removal or disabling, limits on
failed logins, roles limited to sites, and the audit log.

Failed logins are limited three ways, none of which locks the real user out from elsewhere:
a name and an address together are locked after a few failures (the classic lockout, but only
for that address); a name is slowed (one try per growing interval, at most a minute) however
many addresses try it; an address is slowed however many names it tries. The limits are kept
in memory by name, whether or not the name exists, so the answers tell no one which do."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, delete, insert, select, update

from selfcheck.central.fleet.schema import fleet_audit, fleet_sessions, fleet_users

# The same three levels as the broker's roles (deploy/mosquitto/roles.example): a viewer
# watches, an operator also acknowledges and sends commands, an admin also reads the audit
# log. Each may be limited to sites, as a broker operator is.
ROLES = ("viewer", "operator", "admin")
MAX_FAILURES = 5
LOCK_S = 15 * 60.0
SESSION_S = 60 * 60.0  # idle: every request moves it on
MIN_PASSWORD = 10
ADDR_FAILURES = 20  # failures from one address (any names) before it is slowed
SLOW_MAX_S = 60.0  # the longest wait between tries of a slowed name or address
HASH_SLOTS = max(1, min(2, os.cpu_count() or 1))  # argon2id: 64 MiB and a core per check
DISABLED = "!"  # a password hash starting with this never matches
AUDIT_PAGE = 100  # rows of the audit log per page (the page asks for the next ones)
AUDIT_PAGE_MAX = 1000
AUDIT_CSV_MAX = 100_000  # one export: beyond this, narrow the filter
AUDIT_COLUMNS = ("id", "at", "user", "addr", "action", "site", "target", "result", "detail")


class LoginRefused(Exception):
    def __init__(self, reason: str, until: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason  # "bad" (name or password), "locked" or "slow" (try at until)
        self.until = until


@dataclass(frozen=True)
class User:
    name: str
    role: str
    sites: frozenset[str] = frozenset()  # empty: every site

    def sees(self, site: str) -> bool:
        return not self.sites or site in self.sites

    @property
    def everywhere(self) -> bool:
        """Not limited to sites: may act on what concerns every site (the library system)."""
        return not self.sites

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "sites": sorted(self.sites)}


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str


def _h(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Auth:
    def __init__(self, engine: Engine, *, session_s: float = SESSION_S,
                 max_failures: int = MAX_FAILURES, lock_s: float = LOCK_S) -> None:
        self.engine = engine
        self.hasher = PasswordHasher()
        self.session_s, self.max_failures, self.lock_s = session_s, max_failures, lock_s
        # A hash to verify against when the name is unknown, so that the answer takes as long.
        self._dummy = self.hasher.hash(secrets.token_hex(8))
        self._lock = threading.Lock()
        self._hashing = threading.BoundedSemaphore(HASH_SLOTS)
        # key -> (failures, last failure); keys ("n", name), ("a", addr), ("na", name, addr)
        self._failures: dict[tuple[str, ...], tuple[int, float]] = {}
        self.revoked = 0  # raised on every revocation: open streams check their session

    def _verify(self, pw_hash: str, password: str) -> bool:
        with self._hashing:
            try:
                return self.hasher.verify(pw_hash, password)
            except (VerificationError, InvalidHashError):
                return False

    def _hash(self, password: str) -> str:
        with self._hashing:
            return self.hasher.hash(password)

    def _revoke(self, conn: Any, name: str) -> None:
        conn.execute(delete(fleet_sessions).where(fleet_sessions.c.user == name))
        self.revoked += 1

    # -- users
    def add_user(self, name: str, password: str, role: str, sites: list[str] | None = None,
                 *, replace: bool = False, by: str = "cli") -> None:
        if role not in ROLES:
            raise ValueError(f"role {role!r}: one of {', '.join(ROLES)}")
        if not name or len(name) > 64 or not name.replace("-", "").replace(".", "").isalnum():
            raise ValueError(f"name {name!r}: letters, digits, '-' and '.', at most 64")
        if len(password) < MIN_PASSWORD:
            raise ValueError(f"password: at least {MIN_PASSWORD} characters")
        row = dict(name=name, pw_hash=self._hash(password), role=role,
                   sites=",".join(sorted(set(sites or []))), failures=0, locked_until=None,
                   created=time.time())
        with self.engine.begin() as conn:
            exists = conn.execute(select(fleet_users.c.name).where(
                fleet_users.c.name == name)).first()
            if exists and not replace:
                raise ValueError(f"user {name!r} exists (use --replace to change it)")
            conn.execute(delete(fleet_users).where(fleet_users.c.name == name))
            conn.execute(insert(fleet_users), [row])
            self._revoke(conn, name)  # a changed password or role: log in again
            self._audit(conn, by, "user_change" if exists else "user_add", name, "ok",
                        json.dumps({"role": role, "sites": sorted(set(sites or []))}))

    def set_password(self, name: str, password: str, *, by: str = "cli") -> bool:
        """A new password, role and sites kept; a disabled user is enabled again."""
        if len(password) < MIN_PASSWORD:
            raise ValueError(f"password: at least {MIN_PASSWORD} characters")
        pw_hash = self._hash(password)
        with self.engine.begin() as conn:
            done = conn.execute(update(fleet_users).where(fleet_users.c.name == name).values(
                pw_hash=pw_hash, failures=0, locked_until=None)).rowcount > 0
            if done:
                self._revoke(conn, name)
                self._audit(conn, by, "user_password", name, "ok")
            return done

    def remove_user(self, name: str, *, by: str = "cli") -> bool:
        with self.engine.begin() as conn:
            self._revoke(conn, name)
            done = conn.execute(delete(fleet_users).where(
                fleet_users.c.name == name)).rowcount > 0
            if done:
                self._audit(conn, by, "user_remove", name, "ok")
            return done

    def disable_user(self, name: str, *, by: str = "cli") -> bool:
        """Keeps the user (and the audit log's names) but no password matches until `add
        --replace` or `password` gives a new one."""
        with self.engine.begin() as conn:
            self._revoke(conn, name)
            done = conn.execute(update(fleet_users).where(fleet_users.c.name == name).values(
                pw_hash=DISABLED + fleet_users.c.pw_hash)).rowcount > 0
            if done:
                self._audit(conn, by, "user_disable", name, "ok")
            return done

    def users(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(fleet_users.c.name, fleet_users.c.role,
                                       fleet_users.c.sites, fleet_users.c.locked_until,
                                       fleet_users.c.pw_hash)).mappings().all()
        return [{**{k: v for k, v in r.items() if k != "pw_hash"},
                 "disabled": r["pw_hash"].startswith(DISABLED)} for r in rows]

    def has_users(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(fleet_users.c.name).limit(1)).first() is not None

    # -- limits on failed logins
    def _wait(self, key: tuple[str, ...], free: int, now: float) -> float | None:
        """When the next try may come, if `key` is over its free failures."""
        n, last = self._failures.get(key, (0, 0.0))
        if n < free:
            return None
        until = last + min(2.0 ** (n - free), SLOW_MAX_S)
        return until if until > now else None

    def may_try(self, name: str, addr: str = "", now: float | None = None) -> None:
        """Raises LoginRefused ("locked" or "slow") if a try now would be refused anyway:
        checked before the password is hashed, so a refused crowd costs nothing."""
        now = time.time() if now is None else now
        with self._lock:
            n, last = self._failures.get(("na", name, addr), (0, 0.0))
            if n >= self.max_failures and last + self.lock_s > now:
                raise LoginRefused("locked", last + self.lock_s)
            for until in (self._wait(("n", name), self.max_failures, now),
                          self._wait(("a", addr), ADDR_FAILURES, now)):
                if until is not None:
                    raise LoginRefused("slow", until)

    def _failed(self, name: str, addr: str, now: float) -> LoginRefused:
        with self._lock:
            keys: list[tuple[str, ...]] = [("n", name), ("a", addr), ("na", name, addr)]
            for key in keys:
                n, last = self._failures.get(key, (0, 0.0))
                if key[0] == "na" and last + self.lock_s <= now:
                    n = 0  # a lock that ran out starts again from nothing
                self._failures[key] = (n + 1, now)
            if len(self._failures) > 100_000:  # a spray of names: forget the oldest half
                for key, _ in sorted(self._failures.items(), key=lambda kv: kv[1][1])[:50_000]:
                    del self._failures[key]
            locked = self._failures[("na", name, addr)][0] >= self.max_failures
        # The stored count is only a record (`user list`); one UPDATE, so none is lost.
        with self.engine.begin() as conn:
            conn.execute(update(fleet_users).where(fleet_users.c.name == name).values(
                failures=fleet_users.c.failures + 1,
                locked_until=now + self.lock_s if locked else fleet_users.c.locked_until))
        return LoginRefused("locked", now + self.lock_s) if locked else LoginRefused("bad")

    # -- sessions
    def login(self, name: str, password: str, now: float | None = None,
              addr: str = "") -> tuple[str, Session]:
        now = time.time() if now is None else now
        self.may_try(name, addr, now)
        with self.engine.connect() as conn:
            row = conn.execute(select(fleet_users).where(
                fleet_users.c.name == name)).mappings().first()
        # An unknown or disabled name is checked against a dummy hash: the same work, the
        # same time, the same answer.
        usable = row is not None and not row["pw_hash"].startswith(DISABLED)
        ok = self._verify(row["pw_hash"] if usable and row else self._dummy, password) \
            and usable
        if not ok or row is None:
            raise self._failed(name, addr, now)
        with self._lock:
            for key in (("n", name), ("na", name, addr)):
                self._failures.pop(key, None)
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        with self.engine.begin() as conn:
            conn.execute(update(fleet_users).where(fleet_users.c.name == name).values(
                failures=0, locked_until=None))
            conn.execute(delete(fleet_sessions).where(fleet_sessions.c.expires < now))
            conn.execute(insert(fleet_sessions), [dict(
                token_hash=_h(token), user=name, csrf=csrf, expires=now + self.session_s)])
        return token, Session(self._user(row), csrf)

    @staticmethod
    def _user(row: Any) -> User:
        return User(row["name"], row["role"],
                    frozenset(s for s in (row["sites"] or "").split(",") if s))

    def session(self, token: str | None, now: float | None = None, *,
                touch: bool = True) -> Session | None:
        """The session of `token` if still on; `touch` (a request, not a stream's check)
        moves its idle expiry on."""
        if not token:
            return None
        now = time.time() if now is None else now
        j = fleet_sessions.join(fleet_users, fleet_users.c.name == fleet_sessions.c.user)
        with self.engine.begin() as conn:
            row = conn.execute(select(fleet_users, fleet_sessions.c.csrf,
                                      fleet_sessions.c.expires).select_from(j).where(
                fleet_sessions.c.token_hash == _h(token))).mappings().first()
            if row is None or row["expires"] < now:
                return None
            if touch and row["expires"] - now < self.session_s - 60:  # at most once a minute
                conn.execute(update(fleet_sessions).where(
                    fleet_sessions.c.token_hash == _h(token)).values(
                    expires=now + self.session_s))
        return Session(self._user(row), row["csrf"])

    def logout(self, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(fleet_sessions).where(fleet_sessions.c.token_hash == _h(token)))
        self.revoked += 1

    # -- the audit log
    @staticmethod
    def _audit(conn: Any, user: str, action: str, target: str, result: str,
               detail: str | None = None, addr: str = "", site: str = "") -> None:
        conn.execute(insert(fleet_audit), [dict(
            at=time.time(), user=user[:64], action=action[:32], target=target[:200],
            result=result[:32], detail=detail, addr=addr[:64] or None, site=site[:64] or None)])

    def audit(self, user: str, action: str, target: str, result: str,
              detail: str | None = None, *, addr: str = "", site: str = "") -> None:
        with self.engine.begin() as conn:
            self._audit(conn, user, action, target, result, detail, addr, site)

    @staticmethod
    def _audit_where(q: dict[str, str], sites: frozenset[str]) -> list[Any]:
        """The filter of the audit log: user, action, site, a time range (`from`, `to`,
        seconds since the epoch) and, for an admin limited to sites, only theirs: a row of no
        site (a login and its address, a user change, the library system's alert) is about
        every branch, so only an admin of every site reads it."""
        c = fleet_audit.c
        where: list[Any] = []
        if q.get("user"):
            where.append(c.user == q["user"])
        if q.get("action"):
            where.append(c.action == q["action"])
        if q.get("site"):
            where.append(c.site == q["site"])
        for key, op in (("from", c.at.__ge__), ("to", c.at.__lt__)):
            if q.get(key):
                try:
                    where.append(op(float(q[key])))
                except ValueError:
                    raise ValueError(f"{key}: seconds since the epoch") from None
        if sites:
            where.append(c.site.in_(sorted(sites)))
        return where

    def audit_rows(self, q: dict[str, str] | None = None, sites: frozenset[str] = frozenset(),
                   limit: int = AUDIT_PAGE) -> list[dict[str, Any]]:
        """The newest rows matching `q` first; `before` (an id) pages on to older ones."""
        q = q or {}
        where = self._audit_where(q, sites)
        if q.get("before"):
            try:
                where.append(fleet_audit.c.id < int(q["before"]))
            except ValueError:
                raise ValueError("before: a row id") from None
        limit = max(1, min(limit, AUDIT_PAGE_MAX))
        with self.engine.connect() as conn:
            rows = conn.execute(select(fleet_audit).where(*where)
                                .order_by(fleet_audit.c.id.desc()).limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    def audit_csv(self, q: dict[str, str], sites: frozenset[str] = frozenset()) -> str:
        """The rows matching `q`, oldest first, as CSV (times in UTC, ISO 8601)."""
        where = self._audit_where(q, sites)
        with self.engine.connect() as conn:
            rows = conn.execute(select(fleet_audit).where(*where)
                                .order_by(fleet_audit.c.id.desc()).limit(AUDIT_CSV_MAX)
                                ).mappings().all()
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(AUDIT_COLUMNS)
        for r in reversed(rows):
            at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r["at"]))
            # A cell a spreadsheet would run as a formula is quoted as text.
            w.writerow([_cell(at if k == "at" else r[k]) for k in AUDIT_COLUMNS])
        return out.getvalue()


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
