"""Koha's REST API over HTTP(S): site config, one pooled `requests` Session, authentication.

This module only moves requests and keeps the credentials fresh; what the answers mean is in
mapping.py. Retries: only GETs are sent again after a read error or a 502/503/504 (urllib3
Retry); a request that never reached the server (connect error) is retried whatever its
method. A POST that may have reached Koha is never resent here: the caller settles it.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from selfcheck.central.backend import BackendUnavailable, ils_number

log = logging.getLogger(__name__)

Auth = Literal["basic", "oauth2"]
# Availability confirmations a self-service station may accept for the reader (Koha's
# needsconfirmation keys); any other one needs staff and refuses the loan.
DEFAULT_CONFIRMS = frozenset({"PREVISSUE", "HIGHHOLDS", "RENTALCHARGE", "ADDITIONAL_MATERIALS"})
TOKEN_MARGIN_S = 30.0  # renew a token up to this long before Koha says it expires


class KohaUnavailable(BackendUnavailable):
    """No usable answer from Koha. `sent` says whether the request may have reached it (a
    POST whose outcome is then unknown)."""

    def __init__(self, reason: str, *, sent: bool) -> None:
        super().__init__(reason)
        self.sent = sent


class KohaAuthRefused(KohaUnavailable):
    """Koha refused our credentials (wrong password or API key, missing permission)."""


class KohaProtocolError(KohaUnavailable):
    """An answer that is not what the specification says (not JSON, wrong shape)."""


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class KohaConfig:
    base_url: str  # ends with /api/v1
    user: str = field(default="", repr=False)  # basic: userid; oauth2: client_id
    secret: str = field(default="", repr=False)  # basic: password; oauth2: client_secret
    auth: Auth = "basic"
    ca_file: str | None = None
    timeout_s: float = 5.0
    pool_size: int = 8
    library_id: str | None = None  # the checkout's library (branch code); Koha's default else
    loans: Literal["rest", "sip2"] = "rest"
    currency: str = "VND"
    confirms: frozenset[str] = DEFAULT_CONFIRMS

    @classmethod
    def parse(cls, url: str) -> KohaConfig:
        """`koha+https://USER[:PASSWORD]@HOST[:PORT][/PATH]` (HTTP Basic) or, with
        `?auth=oauth2`, CLIENT_ID[:SECRET]; optionally `&ca=FILE&timeout=S&pool=N&library=CODE
        &loans=rest|sip2&currency=VND&confirm=CODE,CODE`. Plain `koha+http://` only to this
        machine. Raises ValueError naming the part that is wrong, never the secret."""
        parts = urlsplit(url)
        if parts.scheme not in ("koha+https", "koha+http"):
            raise ValueError(f"ils: scheme {parts.scheme!r} is not koha+https://")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("ils: port is not a number") from None
        host = parts.hostname
        if not host:
            raise ValueError("ils: HOST is required")
        if parts.scheme == "koha+http" and not _loopback(host):
            raise ValueError("ils: koha+http:// only to this machine; use koha+https://")
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        known = {"auth", "ca", "timeout", "pool", "library", "loans", "currency", "confirm"}
        if unknown := set(query) - known:
            raise ValueError(f"ils: unknown parameter {sorted(unknown)[0]!r}")
        auth = query.get("auth", "basic")
        if auth not in ("basic", "oauth2"):
            raise ValueError("ils: auth must be basic or oauth2")
        loans = query.get("loans", "rest")
        if loans not in ("rest", "sip2"):
            raise ValueError("ils: loans must be rest or sip2")
        user, secret = unquote(parts.username or ""), unquote(parts.password or "")
        if not user:  # the secret may come from a file instead (selfcheck central)
            raise ValueError("ils: USER@ (or CLIENT_ID@ with auth=oauth2) is required")

        currency = query.get("currency", "VND").upper()
        if len(currency) != 3 or not currency.isalpha():
            raise ValueError("ils: currency must be an ISO 4217 code such as VND")
        path = parts.path.rstrip("/")
        if not path.endswith("/api/v1"):
            path += "/api/v1"
        netloc = host if port is None else f"{host}:{port}"
        if ":" in host:
            netloc = f"[{host}]" if port is None else f"[{host}]:{port}"
        scheme = parts.scheme.removeprefix("koha+")
        confirms = (frozenset(c.strip().upper() for c in query["confirm"].split(",") if c)
                    if "confirm" in query else DEFAULT_CONFIRMS)
        return cls(base_url=f"{scheme}://{netloc}{path}", user=user, secret=secret,
                   auth=auth,  # type: ignore[arg-type]
                   ca_file=query.get("ca") or None,
                   timeout_s=ils_number(query, "timeout", 5.0, 0.05, 300),
                   pool_size=int(ils_number(query, "pool", 8, 1, 64)),
                   library_id=query.get("library"),
                   loans=loans,  # type: ignore[arg-type]
                   currency=currency, confirms=confirms)

    def __str__(self) -> str:  # never the secret
        return f"koha+{self.base_url} (auth {self.auth}, loans via {self.loans})"


@dataclass
class KohaCounters:
    requests: int = 0  # HTTP requests sent (token requests included; urllib3 retries not)
    tokens: int = 0  # OAuth2 tokens fetched
    malformed: int = 0  # answers not matching the specification
    unavailable: int = 0  # no answer: down, timeout, 5xx, auth refused


class _NoQueries(logging.Filter):
    """urllib3 logs the URL of a request it retries, query included: `?cardnumber=...` is a
    card number. Cut every query from its records."""

    QUERY = re.compile(r"\?[^\s'\")]*")

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.QUERY.sub("?...", record.getMessage())
        record.args = ()
        return True


def _guard_urllib3_logs() -> None:
    for name in ("urllib3.connectionpool", "urllib3.util.retry"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoQueries) for f in logger.filters):
            logger.addFilter(_NoQueries())


class KohaClient:
    """One Session (its pool sized for the backend's worker threads), thread safe."""

    def __init__(self, cfg: KohaConfig, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        _guard_urllib3_logs()
        self.counters = KohaCounters()
        self.session = requests.Session()
        retry = Retry(total=3, connect=2, read=1, status=2, backoff_factor=0.05,
                      status_forcelist=(502, 503, 504), allowed_methods=frozenset({"GET"}),
                      raise_on_status=False, respect_retry_after_header=False)
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=cfg.pool_size,
                              max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.verify = cfg.ca_file or True
        # No proxies, netrc or CA bundles from the environment: the URL says it all, and
        # reading the environment on every request costs more than the request on a LAN.
        self.session.trust_env = False
        self.session.headers.update({"Accept": "application/json"})
        if cfg.auth == "basic":
            # UTF-8, not requests' latin-1: Vietnamese passwords are common.
            self.session.auth = (cfg.user.encode(), cfg.secret.encode())  # type: ignore[assignment]
        self._token: str | None = None
        self._token_until = 0.0
        self._token_lock = threading.Lock()

    def close(self) -> None:
        self.session.close()

    # -- OAuth2 client credentials
    def _bearer(self, *, renew: bool = False, stale: str | None = None) -> str:
        with self._token_lock:
            expired = self.clock() >= self._token_until
            if self._token is None or expired or (renew and self._token == stale):
                self._token, self._token_until = self._fetch_token()
            return self._token

    def _fetch_token(self) -> tuple[str, float]:
        started = self.clock()
        r = self._send("POST", "/oauth/token", data={
            "grant_type": "client_credentials", "client_id": self.cfg.user,
            "client_secret": self.cfg.secret}, auth=False)
        if r.status_code != 200:
            self.counters.unavailable += 1
            raise KohaAuthRefused(f"Koha refused the API key (HTTP {r.status_code}); check "
                                  "client_id/secret and RESTOAuth2ClientCredentials", sent=False)
        body = self._json(r)
        token, lifetime = (body.get("access_token"), body.get("expires_in")
                           ) if isinstance(body, dict) else (None, None)
        if not isinstance(token, str) or not token or not isinstance(lifetime, int):
            self.counters.malformed += 1
            raise KohaProtocolError("token answer without access_token/expires_in", sent=False)
        self.counters.tokens += 1
        return token, started + max(0.0, lifetime - min(TOKEN_MARGIN_S, lifetime / 10))

    # -- requests
    def _send(self, method: str, path: str, *, auth: bool = True,
              headers: dict[str, str] | None = None, **kw: Any) -> requests.Response:
        hdrs = dict(headers or {})
        if auth and self.cfg.auth == "oauth2":
            hdrs["Authorization"] = "Bearer " + self._bearer()
        self.counters.requests += 1
        try:
            return self.session.request(method, self.cfg.base_url + path, headers=hdrs,
                                        timeout=self.cfg.timeout_s, auth=None if auth else
                                        _NoAuth(), **kw)
        except (requests.ConnectionError, requests.Timeout) as exc:
            self.counters.unavailable += 1
            # Nothing reached Koha when the connection itself failed; anything else after a
            # POST went out may have been applied.
            sent = method != "GET" and not isinstance(
                exc, requests.ConnectTimeout | requests.exceptions.SSLError) and \
                "NewConnectionError" not in repr(exc)
            raise KohaUnavailable(f"{method} {path.split('?')[0]}: {type(exc).__name__}",
                                  sent=sent) from None

    def request(self, method: str, path: str, *, expect: tuple[int, ...],
                **kw: Any) -> tuple[int, Any]:
        """(status, JSON body or None) for an expected status; KohaUnavailable for 5xx and
        auth failures, KohaProtocolError for anything else unexpected or unreadable."""
        r = self._send(method, path, **kw)
        if r.status_code == 401 and self.cfg.auth == "oauth2":
            # The token expired early or Koha was restarted: one new token, one more try.
            # A 401 means the request was not processed, so even a POST may go again.
            stale = r.request.headers.get("Authorization", "").removeprefix("Bearer ")
            self._bearer(renew=True, stale=stale)
            r = self._send(method, path, **kw)
        if r.status_code in (401, 403) and r.status_code not in expect:
            self.counters.unavailable += 1
            raise KohaAuthRefused(f"Koha refused the credentials for {method} "
                                  f"{_route(path)} (HTTP {r.status_code})", sent=False)
        if r.status_code >= 500:
            self.counters.unavailable += 1
            raise KohaUnavailable(f"{method} {_route(path)}: HTTP {r.status_code}",
                                  sent=method != "GET")
        if r.status_code not in expect:
            self.counters.malformed += 1
            raise KohaProtocolError(f"{method} {_route(path)}: unexpected HTTP "
                                    f"{r.status_code}", sent=method != "GET")
        if r.status_code == 204 or not r.content:
            return r.status_code, None
        return r.status_code, self._json(r, sent=method != "GET")

    def _json(self, r: requests.Response, *, sent: bool = False) -> Any:
        try:
            return r.json()
        except ValueError:
            self.counters.malformed += 1
            raise KohaProtocolError(f"{r.request.method} {_route(r.request.path_url)}: "
                                    "answer is not JSON", sent=sent) from None

    def get(self, path: str, *, expect: tuple[int, ...] = (200,), **kw: Any) -> tuple[int, Any]:
        return self.request("GET", path, expect=expect, **kw)

    def post(self, path: str, *, expect: tuple[int, ...], **kw: Any) -> tuple[int, Any]:
        return self.request("POST", path, expect=expect, **kw)


class _NoAuth(requests.auth.AuthBase):
    """The token request carries its own credentials in the form, not Basic auth."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r


def _route(path: str) -> str:
    """The path without its query and ids, for logs: no card numbers or barcodes."""
    return "/".join("{id}" if p.isdigit() else p for p in path.split("?")[0].split("/"))
