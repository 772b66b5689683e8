"""Receipt printer settings for a site, checked when the station starts.

    [printer]
    transport = "network"            # usb | serial | network | dummy
    url = "192.168.1.50:9100"        # network host[:port]; serial pyserial URL; usb VID:PID
    vietnamese = "image"             # image | text-cp1258 | text-magic
    codepage = 52                    # ESC t n that selects WPC1258 on this model (text-cp1258)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Transport = Literal["usb", "serial", "network", "dummy"]
Vietnamese = Literal["image", "text-cp1258", "text-magic"]


class PrinterConfigError(ValueError):
    """A bad printer setting; the message names the key."""


class PrinterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    transport: Transport = "dummy"
    url: str = ""
    baudrate: int = Field(19200, gt=0)
    timeout_s: float = Field(10.0, gt=0)
    # How Vietnamese reaches paper: see drivers/printer/render.py for the trade-offs.
    vietnamese: Vietnamese = "image"
    # WPC1258 is 52 on Epson, 94 or 27 on many Chinese clones: read the self-test page.
    codepage: int = Field(52, ge=0, le=255)
    profile: str = "default"  # python-escpos capabilities profile (text-magic)
    columns: int = Field(42, ge=16, le=80)  # Font A characters per line (text modes)
    paper_width_px: int = Field(512, ge=128, le=1024)  # printable dots (image mode)
    font: str | None = None  # a TTF with Vietnamese glyphs; default: DejaVu Sans
    font_size: int = Field(24, ge=8, le=64)
    cut: Literal["full", "partial", "none"] = "partial"
    status: Literal["dle-eot", "gs-r", "none"] = "dle-eot"
    status_timeout_s: float = Field(1.0, gt=0)

    @field_validator("paper_width_px")
    @classmethod
    def _whole_bytes(cls, v: int) -> int:
        if v % 8:
            raise ValueError("must be a multiple of 8 (raster rows are whole bytes)")
        return v

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, v: str) -> str:
        from escpos.capabilities import CAPABILITIES  # loads the profile database once
        if v not in CAPABILITIES["profiles"]:
            raise ValueError(f"unknown python-escpos profile {v!r}")
        return v

    def network_address(self) -> tuple[str, int]:
        host, _, port = self.url.rpartition(":") if ":" in self.url else (self.url, "", "9100")
        if not host or not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
            raise PrinterConfigError(f"printer.url: expected host[:port] with a port of "
                                     f"1-65535, got {self.url[:80]!r}")
        return host, int(port)

    def usb_ids(self) -> tuple[int, int]:
        try:
            vid, pid = (int(x, 16) for x in self.url.split(":"))
        except ValueError:
            raise PrinterConfigError(
                f"printer.url: expected USB VID:PID in hex like 04b8:0202, got {self.url!r}"
            ) from None
        return vid, pid


def load_config(raw: Mapping[str, Any]) -> PrinterConfig:
    """A PrinterConfig from a settings table, or PrinterConfigError naming the bad key."""
    try:
        cfg = PrinterConfig.model_validate(dict(raw))
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "?"
        got = f" (got {err['input']!r})" if err["type"] != "extra_forbidden" else ""
        msg = "not a printer setting" if err["type"] == "extra_forbidden" else err["msg"]
        raise PrinterConfigError(f"printer.{key}: {msg}{got}") from None
    if cfg.transport == "network":
        cfg.network_address()
    elif cfg.transport == "usb":
        cfg.usb_ids()
    elif cfg.transport == "serial" and not cfg.url:
        raise PrinterConfigError("printer.url: a serial printer needs a port or pyserial URL")
    return cfg
