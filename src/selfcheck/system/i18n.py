"""The one loader of gettext catalogs (read with Babel): the station's screens and receipts,
the operators' page and the command line each keep their own catalog and share this code.

A missing key shows as the key itself, so a gap is seen on screen rather than crashing a
session, and is logged once; the catalog tests check that every key exists in vi and en."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

log = logging.getLogger(__name__)

LANGS = ("vi", "en")


class Catalog:
    """One gettext domain (`<locale_dir>/<lang>/LC_MESSAGES/<domain>.po`) in every language."""

    def __init__(self, locale_dir: Path, domain: str) -> None:
        self.locale_dir = locale_dir
        self.domain = domain
        self._texts: dict[str, dict[str, str]] = {}
        self._missing: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def texts(self, lang: str) -> dict[str, str]:
        """Every text of `lang`, by key; read on first use."""
        if lang not in LANGS:
            raise ValueError(f"language {lang!r}: one of {', '.join(LANGS)}")
        texts = self._texts.get(lang)
        if texts is None:
            # Imported here: `selfcheck --help` stays quick.
            from babel.messages.pofile import read_po

            with open(self.locale_dir / lang / "LC_MESSAGES" / f"{self.domain}.po", "rb") as f:
                cat = read_po(f, locale=lang)
            texts = {str(m.id): str(m.string) for m in cat if m.id and m.string}
            self._texts[lang] = texts
        return texts

    def t(self, key: str, lang: str, /, **args: object) -> str:
        """The text for `key` in `lang`, formatted with `args`; a missing key is the key."""
        text = self.texts(lang).get(key)
        if text is None:
            with self._lock:
                first = (lang, key) not in self._missing
                self._missing.add((lang, key))
            if first:
                log.warning("no %s text for %r in %s.po", lang, key, self.domain)
            return key
        return text.format(**args) if args else text
