"""The receipt printer: python-escpos transports (Usb, Serial, Network, Dummy) carrying the
bytes that drivers.printer.render builds, and the paper status read back where the transport
can read (serial, network)."""

from __future__ import annotations

import logging
import select
import socket
import time
from collections.abc import Callable

from escpos.escpos import Escpos
from escpos.printer import Dummy, Network, Serial, Usb

from selfcheck.drivers.printer.config import PrinterConfig
from selfcheck.drivers.printer.document import Receipt
from selfcheck.drivers.printer.render import render
from selfcheck.drivers.printer.status import (
    QUERY,
    Paper,
    PaperEvent,
    PaperMonitor,
    StatusCommand,
    parse_answer,
)

log = logging.getLogger(__name__)


class PrinterError(RuntimeError):
    """The printer could not be reached or refused the bytes."""


class UrlSerial(Serial):
    """python-escpos's Serial opens a device path; this one takes any pyserial URL
    (/dev/ttyUSB0, socket://host:port, loop://), like the other drivers here."""

    def open(self, raise_not_found: bool = True) -> None:
        import serial

        try:
            self.device = serial.serial_for_url(
                self.devfile, baudrate=self.baudrate, timeout=self.timeout,
                write_timeout=self.timeout,
            )
        except (ValueError, serial.SerialException) as exc:
            self._device = None
            if raise_not_found:
                raise PrinterError(f"cannot open serial printer {self.devfile}: {exc}") from exc


def make_escpos(cfg: PrinterConfig) -> Escpos:
    if cfg.transport == "network":
        host, port = cfg.network_address()
        return Network(host, port=port, timeout=cfg.timeout_s, profile=cfg.profile)
    if cfg.transport == "serial":
        return UrlSerial(cfg.url, baudrate=cfg.baudrate, timeout=cfg.timeout_s,
                         profile=cfg.profile)
    if cfg.transport == "usb":
        vid, pid = cfg.usb_ids()
        return Usb(vid, pid, timeout=int(cfg.timeout_s * 1000), profile=cfg.profile)
    return Dummy(profile=cfg.profile)


class ReceiptPrinter:
    """One front object for the station: print a receipt, read the paper state.

    `on_paper` is called once per change of paper state (ok -> low -> out -> ok), from the
    thread that prints or polls; the station publishes it as an evt/paper event.
    """

    def __init__(self, cfg: PrinterConfig,
                 on_paper: Callable[[PaperEvent], None] | None = None,
                 escpos: Escpos | None = None) -> None:
        self.cfg = cfg
        self.monitor = PaperMonitor(on_paper)
        self._escpos = escpos

    @property
    def escpos(self) -> Escpos:
        if self._escpos is None:
            self._escpos = make_escpos(self.cfg)
        return self._escpos

    @property
    def can_read_status(self) -> bool:
        return self.cfg.status != "none" and self.cfg.transport in ("serial", "network")

    def print_receipt(self, receipt: Receipt) -> Paper:
        """Checks the paper, prints, and returns the paper state after the job. Raises
        PrinterError when the paper is out (known before printing) or the transport fails."""
        if self.paper() == Paper.OUT:
            raise PrinterError("paper out")
        job = render(receipt, self.cfg)
        self.send(job)
        return self.paper()

    def send(self, data: bytes) -> None:
        try:
            self.escpos._raw(data)
        except PrinterError:
            raise
        except Exception as exc:  # each transport raises its own (OSError, USBError, ...)
            self._reset()
            raise PrinterError(f"printer {self.cfg.transport} {self.cfg.url}: {exc}") from exc

    def paper(self) -> Paper:
        """Queries the paper sensors; UNKNOWN when the transport cannot read or nothing
        answered in status_timeout_s. Fires on_paper on a change."""
        command = self.cfg.status
        if command == "none" or self.cfg.transport not in ("serial", "network"):
            return self.monitor.state
        try:
            state = self._query(command)
        except Exception as exc:
            log.warning("printer status query failed: %s", exc)
            self._reset()
            state = Paper.UNKNOWN
        self.monitor.update(state)
        return state

    def _query(self, command: StatusCommand) -> Paper:
        device = self.escpos.device  # opens the transport on first use
        self._drain(device)  # stale answers (an earlier query that timed out) would mislead
        self.escpos._raw(QUERY[command])
        deadline = time.monotonic() + self.cfg.status_timeout_s
        got = b""
        while time.monotonic() < deadline:
            chunk = self._read_some(device, deadline - time.monotonic())
            if chunk:
                got += chunk
                state = parse_answer(command, got)
                if state != Paper.UNKNOWN:
                    return state
        return Paper.UNKNOWN

    @staticmethod
    def _read_some(device: object, timeout: float) -> bytes:
        if isinstance(device, socket.socket):
            ready, _, _ = select.select([device], [], [], max(timeout, 0))
            if not ready:
                return b""
            data = device.recv(64)
            if not data:
                raise PrinterError("printer closed the connection")
            return data
        # pyserial: read(n) waits for all n bytes, so one byte, then whatever else arrived.
        device.timeout = max(timeout, 0.01)  # type: ignore[attr-defined]
        first = bytes(device.read(1))  # type: ignore[attr-defined]
        waiting = device.in_waiting if first else 0  # type: ignore[attr-defined]
        return first + (bytes(device.read(waiting)) if waiting else b"")  # type: ignore[attr-defined]

    @staticmethod
    def _drain(device: object) -> None:
        if isinstance(device, socket.socket):
            while select.select([device], [], [], 0)[0]:
                if not device.recv(256):
                    raise PrinterError("printer closed the connection")
        else:
            device.reset_input_buffer()  # type: ignore[attr-defined]

    def _reset(self) -> None:
        """Drop the connection so the next job reconnects (printer restarted, cable back)."""
        if self._escpos is not None:
            try:
                self._escpos.close()
            except Exception:
                pass
            self._escpos = None

    def close(self) -> None:
        self._reset()
