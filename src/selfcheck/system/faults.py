"""Faults outside the program (the broker, the database, a serial port, the disk), told to the
library's IT person as one line in their language when one begins or changes, and one line
when it clears; never a traceback, never the same line again every retry.

The words live in selfcheck/system/locale/{vi,en}/LC_MESSAGES/faults.po. The language is the
process's: the command sets it once (`set_lang`), from the station's config or the locale of
the central's environment.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from selfcheck.system.i18n import LANGS, Catalog

FAULTS = Catalog(Path(__file__).resolve().parent / "locale", "faults")
_lang = "en"


def set_lang(lang: str | None) -> None:
    global _lang
    if lang in LANGS:
        _lang = str(lang)


def lang() -> str:
    return _lang


def say(key: str, /, **args: object) -> str:
    """The text for `key` in the process's language."""
    return FAULTS.t(key, _lang, **args)


class Fault:
    """The state of one outside thing. `down(key, ...)` logs (warning) only when it was up or
    down for another reason (`key`); `up()` logs `cleared_key` (info) once after a fault.
    Thread-safe; `is_up` is None before the first verdict."""

    def __init__(self, logger: logging.Logger, cleared_key: str, **args: object) -> None:
        self._log = logger
        self._cleared = cleared_key
        self._args = args
        self._lock = threading.Lock()
        self.is_up: bool | None = None
        self.reason: str | None = None  # the key of the current fault
        self.changes = 0  # how many times the state changed (for the metrics and tests)

    def down(self, key: str, /, **args: object) -> bool:
        """Say that it is down for `key`; True when that was news (and so logged)."""
        with self._lock:
            if self.is_up is False and self.reason == key:
                repeat = True
            else:
                repeat = False
                self.is_up, self.reason = False, key
                self.changes += 1
        if repeat:  # every retry, for whoever debugs the retries themselves
            self._log.debug("still %s: %s", key, args.get("reason", ""))
            return False
        self._log.warning("%s", say(key, **{**self._args, **args}))
        return True

    def up(self) -> bool:
        """Say that it works; True when it had been down (and so the clearing was logged)."""
        if self.is_up is True:  # the usual case, on hot paths: no lock (re-checked under it)
            return False
        with self._lock:
            was = self.is_up
            if was is True:
                return False
            self.is_up, self.reason = True, None
            if was is None:
                return False
            self.changes += 1
        self._log.info("%s", say(self._cleared, **self._args))
        return True


def backoff(failures: int, first_s: float = 1.0, most_s: float = 30.0) -> float:
    """The wait before the next try after `failures` failures in a row: doubling from
    `first_s`, at most `most_s`, so that a device or service gone for a day is asked a few
    thousand times, not a hundred thousand."""
    return min(most_s, first_s * 2 ** max(0, min(failures - 1, 30)))
