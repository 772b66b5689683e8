"""Barcode scanner on a serial port (or any pyserial URL: `socket://`, `loop://`, ...)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import serial
from pydantic import Field

from selfcheck.drivers.card.barcode import BarcodeOptions, BarcodeSink, LineSplitter
from selfcheck.drivers.card.base import OnCard
from selfcheck.drivers.card.stats import CardReaderStats
from selfcheck.drivers.reopen import keep_open

log = logging.getLogger(__name__)


class SerialBarcodeOptions(BarcodeOptions):
    baudrate: int = Field(default=9600, gt=0)
    reopen_delay_s: float = Field(default=0.5, gt=0)
    reopen_max_s: float = Field(default=10.0, gt=0)


PortOpener = Callable[..., Any]


class SerialBarcodeReader:
    def __init__(
        self,
        url: str,
        opts: SerialBarcodeOptions | None = None,
        *,
        opener: PortOpener = serial.serial_for_url,
    ) -> None:
        self.url = url
        self.opts = opts or SerialBarcodeOptions()
        self.stats = CardReaderStats()
        self._open = opener

    def run(self, on_card: OnCard, stop: threading.Event) -> None:
        sink = BarcodeSink(self.opts, self.stats, on_card)
        splitter = LineSplitter(self.opts.max_len)

        def use(port: Any) -> None:
            splitter.reset()  # a line cut by an unplug is not a card number
            while not stop.is_set():
                for item in splitter.feed(port.read(port.in_waiting or 1)):
                    sink.handle(item)

        keep_open(f"barcode scanner {self.url}",
                  # A short read timeout is what lets the loop notice `stop`.
                  lambda: self._open(self.url, baudrate=self.opts.baudrate, timeout=0.2),
                  use, lambda port: port.close(), stats=self.stats, stop=stop,
                  delay_s=self.opts.reopen_delay_s, max_delay_s=self.opts.reopen_max_s,
                  errors=(serial.SerialException, OSError))
