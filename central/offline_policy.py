"""Which stations get the offline allow-list: the central decides, not the station.

A station's own `offline_loans` setting only says whether it asks. The list gives away, on a
stolen disk, the card numbers of every listed reader (docs/security.md, "What the offline list
reveals"), so it goes only to the sites or stations the central was told to serve
(`selfcheck central --offline-list SITE` or `SITE/STATION`, repeatable; `*` for all). Anyone
else is answered ok=false, reason `not_offline`, with no entries and a random salt, so nothing
of the site's list leaks. No I/O here but the backend's own query.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from selfcheck.mqtt.messages import OfflineListRes

if TYPE_CHECKING:
    from selfcheck.central.backend import Backend

log = logging.getLogger(__name__)

ALL = "*"


@dataclass(frozen=True)
class OfflineStations:
    """`SITE`, `SITE/STATION` or `*` entries; empty: no station gets a list."""

    marked: frozenset[str] = frozenset()

    def allows(self, site: str, station: str) -> bool:
        return bool({ALL, site, f"{site}/{station}"} & self.marked)


EVERY = OfflineStations(frozenset({ALL}))  # a backend made in code: tools and tests


def parse_mark(text: str) -> str:
    """`SITE`, `SITE/STATION` or `*`; ValueError says what is wrong."""
    text = text.strip()
    if text == ALL:
        return text
    site, sep, station = text.partition("/")
    if not site or (sep and not station) or "/" in station or any(
            c in text for c in "+# \t"):
        raise ValueError(f"{text[:60]!r} is not SITE, SITE/STATION or *")
    return text


def refused(site: str, now: dt.datetime) -> OfflineListRes:
    """A list of nobody, already expired, under a key used once: an old station that does not
    read `ok` stores it and lends nothing offline."""
    return OfflineListRes(ok=False, reason="not_offline", site=site,
                          salt=secrets.token_hex(16), generated_at=now, valid_until=now,
                          page=1, pages=1, entries=[])


def answer(backend: Backend, site: str, station: str, page: int,
           now: dt.datetime | None = None) -> OfflineListRes:
    """The page of the site's list for a station the backend's settings mark, else the
    refusal."""
    now = now or dt.datetime.now(dt.UTC)
    if not backend.offline_stations.allows(site, station):
        log.info("offline list refused to %s/%s: not marked for offline loans", site,
                 station, extra={"station": station})
        return refused(site, now)
    return backend.offline_list(site, page)
