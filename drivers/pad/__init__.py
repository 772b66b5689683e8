"""Book pads (HF RFID readers for ISO 15693 library tags): one BookPad interface, a driver per
reader protocol, and simulators that speak the same frames.

`open_pad(kind, url, **opts)` is the one way in: kind is "3m810", "feig", "ascii" or "sim".
"""

from __future__ import annotations

from typing import Any, get_type_hints

from selfcheck.drivers.pad.base import BookPad, PadCounters, PadError

__all__ = ["KINDS", "BookPad", "PadCounters", "PadError", "open_pad"]

KINDS = ("3m810", "feig", "ascii", "sim")


def open_pad(kind: str, url: str = "", **opts: Any) -> BookPad:
    """A BookPad for `kind` on a pyserial URL (/dev/ttyUSB0, socket://host:port, loop://).

    `opts` go to the driver (timeout, retries, reconnect_window, block_order, ...). The port
    opens on first use, so a pad that is not plugged in yet is not an error here.
    """
    # Imported here: the drivers import drivers.pad.base, which runs this module first.
    driver: type
    if kind == "3m810":
        from selfcheck.drivers.pad.m810 import M810Pad as driver
    elif kind == "feig":
        from selfcheck.drivers.pad.feig import FeigPad as driver
    elif kind == "ascii":
        from selfcheck.drivers.pad.ascii import AsciiPad as driver
    elif kind == "sim":
        from selfcheck.drivers.pad.simulated import SimulatedPad
        if opts:
            raise ValueError(f"the sim pad takes no options (got {', '.join(opts)})")
        return SimulatedPad()
    else:
        raise ValueError(f"unknown pad kind {kind!r}: one of {', '.join(KINDS)}")
    pad: BookPad = driver(url, **_checked_options(driver, opts))
    return pad


def _checked_options(driver: type, opts: dict[str, Any]) -> dict[str, Any]:
    """Options checked against the driver's signature, so that a site config saying
    `timeout = "fast"` is refused when the station starts, not on every poll."""
    from pydantic import TypeAdapter, ValidationError

    hints = {k: v for k, v in get_type_hints(vars(driver)["__init__"]).items()
             if k not in ("url", "return")}
    out = {}
    for name, value in opts.items():
        if name not in hints:
            raise ValueError(f"{name}: not an option of the {driver.__name__} driver "
                             f"(options: {', '.join(hints)})")
        try:
            out[name] = TypeAdapter(hints[name]).validate_python(value)
        except ValidationError as exc:
            raise ValueError(f"{name}: {exc.errors()[0]['msg']} (got {value!r})") from None
    return out
