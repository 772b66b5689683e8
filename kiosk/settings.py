"""Station settings: defaults, then a TOML file, then SELFCHECK_* environment variables."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from contextvars import ContextVar
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from selfcheck.drivers.card.config import CardConfigError
from selfcheck.drivers.pad.base import AfiPolicy, afi_problem
from selfcheck.kiosk.config import (
    BrokerConfig,
    DeskConfig,
    DevicesConfig,
    OfflinePolicy,
    ScreenConfig,
    StationConfig,
)
from selfcheck.kiosk.panels import PANELS, parse_mm
from selfcheck.kiosk.timeouts import (
    ACK_TIMEOUT_MAX_S,
    ACK_TIMEOUT_S,
    RESEND_AFTER_S,
    SUMMARY_S,
    StationTimeouts,
)
from selfcheck.mqtt import topics
from selfcheck.mqtt.connection import BrokerAddress
from selfcheck.mqtt.security import ClientSecurity, check_transport
from selfcheck.system.secrets import read_password


def parse_size(text: str) -> tuple[int, int]:
    """'800x480' -> (800, 480): the `screen` setting, also the UI tools' --size."""
    w, sep, h = text.lower().partition("x")
    if not sep or not w.strip().isdigit() or not h.strip().isdigit():
        raise ValueError(f"screen size {text!r}: write it as WIDTHxHEIGHT, e.g. 800x480")
    size = int(w), int(h)
    if min(size) < 200 or max(size) > 8000:
        raise ValueError(f"screen size {text!r}: out of range")
    return size


# Deeper than any setting needs (the deepest, printer_options, is two levels), far below where
# tomllib, which parses nested arrays and tables recursively, runs out of stack.
MAX_TOML_DEPTH = 32

# Kernel and device file systems: a journal there cannot be an SQLite database (and a typo
# that lands there should not be tried at start, deep in the runtime).
_NOT_A_DISK = (Path("/proc"), Path("/sys"), Path("/dev"))
_HOST = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})$")


def toml_nesting_problem(text: str, limit: int = MAX_TOML_DEPTH) -> str | None:
    """'line N: ...' when the arrays and inline tables of a TOML text nest deeper than `limit`,
    found before tomllib would recurse into them; brackets in strings and comments do not
    count (a broken string is left for tomllib to report)."""
    depth, line, i, n = 0, 1, 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        elif c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif c in "\"'":
            quote = text[i:i + 3] if text[i:i + 3] in ('"""', "'''") else c
            j = i + len(quote)
            while j < n and not text.startswith(quote, j):
                if text[j] == "\\" and c == '"':
                    j += 1
                elif text[j] == "\n" and len(quote) == 1:
                    break  # a one-line string left open: tomllib says so
                j += 1
            line += text.count("\n", i, min(j, n))
            i = j + len(quote) if j < n and text.startswith(quote, j) else j
            continue
        elif c in "[{":
            depth += 1
            if depth > limit:
                return f"line {line}: arrays or tables nested more than {limit} deep"
        elif c in "]}":
            depth = max(0, depth - 1)
        i += 1
    return None


def _check_card_options(kind: str, url: str, opts: dict[str, Any]) -> None:
    """The card reader's options checked as the driver will read them, without opening the
    device, so that a wrong one is named at load (the simulated reader is never given them)."""
    from selfcheck.drivers.card.config import parse_options

    if kind == "sim":
        if opts:
            raise ValueError(f"{next(iter(opts))!r}: the simulated card reader (card_reader = "
                             "\"sim\") takes no options")
    elif kind == "nfc":
        from selfcheck.drivers.card.factory import NfcOptions

        parse_options(NfcOptions, "nfc card reader", opts)
    elif kind == "barcode-serial":
        from selfcheck.drivers.card.barcode_serial import SerialBarcodeOptions

        parse_options(SerialBarcodeOptions, "serial barcode scanner", opts)
    elif kind == "barcode-wedge":
        from selfcheck.drivers.card.barcode import BarcodeOptions
        from selfcheck.drivers.card.barcode_wedge import WedgeOptions
        from selfcheck.drivers.card.factory import WedgeSourceOptions

        what = "keyboard-wedge barcode scanner"
        source = parse_options(WedgeSourceOptions, what, opts).source
        rest = {k: v for k, v in opts.items() if k != "source"}
        evdev = source == "evdev" or (source == "auto" and url.startswith("/dev/input/"))
        parse_options(WedgeOptions if evdev else BarcodeOptions, what, rest)


class StationSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SELFCHECK_", extra="forbid", frozen=True)
    _config: StationConfig | None = PrivateAttr(None)

    site: str = "demo-lib"
    station: str = "station-1"
    broker: str = "127.0.0.1:1883"
    journal: Path = Path("var/station.db")
    lang: Literal["vi", "en"] = "vi"
    pad: Literal["sim", "3m810", "feig", "ascii"] = "sim"
    pad_url: str = Field("", description="pyserial URL of the pad: /dev/ttyUSB0, socket://...")
    pad_options: dict[str, Any] = Field(default_factory=dict,
                                        description="driver options, e.g. block_order")
    card_reader: Literal["sim", "nfc", "barcode-serial", "barcode-wedge"] = "sim"
    card_url: str = Field("", description="tty:AMA0:pn532, usb, a serial URL or /dev/input/...")
    card_options: dict[str, Any] = Field(default_factory=dict,
                                         description="e.g. format = 'decimal-reversed'")
    afi_in_library: int = Field(0x07, ge=0, le=255)
    afi_on_loan: int = Field(0xC2, ge=0, le=255)
    ack_timeout_s: float = Field(ACK_TIMEOUT_S, gt=0, le=ACK_TIMEOUT_MAX_S)
    inactivity_s: float = Field(45.0, gt=0)
    summary_s: float = Field(SUMMARY_S, gt=0)
    offline_returns: bool = True
    offline_loans: bool = Field(False, description="when the central cannot be reached, "
                                "lend to readers on the cached offline list (req/offline-list), "
                                "up to each one's max_offline_loans; false: returns only")
    offline_list_s: float = Field(4 * 3600.0, ge=60, description="how often the offline "
                                  "list is fetched again (and on every connect)")
    pin: Literal["never", "always", "central"] = Field(
        "central", description="PIN pad: central (when the central answers pin_required: "
        "its rule decides); always (before every patron check); never (a reader whose card "
        "needs a PIN is refused here)")
    # -- the self-service desk: each a per-site choice
    mode: Literal["selfcheck", "return-station"] = Field(
        "selfcheck", description="return-station: no card, books keep coming, sort bins shown")
    return_clear_s: float = Field(25.0, gt=0, description="return-station: the returned "
                                  "books' lines leave the screen this long after the pad "
                                  "last changed (and when a reader's card is read)")
    confirm_count: bool = Field(False, description="the reader confirms how many books")
    multipart: Literal["accept", "warn", "refuse"] = Field(
        "warn", description="a multi-part item with parts missing from the pad")
    owner_isil: str | None = Field(None, description="this library's ISIL; tags of another "
                                   "owner are refused. None: not checked")
    staff_cards: list[str] = Field(default_factory=list,
                                   description="card ids that open staff mode")
    help_after: int = Field(3, ge=1, description="failed reads or refused cards in a row "
                            "before the staff-needed screen")
    audio: bool = Field(True, description="spoken prompts (espeak-ng), if installed")
    audio_cache: Path = Field(Path("var/prompts"), description="pre-rendered prompt WAVs")
    receipt: Literal["none", "print", "email", "ask"] = "none"
    library_name: str = Field("", description="the receipt's heading (default: the site)")
    desk_where_vi: str = Field("", max_length=120, description="where the staff desk "
                               "is, shown in Help, in Vietnamese (e.g. 'tầng 1, cạnh cửa ra "
                               "vào'); empty: Help says only 'the staff desk'")
    desk_where_en: str = Field("", max_length=120, description="the same in English (e.g. "
                               "'ground floor, by the entrance'); empty: the Vietnamese one")
    printer_transport: Literal["none", "usb", "serial", "network", "dummy"] = "none"
    printer_url: str = Field("", description="network host[:port], serial URL or USB VID:PID")
    printer_options: dict[str, Any] = Field(default_factory=dict, description="other "
                                            "driver settings: vietnamese, codepage...")
    receipt_mail: dict[str, Any] | None = Field(None, description="SMTP relay for e-mail "
                                                "receipts (drivers.printer.mail.MailConfig)")
    resend_after_s: float = Field(RESEND_AFTER_S, gt=0)
    releases: Path | None = Field(None, description="the folder of installed releases (with "
                                  "the `current` link the unit starts), for the `update` and "
                                  "`rollback` commands; none: those commands are refused")
    fullscreen: bool = False
    # -- the screen: its size, how it is mounted, and its real size (for 9 mm touch targets)
    screen: str = Field("", description="WIDTHxHEIGHT of the panel, e.g. 800x480, or a known "
                        f"panel by name ({', '.join(PANELS)}); empty: the display's own "
                        "size when fullscreen, else a 1280x800 window")
    rotation: Literal[0, 90, 180, 270] = Field(0, description="degrees the picture is turned "
                                               "for a panel mounted the other way")
    screen_inches: float | None = Field(None, gt=1, le=120, description="the panel's "
                                        "diagonal; default: the usual panel of that size")
    screen_dpi: float | None = Field(None, gt=20, le=1000, description="pixels per inch, "
                                     "instead of the diagonal")
    screen_mm: str = Field("", description="the panel's active area in mm, WIDTHxHEIGHT the "
                           "way round `screen` is (e.g. 154x86 for the Pi 7\"): sizes in mm "
                           "across and down, for panels whose pixels are not square")
    places: dict[str, str] = Field(default_factory=dict, description="library codes the "
                                   "library system sends (a transfer's destination, a hold's "
                                   "pickup branch) to the names readers know, e.g. "
                                   "{'VN-HN-02' = 'Thư viện quận Hoàn Kiếm'}; an unknown "
                                   "code shows as itself")
    offline_loan_days: int | None = Field(None, ge=1, le=365, description="the loan period "
                                          "the library gives an offline loan: its due date "
                                          "is shown on the screen; empty: no date shown")
    log_level: Literal["debug", "info", "warning", "error"] | None = Field(
        None, description="when neither --log-level nor SELFCHECK_LOG_LEVEL says (default info)")
    telemetry_s: float = Field(60.0, ge=1, description="tele/health period")
    # Broker credentials: the MQTT username is the station id (DESIGN.md). Keep the password in
    # `password_file` (mode 0600) so the TOML itself holds no secret.
    password: SecretStr | None = None
    password_file: Path | None = None
    tls: bool = False
    ca_file: Path | None = Field(None, description="CA that signed the broker's certificate")
    cert_file: Path | None = Field(None, description="client certificate, if the broker asks")
    key_file: Path | None = None
    allow_insecure: bool = Field(False, description="clear text to a non-loopback broker")

    @field_validator("site", "station")
    @classmethod
    def _id(cls, value: str) -> str:
        return topics.check_id(value, "id")

    @field_validator("screen")
    @classmethod
    def _screen(cls, value: str) -> str:
        if value and value not in PANELS:
            parse_size(value)
        return value

    @field_validator("screen_mm")
    @classmethod
    def _screen_mm(cls, value: str) -> str:
        if value:
            try:
                parse_mm(value)
            except ValueError as exc:
                raise ValueError(f"screen_mm: {exc}") from None
        return value

    @field_validator("places")
    @classmethod
    def _places(cls, value: dict[str, str]) -> dict[str, str]:
        for code, name in value.items():
            if not code.strip() or not name.strip() or len(name) > 80:
                raise ValueError(f"places: {code!r}: a code and a name of 1 to 80 "
                                 "characters")
        return value

    @property
    def screen_size(self) -> tuple[int, int] | None:
        if self.screen in PANELS:
            return PANELS[self.screen][0]
        return parse_size(self.screen) if self.screen else None

    @property
    def screen_area_mm(self) -> tuple[float, float] | None:
        """The panel's active area in mm (across, down): given, or the named panel's."""
        if self.screen_mm:
            return parse_mm(self.screen_mm)
        return PANELS[self.screen][1] if self.screen in PANELS else None
    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value  # SELFCHECK_LOG_LEVEL=DEBUG

    @field_validator("broker")
    @classmethod
    def _broker(cls, value: str) -> str:
        host = BrokerAddress.parse(value).host  # here too, so that the error names the key
        try:
            ipaddress.ip_address(host)
        except ValueError:
            # BrokerAddress takes any text before the port; a space or a stray character
            # would only fail later, as an unreachable broker, or as "not on this machine".
            if not _HOST.match(host):
                raise ValueError(f"host {host[:80]!r} is not a host name or an IP address "
                                 "(letters, digits, '.', '-' only)") from None
        return value

    @field_validator("journal")
    @classmethod
    def _journal(cls, value: Path) -> Path:
        if "\0" in str(value):
            raise ValueError("a NUL character in the path")
        where = Path(os.path.abspath(value))
        for root in _NOT_A_DISK:
            if where == root or root in where.parents:
                raise ValueError(f"{str(value)[:200]} is under {root}, not on a disk: name a "
                                 "file on the station's disk, e.g. var/station.db")
        if _is_dir(where):
            raise ValueError(f"{str(value)[:200]} is a folder: name the journal file in it, "
                             "e.g. station.db")
        return value

    @field_validator("card_options")
    @classmethod
    def _card_options(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        kind = info.data.get("card_reader")
        if kind is None:  # the card reader itself is wrong: that error says enough
            return value
        try:
            _check_card_options(kind, str(info.data.get("card_url", "")), value)
        except CardConfigError as exc:
            raise ValueError(f"{exc.field}: {exc.problem}") from None
        return value

    @field_validator("afi_in_library", "afi_on_loan")
    @classmethod
    def _not_lock(cls, value: int) -> int:
        if why := afi_problem(value):
            raise ValueError(why)
        return value

    @model_validator(mode="after")
    def _parse(self) -> StationSettings:
        # The one place a setting is parsed and checked: everything below gets the typed
        # configs. A bad broker, printer or mail setting stops the station at start, naming
        # the key.
        address = BrokerAddress.parse(self.broker)
        has_login = self.password is not None or self.password_file is not None
        security = ClientSecurity(username=self.station if has_login else None,
                                  tls=self.tls, ca_file=self.ca_file, cert_file=self.cert_file,
                                  key_file=self.key_file, allow_insecure=self.allow_insecure)
        check_transport(address, security)
        for key in ("ca_file", "cert_file", "key_file", "password_file"):
            path = getattr(self, key)
            if path is not None and not _is_file(Path(path)):
                raise ValueError(f"{key}: {str(path)[:200]} does not exist or is not a file")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file: set cert_file too")
        if self.pad != "sim" and not self.pad_url:
            raise ValueError(f"pad_url: a {self.pad} pad needs a serial URL "
                             "(/dev/ttyUSB0, socket://host:port)")
        if self.card_reader != "sim" and not self.card_url:
            raise ValueError(f"card_url: a {self.card_reader} card reader needs a device "
                             "(tty:AMA0:pn532, usb, /dev/ttyACM0, /dev/input/...)")
        # The password is read here, once: a file open to others stops the station at start.
        password = (self.password.get_secret_value() if self.password is not None
                    else read_password(self.password_file))
        from selfcheck.drivers.printer import load_config
        from selfcheck.drivers.printer.mail import load_mail_config

        printer = None
        if self.printer_transport != "none":
            printer = load_config({"transport": self.printer_transport, "url": self.printer_url,
                                   **self.printer_options})
        mail = load_mail_config(self.receipt_mail) if self.receipt_mail is not None else None
        self._config = StationConfig(
            site=self.site, station=self.station, journal=self.journal,
            broker=BrokerConfig(address, dataclasses.replace(security, password=password)),
            timeouts=StationTimeouts(ack_s=self.ack_timeout_s, inactivity_s=self.inactivity_s,
                                     summary_s=self.summary_s, telemetry_s=self.telemetry_s,
                                     resend_after_s=self.resend_after_s),
            offline=OfflinePolicy(returns=self.offline_returns, loans=self.offline_loans,
                                  list_every_s=self.offline_list_s),
            desk=DeskConfig(lang=self.lang, mode=self.mode, confirm_count=self.confirm_count,
                            multipart=self.multipart, owner_isil=self.owner_isil,
                            staff_cards=frozenset(self.staff_cards),
                            help_after=self.help_after, receipt=self.receipt, pin=self.pin,
                            library_name=self.library_name or self.site,
                            return_clear_s=self.return_clear_s),
            afi=AfiPolicy(self.afi_in_library, self.afi_on_loan),
            printer=printer, mail=mail,
            devices=DevicesConfig(pad=self.pad, pad_url=self.pad_url,
                                  pad_options=MappingProxyType(dict(self.pad_options)),
                                  card_reader=self.card_reader, card_url=self.card_url,
                                  card_options=MappingProxyType(dict(self.card_options))),
            screen=ScreenConfig(
                size=self.screen_size, dpi=self.screen_dpi, inches=self.screen_inches,
                area_mm=self.screen_area_mm, rotation=self.rotation,
                fullscreen=self.fullscreen, audio=self.audio, audio_cache=self.audio_cache,
                desk_where=MappingProxyType({"vi": self.desk_where_vi or self.desk_where_en,
                                             "en": self.desk_where_en or self.desk_where_vi}),
                places=MappingProxyType(dict(self.places)),
                offline_loan_days=self.offline_loan_days))
        return self

    @property
    def config(self) -> StationConfig:
        """The typed configs the runtime, the link and the drivers are handed."""
        assert self._config is not None  # set by the validator above
        return self._config

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = _TOML_FILE.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the OS, a NUL in it
        return False


# The file `load_settings` reads, for the settings source above: pydantic-settings takes no
# file per call, and a context variable (unlike a class attribute) is this call's alone, in
# whatever thread or task loads settings at the same time.
_TOML_FILE: ContextVar[Path | None] = ContextVar("station_toml_file", default=None)


def load_settings(toml: Path | None = None, **overrides: object) -> StationSettings:
    """Settings from `toml` (if given), the environment, then `overrides`."""
    if toml is not None and not toml.exists():
        raise FileNotFoundError(f"config file {toml} does not exist")
    if toml is not None and not toml.is_file():  # a folder would be skipped: defaults
        raise ValueError(f"config file {toml} is not a file (a folder?): name the TOML file")
    if toml is not None:
        try:
            text = toml.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"config file {toml}: not UTF-8 (byte {exc.start})") from None
        if problem := toml_nesting_problem(text):
            raise ValueError(f"config file {toml}: {problem}")
    token = _TOML_FILE.set(toml)
    try:
        return StationSettings(**overrides)  # type: ignore[arg-type]
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise ValueError(f"config file {toml}: arrays or tables nested too deep") from None
    finally:
        _TOML_FILE.reset(token)
