"""Open the book pad and card reader that the station's config names."""

from __future__ import annotations

from selfcheck.drivers.card import open_card_reader
from selfcheck.drivers.card.base import CardReader, SimulatedCardReader
from selfcheck.drivers.pad import open_pad
from selfcheck.drivers.pad.base import BookPad
from selfcheck.kiosk.config import DevicesConfig


def open_devices(devices: DevicesConfig) -> tuple[BookPad, CardReader]:
    """Both devices, or a ValueError naming the setting that is wrong. (The settings have
    already checked that a real device comes with its URL.)"""
    try:
        pad = open_pad(devices.pad, devices.pad_url, **devices.pad_options)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"pad / pad_options: {exc}") from None
    card: CardReader
    if devices.card_reader == "sim":
        card = SimulatedCardReader()
    else:
        card = open_card_reader(devices.card_reader, devices.card_url, **devices.card_options)
    return pad, card
