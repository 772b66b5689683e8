"""The station's side of the operators' channels, wired into a StationRuntime: telemetry
(state, health, events), operator commands and the remote config. Kept out of runtime.py so
that the runtime stays about reader sessions; it sees the runtime only as a `Station`."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from selfcheck.drivers.seen import TagUid
from selfcheck.kiosk import core
from selfcheck.kiosk.core import SelfCheck
from selfcheck.kiosk.core_model import Event as CoreEvent
from selfcheck.kiosk.runtime.command_log import CommandLog
from selfcheck.kiosk.runtime.commands import CommandHandler, ConfigReconciler, Job
from selfcheck.kiosk.runtime.health import HealthProbe
from selfcheck.kiosk.runtime.releases import ReleaseError, Releases
from selfcheck.kiosk.runtime.telemetry import StationTelemetry
from selfcheck.mqtt.commands import (
    OfflinePolicyArgs,
    OutOfServiceArgs,
    RestartArgs,
    RollbackArgs,
    UpdateArgs,
)
from selfcheck.mqtt.station_link import StationLink
from selfcheck.mqtt.telemetry import ConfigSettings, Health, Paper, Printer, State

if TYPE_CHECKING:
    from selfcheck.kiosk.config import StationConfig
    from selfcheck.kiosk.settings import StationSettings

log = logging.getLogger(__name__)

# `selfcheck station` exits with this after a `restart` command; the unit restarts the app on
# it (systemd: Restart=on-failure, or RestartForceExitStatus=75). 75 is EX_TEMPFAIL.
RESTART_EXIT_CODE = 75
STEERABLE = ("offline_returns", "inactivity_s", "summary_s", "ack_timeout_s", "telemetry_s",
             "lang")
# Commands that end with the app exiting RESTART_EXIT_CODE, once they succeeded: the unit
# then starts `current`, which `update` and `rollback` have just changed.
RESTARTS = ("restart", "update", "rollback")
OOS_WAIT_S = 900.0  # how long an out of service waits for a reader's session to end


class _RecentLog(logging.Handler):
    """The last warnings and errors, for `send_diagnostics`."""

    def __init__(self, size: int = 30) -> None:
        super().__init__(logging.WARNING)
        self.lines: collections.deque[str] = collections.deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(f"{record.created:.0f} {record.name}: {record.getMessage()}"[:300])
        except Exception:  # a log handler must never raise
            pass



class Station(Protocol):
    """What the agent needs of the station runtime (StationRuntime is one)."""

    version: str
    pad_ok: bool
    card_ok: bool
    exit_code: int  # set by a `restart` command

    @property
    def settings(self) -> StationSettings: ...  # the file's, as last (re)loaded

    @property
    def config(self) -> StationConfig: ...  # what the station acts on now

    @property
    def core(self) -> SelfCheck: ...  # read only: the agent feeds it events

    @property
    def reload(self) -> Callable[[], StationSettings] | None: ...  # re-reads the file

    def reconfigure(self, config: StationConfig,
                    settings: StationSettings | None = None) -> None: ...

    def feed(self, event: CoreEvent) -> None: ...

    def run_soon(self, fn: Callable[..., Any], *args: Any) -> None: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None: ...

    def stop(self) -> None: ...

    def service_message(self) -> str | None: ...

    def outbox_depth(self) -> tuple[int, float | None]: ...

    def reader_counters(self) -> dict[str, int]: ...


class FleetAgent:
    def __init__(self, rt: Station, link: StationLink,
                 db: tuple[sqlite3.Connection, threading.Lock]) -> None:
        self.rt = rt
        self.link = link
        publish = link.publish
        self.telemetry = StationTelemetry(publish, period_s=rt.config.timeouts.telemetry_s)
        self.log = CommandLog(shared=db)  # the journal's connection: no extra descriptors
        self.commands = CommandHandler(self.log, publish)
        self.commands.target = self
        self.commands.recover()
        self.config = ConfigReconciler(self.log, publish, self.apply_settings)
        self.probe = HealthProbe(rt.config.journal.parent)
        self.started = time.monotonic()
        # Installed while the agent lives, never at import: logging belongs to the entry point.
        self.recent = _RecentLog()
        logging.getLogger().addHandler(self.recent)
        self.printer: Printer = "none"
        self.paper: Paper = "none"
        self._unreadable: set[TagUid] = set()
        self._ticking = False
        self._releasing = threading.Lock()  # one update or rollback at a time
        self._pad_lost = False
        self._card_lost = False

    def start(self) -> None:
        """Apply the remote config applied before the restart (once the runtime is wired)."""
        self.config.start()

    def close(self) -> None:
        logging.getLogger().removeHandler(self.recent)
        self.log.close()

    def reconfigured(self, config: StationConfig) -> None:
        """The runtime took a new config: the agent's own part of it."""
        self.telemetry.period_s = config.timeouts.telemetry_s

    # -- from the link (paho's thread)
    def on_channel(self, channel: str, payload: bytes) -> None:
        if channel.startswith("cmd/req/"):
            self.commands.on_request(channel.removeprefix("cmd/req/"), payload)
        elif channel == "config/desired":
            self.rt.run_soon(self.config.on_desired, payload)

    def connected(self, up: bool) -> None:
        self.telemetry.connected(up)
        if up:
            self.config.report()
            if self.rt.settings.releases is not None:
                # On line: a release on trial (just updated to) has proved itself.
                confirmed = Releases(self.rt.settings.releases).confirm()
                if confirmed is not None:
                    log.info("release %s reached the broker: kept", confirmed)

    # -- from the runtime
    def pad_health(self, ok: bool) -> None:
        if ok and self._pad_lost:
            self.telemetry.event("reader_back", "info", "the book pad answers again")
        elif not ok:
            self.telemetry.event("reader_lost", "critical", "the book pad does not answer")
        self._pad_lost = not ok

    def card_health(self, ok: bool) -> None:
        if ok and self._card_lost:
            self.telemetry.event("card_reader_back", "info", "the card reader answers again")
        elif not ok:
            self.telemetry.event("card_reader_lost", "critical",
                                 "the card reader is not available")
        self._card_lost = not ok

    def security_failed(self, uid: TagUid) -> None:
        # The book's line in this session (any of a set's parts), else its pending write
        # (a retry after the session ended).
        view = self.rt.core.view(0)
        book = next((ln for ln in view.lines if uid in ln.uids), None) \
            or next((p for p in view.pending if p.uid == uid), None)
        self.telemetry.event("security_write_failed", "warning",
                             "the tag's security state could not be written",
                             item_id=book.item_id if book else None,
                             title=book.title if book else None)
        self.telemetry.failure("security write failed")

    def on_view(self, view: core.View) -> None:
        for line in view.lines:
            if (line.status is core.Status.UNREADABLE and line.uid is not None
                    and line.uid not in self._unreadable):
                self._unreadable.add(line.uid)
                self.telemetry.failure("unreadable tag")
        if view.mode is core.Mode.IDLE and self._unreadable:
            self._unreadable.clear()

    def set_printer(self, printer: Printer, paper: Paper) -> None:
        """What a printer driver reports; paper changes raise events."""
        before, self.printer, self.paper = self.paper, printer, paper
        if paper != before and paper in ("low", "out"):
            self.telemetry.event("paper_low" if paper == "low" else "paper_out",
                                 "warning" if paper == "low" else "critical")
        elif paper == "ok" and before in ("low", "out"):
            self.telemetry.event("paper_ok", "info")

    # -- periodic (the station loop, about every second)
    async def tick(self) -> None:
        if self._ticking:
            return
        self._ticking = True
        try:
            count, oldest = await asyncio.to_thread(self.rt.outbox_depth)
            self.telemetry.state(self.snapshot(count, oldest))
            if self.telemetry.health_due():
                reading = await asyncio.to_thread(self.health, count, oldest)
                self.telemetry.health(reading)
            self.telemetry.flush()
        finally:
            self._ticking = False

    def snapshot(self, count: int, oldest_age: float | None) -> State:
        now = dt.datetime.now(dt.UTC)
        closed = self.rt.core.out_of_service
        return State(
            at=now, version=self.rt.version, service="out_of_service" if closed else "in_service",
            service_message=self.rt.service_message(), pad_ok=self.rt.pad_ok,
            card_ok=self.rt.card_ok,
            printer=self.printer,
            paper=self.paper, outbox_pending=count,
            outbox_oldest_at=(now - dt.timedelta(seconds=oldest_age)).replace(microsecond=0)
            if oldest_age is not None else None,
            offline_policy="returns" if self.rt.config.offline.returns else "none",
            config_version=self.config.version)

    def health(self, count: int, oldest: float | None) -> Health:
        r = self.probe.read()
        reader = self.rt.reader_counters()
        return Health(
            at=dt.datetime.now(dt.UTC), uptime_s=round(time.monotonic() - self.started, 1),
            os_uptime_s=r.os_uptime_s, cpu_temp_c=r.cpu_temp_c, throttled=r.throttled,
            load1=r.load1, disk_free_pct=r.disk_free_pct, mem_available_pct=r.mem_available_pct,
            clock_offset_s=r.clock_offset_s, clock_synced=r.clock_synced, outbox_pending=count,
            outbox_oldest_s=round(oldest, 1) if oldest is not None else None, reader=reader,
            tx=self.telemetry.tx_counts(),
            rejected=self.link.rejected + self.commands.rejected + self.config.rejected)

    # -- settings steered remotely
    def apply_settings(self, cs: ConfigSettings) -> None:
        """An operator's settings: a new config for the runtime, the rest left as it is."""
        self.rt.reconfigure(self.rt.config.steered(cs))

    # -- commands (CommandTarget)
    def refusal(self, job: Job) -> str | None:
        c = self.rt.core
        if job.name in RESTARTS:
            assert isinstance(job.args, RestartArgs | UpdateArgs | RollbackArgs)
            if c.busy and not job.args.force:
                return (f"a reader is using the station ({c.mode.value}); "
                        f"send with force=true to {job.name} anyway")
        if job.name in ("update", "rollback") and self.rt.settings.releases is None:
            return ("this station was not installed for updates from the central "
                    "(no `releases` folder in its config)")
        if job.name == "reload_config" and self.rt.reload is None:
            return "this station was started without a config file: nothing to reload"
        return None

    def schedule(self, job: Job) -> None:
        self.rt.run_soon(self.rt.spawn, self._run(job))

    async def _run(self, job: Job) -> None:
        report = self.commands.report
        ok = False
        try:
            report(job, "in_progress")
            result = await self._execute(job)
            report(job, "succeeded", result=result)
            ok = True
        except _Failed as exc:
            report(job, "failed", str(exc))
        except Exception as exc:  # a command must never take the station down
            log.exception("command %s (%s) failed", job.cmd_id, job.name)
            report(job, "failed", f"{type(exc).__name__}: {exc}")
        if job.name in RESTARTS and ok:  # a failed update keeps running what runs
            self.rt.exit_code = RESTART_EXIT_CODE
            await asyncio.sleep(0.2)  # let the final state reach the broker first
            self.rt.stop()

    async def _execute(self, job: Job) -> dict[str, Any] | None:
        rt, name, args = self.rt, job.name, job.args
        if name == "out_of_service":
            assert isinstance(args, OutOfServiceArgs)
            rt.feed(core.SetService(False, args.message_vi, args.message_en))
            if rt.core.mode is not core.Mode.OUT_OF_SERVICE:
                self.commands.report(job, "in_progress", "waiting for the reader's session "
                                     "to end")
                deadline = time.monotonic() + OOS_WAIT_S
                while rt.core.mode is not core.Mode.OUT_OF_SERVICE:
                    if time.monotonic() > deadline or not rt.core.closing:
                        raise _Failed("the reader's session did not end in time")
                    await asyncio.sleep(0.25)
            return None
        if name == "in_service":
            rt.feed(core.SetService(True))
            return None
        if name == "set_offline_policy":
            assert isinstance(args, OfflinePolicyArgs)
            self.apply_settings(ConfigSettings(offline_returns=args.policy == "returns"))
            return {"offline_policy": args.policy}
        if name == "reload_config":
            return await self._reload()
        if name == "send_diagnostics":
            return await asyncio.to_thread(self.diagnostics)
        if name == "restart":
            return {"exit_code": RESTART_EXIT_CODE}
        if name == "update":
            assert isinstance(args, UpdateArgs)
            self.commands.report(job, "in_progress", f"installing {args.version}")
            return await asyncio.to_thread(self._update, args)
        if name == "rollback":
            return await asyncio.to_thread(self._rollback)
        raise _Failed(f"no handler for {name}")

    async def _reload(self) -> dict[str, Any]:
        assert self.rt.reload is not None
        try:
            new: StationSettings = await asyncio.to_thread(self.rt.reload)
        except Exception as exc:  # pydantic names the field in its message
            raise _Failed(f"config not reloaded: {exc}") from None
        old = self.rt.settings
        changed = sorted(k for k in type(old).model_fields
                         if getattr(old, k) != getattr(new, k))
        # Only what may change without a restart; the operators' desired config still wins.
        from_file = ConfigSettings(**{k: getattr(new, k) for k in STEERABLE})
        self.rt.reconfigure(self.rt.config.steered(from_file).steered(self.config.settings),
                            settings=new)
        return {"changed": changed,
                "needs_restart": [k for k in changed if k not in STEERABLE]}

    def _releases(self) -> Releases:
        assert self.rt.settings.releases is not None
        return Releases(self.rt.settings.releases)

    def _update(self, args: UpdateArgs) -> dict[str, Any]:
        """Install, check by starting it (--check), switch; a release that fails its check is
        removed and the running one stays current. The restart follows (see _run)."""
        if not self._releasing.acquire(blocking=False):
            raise _Failed("another update or rollback is running")
        try:
            return self._install(args)
        finally:
            self._releasing.release()

    def _install(self, args: UpdateArgs) -> dict[str, Any]:
        rel = self._releases()
        try:
            rel.install(args.version, args.url, args.sha256)
            try:
                rel.check(args.version, sys.argv[1:])
            except ReleaseError:
                rel.discard(args.version)
                raise
            done = rel.switch(args.version, on_trial=True)
        except ReleaseError as exc:
            raise _Failed(f"{exc}; still on {rel.current or self.rt.version}") from None
        return {"version": done.version, "previous": done.previous}

    def _rollback(self) -> dict[str, Any]:
        if not self._releasing.acquire(blocking=False):
            raise _Failed("another update or rollback is running")
        try:
            done = self._releases().rollback()
        except ReleaseError as exc:
            raise _Failed(str(exc)) from None
        finally:
            self._releasing.release()
        return {"version": done.version, "previous": done.previous}

    def diagnostics(self) -> dict[str, Any]:
        count, oldest = self.rt.outbox_depth()
        return {
            "health": self.health(count, oldest).model_dump(mode="json", by_alias=True),
            "state": self.snapshot(count, oldest).model_dump(mode="json", by_alias=True),
            "mode": self.rt.core.mode.value, "online": self.rt.core.online,
            "session": self.link.session,
            "events_published": dict(self.telemetry.published),
            "recent_log": list(self.recent.lines)[-20:],
        }


class _Failed(Exception):
    pass
