"""Logging for every `selfcheck` command, set up once by the entry point (selfcheck.cli).

One line per event, to stderr: `LEVEL logger: message key=value ...`. The context keys come
from `extra=` (`log.info("applied", extra=ctx(station=..., msg_id=...))`), so that a line can
be grepped by station or msg_id whatever the message says. Under journald (JOURNAL_STREAM set)
there is no timestamp (the journal adds its own) and each line starts with a `<N>` syslog
priority, which journald reads as the entry's level.

Modules only ever call `logging.getLogger(__name__)`: importing one never touches handlers.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import IO, Any

ENV = "SELFCHECK_LOG_LEVEL"
LEVELS = ("debug", "info", "warning", "error")
# The context a line may carry, in this order. Never a card number, a name or a PIN: a patron
# appears only as the pseudonymous patron_ref.
CONTEXT = ("site", "station", "msg_id", "seq", "cmd_id", "ils", "patron_ref", "state")
_SYSLOG = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
           logging.CRITICAL: 2}
_HANDLER_NAME = "selfcheck"


def ctx(**values: object) -> dict[str, object]:
    """`extra=` for a log call; None values are left out."""
    return {k: v for k, v in values.items() if v is not None}


def _value(v: object) -> str:
    text = str(v)
    if not text or any(c in text for c in ' ="\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class LineFormatter(logging.Formatter):
    def __init__(self, journald: bool) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        pairs = [f"{k}={_value(record.__dict__[k])}" for k in CONTEXT if k in record.__dict__]
        # Every module is under `selfcheck.`; the line names the wing and module only.
        name = record.name.removeprefix("selfcheck.")
        line = f"{record.levelname} {name}: {text}"
        if pairs:
            line += " " + " ".join(pairs)
        if record.exc_info:
            # A traceback is for a bug, not for an expected condition; keep it, but on the
            # following lines so that the event itself stays one line.
            line += "\n" + self.formatException(record.exc_info)
        if self.journald:
            prio = _SYSLOG.get(record.levelno, 6)
            return "\n".join(f"<{prio}>{part}" for part in line.split("\n"))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z {line}"


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (as logging.lastResort does): a handler
    holding the stream it was made with writes into a closed file once a caller that swapped
    stderr (a test's capture, a redirect) has put it back."""

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


def parse_level(name: str | None) -> int:
    """A level name (debug, info, warning, error; any case). ValueError names the choices."""
    value = (name or "info").strip().lower()
    if value not in LEVELS:
        raise ValueError(value)
    return int(getattr(logging, value.upper()))


def setup(level: str | None = None, stream: IO[str] | None = None) -> None:
    """Install the one handler on the root logger (again: replaces it). `level` wins over
    SELFCHECK_LOG_LEVEL, which wins over info."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == _HANDLER_NAME:
            root.removeHandler(h)
    handler: logging.Handler = logging.StreamHandler(stream) if stream else _Stderr()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(LineFormatter(journald=bool(os.environ.get("JOURNAL_STREAM"))))
    root.addHandler(handler)
    root.setLevel(parse_level(level or os.environ.get(ENV)))
    # Libraries that chatter at INFO/DEBUG about their own plumbing.
    for noisy in ("urllib3", "asyncio", "PIL", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def set_level(level: str | None) -> None:
    """Change the level after set-up (a level from a config file read later)."""
    if level:
        logging.getLogger().setLevel(parse_level(level))


def configured() -> bool:
    return any(h.get_name() == _HANDLER_NAME for h in logging.getLogger().handlers)


def add_arguments(parser: Any) -> None:
    parser.add_argument("--log-level", choices=LEVELS, type=str.lower, default=None,
                        help=f"debug, info, warning or error (default: ${ENV} or info)")
