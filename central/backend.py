"""What the bridge needs from a library system: apply transactions, answer station requests
(patron check, account, offline list).

The embedded CirculationStore is one backend; others (SIP2, ...) implement the same calls.
A backend applies each msg_id once and answers a repeat with the stored result. When it
cannot answer now (the library system is down or slow), it gives None for that transaction:
nothing is acknowledged to the station, whose outbox sends it again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import Engine

from selfcheck.mqtt.messages import (
    AccountRes,
    AckTx,
    OfflineListRes,
    PatronCheckRes,
    TxLoan,
    TxRenew,
    TxReturn,
)

Tx = TxLoan | TxReturn | TxRenew


class Backend(Protocol):
    # The central's own database: dedupe rows, and the per-station order (central/order.py).
    engine: Engine

    def apply(self, batch: Sequence[Tx],
              now: dt.datetime | None = None) -> Sequence[AckTx | None]:
        """One ack (or None: no answer now) per transaction, in order, each only after it is
        committed. One station's transactions come in seq order and take effect in that
        order: after the first of a station's that gets no answer, none of its later ones in
        the batch is applied."""
        ...

    def check_patron(self, card_id: str, today: dt.date | None = None, *,
                     pin: str | None = None) -> PatronCheckRes:
        """With `pin`: verify it (wrong PINs counted and limited); the patron_ref is given only
        when the check passed. Never log the card id or the PIN."""
        ...

    def account(self, patron_ref: str, today: dt.date | None = None) -> AccountRes: ...

    def offline_list(self, site: str, page: int = 1,
                     now: dt.datetime | None = None) -> OfflineListRes: ...

    def close(self) -> None: ...


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
