"""Errors a person can act on: what is wrong and what to do next, in Vietnamese or English.

A command raises `UserError(key, **args)` for an expected condition (a service that is down, a
bad URL, an unknown site, a wrong config key); the entry point prints it as one or a few lines
in the user's language and exits with its code. Never a traceback for those. The words live in
selfcheck/cli/locale/{vi,en}/LC_MESSAGES/cli.po (gettext catalogs read by selfcheck.system.i18n,
like the station's screens and the operators' table).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from selfcheck.system.i18n import LANGS, Catalog

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
CLI = Catalog(LOCALE_DIR, "cli")
catalog = CLI.texts


def lang_of(choice: str | None = None) -> str:
    """`--lang` if given, else the locale of the environment (LC_ALL, LC_MESSAGES, LANG,
    as gettext reads them): Vietnamese for vi_*, English otherwise."""
    if choice in LANGS:
        return choice
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(var, "")
        if value:
            return "vi" if value.lower().startswith("vi") else "en"
    return "en"


def t(key: str, lang: str, /, **args: object) -> str:
    return CLI.t(key, lang, **args)


class UserError(Exception):
    """An expected failure, told in the user's words: `key` in cli.po, with its arguments.
    `code`: 2 for a setting or usage error, 1 for a check that failed, 3 for a service that
    could not be reached."""

    def __init__(self, key: str, code: int = 2, **args: object) -> None:
        super().__init__(key)
        self.key = key
        self.code = code
        self.args_ = args

    def text(self, lang: str) -> str:
        return t(self.key, lang, **self.args_)


def suggest(word: str, choices: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if close:
        return close[0]
    # A key missing its unit suffix ("inactivity" for "inactivity_s") is too short for the
    # ratio above; a unique prefix match says it.
    starts = [c for c in choices if c.startswith(word) or word.startswith(c)]
    return starts[0] if len(starts) == 1 else None


def config_problems(exc: Any, fields: Iterable[str], lang: str) -> list[str]:
    """A pydantic ValidationError as one line per problem: the key, what is wrong and, for an
    unknown key, the key that was probably meant."""
    known = sorted(fields)
    lines: list[str] = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "?"
        kind = err.get("type", "")
        if kind == "extra_forbidden":
            near = suggest(str(err["loc"][-1]), known)
            lines.append(t("config.unknown_key.near" if near else "config.unknown_key", lang,
                           key=loc, near=near))
        elif kind == "missing":
            lines.append(t("config.missing_key", lang, key=loc))
        else:
            msg = str(err.get("msg", "")).removeprefix("Value error, ")
            if loc == "?":
                lines.append(t("config.problem", lang, msg=msg))
            else:
                secret = "password" in loc  # never echo a secret back to the screen
                lines.append(t("config.bad_value", lang, key=loc,
                               value="***" if secret else _short(err.get("input")), msg=msg))
    return lines


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class ConfigInvalid(UserError):
    """A config file that failed validation: a heading, one line per problem, what to do."""

    def __init__(self, path: object, exc: Any, fields: Iterable[str]) -> None:
        super().__init__("config.invalid", path=path)
        self.exc = exc
        self.fields = list(fields)

    def text(self, lang: str) -> str:
        path = self.args_["path"]
        problems = config_problems(self.exc, self.fields, lang)
        return "\n".join([t("config.invalid", lang, path=path),
                          *(f"  - {p}" for p in problems),
                          t("config.invalid.next", lang, path=path)])
