"""Book pads (HF RFID readers for ISO 15693 library tags): one BookPad interface, a driver per
reader protocol, and simulators that speak the same frames.

`open_pad(kind, url, **opts)` is the one way in: kind is "3m810", "feig", "ascii" or "sim".
"""

from __future__ import annotations

from typing import Any

from drivers.pad.base import BookPad, PadCounters, PadError, TagReading

__all__ = ["KINDS", "BookPad", "PadCounters", "PadError", "TagReading", "open_pad"]

KINDS = ("3m810", "feig", "ascii", "sim")


def open_pad(kind: str, url: str = "", **opts: Any) -> BookPad:
    """A BookPad for `kind` on a pyserial URL (/dev/ttyUSB0, socket://host:port, loop://).

    `opts` go to the driver (timeout, retries, reconnect_window, block_order, ...). The port
    opens on first use, so a pad that is not plugged in yet is not an error here.
    """
    # Imported here: the drivers import drivers.pad.base, which runs this module first.
    if kind == "3m810":
        from drivers.pad.m810 import M810Pad
        return M810Pad(url, **opts)
    if kind == "feig":
        from drivers.pad.feig import FeigPad
        return FeigPad(url, **opts)
    if kind == "ascii":
        from drivers.pad.ascii import AsciiPad
        return AsciiPad(url, **opts)
    if kind == "sim":
        from drivers.pad.simulated import SimulatedPad
        return SimulatedPad()
    raise ValueError(f"unknown pad kind {kind!r}: one of {', '.join(KINDS)}")
