"""What the bridge needs from a library system: apply transactions, answer patron checks.

The embedded CirculationStore is one backend; others (SIP2, ...) implement the same two calls.
A backend applies each msg_id once and answers a repeat with the stored result.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol

from mqtt.messages import AckTx, PatronCheckRes, TxLoan, TxRenew, TxReturn

Tx = TxLoan | TxReturn | TxRenew


class Backend(Protocol):
    def apply(self, batch: Sequence[Tx], now: dt.datetime | None = None) -> list[AckTx]:
        """One ack per transaction, in order, each sent only after it is committed."""
        ...

    def check_patron(self, card_id: str, today: dt.date | None = None) -> PatronCheckRes: ...
