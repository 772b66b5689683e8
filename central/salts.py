"""The offline list's per-site keys: the card hashes a station matches offline are made with
them, and they are replaced now and then (central/backends/store.py and
central/backends/sip2/backend.py)."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from selfcheck.central.ledger import aware
from selfcheck.central.schema import offline_salts


def site_salt(engine: Engine, site: str, now: dt.datetime,
              max_age: dt.timedelta | None = None) -> str:
    """The per-site key of the offline list's card hashes, made on first use and replaced
    once older than `max_age`: a list taken from a stolen station then matches no list sent
    after it, and the stations' next fetch replaces every hash made with the old key."""
    with engine.connect() as conn:
        row = conn.execute(select(offline_salts.c.salt, offline_salts.c.created_at)
                           .where(offline_salts.c.site == site)).first()
    if row is not None:
        created = aware(row.created_at)
        if max_age is None or now - created < max_age:
            return str(row.salt)
        rotate_salts(engine, now, site, only_if=str(row.salt))
        return site_salt(engine, site, now)
    try:
        with engine.begin() as conn:
            salt = secrets.token_hex(16)
            conn.execute(insert(offline_salts).values(site=site, salt=salt, created_at=now))
            return salt
    except IntegrityError:  # another bridge made it just now
        return site_salt(engine, site, now)


def rotate_salts(engine: Engine, now: dt.datetime, site: str | None = None, *,
                 only_if: str | None = None) -> list[str]:
    """A new random salt for `site` (None: every site that has one); the sites rotated.
    `only_if`: only while the salt is still this one (two bridges rotating at once)."""
    rotated = []
    with engine.begin() as conn:
        query = select(offline_salts.c.site, offline_salts.c.salt)
        if site is not None:
            query = query.where(offline_salts.c.site == site)
        for row in conn.execute(query).all():
            if only_if is not None and row.salt != only_if:
                continue
            done = conn.execute(update(offline_salts).where(
                offline_salts.c.site == row.site, offline_salts.c.salt == row.salt).values(
                salt=secrets.token_hex(16), created_at=now))
            if done.rowcount:
                rotated.append(str(row.site))
    return rotated
