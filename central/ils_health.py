"""Is the library system there? Checked when the central starts and then every period.

SIP2: a fresh connection each time with 93 login and 99 SC status (the pool's connections are
not used: a probe that reused one would not notice a changed password). The embedded store: one
query. The verdict is `ok`, `down` or `login refused`, with since when; each change is logged
once, and the state is in the central's metrics (`selfcheck_ils_up`, `selfcheck_ils_state`,
`selfcheck_ils_state_since_seconds`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from selfcheck.system.faults import say

log = logging.getLogger(__name__)

State = Literal["ok", "down", "login refused"]
STATES: tuple[State, ...] = ("ok", "down", "login refused")


@dataclass(frozen=True)
class Verdict:
    state: State
    detail: str = ""
    # What to do about it, as a faults key (selfcheck/system/locale): "" when the state
    # says enough. A slow SIP2 server is "down" to the stations, but its cure is timeout=.
    hint: str = ""


Probe = Callable[[], Verdict]


def sip2_probe(cfg: object) -> Probe:
    from selfcheck.central.backends.sip2.client import (
        Connection,
        Sip2Config,
        Sip2LoginRefused,
        Sip2Timeout,
        Sip2Unavailable,
    )

    assert isinstance(cfg, Sip2Config)

    def probe() -> Verdict:
        try:
            Connection(cfg).close()  # connects, 93 (with a user), 99
        except Sip2LoginRefused as exc:
            return Verdict("login refused", str(exc), "ils.login")
        except Sip2Timeout as exc:
            return Verdict("down", str(exc), "ils.slow")
        except Sip2Unavailable as exc:
            return Verdict("down", str(exc), "ils.down")
        return Verdict("ok")

    probe.timeout_s = cfg.timeout_s  # type: ignore[attr-defined]
    return probe


def store_probe(engine: object) -> Probe:
    from sqlalchemy import Engine, text

    assert isinstance(engine, Engine)

    def probe() -> Verdict:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # any driver error means the same to an operator: down
            return Verdict("down", str(exc).splitlines()[0][:200])
        return Verdict("ok")

    return probe


class IlsHealth(Collector):
    """Runs `probe` now and every `period_s` in a thread; `state`, `since` (wall clock) and
    `changed` (set on every change, for waiting in tests) say the latest verdict."""

    def __init__(self, probe: Probe, name: str, period_s: float = 30.0,
                 on_change: Callable[[Verdict, float], None] | None = None) -> None:
        self.probe = probe
        # Called with the new verdict and its since, in the check's thread, after each change.
        self.on_change = on_change
        self.name = name
        self.period_s = period_s
        self.timeout_s = getattr(probe, "timeout_s", 0.0)  # named by the slow hint
        self.verdict: Verdict | None = None
        self.since = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ils-health", daemon=True)

    @property
    def state(self) -> State | None:
        return self.verdict.state if self.verdict else None

    def latest(self) -> tuple[Verdict | None, float]:
        """The latest verdict and since when, read together."""
        with self._lock:
            return self.verdict, self.since

    def start(self) -> IlsHealth:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.period_s + 30)

    def check(self) -> Verdict:
        try:
            verdict = self.probe()
        except Exception as exc:  # a bug in a probe must not silence the others' checks
            log.exception("library system check failed")
            verdict = Verdict("down", f"check failed: {exc}")
        with self._lock:
            changed = self.verdict is None or verdict.state != self.verdict.state
            if changed:
                self.since = time.time()
                extra = {"ils": self.name, "state": verdict.state}
                if verdict.state == "ok":
                    log.info("library system answers", extra=extra)
                elif verdict.hint:
                    log.warning("library system %s: %s. %s", verdict.state, verdict.detail,
                                say(verdict.hint, timeout=self.timeout_s), extra=extra)
                else:
                    log.warning("library system %s: %s", verdict.state, verdict.detail,
                                extra=extra)
            self.verdict = verdict
            since = self.since
        hook = self.on_change
        if changed and hook is not None:
            try:
                hook(verdict, since)
            except Exception:  # telling others must not stop the checks
                log.exception("library system change not passed on")
        return verdict

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check()
            self._stop.wait(self.period_s)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("selfcheck_ils_up", "1 when the library system answered the "
                               "last check (SIP2 login and status, or a store query)",
                               labels=["ils"])
        state = GaugeMetricFamily("selfcheck_ils_state", "1 for the library system's current "
                                  "state", labels=["ils", "state"])
        since = GaugeMetricFamily("selfcheck_ils_state_since_seconds", "when the library "
                                  "system's current state began (Unix time)", labels=["ils"])
        current = self.state
        if current is not None:
            up.add_metric([self.name], 1.0 if current == "ok" else 0.0)
            for s in STATES:
                state.add_metric([self.name, s.replace(" ", "_")], 1.0 if s == current else 0.0)
            since.add_metric([self.name], self.since)
        yield from (up, state, since)
