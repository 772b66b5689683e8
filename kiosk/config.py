"""The station's settings parsed once into frozen, typed configs, one per layer: the runtime,
the MQTT link and the drivers are handed these and never parse or validate a setting again.
A change (an operator's remote config, a reloaded file) is a new StationConfig, never an
edit of one in use."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from selfcheck.drivers.pad.base import AfiPolicy
from selfcheck.kiosk.timeouts import StationTimeouts
from selfcheck.mqtt.security import BrokerConfig

__all__ = ["BrokerConfig", "DeskConfig", "DevicesConfig", "OfflinePolicy", "ScreenConfig",
           "StationConfig"]

if TYPE_CHECKING:
    from selfcheck.drivers.printer.config import PrinterConfig
    from selfcheck.drivers.printer.mail import MailConfig
    from selfcheck.mqtt.telemetry import ConfigSettings


@dataclass(frozen=True)
class OfflinePolicy:
    """What the station does while the central cannot be reached."""

    returns: bool
    loans: bool  # against the cached offline list
    list_every_s: float  # how often the offline list is fetched again


@dataclass(frozen=True)
class DeskConfig:
    """The self-service desk's per-site choices (what the core's rules read)."""

    lang: Literal["vi", "en"]
    mode: Literal["selfcheck", "return-station"]
    confirm_count: bool
    multipart: Literal["accept", "warn", "refuse"]
    owner_isil: str | None
    staff_cards: frozenset[str]
    help_after: int
    receipt: Literal["none", "print", "email", "ask"]
    pin: Literal["never", "always", "central"]
    library_name: str  # the receipt's heading
    return_clear_s: float = 25.0  # a return station's lines leave the screen after this quiet


@dataclass(frozen=True)
class DevicesConfig:
    """The book pad and the card reader: which driver, where, and the driver's options
    (read-only mappings; checked against the driver when the settings were parsed)."""

    pad: str
    pad_url: str
    pad_options: Mapping[str, Any]
    card_reader: str
    card_url: str
    card_options: Mapping[str, Any]


@dataclass(frozen=True)
class ScreenConfig:
    """What the screen is and what it says beyond the core's view: the panel (for sizes in
    mm), its turn, the spoken prompts, and the site's words (the staff desk, library names,
    the offline loan period)."""

    size: tuple[int, int] | None  # None: the window's own
    dpi: float | None
    inches: float | None
    area_mm: tuple[float, float] | None
    rotation: Literal[0, 90, 180, 270]
    fullscreen: bool
    audio: bool
    audio_cache: Path
    desk_where: Mapping[str, str]  # by language, each falling back on the other
    places: Mapping[str, str]
    offline_loan_days: int | None


@dataclass(frozen=True)
class StationConfig:
    site: str
    station: str
    journal: Path
    broker: BrokerConfig
    timeouts: StationTimeouts
    offline: OfflinePolicy
    desk: DeskConfig
    afi: AfiPolicy
    printer: PrinterConfig | None  # None: no receipt printer
    mail: MailConfig | None  # None: no e-mail receipts
    devices: DevicesConfig
    screen: ScreenConfig

    def steered(self, remote: ConfigSettings) -> StationConfig:
        """This config with what an operator steers remotely (None: keep this one's)."""
        v = remote.model_dump(exclude_none=True)
        t, off, desk = self.timeouts, self.offline, self.desk
        return dataclasses.replace(
            self,
            timeouts=dataclasses.replace(
                t, ack_s=v.get("ack_timeout_s", t.ack_s),
                inactivity_s=v.get("inactivity_s", t.inactivity_s),
                summary_s=v.get("summary_s", t.summary_s),
                telemetry_s=v.get("telemetry_s", t.telemetry_s)),
            offline=dataclasses.replace(off, returns=v.get("offline_returns", off.returns)),
            desk=dataclasses.replace(desk, lang=v.get("lang", desk.lang)))
