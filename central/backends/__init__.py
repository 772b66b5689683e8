"""The library systems the central applies transactions to, behind one door: the embedded
circulation store (`store.py`), a SIP2 server (`sip2/`), or Koha's REST API with SIP2 for the
returns (`koha/`). `choose_backend` reads which one from the central's URLs and secret files
(a ValueError naming the option when one is wrong); `open_backend` opens it. The central, its
doctor and the benchmarks take the same two steps.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from selfcheck.system.secrets import read_password, read_secret

if TYPE_CHECKING:
    from selfcheck.central.backend import LocalBackend, RemoteBackend
    from selfcheck.central.backends.koha.client import KohaConfig
    from selfcheck.central.backends.sip2.client import Sip2Config
    from selfcheck.central.pin_guard import StationBudget
    from selfcheck.central.pin_rules import PinRules


@dataclass(frozen=True)
class BackendChoice:
    """Which library system, with its settings and passwords read: nothing is opened yet."""

    kind: Literal["store", "sip2", "koha"]
    db: str  # the central's own database (the store, or the ledger beside a library system)
    sip2: Sip2Config | None = None  # the SIP2 server: the library system, or Koha's returns
    koha: KohaConfig | None = None

    @property
    def where(self) -> str:
        """The library system as logs and the health check name it (no password)."""
        if self.kind == "koha":
            return f"{self.koha} + {self.sip2}"
        return str(self.sip2) if self.kind == "sip2" else "store"


def sip2_config(url: str, password_file: Path | None) -> Sip2Config:
    """The SIP2 settings, with the password from its file: a password in the URL would show
    in `ps` and in the unit file, so it is refused."""
    from selfcheck.central.backends.sip2.client import Sip2Config

    cfg = Sip2Config.parse(url)
    if cfg.password or cfg.terminal_password:
        raise ValueError("--ils: a password in the URL shows in `ps`; put it in a file (mode "
                         "0600) and give --ils-password-file")
    if password_file is None:
        if cfg.user:
            raise ValueError(f"--ils: user {cfg.user!r} needs --ils-password-file")
        return cfg
    lines = read_secret(password_file, "--ils-password-file")
    # An optional second line: the terminal password (AC) some library systems ask for.
    return dataclasses.replace(cfg, password=lines[0], password_file=password_file,
                               terminal_password=lines[1] if len(lines) > 1 else "")


def _koha_config(url: str, secret_file: Path | None) -> KohaConfig:
    from selfcheck.central.backends.koha.client import KohaConfig

    koha = KohaConfig.parse(url)
    if koha.secret:
        raise ValueError("--ils: a password in the URL shows in `ps`; put it in a file "
                         "(mode 0600) and give --ils-secret-file")
    secret = read_password(secret_file, "--ils-secret-file")
    if secret is None:
        raise ValueError(f"--ils: Koha user {koha.user!r} needs --ils-secret-file")
    if koha.ca_file and not Path(koha.ca_file).is_file():
        raise ValueError(f"ca file {koha.ca_file} not found")
    return dataclasses.replace(koha, secret=secret)


def choose_backend(db: str, ils: str | None = None, *, circulation: str | None = None,
                   password_file: Path | None = None,
                   secret_file: Path | None = None) -> BackendChoice:
    """No `ils`: the embedded store in `db`. `sip2://...`: that SIP2 server (its password in
    `password_file`). `koha+https://...`: Koha's REST API (its client secret in
    `secret_file`) with `circulation`, the SIP2 server that takes the returns."""
    if ils and ils.startswith("koha+"):
        koha = _koha_config(ils, secret_file)
        if not circulation:
            raise ValueError("Koha's REST API has no check-in: give --ils-circulation "
                             "sip2://USER@HOST:PORT?institution=ID for returns (its "
                             "password in --ils-password-file)")
        return BackendChoice("koha", db, sip2=sip2_config(circulation, password_file),
                             koha=koha)
    if circulation:
        raise ValueError("--ils-circulation goes with --ils koha+https://...")
    if ils:
        return BackendChoice("sip2", db, sip2=sip2_config(ils, password_file))
    return BackendChoice("store", db)


def open_backend(choice: BackendChoice, *, pin_rules: PinRules | None = None,
                 pin_budget: StationBudget | None = None,
                 offline_salt_age: dt.timedelta | None = dt.timedelta(days=7),
                 offline_recent: dt.timedelta | None = None) -> LocalBackend | RemoteBackend:
    """The backend, opened: its database engine made (a store error when the database
    cannot be reached). The store's offline-list options apply to the store only."""
    if choice.kind == "store":
        from selfcheck.central.backends.store import CirculationStore

        return CirculationStore(choice.db, offline_salt_age=offline_salt_age,
                                offline_recent=offline_recent, pin_rules=pin_rules,
                                pin_budget=pin_budget)
    from selfcheck.central.ledger import open_db

    assert choice.sip2 is not None
    if choice.kind == "sip2":
        from selfcheck.central.backends.sip2.backend import Sip2Backend

        return Sip2Backend(choice.sip2, open_db(choice.db), pin_rules=pin_rules,
                           pin_budget=pin_budget)
    from selfcheck.central.backends.koha.backend import KohaBackend

    assert choice.koha is not None
    return KohaBackend(choice.koha, choice.sip2, open_db(choice.db), pin_rules=pin_rules,
                       pin_budget=pin_budget)
