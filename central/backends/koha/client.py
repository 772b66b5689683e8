"""Koha's REST API over HTTP(S): site config, one pooled `requests` Session, authentication.

This module only moves requests and keeps the credentials fresh; what the answers mean is in
mapping.py. Retries: only GETs are sent again after a read error or a 502/503/504 (urllib3
Retry); a request that never reached the server (connect error) is retried whatever its
method. A POST that may have reached Koha is never resent here: the caller settles it.

Two of Koha's habits every caller must know (Koha/REST/Plugin/Query.pm, Objects.pm):
a filtered list matches `LIKE '%value%'` unless `_match=exact` (patron 12's checkouts would
include those of 112 and 120), and it pages by 20 unless `_per_page=-1`: `get_all` sends
both. And 401/403 are about us (the API user, its password, its permissions, the branch in
`x-koha-library`), never about a patron: KohaAuthRefused, except a 403 that carries the
operation's own refusal (`forbidden`).
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
# Koha's needsconfirmation keys the central accepts for the reader without asking: only what
# Koha's own self-check (C4/SIP/ILS/Transaction/Checkout.pm) lets through with a message and
# no change to the loan. HIGHHOLDS is not among them: SIP2 shortens the loan for it, but
# POST /checkouts cannot (AddIssue without a due date), so a desk must lend it. RENTALCHARGE
# is the reader's own to accept on screen (Koha: "rental must be confirmed by the borrower"),
# never the site's. mapping.py says what every other key becomes.
DEFAULT_CONFIRMS = frozenset({"PREVISSUE"})
READER_CONFIRMS = frozenset({"RENTALCHARGE"})
TOKEN_MARGIN_S = 30.0  # renew a token up to this long before Koha says it expires
MAX_PAGES = 1000  # of one list, should a Koha page it in spite of _per_page=-1
_BRANCH = re.compile(r"^[A-Za-z0-9_-]{1,10}$")  # Koha's branchcode: varchar(10)


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
    library_id: str | None = None  # branch code of the sites `branches` does not name
    loans: Literal["rest", "sip2"] = "rest"
    currency: str = "VND"
    confirms: frozenset[str] = DEFAULT_CONFIRMS
    branches: tuple[tuple[str, str], ...] = ()  # (station site, Koha branch code)

    def branch(self, site: str) -> str:
        """The Koha branch a station's site lends at (sent as x-koha-library: Koha records a
        REST loan there, not at a library_id in the body): from `branches`, else `library`,
        else the site's code in capitals."""
        return dict(self.branches).get(site) or self.library_id or site.upper()

    @classmethod
    def parse(cls, url: str) -> KohaConfig:
        """`koha+https://USER[:PASSWORD]@HOST[:PORT][/PATH]` (HTTP Basic) or, with
        `?auth=oauth2`, CLIENT_ID[:SECRET]; optionally `&ca=FILE&timeout=S&pool=N&library=CODE
        &branches=SITE:CODE,SITE:CODE&loans=rest|sip2&currency=VND&confirm=CODE,CODE`. Plain
        `koha+http://` only to this machine. Raises ValueError naming the part that is wrong,
        never the secret."""
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
        known = {"auth", "ca", "timeout", "pool", "library", "loans", "currency", "confirm",
                 "branches"}
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
        confirms = (frozenset(c.strip().upper() for c in query["confirm"].split(",")
                              if c.strip())
                    if "confirm" in query else DEFAULT_CONFIRMS)
        if reader := confirms & READER_CONFIRMS:
            raise ValueError(f"ils: confirm={min(reader)} is the reader's to accept on the "
                             "screen, not the site's")
        library = query.get("library") or None
        if library is not None and not _BRANCH.match(library):
            raise ValueError("ils: library must be a Koha branch code (letters, digits, _ -)")
        return cls(base_url=f"{scheme}://{netloc}{path}", user=user, secret=secret,
                   auth=auth,  # type: ignore[arg-type]
                   ca_file=query.get("ca") or None,
                   timeout_s=ils_number(query, "timeout", 5.0, 0.05, 300),
                   pool_size=int(ils_number(query, "pool", 8, 1, 64)),
                   library_id=library,
                   loans=loans,  # type: ignore[arg-type]
                   currency=currency, confirms=confirms,
                   branches=_branches(query.get("branches", "")))

    def __str__(self) -> str:  # never the secret
        return f"koha+{self.base_url} (auth {self.auth}, loans via {self.loans})"


def _branches(text: str) -> tuple[tuple[str, str], ...]:
    """`site1:CODE1,site2:CODE2` (station sites as in the topics) as pairs."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        site, sep, code = (x.strip() for x in part.partition(":"))
        if not sep or not re.fullmatch(r"[a-z0-9-]{1,64}", site) or not _BRANCH.match(code):
            raise ValueError("ils: branches must read site:CODE,site:CODE (a station site, "
                             "then its Koha branch code)")
        if site in out:
            raise ValueError(f"ils: branches names site {site!r} twice")
        out[site] = code
    return tuple(sorted(out.items()))


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
        self._count_lock = threading.Lock()  # the backend sends from several threads at once
        self.session = requests.Session()
        retry = Retry(total=3, connect=2, read=1, status=2, backoff_factor=0.05,
                      status_forcelist=(502, 503, 504), allowed_methods=frozenset({"GET"}),
                      raise_on_status=False, respect_retry_after_header=False)
        # pool_block: never more than pool_size connections to Koha (the bridge's workers and
        # the account's requests share them); a thread waits for one rather than opening,
        # and then dropping, one more (a TLS handshake each time).
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=cfg.pool_size,
                              max_retries=retry, pool_block=True)
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
            self._count("unavailable")
            raise KohaAuthRefused(f"Koha refused the API key (HTTP {r.status_code}); check "
                                  "client_id/secret and RESTOAuth2ClientCredentials", sent=False)
        body = self._json(r)
        token, lifetime = (body.get("access_token"), body.get("expires_in")
                           ) if isinstance(body, dict) else (None, None)
        if not isinstance(token, str) or not token or not isinstance(lifetime, int):
            self._count("malformed")
            raise KohaProtocolError("token answer without access_token/expires_in", sent=False)
        self._count("tokens")
        return token, started + max(0.0, lifetime - min(TOKEN_MARGIN_S, lifetime / 10))

    # -- requests
    def _count(self, name: str) -> None:
        with self._count_lock:
            setattr(self.counters, name, getattr(self.counters, name) + 1)

    def _send(self, method: str, path: str, *, auth: bool = True,
              headers: dict[str, str] | None = None, **kw: Any) -> requests.Response:
        hdrs = dict(headers or {})
        if auth and self.cfg.auth == "oauth2":
            hdrs["Authorization"] = "Bearer " + self._bearer()
        self._count("requests")
        try:
            return self.session.request(method, self.cfg.base_url + path, headers=hdrs,
                                        timeout=self.cfg.timeout_s, auth=None if auth else
                                        _NoAuth(), **kw)
        except (requests.ConnectionError, requests.Timeout) as exc:
            self._count("unavailable")
            # Nothing reached Koha when the connection itself failed; anything else after a
            # POST went out may have been applied.
            sent = method != "GET" and not isinstance(
                exc, requests.ConnectTimeout | requests.exceptions.SSLError) and \
                "NewConnectionError" not in repr(exc)
            raise KohaUnavailable(f"{method} {path.split('?')[0]}: {type(exc).__name__}",
                                  sent=sent) from None

    def _call(self, method: str, path: str, *, expect: tuple[int, ...],
              forbidden: str | None = None, **kw: Any) -> tuple[requests.Response, Any]:
        r = self._send(method, path, **kw)
        if r.status_code == 401 and self.cfg.auth == "oauth2":
            # The token expired early or Koha was restarted: one new token, one more try.
            # A 401 means the request was not processed, so even a POST may go again.
            stale = r.request.headers.get("Authorization", "").removeprefix("Bearer ")
            self._bearer(renew=True, stale=stale)
            r = self._send(method, path, **kw)
        if r.status_code == 403 and 403 in expect and forbidden is not None and \
                not _error(r).startswith(forbidden):
            # Koha's authenticator answers 403 too (a wrong Basic password, a missing
            # permission, a branch the API user may not act for): not the operation's no.
            expect = tuple(s for s in expect if s != 403)
        if r.status_code in (401, 403) and r.status_code not in expect:
            self._count("unavailable")
            if _error(r).startswith("Unauthorized attempt to set library"):
                raise KohaAuthRefused(f"Koha does not let the API user act for branch "
                                      f"{r.request.headers.get('x-koha-library')!r}: check "
                                      "library= and branches= in the ils URL", sent=False)
            raise KohaAuthRefused(f"Koha refused the credentials for {method} "
                                  f"{_route(path)} (HTTP {r.status_code})", sent=False)
        if r.status_code >= 500:
            self._count("unavailable")
            raise KohaUnavailable(f"{method} {_route(path)}: HTTP {r.status_code}",
                                  sent=method != "GET")
        if r.status_code not in expect:
            self._count("malformed")
            raise KohaProtocolError(f"{method} {_route(path)}: unexpected HTTP "
                                    f"{r.status_code}", sent=method != "GET")
        if r.status_code == 204 or not r.content:
            return r, None
        return r, self._json(r, sent=method != "GET")

    def request(self, method: str, path: str, *, expect: tuple[int, ...],
                forbidden: str | None = None, **kw: Any) -> tuple[int, Any]:
        """(status, JSON body or None) for an expected status; KohaUnavailable for 5xx,
        KohaAuthRefused for 401/403 (`forbidden`: how the operation's own 403 message
        begins, when 403 is expected), KohaProtocolError for anything else unexpected or
        unreadable."""
        r, body = self._call(method, path, expect=expect, forbidden=forbidden, **kw)
        return r.status_code, body

    def _json(self, r: requests.Response, *, sent: bool = False) -> Any:
        try:
            return r.json()
        except ValueError:
            self._count("malformed")
            raise KohaProtocolError(f"{r.request.method} {_route(r.request.path_url)}: "
                                    "answer is not JSON", sent=sent) from None

    def get(self, path: str, *, expect: tuple[int, ...] = (200,), **kw: Any) -> tuple[int, Any]:
        return self.request("GET", path, expect=expect, **kw)

    def get_all(self, path: str, *, params: dict[str, Any] | None = None,
                expect: tuple[int, ...] = (200,), **kw: Any) -> tuple[int, Any]:
        """A whole filtered list: matched exactly and not paged. Should Koha page it anyway
        (X-Total-Count above what came), the other pages follow, at the size it used."""
        query = {**(params or {}), "_match": "exact", "_per_page": "-1"}
        r, body = self._call("GET", path, expect=expect, params=query, **kw)
        if r.status_code != 200 or not isinstance(body, list) or not body:
            return r.status_code, body
        rows, size = list(body), len(body)
        total = _total(r)
        for page in range(2, MAX_PAGES + 1):
            if total is None or len(rows) >= total:
                break
            _, more = self._call("GET", path, expect=(200,), params={
                **query, "_per_page": str(size), "_page": str(page)}, **kw)
            if not isinstance(more, list) or not more:
                break
            rows += more
        return r.status_code, rows

    def post(self, path: str, *, expect: tuple[int, ...], **kw: Any) -> tuple[int, Any]:
        return self.request("POST", path, expect=expect, **kw)


def _error(r: requests.Response) -> str:
    """The `error` of Koha's error answer, or ''."""
    try:
        body = r.json()
    except ValueError:
        return ""
    return str(body.get("error", "")) if isinstance(body, dict) else ""


def _total(r: requests.Response) -> int | None:
    try:
        return int(r.headers["X-Total-Count"])
    except (KeyError, ValueError):
        return None


class _NoAuth(requests.auth.AuthBase):
    """The token request carries its own credentials in the form, not Basic auth."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r


def _route(path: str) -> str:
    """The path without its query and ids, for logs: no card numbers or barcodes."""
    return "/".join("{id}" if p.isdigit() else p for p in path.split("?")[0].split("/"))
