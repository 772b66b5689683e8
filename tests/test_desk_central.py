"""The desk, central side: PINs, account, holds and transit, the offline list and late offline
loans, on real SQLite and PostgreSQL stores; and the bridge answering the new requests over a
real Mosquitto."""

from __future__ import annotations

import datetime as dt
import hmac
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfcheck.central import pin as pins
from selfcheck.central.backends.store import CirculationStore
from selfcheck.central.bridge import Bridge
from selfcheck.central.ledger import refused_offline
from selfcheck.central.pin_rules import PinRule, PinRules
from selfcheck.central.sample import load_sample
from selfcheck.cli import main
from selfcheck.kiosk.runtime.journal import Journal
from selfcheck.lab.broker import Broker
from selfcheck.mqtt import messages
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.messages import TxLoan, TxRenew, TxReturn
from selfcheck.mqtt.station_link import StationLink
from tests.conftest import applied
from tests.dbs import KINDS, fresh_db

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)  # sample scenario dates are from today
TODAY = NOW.date()
SITE = "thu-vien-test"


@pytest.fixture(params=KINDS)
def desk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CirculationStore]:
    with fresh_db(request.param, tmp_path) as url:
        store = CirculationStore(url)
        load_sample(store, extra_patrons=2, scenarios=True)
        yield store
        store.close()


seq = iter(range(1, 10**6))


def loan(store: CirculationStore, card: str, item: str, **kw: object) -> TxLoan:
    fields: dict[str, object] = dict(msg_id=uuid7(), seq=next(seq), site=SITE, station="st-1",
                                     at=NOW, item_id=item, patron_ref=store.ref_of(card),
                                     deadline=NOW + dt.timedelta(seconds=5))
    fields.update(kw)
    return TxLoan(**fields)  # type: ignore[arg-type]


def ret(item: str, site: str = SITE, **kw: object) -> TxReturn:
    return TxReturn(msg_id=uuid7(), seq=next(seq), site=site, station="st-1", at=NOW,
                    item_id=item, **kw)  # type: ignore[arg-type]


# -- PIN
def test_pin_hash_is_salted_and_verifies() -> None:
    a, b = pins.hash_pin("1234"), pins.hash_pin("1234")
    assert a != b and "1234" not in a
    assert pins.verify_pin("1234", a) and not pins.verify_pin("1235", a)
    assert not pins.verify_pin("1234", None) and not pins.verify_pin("1234", "garbage")


def test_pin_check_wrong_pins_lock_then_unlock(desk: CirculationStore,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ok = desk.check_patron("DG0001", pin="1234", now=NOW)
    assert ok.ok and ok.patron_ref and ok.display_name == "An"
    first = desk.check_patron("DG0001", pin="0000", now=NOW)
    assert (first.ok, first.reason, first.pin_required, first.pin_tries_left) == (
        False, "wrong_pin", True, 2)
    assert first.patron_ref is None and first.display_name is None  # nothing for a guesser
    desk.check_patron("DG0001", pin="0001", now=NOW)
    third = desk.check_patron("DG0001", pin="0002", now=NOW)
    assert third.reason == "pin_locked" and third.pin_locked_until is not None
    # locked: even the right PIN is refused until the lock ends (persisted, so every bridge)
    again = CirculationStore(desk.url).check_patron("DG0001", pin="1234", now=NOW)
    assert again.reason == "pin_locked" and again.patron_ref is None
    later = NOW + dt.timedelta(minutes=16)
    assert desk.check_patron("DG0001", pin="1234", now=later).ok
    assert desk.check_patron("DG0001", pin="9", now=later).pin_tries_left == 2  # reset
    text = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert "1234" not in text and "DG0001" not in text and "0002" not in text


def test_no_pin_on_file_never_matches_and_the_rule_always(desk: CirculationStore) -> None:
    assert desk.check_patron("DG0006", pin="1234", now=NOW).reason == "wrong_pin"
    strict = CirculationStore(desk.url, pin_rules=PinRules(PinRule.ALWAYS))
    asked = strict.check_patron("DG0002", now=NOW)
    assert (asked.ok, asked.reason, asked.pin_required, asked.patron_ref,
            asked.display_name) == (False, "pin_required", True, None, None)
    assert strict.check_patron("DG0002", pin="2468", now=NOW).ok
    # every reader: one with no PIN on file cannot pass until staff give them one
    assert strict.check_patron("DG0006", now=NOW).reason == "pin_required"
    strict.close()


def test_pin_never_in_repr_or_errors() -> None:
    req = messages.PatronCheckReq(card_id="DG0001", pin="1234")
    assert "1234" not in repr(req) and "1234" not in str(req) and "DG0001" not in repr(req)
    assert messages.decode(messages.encode(req)) == req  # on the wire it does travel
    with pytest.raises(messages.MessageError) as err:
        messages.decode(b'{"schema": "req.patron/1", "card_id": "DG0001", "pin": "'
                        + b"9" * 40 + b'"}')
    assert err.value.field == "pin" and "999" not in str(err.value)
    assert "DG0001" not in str(err.value)


# -- holds and transit
def test_loan_refused_when_on_hold_for_another_and_holder_may_borrow(
        desk: CirculationStore) -> None:
    (refused,) = applied(desk, [loan(desk, "DG0001", "39000009")], NOW)
    assert (refused.ok, refused.reason, refused.title) == (False, "on_hold_for_other", "Lão Hạc")
    (own,) = applied(desk, [loan(desk, "DG0002", "39000009")], NOW)
    assert own.ok  # the holder: the hold is fulfilled
    assert desk.account(desk.ref_of("DG0002"), TODAY).holds_waiting == [
        messages.HoldWaiting(title="Chí Phèo", position=1),
        messages.HoldWaiting(title="Những ngôi sao xa xôi", position=1)]


def test_return_with_hold_here_elsewhere_and_of_another_branch(desk: CirculationStore) -> None:
    s = desk
    here, there, foreign, plain = applied(s, [ret("39000009"), ret("39000014"), ret("39000011"),
                                           ret("39000001")], NOW)
    assert (here.hold, here.alert_type, here.hold_for, here.transit_to, here.sort_bin) == (
        True, "01", s.ref_of("DG0002"), None, "A")
    assert (there.hold, there.alert_type, there.transit_to) == (True, "02", "chi-nhanh-2")
    assert there.hold_for is None
    assert (foreign.hold, foreign.alert_type, foreign.transit_to) == (False, "04",
                                                                     "chi-nhanh-2")
    assert (plain.hold, plain.alert_type, plain.transit_to) == (False, None, None)
    ready = s.account(s.ref_of("DG0002"), TODAY).holds_ready
    assert [(h.item_id, h.title, h.pickup_by) for h in ready] == [
        ("39000009", "Lão Hạc", TODAY + dt.timedelta(days=7))]
    # returned at the home branch: no transit
    (home,) = applied(s, [ret("39000011", site="chi-nhanh-2")], NOW)
    assert (home.alert_type, home.transit_to) == (None, None)


def test_renewal_refused_while_another_reader_waits(desk: CirculationStore) -> None:
    renew = TxRenew(msg_id=uuid7(), seq=next(seq), site=SITE, station="st-1", at=NOW,
                    item_id="39000010", patron_ref=desk.ref_of("DG0005"))
    (ack,) = applied(desk, [renew], NOW)
    assert (ack.ok, ack.reason) == (False, "on_hold_for_other")


# -- account
def test_account_lists_loans_holds_and_fines(desk: CirculationStore) -> None:
    acc = desk.account(desk.ref_of("DG0005"), TODAY)
    assert acc.ok and acc.currency == "VND" and acc.currency_exponent == 0
    assert [(ln.item_id, ln.title, ln.overdue, ln.renewable) for ln in acc.loans] == [
        ("39000010", "Chí Phèo", True, False), ("39000011", "Vợ nhặt", False, True)]
    assert acc.loans[0].due == TODAY - dt.timedelta(days=6)
    assert [(h.item_id, h.title) for h in acc.holds_ready] == [("39000012", "Bỉ vỏ")]
    assert acc.holds_ready[0].pickup_by == TODAY + dt.timedelta(days=5)
    assert acc.holds_waiting == [messages.HoldWaiting(title="Những ngôi sao xa xôi",
                                                      position=2)]
    assert acc.fines_total == 37_000 and [f.amount for f in acc.fines] == [12_000, 25_000]
    assert acc.fines[0].description == "Trả sách quá hạn: Chí Phèo"
    nobody = desk.account("p-nobody", TODAY)
    assert (nobody.ok, nobody.reason, nobody.loans) == (False, "unknown_patron", [])


# -- offline
def test_offline_list_has_only_good_standing_patrons_with_hashed_cards(
        desk: CirculationStore) -> None:
    desk.add_patrons([{"card_id": "OLD1", "name": "Đỗ Văn Cũ", "category": "adult",
                       "expires": TODAY}])  # ends before the list does
    desk.check_patron("DG0002", pin="0", now=NOW)
    for _ in range(3):
        desk.check_patron("DG0006", pin="0", now=NOW)  # locked
    res = desk.offline_list(SITE, now=NOW)
    assert res.site == SITE and res.valid_until == NOW + dt.timedelta(hours=24)
    assert res.pages == 1 and res.page == 1
    by_ref = {e.patron_ref: e for e in res.entries}
    refs = {desk.ref_of(c): c for c in ("DG0001", "DG0002", "DG0003", "DG0004", "DG0005",
                                        "DG0006", "OLD1")}
    # DG0004 blocked, DG0005 overdue, DG0006 PIN-locked, OLD1 expires before valid_until
    assert {refs[r] for r in by_ref if r in refs} == {"DG0001", "DG0002", "DG0003"}
    an = by_ref[desk.ref_of("DG0001")]
    assert an.display_name == "An" and an.max_offline_loans == 3
    want = hmac.new(bytes.fromhex(res.salt), b"DG0001", "sha256").hexdigest()[:32]
    assert an.card_hash == want == messages.card_hash(res.salt, "DG0001")
    body = messages.encode(res).decode()
    assert "DG000" not in body and "Nguyễn" not in body
    assert len(messages.encode(res)) < messages.MAX_PAYLOAD
    # the salt is per site and stable
    assert desk.offline_list(SITE, now=NOW).salt == res.salt
    assert desk.offline_list("chi-nhanh-2", now=NOW).salt != res.salt


def test_offline_list_pages(desk: CirculationStore) -> None:
    desk.add_patrons([{"card_id": f"PG{n:03d}", "name": f"Bạn đọc {n}", "category": "adult"}
                      for n in range(120)])
    first = desk.offline_list(SITE, now=NOW)
    assert first.pages == 3
    everyone = [e.patron_ref for p in range(1, 4)
                for e in desk.offline_list(SITE, p, now=NOW).entries]
    assert len(everyone) == len(set(everyone)) >= 120
    assert len(messages.encode(first)) < messages.MAX_PAYLOAD


def test_late_offline_loans_apply_and_refusals_are_reconciled(
        desk: CirculationStore, capsys: pytest.CaptureFixture[str]) -> None:
    long_ago = NOW - dt.timedelta(hours=5)
    online_late = loan(desk, "DG0001", "39000002", deadline=long_ago)
    offline_ok = loan(desk, "DG0001", "39000003", deadline=long_ago, offline=True, at=long_ago)
    offline_held = loan(desk, "DG0001", "39000009", deadline=long_ago, offline=True,
                        at=long_ago)
    offline_blocked = loan(desk, "DG0004", "39000004", deadline=long_ago, offline=True,
                           at=long_ago)
    acks = applied(desk, [online_late, offline_ok, offline_held, offline_blocked], NOW)
    assert [(a.ok, a.reason) for a in acks] == [
        (False, "late"), (True, None), (False, "on_hold_for_other"), (False, "patron_blocked")]
    rows = refused_offline(desk.engine, site=SITE)
    # Both were done at the same instant: the report orders them by msg_id, and two UUIDv7
    # from the same millisecond differ only in their random bits.
    assert [(r["msg_id"], r["kind"], r["item_id"], r["reason"]) for r in rows] == sorted([
        (offline_held.msg_id, "loan", "39000009", "on_hold_for_other"),
        (offline_blocked.msg_id, "loan", "39000004", "patron_blocked")])
    applied(desk, [offline_held], NOW)  # a repeat records nothing new
    assert len(refused_offline(desk.engine)) == 2
    assert refused_offline(desk.engine, site="other") == []
    assert refused_offline(desk.engine, since=NOW + dt.timedelta(days=1)) == []
    assert main(["central", "report", "--db", desk.url, "--site", SITE,
                 "--since", str(TODAY - dt.timedelta(days=1))]) == 0
    out = capsys.readouterr().out
    assert "on_hold_for_other" in out and "patron_blocked" in out and "39000009" in out
    assert "2 refused offline" in out


# -- the bridge over a real Mosquitto
def test_bridge_answers_account_and_offline_list(tmp_path: Path, broker: Broker) -> None:
    store = CirculationStore(f"sqlite:///{tmp_path / 'c.db'}")
    load_sample(store, scenarios=True)
    bridge = Bridge(store, broker.address)
    bridge.start()
    assert bridge.connected.wait(10)
    journal = Journal(tmp_path / "j.db")
    link = StationLink(SITE, "st-7", broker.address, version="t",
                       next_session=journal.next_session, on_ack=lambda a: None)
    link.start()
    try:
        assert link.connected.wait(5)
        check = link.request("patron", messages.PatronCheckReq(card_id="DG0005", pin="5555")
                             ).result(5)
        assert isinstance(check, messages.PatronCheckRes) and check.ok and check.patron_ref
        wrong = link.request("patron", messages.PatronCheckReq(card_id="DG0005", pin="1")
                             ).result(5)
        assert isinstance(wrong, messages.PatronCheckRes) and wrong.reason == "wrong_pin"
        acc = link.request("account", messages.AccountReq(patron_ref=check.patron_ref)
                           ).result(5)
        assert isinstance(acc, messages.AccountRes) and acc.ok
        assert [ln.overdue for ln in acc.loans] == [True, False] and acc.fines_total == 37_000
        off = link.request("offline-list", messages.OfflineListReq()).result(5)
        assert isinstance(off, messages.OfflineListRes) and off.site == SITE
        assert len(off.entries) >= 3 and off.pages == 1
        # a request named nowhere is rejected and counted, not answered
        before = bridge.counters.rejected
        link.request("nothing", messages.OfflineListReq())
        from tests.conftest import wait_until

        wait_until(lambda: bridge.counters.rejected > before, what="the refusal")
    finally:
        link.stop()
        bridge.stop()
        journal.close()
        store.close()
