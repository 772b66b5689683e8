"""What a stolen station's offline list gives away, made smaller: the list leaves the disk when
it expires, its card-hash key is replaced on a schedule or on demand, and a site may list only
its own recent readers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfcheck.central.backends.store import CirculationStore
from selfcheck.central.sample import load_sample
from selfcheck.cli import main
from selfcheck.kiosk.runtime.journal import Journal
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.messages import TxLoan, TxReturn, card_hash
from tests.conftest import applied
from tests.dbs import KINDS, fresh_db

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
SITE = "thu-vien-test"


@pytest.fixture(params=KINDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_db(request.param, tmp_path) as u:
        yield u


def _cards(store: CirculationStore, site: str, now: dt.datetime) -> set[str]:
    """The sample cards on `site`'s list (found the way a thief would: hash every card)."""
    res = store.offline_list(site, now=now)
    hashes = {e.card_hash for e in res.entries}
    return {c for c in ("DG0001", "DG0002", "DG0003", "DG0005", "DG0006")
            if card_hash(res.salt, c) in hashes}


def test_station_drops_an_expired_list_from_its_disk(tmp_path: Path) -> None:
    j = Journal(tmp_path / "st.db")
    salt = "00112233445566778899aabbccddeeff"
    now = 1_000_000.0
    h = card_hash(salt, "DG0001")
    j.store_offline_list(salt, now - 60, now + 3600, [(h, "p-1", "An", 2)])
    assert not j.drop_expired_offline_list(now + 3599)  # still valid: kept
    assert j.offline_entry(h, now) == ("p-1", "An", 2)
    assert j.drop_expired_offline_list(now + 3600)
    assert j.offline_meta() is None
    j.close()
    # nothing of it is left in the file: no hash, no salt
    raw = (tmp_path / "st.db").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("st.db-*"))
    assert h.encode() not in raw and salt.encode() not in raw


def test_the_key_is_replaced_when_old_and_the_old_hashes_match_nothing(url: str) -> None:
    store = CirculationStore(url, offline_salt_age=dt.timedelta(days=7))
    load_sample(store)
    try:
        first = store.offline_list(SITE, now=NOW)
        assert store.offline_list(SITE, now=NOW + dt.timedelta(days=6)).salt == first.salt
        later = store.offline_list(SITE, now=NOW + dt.timedelta(days=7, seconds=1))
        assert later.salt != first.salt
        assert {e.patron_ref for e in later.entries} == {e.patron_ref for e in first.entries}
        assert not {e.card_hash for e in later.entries} & {e.card_hash for e in first.entries}
        # stable again until it is old in turn
        assert store.offline_list(SITE, now=NOW + dt.timedelta(days=8)).salt == later.salt
    finally:
        store.close()


def test_rotate_salt_command(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = CirculationStore(url, offline_salt_age=None)
    load_sample(store)
    try:
        assert main(["central", "rotate-salt", "--db", url]) == 1  # no list made yet
        assert "nothing to rotate" in capsys.readouterr().err
        a = store.offline_list(SITE, now=NOW).salt
        b = store.offline_list("chi-nhanh-2", now=NOW).salt
        assert main(["central", "rotate-salt", "--db", url, "--site", SITE]) == 0
        assert f"new offline-list key for: {SITE}" in capsys.readouterr().out
        assert store.offline_list(SITE, now=NOW).salt != a
        assert store.offline_list("chi-nhanh-2", now=NOW).salt == b  # only the one site
        assert main(["central", "rotate-salt", "--db", url]) == 0
        assert store.offline_list("chi-nhanh-2", now=NOW).salt != b
    finally:
        store.close()


def test_a_site_lists_only_its_recent_readers(url: str) -> None:
    store = CirculationStore(url, offline_recent=dt.timedelta(days=90))
    load_sample(store)
    try:
        assert _cards(store, SITE, NOW) == set()  # nobody has used this site yet
        old = NOW - dt.timedelta(days=91)
        for card, item, site, at in (("DG0001", "39000001", SITE, NOW),
                                     ("DG0002", "39000002", "chi-nhanh-2", NOW),
                                     ("DG0003", "39000003", SITE, old)):
            acks = applied(store, [TxLoan(msg_id=uuid7(), seq=1, site=site, station="st-1",
                                       at=at, item_id=item, patron_ref=store.ref_of(card),
                                       deadline=at + dt.timedelta(days=1), offline=True)],
                               at)
            assert acks[0].ok, acks[0]
        back = old + dt.timedelta(hours=1)  # DG0003's loan came back long ago: in good standing
        assert applied(store, [TxReturn(msg_id=uuid7(), seq=2, site=SITE, station="st-1", at=back,
                                     item_id="39000003")], back)[0].ok
        assert _cards(store, SITE, NOW) == {"DG0001"}
        assert _cards(store, "chi-nhanh-2", NOW) == {"DG0002"}
        every = CirculationStore(url, offline_recent=None)  # the default: everyone in good
        assert {"DG0001", "DG0002", "DG0003"} <= _cards(every, SITE, NOW)  # standing
        every.close()
    finally:
        store.close()
