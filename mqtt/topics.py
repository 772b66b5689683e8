"""Topic names of the MQTT contract v1 (DESIGN.md): `lib/v1/{site}/{station}/...` for the
stations, `lib/central/v1/{bridge}/...` for what the central bridges say about themselves (a
root of its own, so that `parse` can never take a bridge's report for a station's message)."""

from __future__ import annotations

import re
from dataclasses import dataclass

VERSION_ROOT = "lib/v1"
CENTRAL_ROOT = "lib/central/v1"
SHARE_GROUP = "bridge"
_ID = re.compile(r"^[a-z0-9-]{1,64}$")

TX_KINDS = ("loan", "return", "renew")
# every tx/ topic a station publishes: the circulation's kinds and the tagging desk's writes
STATION_TX = (*TX_KINDS, "tagged")


class TopicError(ValueError):
    pass


def check_id(value: str, what: str) -> str:
    if not _ID.match(value):
        raise TopicError(f"{what} {value!r}: use 1-64 characters of lowercase a-z, 0-9 and '-'")
    return value


def root(site: str, station: str) -> str:
    return f"{VERSION_ROOT}/{check_id(site, 'site')}/{check_id(station, 'station')}"


def tx(site: str, station: str, kind: str) -> str:
    if kind not in TX_KINDS:
        raise TopicError(f"transaction kind {kind!r} is not one of {TX_KINDS}")
    return f"{root(site, station)}/tx/{kind}"


def tagged(site: str, station: str) -> str:
    """A tag written at the tagging desk (tx.tagged/1): answered on ack/tx like a
    transaction, but not one of the circulation's (no seq, no station order)."""
    return f"{root(site, station)}/tx/tagged"


def ack_tx(site: str, station: str) -> str:
    return f"{root(site, station)}/ack/tx"


def status(site: str, station: str) -> str:
    return f"{root(site, station)}/status"


def req(site: str, station: str, name: str) -> str:
    return f"{root(site, station)}/req/{name}"


def res(site: str, station: str, name: str) -> str:
    return f"{root(site, station)}/res/{name}"


def bridge_ils(bridge: str) -> str:
    """Where a bridge keeps its retained verdict on the library system."""
    return f"{CENTRAL_ROOT}/{check_id(bridge, 'bridge')}/ils"


def parse_bridge_ils(topic: str) -> str:
    """The bridge id of a `bridge_ils` topic; TopicError if it is not one."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != CENTRAL_ROOT or parts[4] != "ils":
        raise TopicError(f"topic {topic[:200]!r} is not {CENTRAL_ROOT}/{{bridge}}/ils")
    return check_id(parts[3], "bridge")


FLEET_ILS = f"{CENTRAL_ROOT}/+/ils"

# What the central bridges subscribe to, as one shared-subscription group.
BRIDGE_TX = f"$share/{SHARE_GROUP}/{VERSION_ROOT}/+/+/tx/#"
BRIDGE_REQ = f"$share/{SHARE_GROUP}/{VERSION_ROOT}/+/+/req/#"


@dataclass(frozen=True)
class Parsed:
    site: str
    station: str
    channel: str  # 'tx', 'req', 'ack', 'res', 'status', ...
    name: str  # 'loan', 'patron', ... or '' when the channel has none


def parse(topic: str) -> Parsed:
    """Split a v1 topic into its parts; TopicError says what does not fit."""
    parts = topic.split("/")
    if len(parts) < 5 or "/".join(parts[:2]) != VERSION_ROOT:
        raise TopicError(f"topic {topic!r} is not under {VERSION_ROOT}/{{site}}/{{station}}/")
    site, station = check_id(parts[2], "site"), check_id(parts[3], "station")
    return Parsed(site, station, parts[4], "/".join(parts[5:]))
