"""Who may use the operators' page: users with argon2id password hashes, sessions with an
idle expiry, a lockout after repeated failures, roles limited to sites, and the audit log."""

from __future__ import annotations

import hashlib
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


class LoginRefused(Exception):
    def __init__(self, reason: str, until: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason  # "bad" (name or password) or "locked"
        self.until = until


@dataclass(frozen=True)
class User:
    name: str
    role: str
    sites: frozenset[str] = frozenset()  # empty: every site

    def sees(self, site: str) -> bool:
        return not self.sites or site in self.sites

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

    # -- users
    def add_user(self, name: str, password: str, role: str, sites: list[str] | None = None,
                 *, replace: bool = False) -> None:
        if role not in ROLES:
            raise ValueError(f"role {role!r}: one of {', '.join(ROLES)}")
        if not name or len(name) > 64 or not name.replace("-", "").replace(".", "").isalnum():
            raise ValueError(f"name {name!r}: letters, digits, '-' and '.', at most 64")
        if len(password) < MIN_PASSWORD:
            raise ValueError(f"password: at least {MIN_PASSWORD} characters")
        row = dict(name=name, pw_hash=self.hasher.hash(password), role=role,
                   sites=",".join(sorted(set(sites or []))), failures=0, locked_until=None,
                   created=time.time())
        with self.engine.begin() as conn:
            exists = conn.execute(select(fleet_users.c.name).where(
                fleet_users.c.name == name)).first()
            if exists and not replace:
                raise ValueError(f"user {name!r} exists (use --replace to change it)")
            conn.execute(delete(fleet_users).where(fleet_users.c.name == name))
            conn.execute(insert(fleet_users), [row])

    def users(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(fleet_users.c.name, fleet_users.c.role,
                                       fleet_users.c.sites, fleet_users.c.locked_until)
                                ).mappings().all()
        return [dict(r) for r in rows]

    def has_users(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(fleet_users.c.name).limit(1)).first() is not None

    # -- sessions
    def login(self, name: str, password: str, now: float | None = None) -> tuple[str, Session]:
        now = time.time() if now is None else now
        with self.engine.connect() as conn:
            row = conn.execute(select(fleet_users).where(
                fleet_users.c.name == name)).mappings().first()
        if row is None:
            try:
                self.hasher.verify(self._dummy, password)
            except VerificationError:
                pass
            raise LoginRefused("bad")
        if row["locked_until"] and row["locked_until"] > now:
            raise LoginRefused("locked", row["locked_until"])
        try:
            self.hasher.verify(row["pw_hash"], password)
        except (VerificationError, InvalidHashError):
            failures = row["failures"] + 1
            until = now + self.lock_s if failures >= self.max_failures else None
            with self.engine.begin() as conn:
                conn.execute(update(fleet_users).where(fleet_users.c.name == name).values(
                    failures=0 if until else failures, locked_until=until))
            raise LoginRefused("locked" if until else "bad", until) from None
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

    def session(self, token: str | None, now: float | None = None) -> Session | None:
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
            if row["expires"] - now < self.session_s - 60:  # move it on, at most once a minute
                conn.execute(update(fleet_sessions).where(
                    fleet_sessions.c.token_hash == _h(token)).values(
                    expires=now + self.session_s))
        return Session(self._user(row), row["csrf"])

    def logout(self, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(fleet_sessions).where(fleet_sessions.c.token_hash == _h(token)))

    # -- the audit log
    def audit(self, user: str, action: str, target: str, result: str,
              detail: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(fleet_audit), [dict(at=time.time(), user=user, action=action,
                                                    target=target, result=result,
                                                    detail=detail)])

    def audit_rows(self, limit: int = 200) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(fleet_audit).order_by(fleet_audit.c.id.desc())
                                .limit(limit)).mappings().all()
        return [dict(r) for r in rows]
