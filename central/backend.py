"""What the bridge needs from a library system: apply transactions, answer station requests
(patron check, account, offline list).

Exactly-once and per-station order are the ledger's (central/ledger/), in front of every
backend: a backend is given each msg_id's first copy only, and never sees a repeat. There are
two kinds:

- LocalBackend (the embedded CirculationStore) applies inside the ledger's own database
  transaction, so that its effect and the dedupe row commit together.
- RemoteBackend (SIP2, Koha) talks to a library system that knows nothing of msg_ids: the
  ledger claims each msg_id before the backend sends anything and commits the results after
  it answered; the backend is told which outcomes are unknown (ask before acting) and which
  msg_ids another bridge is at work on (leave them, and what follows them, for now).

When a backend cannot answer now (the library system is down or slow), it gives None for that
transaction: nothing is acknowledged to the station, whose outbox sends it again.

A remote backend also says what the library system knows of a barcode (ItemLookup): tagging
and stock-takes ask it, not only the catalogue the central imported.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from selfcheck.mqtt.messages import (
    AccountRes,
    AckTx,
    OfflineListRes,
    PatronCheckRes,
    TxLoan,
    TxRenew,
    TxReturn,
)

if TYPE_CHECKING:
    from selfcheck.central.offline_policy import OfflineStations

Tx = TxLoan | TxReturn | TxRenew
KIND = {TxLoan: "loan", TxReturn: "return", TxRenew: "renew"}
# A msg_id's claim: 'new', 'taken_over' (an earlier claim outlived its lease: the outcome is
# unknown) or 'busy' (another bridge is at work on it).
Claim = Literal["new", "taken_over", "busy"]


class Backend(Protocol):
    # The central's own database: the ledger's rows, and what the backend keeps itself.
    engine: Engine
    # Who gets the offline list (central/offline_policy.py): the central's setting.
    offline_stations: OfflineStations

    def check_patron(self, card_id: str, today: dt.date | None = None, *,
                     pin: str | None = None, site: str | None = None,
                     station: str | None = None) -> PatronCheckRes:
        """With `pin`: verify it (wrong PINs counted per card and per `station`, and
        limited: central/pin.py, central/pin_guard.py); without: pin_required when
        the backend's PIN rules (central/pin_rules.py) want one for this card at `site`. A
        locked card is refused either way. The patron_ref is given only when the check
        passed, and the given name only (central/names.py). Never log the card id or PIN."""
        ...

    def account(self, patron_ref: str, today: dt.date | None = None) -> AccountRes: ...

    def offline_list(self, site: str, page: int = 1,
                     now: dt.datetime | None = None) -> OfflineListRes: ...

    def close(self) -> None: ...


@runtime_checkable
class LocalBackend(Backend, Protocol):
    def apply_in(self, conn: Connection, batch: Sequence[Tx],
                 now: dt.datetime) -> list[AckTx]:
        """One ack per transaction, in order, applied in `conn` (the caller commits)."""
        ...


@dataclass
class Outcome:
    acks: list[AckTx | None]
    # Unanswered ones whose request may have gone out: the next attempt asks first.
    unsure: set[int] = field(default_factory=set)


class RemoteBackend(Backend, Protocol):
    # Longer than the worst a bridge can spend on one transaction: a claim older than this is
    # taken over.
    lease: dt.timedelta

    def apply(self, batch: Sequence[Tx], now: dt.datetime,
              claims: Sequence[Claim]) -> Outcome:
        """One ack (or None: no answer now) per transaction, in order. One station's
        transactions come in seq order and take effect in that order: after the first of a
        station's that gets no answer (or is busy), none of its later ones is sent."""
        ...


@dataclass(frozen=True)
class ItemInfo:
    """What the library system says of a barcode now."""

    known: bool
    title: str | None = None
    home_branch: str | None = None  # the library system's own code (SIP2 AQ, Koha's library)
    home_site: str | None = None  # that branch as a station site, when the central knows it
    not_for_loan: bool | None = None  # None: the library system does not say (SIP2)
    on_loan: bool = False


@runtime_checkable
class ItemLookup(Protocol):
    def item_info(self, item_id: str) -> ItemInfo | None:
        """None: the library system cannot answer now."""
        ...

    def items_info(self, item_ids: Sequence[str]) -> dict[str, ItemInfo] | None:
        """Several at once (stock-takes); None: the library system cannot answer now."""
        ...


class BackendUnavailable(Exception):
    """The library system cannot answer now; the request gets no answer (the station decides
    what to do offline)."""


def ils_number(query: dict[str, str], name: str, default: float, low: float,
               high: float) -> float:
    """A number parameter of an `ils` URL's query, within [low, high]; ValueError names it."""
    try:
        value = float(query.get(name, default))
    except ValueError:
        raise ValueError(f"ils: {name} is not a number") from None
    if not low <= value <= high:
        raise ValueError(f"ils: {name} must be between {low:g} and {high:g}")
    return value
