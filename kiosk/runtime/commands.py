"""Operator commands on the station (`cmd/req/{name}` -> `cmd/res/{cmd_id}`) and the
reconciliation of `config/desired` with `config/reported`.

The order of checks is the contract: a malformed command is rejected naming the field; a known
cmd_id gets its stored state again and does not run; an expired one is rejected unrun; bad
arguments or a station that may not do it now are rejected with the reason; anything else is
queued (persisted first, so a crash cannot run it twice) and run on the station's loop.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from selfcheck.kiosk.runtime.command_log import CommandLog
from selfcheck.mqtt import bounds, messages
from selfcheck.mqtt.commands import CommandReq, CommandRes, JobState, parse_args
from selfcheck.mqtt.messages import Message, MessageError
from selfcheck.mqtt.telemetry import ConfigDesired, ConfigReported, ConfigSettings

log = logging.getLogger(__name__)

Publish = Callable[..., bool]  # (channel, payload, qos=, retain=) -> sent


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Job:
    cmd_id: str
    name: str
    args: Message


class CommandTarget(Protocol):
    def refusal(self, job: Job) -> str | None:
        """Why the station will not do this now, or None."""
        ...

    def schedule(self, job: Job) -> None:
        """Run the job (later, on the station's loop) and report through the handler."""
        ...


class CommandHandler:
    def __init__(self, log_: CommandLog, publish: Publish, *,
                 now: Callable[[], dt.datetime] = _now) -> None:
        self._log = log_
        self._publish = publish
        self._now = now
        self.target: CommandTarget | None = None
        self.rejected = 0  # malformed command messages
        self.ran = 0  # commands accepted to run (not repeats, not rejected)

    def recover(self) -> None:
        """At start: what a crash or a restart interrupted is over. A restart that got as
        far as the restart succeeded; anything else failed, and is not run again."""
        for cmd_id, name in self._log.unfinished():
            if name == "restart":
                self._log.update(cmd_id, "succeeded", "restarted")
            else:
                self._log.update(cmd_id, "failed", "interrupted by a restart of the app")

    def report(self, job: Job, state: JobState, reason: str | None = None,
               result: dict[str, Any] | None = None) -> None:
        self._log.update(job.cmd_id, state, reason, result)
        self._send(job.cmd_id, job.name, state, reason, result)

    def _send(self, cmd_id: str, name: str, state: str, reason: str | None,
              result: Any = None) -> None:
        res = CommandRes(cmd_id=cmd_id, name=name, state=state,
                         at=self._now(), reason=reason, result=result)
        if not self._publish(f"cmd/res/{cmd_id}", messages.encode(res), qos=1):
            log.info("command %s: %s not sent (offline); kept in the log", cmd_id, state)

    def on_request(self, name: str, payload: bytes) -> None:
        """A `cmd/req/{name}` message (paho's thread)."""
        try:
            req = messages.decode(payload, CommandReq)
            assert isinstance(req, CommandReq)
        except MessageError as exc:
            self.rejected += 1
            log.warning("rejected command on cmd/req/%s: %s", name, exc)
            cmd_id = _cmd_id_of(payload)
            if cmd_id is not None:
                self._send(cmd_id, name, "rejected", f"malformed: {exc}")
            return
        prior = self._log.claim(req.cmd_id, name)
        if prior is not None:  # seen before: say how it went, do not run it again
            state, reason, result = prior
            self._send(req.cmd_id, name, state, reason, result)
            return
        job_name = name
        if req.expires_at <= self._now():
            self.report(Job(req.cmd_id, job_name, messages.Message()), "rejected",
                        f"expired at {req.expires_at.isoformat()}")
            return
        try:
            args = parse_args(name, req.args)
        except MessageError as exc:
            self.report(Job(req.cmd_id, job_name, messages.Message()), "rejected", str(exc))
            return
        job = Job(req.cmd_id, job_name, args)
        refusal = self.target.refusal(job) if self.target else "the station is starting"
        if refusal is not None:
            self.report(job, "rejected", refusal)
            return
        self.ran += 1
        self.report(job, "queued")
        assert self.target is not None
        self.target.schedule(job)


def _cmd_id_of(payload: bytes) -> str | None:
    """The cmd_id of a malformed command, if it has a usable one, to answer it."""
    if len(payload) > messages.MAX_PAYLOAD or bounds.json_depth(payload) > messages.MAX_DEPTH:
        return None  # not worth parsing (and too deep to parse safely)
    try:
        raw = json.loads(payload)
        cmd_id = raw.get("cmd_id") if isinstance(raw, dict) else None
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(cmd_id, str) and 0 < len(cmd_id) <= 64 and all(
            c.isalnum() or c in "_.:-" for c in cmd_id) and cmd_id.isascii():
        return cmd_id
    return None


class ConfigReconciler:
    """`config/desired` (retained, so it arrives on every connect) against what is applied.
    A newer valid version is applied and persisted; `config/reported` always says where the
    station stands, and why a desired version was refused."""

    def __init__(self, log_: CommandLog, publish: Publish,
                 apply: Callable[[ConfigSettings], None]) -> None:
        self._log = log_
        self._publish = publish
        self._apply = apply
        version, raw = log_.remote_config()
        self.version = version
        self.settings = ConfigSettings.model_validate(raw)
        self.error: str | None = None
        self.refused_version: int | None = None
        self.rejected = 0

    def start(self) -> None:
        """Apply what was applied before the restart, before anything else runs."""
        if self.version:
            self._apply(self.settings)

    def report(self) -> None:
        rep = ConfigReported(version=self.version, settings=self.settings, error=self.error,
                             refused_version=self.refused_version)
        self._publish("config/reported", messages.encode(rep), qos=1, retain=True)

    def on_desired(self, payload: bytes) -> None:
        if not payload:
            return  # the retained document was cleared: keep what is applied
        try:
            desired = messages.decode(payload, ConfigDesired)
            assert isinstance(desired, ConfigDesired)
        except MessageError as exc:
            self.rejected += 1
            self.error = f"config/desired refused: {exc}"
            log.warning(self.error)
            self.report()
            return
        if desired.version > self.version:
            try:
                self._apply(desired.settings)
            except (ValueError, TypeError) as exc:
                self.error, self.refused_version = f"not applied: {exc}", desired.version
                self.report()
                return
            self.version, self.settings = desired.version, desired.settings
            self.error = self.refused_version = None
            self._log.set_remote_config(self.version,
                                        self.settings.model_dump(exclude_none=True))
        self.report()
