"""What the bridge needs from a library system: apply transactions, answer patron checks.

The embedded CirculationStore is one backend; others (SIP2, ...) implement the same two calls.
A backend applies each msg_id once and answers a repeat with the stored result. When it
cannot answer now (the library system is down or slow), it gives None for that transaction:
nothing is acknowledged to the station, whose outbox sends it again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol

from mqtt.messages import AckTx, PatronCheckRes, TxLoan, TxRenew, TxReturn

Tx = TxLoan | TxReturn | TxRenew


class Backend(Protocol):
    def apply(self, batch: Sequence[Tx],
              now: dt.datetime | None = None) -> Sequence[AckTx | None]:
        """One ack (or None: no answer now) per transaction, in order, each only after it is
        committed."""
        ...

    def check_patron(self, card_id: str, today: dt.date | None = None) -> PatronCheckRes: ...

    def close(self) -> None: ...


class BackendUnavailable(Exception):
    """The library system cannot answer now; the request gets no answer (the station decides
    what to do offline)."""
