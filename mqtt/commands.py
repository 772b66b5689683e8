"""Operator commands of the v1 contract: `cmd/req/{name}` down, `cmd/res/{cmd_id}` up.

A command carries its own id (the dedupe key) and an expiry: a station that receives it late
answers `rejected` with reason `expired` and does not run it.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from selfcheck.mqtt import topics
from selfcheck.mqtt.messages import Message, MessageError, OfflinePolicy, Text

CmdId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
JobState = Literal["queued", "in_progress", "succeeded", "failed", "rejected"]
FINAL: tuple[JobState, ...] = ("succeeded", "failed", "rejected")


class OutOfServiceArgs(Message):
    message_vi: Text | None = None
    message_en: Text | None = None


class NoArgs(Message):
    pass


class RestartArgs(Message):
    force: bool = Field(False, description="restart even while a reader is using the station")


class OfflinePolicyArgs(Message):
    policy: OfflinePolicy


class UpdateArgs(Message):
    """Install a release from the central's wheelhouse, check it, switch to it, restart."""

    version: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")]
    url: Annotated[str, Field(pattern=r"^https?://[^\s]{1,500}$",
                              description="the release's folder on the central, e.g. "
                              "http://central:8080/updates/0.2.0/")]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$",
                                 description="of the release's requirements.lock")]
    force: bool = Field(False, description="even while a reader is using the station")


class RollbackArgs(Message):
    force: bool = Field(False, description="even while a reader is using the station")


ARGS: dict[str, type[Message]] = {
    "out_of_service": OutOfServiceArgs, "in_service": NoArgs, "reload_config": NoArgs,
    "set_offline_policy": OfflinePolicyArgs, "send_diagnostics": NoArgs, "restart": RestartArgs,
    "update": UpdateArgs, "rollback": RollbackArgs,
}


class CommandReq(Message):
    schema_: Literal["cmd.req/1"] = Field("cmd.req/1", alias="schema")
    cmd_id: CmdId
    issued_at: dt.datetime
    expires_at: dt.datetime
    by: Annotated[str, Field(max_length=64)] = "operator"
    args: dict[str, Any] = Field(default_factory=dict)


class CommandRes(Message):
    schema_: Literal["cmd.res/1"] = Field("cmd.res/1", alias="schema")
    cmd_id: CmdId
    name: str
    state: JobState
    at: dt.datetime
    reason: Text | None = None
    result: dict[str, Any] | None = None


MODELS: dict[str, type[Message]] = {"cmd.req/1": CommandReq, "cmd.res/1": CommandRes}


def parse_args(name: str, args: dict[str, Any]) -> Message:
    """The typed arguments of command `name`, or MessageError naming the field."""
    model = ARGS.get(name)
    if model is None:
        raise MessageError("name", f"unknown command {name!r}; known: {', '.join(ARGS)}")
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in ("args", *err["loc"]))
        raise MessageError(where, err["msg"]) from None


def req_topic(site: str, station: str, name: str) -> str:
    return f"{topics.root(site, station)}/cmd/req/{name}"


def res_topic(site: str, station: str, cmd_id: str) -> str:
    return f"{topics.root(site, station)}/cmd/res/{cmd_id}"
