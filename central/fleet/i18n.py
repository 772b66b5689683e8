"""The operators' words (fleet page, `selfcheck fleet` table) in Vietnamese and English."""

from __future__ import annotations

from pathlib import Path

from selfcheck.system.i18n import LANGS, Catalog

__all__ = ["LANGS", "LOCALE_DIR", "catalog", "t"]

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
FLEET = Catalog(LOCALE_DIR, "fleet")
catalog = FLEET.texts
t = FLEET.t
