"""The operators' words (fleet page, `selfcheck fleet` table) in Vietnamese and English."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from babel.messages.pofile import read_po

LANGS = ("vi", "en")
LOCALE_DIR = Path(__file__).resolve().parent / "locale"


@cache
def catalog(lang: str) -> dict[str, str]:
    if lang not in LANGS:
        raise ValueError(f"language {lang!r}: one of {', '.join(LANGS)}")
    with open(LOCALE_DIR / lang / "LC_MESSAGES" / "fleet.po", "rb") as f:
        cat = read_po(f, locale=lang)
    return {str(m.id): str(m.string) for m in cat if m.id and m.string}


def t(key: str, lang: str, **args: object) -> str:
    text = catalog(lang).get(key, key)
    return text.format(**args) if args else text
