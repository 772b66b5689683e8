"""Screen texts in Vietnamese and English, read from the gettext catalogs with Babel."""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path

from babel.dates import format_date
from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGS = ("vi", "en")
_DATE_FORMAT = {"vi": "dd/MM/yyyy", "en": "d MMM yyyy"}


@cache
def catalog(lang: str, domain: str = "kiosk") -> dict[str, str]:
    """One gettext catalog: `kiosk` for the screens, `receipt` for printed receipts."""
    if lang not in LANGS:
        raise ValueError(f"language {lang!r}: one of {', '.join(LANGS)}")
    with open(LOCALE_DIR / lang / "LC_MESSAGES" / f"{domain}.po", "rb") as f:
        cat = read_po(f, locale=lang)
    return {str(m.id): str(m.string) for m in cat if m.id and m.string}


def t(key: str, lang: str, **args: object) -> str:
    """The text for `key` in `lang`; a missing key shows as itself so it is noticed."""
    text = catalog(lang).get(key, key)
    return text.format(**args) if args else text


def date(value: dt.date, lang: str) -> str:
    return format_date(value, _DATE_FORMAT.get(lang, "medium"), locale=lang)
