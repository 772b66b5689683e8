"""Open the book pad and card reader that the station settings name."""

from __future__ import annotations

from selfcheck.drivers.card import open_card_reader
from selfcheck.drivers.card.base import CardReader, SimulatedCardReader
from selfcheck.drivers.pad import open_pad
from selfcheck.drivers.pad.base import BookPad
from selfcheck.kiosk.settings import StationSettings


def open_devices(settings: StationSettings) -> tuple[BookPad, CardReader]:
    """Both devices, or a ValueError naming the setting that is wrong. (The settings have
    already checked that a real device comes with its URL.)"""
    try:
        pad = open_pad(settings.pad, settings.pad_url, **settings.pad_options)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"pad / pad_options: {exc}") from None
    card: CardReader
    if settings.card_reader == "sim":
        card = SimulatedCardReader()
    else:
        card = open_card_reader(settings.card_reader, settings.card_url,
                                **settings.card_options)
    return pad, card
