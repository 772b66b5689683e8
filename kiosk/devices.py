"""Open the book pad and card reader that the station settings name."""

from __future__ import annotations

from drivers.card.base import CardReader, SimulatedCardReader
from drivers.pad.base import BookPad
from drivers.pad.simulated import SimulatedPad
from kiosk.settings import StationSettings


def open_devices(settings: StationSettings) -> tuple[BookPad, CardReader]:
    pad: BookPad
    card: CardReader
    if settings.pad == "sim":
        pad = SimulatedPad()
    else:
        raise ValueError(f"pad: kind {settings.pad!r} is not supported (use 'sim')")
    if settings.card_reader == "sim":
        card = SimulatedCardReader()
    else:
        raise ValueError(f"card_reader: kind {settings.card_reader!r} is not supported")
    return pad, card
