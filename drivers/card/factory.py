"""Build the station's card reader from its site settings."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from selfcheck.drivers.card.base import CardReader, SimulatedCardReader
from selfcheck.drivers.card.config import CardConfigError, parse_options
from selfcheck.drivers.card.uid_mapping import UidMapping

KINDS = ("nfc", "barcode-serial", "barcode-wedge", "sim")


class NfcOptions(UidMapping):
    targets: Sequence[Literal["106A", "106B", "212F", "424F"]] = ("106A", "106B", "212F")
    release_s: float = Field(default=1.0, gt=0)
    reopen_delay_s: float = Field(default=0.5, gt=0)
    reopen_max_s: float = Field(default=10.0, gt=0)


class WedgeSourceOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    # "auto": paths under /dev/input/ are input devices, anything else is a line stream.
    source: Literal["auto", "evdev", "lines"] = "auto"


def open_card_reader(kind: str, url_or_path: str, **opts: Any) -> CardReader:
    """A card reader of `kind`; bad settings raise CardConfigError naming the field.

    - "nfc": nfcpy device path (`tty:AMA0:pn532`, `usb`, `udp:localhost:54321`);
      opts: format, pad (see uid_mapping), targets, release_s.
    - "barcode-serial": pyserial URL; opts: baudrate, prefix, suffix, max_len.
    - "barcode-wedge": "-" or "stdin", a file/FIFO of lines, or `/dev/input/...`;
      opts: prefix, suffix, max_len, grab, source.
    - "sim": the demo reader; `url_or_path` is ignored.
    """
    if kind == "nfc":
        from selfcheck.drivers.card.nfc_reader import NfcCardReader

        o = parse_options(NfcOptions, "nfc card reader", opts)
        return NfcCardReader(
            url_or_path,
            UidMapping(format=o.format, pad=o.pad),
            targets=o.targets,
            release_s=o.release_s,
            reopen_delay_s=o.reopen_delay_s,
            reopen_max_s=o.reopen_max_s,
        )
    if kind == "barcode-serial":
        from selfcheck.drivers.card.barcode_serial import SerialBarcodeOptions, SerialBarcodeReader

        return SerialBarcodeReader(
            url_or_path, parse_options(SerialBarcodeOptions, "serial barcode scanner", opts)
        )
    if kind == "barcode-wedge":
        from selfcheck.drivers.card.barcode import BarcodeOptions
        from selfcheck.drivers.card.barcode_wedge import (
            EvdevBarcodeReader,
            StreamBarcodeReader,
            WedgeOptions,
        )

        what = "keyboard-wedge barcode scanner"
        source = parse_options(WedgeSourceOptions, what, opts).source
        rest = {k: v for k, v in opts.items() if k != "source"}
        if source == "auto":
            source = "evdev" if url_or_path.startswith("/dev/input/") else "lines"
        if source == "evdev":
            return EvdevBarcodeReader(url_or_path, parse_options(WedgeOptions, what, rest))
        line_opts = parse_options(BarcodeOptions, what, rest)
        if url_or_path in ("-", "stdin"):
            return StreamBarcodeReader(sys.stdin.buffer, line_opts)
        # A FIFO is opened read-write so that open() does not block until a writer comes.
        mode = "r+b" if stat.S_ISFIFO(os.stat(url_or_path).st_mode) else "rb"
        return StreamBarcodeReader(open(url_or_path, mode, buffering=0), line_opts)
    if kind == "sim":
        if opts:
            raise CardConfigError("sim card reader", next(iter(opts)), "takes no settings")
        return SimulatedCardReader()
    raise CardConfigError("card reader", "kind", f"must be one of {KINDS} (got {kind!r})")
