"""Receipt printers (ESC/POS over USB, serial or network through python-escpos) and e-mail
receipts.

    printer = open_printer({"transport": "network", "url": "10.0.0.5:9100"}, on_paper=publish)
    printer.print_receipt(build_receipt(summary, "vi"))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from selfcheck.drivers.printer.config import PrinterConfig, PrinterConfigError, load_config
from selfcheck.drivers.printer.status import Paper, PaperEvent

if TYPE_CHECKING:
    from selfcheck.drivers.printer.device import PrinterError, ReceiptPrinter


def __getattr__(name: str) -> Any:
    # python-escpos and Pillow cost a station about 20 MB: load them only with a printer.
    if name in ("PrinterError", "ReceiptPrinter"):
        from selfcheck.drivers.printer import device

        return getattr(device, name)
    raise AttributeError(name)

__all__ = [
    "Paper", "PaperEvent", "PrinterConfig", "PrinterConfigError", "PrinterError",
    "ReceiptPrinter", "load_config", "open_printer",
]


def open_printer(settings: Mapping[str, Any] | PrinterConfig,
                 on_paper: Callable[[PaperEvent], None] | None = None) -> ReceiptPrinter:
    """A ReceiptPrinter for the site's [printer] settings. The transport opens on first use,
    so a printer that is switched off is not an error here."""
    from selfcheck.drivers.printer.device import ReceiptPrinter

    cfg = settings if isinstance(settings, PrinterConfig) else load_config(settings)
    return ReceiptPrinter(cfg, on_paper=on_paper)
