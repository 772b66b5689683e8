"""Card readers: each reports a card as a string (UID hex or barcode) through a callback."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

OnCard = Callable[[str], None]


class CardReader(Protocol):
    def run(self, on_card: OnCard, stop: threading.Event) -> None:
        """Block, calling `on_card(card_id)` for every card presented, until `stop` is set."""
        ...


class SimulatedCardReader:
    """The demo's card reader: `present(card_id)` is what tapping a card does."""

    def __init__(self) -> None:
        self._on_card: OnCard | None = None

    def run(self, on_card: OnCard, stop: threading.Event) -> None:
        self._on_card = on_card
        stop.wait()

    def present(self, card_id: str) -> None:
        if self._on_card is not None:
            self._on_card(card_id)
