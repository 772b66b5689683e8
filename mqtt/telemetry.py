"""Telemetry messages of the v1 contract: `state` (retained snapshot), `tele/health`,
`evt/{kind}` and the versioned `config/desired` / `config/reported` documents.

None of them has a place for a card number, a name or a PIN: the station can only say how
it is, never who used it (DESIGN.md, invariant 5).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field

from selfcheck.mqtt import messages, topics
from selfcheck.mqtt.messages import Message, OfflinePolicy, Text

Paper = Literal["ok", "low", "out", "none"]  # none: no printer
Printer = Literal["ok", "fault", "none"]
Service = Literal["in_service", "out_of_service"]
EventKind = Literal[
    "reader_lost", "reader_back", "card_reader_lost", "card_reader_back", "paper_low",
    "paper_out", "paper_ok", "security_write_failed", "staff_needed", "offline", "online",
    "security_write_skipped",  # staff skipped a pending security write (logged in the journal)
    "tx_refused_late",  # a refusal that came back after the reader left: a staff exception
    "loan_undone",  # a loan made after the reader was told it was not: checked back in
]


class State(Message):
    schema_: Literal["state/1"] = Field("state/1", alias="schema")
    at: dt.datetime
    version: str
    service: Service = "in_service"
    service_message: Text | None = None
    pad_ok: bool
    card_ok: bool = True
    printer: Printer = "none"
    paper: Paper = "none"
    outbox_pending: int = Field(ge=0)
    outbox_oldest_at: dt.datetime | None = Field(
        None, description="creation time of the oldest unacknowledged row (station clock); a "
        "time rather than an age so that the retained snapshot changes only when the outbox does")
    offline_policy: OfflinePolicy
    config_version: int = Field(ge=0)


class Health(Message):
    schema_: Literal["tele.health/1"] = Field("tele.health/1", alias="schema")
    at: dt.datetime
    uptime_s: float = Field(ge=0, description="since the app started")
    os_uptime_s: float | None = None
    cpu_temp_c: float | None = None
    throttled: int | None = Field(None, ge=0, description="vcgencmd get_throttled bit field")
    load1: float | None = None
    disk_free_pct: float | None = None
    mem_available_pct: float | None = None
    clock_offset_s: float | None = Field(None, description="kernel NTP estimate (adjtimex)")
    clock_synced: bool | None = None
    outbox_pending: int = Field(0, ge=0)
    outbox_oldest_s: float | None = None
    reader: dict[str, int] = Field(default_factory=dict, description="pad driver counters")
    tx: dict[str, int] = Field(default_factory=dict,
                               description="transactions since start by '{kind}.{outcome}'")
    rejected: int = Field(0, ge=0, description="malformed messages the station refused")


class Event(Message):
    schema_: Literal["evt/1"] = Field("evt/1", alias="schema")
    kind: EventKind
    at: dt.datetime
    severity: Literal["info", "warning", "critical"] = "warning"
    detail: Text | None = None
    item_id: messages.ItemId | None = None  # which book, never who had it
    title: Text | None = None  # the book's title, when the station knows it


class ConfigSettings(Message):
    """Settings an operator may steer remotely; everything else stays in the station file."""

    offline_returns: bool | None = None
    inactivity_s: float | None = Field(None, gt=0, le=3600)
    summary_s: float | None = Field(None, gt=0, le=600)
    ack_timeout_s: float | None = Field(None, gt=0, le=60)
    telemetry_s: float | None = Field(None, ge=1, le=3600)
    lang: Literal["vi", "en"] | None = None


class ConfigDesired(Message):
    schema_: Literal["config.desired/1"] = Field("config.desired/1", alias="schema")
    version: int = Field(ge=1)
    settings: ConfigSettings


class ConfigReported(Message):
    schema_: Literal["config.reported/1"] = Field("config.reported/1", alias="schema")
    version: int = Field(ge=0, description="the desired version now applied (0: none)")
    settings: ConfigSettings
    error: Text | None = Field(None, description="why the last desired document was refused")
    refused_version: int | None = None


IlsState = Literal["ok", "down", "login refused", "gone"]


class BridgeIls(Message):
    """A bridge's verdict on the library system, retained on `topics.bridge_ils`. `gone` is
    the bridge's Last Will or clean stop: nobody checks any more, so nothing is known."""

    schema_: Literal["bridge.ils/1"] = Field("bridge.ils/1", alias="schema")
    bridge: str = Field(pattern=r"^[a-z0-9-]{1,64}$")
    state: IlsState
    since: dt.datetime | None = Field(None, description="when this state began (bridge "
                                      "clock); none in the Last Will")
    ils: Text = Field("", description="which library system, without any password")
    detail: Text | None = Field(None, description="why it is down, as the check saw it")


MODELS: dict[str, type[Message]] = {  # in selfcheck.mqtt.registry
    "bridge.ils/1": BridgeIls, "state/1": State, "tele.health/1": Health, "evt/1": Event,
    "config.desired/1": ConfigDesired, "config.reported/1": ConfigReported,
}


def channel(site: str, station: str, name: str) -> str:
    return f"{topics.root(site, station)}/{name}"


# What the fleet-state service listens to (every station, every channel it reads).
FLEET_SUBSCRIPTIONS = [f"{topics.VERSION_ROOT}/+/+/{c}" for c in (
    "status", "state", "tele/+", "evt/+", "cmd/res/+", "config/reported")]
