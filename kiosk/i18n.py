"""Screen and receipt texts in Vietnamese and English (catalogs under kiosk/locale)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from babel.dates import format_date

from selfcheck.system.i18n import LANGS, Catalog

__all__ = ["LANGS", "LOCALE_DIR", "RECEIPT", "SCREENS", "catalog", "date", "reason_text", "t"]

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
SCREENS = Catalog(LOCALE_DIR, "kiosk")
RECEIPT = Catalog(LOCALE_DIR, "receipt")
STOCKTAKE = Catalog(LOCALE_DIR, "stocktake")  # the staff's stock-take screen
_DOMAINS = {"kiosk": SCREENS, "receipt": RECEIPT, "stocktake": STOCKTAKE}
_DATE_FORMAT = {"vi": "dd/MM/yyyy", "en": "d MMM yyyy"}


def catalog(lang: str, domain: str = "kiosk") -> dict[str, str]:
    """One gettext catalog: `kiosk` for the screens, `receipt` for printed receipts,
    `stocktake` for the staff's stock-take screen."""
    return _DOMAINS[domain].texts(lang)


def t(key: str, lang: str, **args: object) -> str:
    """The screen text for `key` in `lang` (a missing key shows as itself, see system.i18n)."""
    return SCREENS.t(key, lang, **args)


def reason_text(code: str | None, lang: str) -> str:
    """The friendly words for a refusal code, for screens and receipts alike. The one fallback:
    no code is "?" and a code the catalog lacks shows as itself; the library system may send
    codes we never listed, so that is data, not a gap in the catalog, and is not logged."""
    if not code:
        return "?"
    return SCREENS.texts(lang).get(f"reason.{code}", code)


def date(value: dt.date, lang: str) -> str:
    return format_date(value, _DATE_FORMAT.get(lang, "medium"), locale=lang)
