"""One way to make an operator command, whoever sends it (`selfcheck fleet send` or the page):
the arguments checked against the command's model, an id, an expiry and who asked."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from selfcheck.mqtt.commands import ARGS, CommandReq, parse_args, req_topic
from selfcheck.mqtt.connection import publish_properties
from selfcheck.mqtt.messages import encode

DEFAULT_EXPIRES_S = 300.0
MIN_EXPIRES_S, MAX_EXPIRES_S = 10.0, 86_400.0  # what an operator may ask for
NAMES = tuple(ARGS)
WAITING = "sent"  # no answer from the station yet
EXPIRED = "expired"  # ours, not the station's: past its expiry with no answer at all


def expired(entry: dict[str, Any], now: float) -> bool:
    """A command no station answered before its expiry: it will never run (a station that
    gets it late refuses it), so the operator must not be left waiting on "sent"."""
    at = entry.get("expires_at")
    return entry.get("state") == WAITING and at is not None and now > at


def build(name: str, args: dict[str, Any], *, by: str = "operator",
          expires_s: float = DEFAULT_EXPIRES_S, cmd_id: str | None = None) -> CommandReq:
    """The request, or MessageError naming the argument that is wrong."""
    parse_args(name, args)
    now = dt.datetime.now(dt.UTC)
    return CommandReq(cmd_id=cmd_id or uuid.uuid4().hex, issued_at=now, by=by[:64],
                      expires_at=now + dt.timedelta(seconds=expires_s), args=args)


def message(site: str, station: str, name: str, req: CommandReq,
            expires_s: float = DEFAULT_EXPIRES_S) -> tuple[str, bytes, Any]:
    """Topic, payload and MQTT properties to publish (QoS 1, not retained)."""
    props = publish_properties(MessageExpiryInterval=max(1, int(expires_s)))
    return req_topic(site, station, name), encode(req), props
