"""The reader's account at the station: the PIN pad, the account screen with renewals, and loans
against the offline list. The core's rules (events in, actions out, no I/O), the journal's
offline list, and the receipt's use of the library system's print lines."""

from __future__ import annotations

import datetime as dt
import hmac
import itertools
from pathlib import Path

from selfcheck.drivers.seen import SeenTag
from selfcheck.drivers.tags import TagInfo
from selfcheck.kiosk import core, receipt
from selfcheck.kiosk.runtime.edge import account_loaded, ack_received, patron_checked
from selfcheck.kiosk.runtime.journal import Journal
from selfcheck.mqtt.messages import (
    AccountLoan,
    AccountRes,
    AckTx,
    OfflineEntry,
    PatronCheckRes,
    TxLoan,
    TxReturn,
    card_hash,
)

_ids = (f"0190a3c2-7b1e-7cc0-8d4e-{n:012x}" for n in itertools.count(1))
CARD, PIN = "DG0001", "1234"
OK = PatronCheckRes(ok=True, patron_ref="p-1", display_name="Nguyễn Văn An")


def make(online: bool = True, **cfg: object) -> core.SelfCheck:
    sc = core.SelfCheck(core.CoreConfig(**cfg), lambda: next(_ids))  # type: ignore[arg-type]
    sc.handle(core.Connectivity(online), 0)
    return sc


def tag(uid: str, item: str) -> SeenTag:
    return SeenTag(uid, TagInfo(model="28560-3", primary_item_id=item))


def only(actions: list[core.Action], kind: type) -> list:  # type: ignore[type-arg]
    return [a for a in actions if isinstance(a, kind)]


def strings_in(sc: core.SelfCheck) -> str:
    """Everything the core keeps, as text: the PIN must never be in it."""
    return repr(vars(sc)) + repr(sc.view(0))


# -- PIN
def test_pin_always_shows_the_pad_before_the_check_and_sends_the_pin_once() -> None:
    sc = make(pin="always")
    assert sc.handle(core.CardRead(CARD), 1) == []
    assert sc.mode is core.Mode.PIN
    actions = sc.handle(core.PinEntered(PIN), 2)
    assert actions == [core.CheckPatron(CARD, PIN)]
    assert sc.mode is core.Mode.CHECKING
    assert PIN not in strings_in(sc)  # held in the action only
    assert PIN not in repr(actions) and CARD not in repr(actions)  # safe to log
    sc.handle(patron_checked(OK), 3)
    assert sc.mode is core.Mode.BORROW and CARD not in strings_in(sc)


def test_wrong_pin_shows_the_tries_left_and_asks_again() -> None:
    sc = make(pin="always")
    sc.handle(core.CardRead(CARD), 1)
    sc.handle(core.PinEntered("9999"), 2)
    sc.handle(patron_checked(PatronCheckRes(ok=False, reason="wrong_pin",
                                                pin_required=True, pin_tries_left=2)), 3)
    v = sc.view(3)
    assert (v.mode, v.pin_error, v.pin_tries_left) == (core.Mode.PIN, "wrong_pin", 2)
    assert sc.handle(core.PinEntered(PIN), 4) == [core.CheckPatron(CARD, PIN)]
    assert "9999" not in strings_in(sc)


def test_pin_locked_goes_back_to_idle_saying_until_when() -> None:
    sc = make(pin="always")
    until = dt.datetime(2026, 5, 1, 3, 15, tzinfo=dt.UTC)
    sc.handle(core.CardRead(CARD), 1)
    sc.handle(core.PinEntered("0000"), 2)
    sc.handle(patron_checked(PatronCheckRes(ok=False, reason="pin_locked",
                                                pin_locked_until=until)), 3)
    v = sc.view(3)
    assert (v.mode, v.message, v.message_arg) == (core.Mode.IDLE, "pin_locked",
                                                  until.isoformat())


def test_a_paused_station_does_not_tell_the_reader_their_card_is_locked() -> None:
    """The central pauses a station's PIN checks after many wrong PINs over any cards: the
    card was not looked at, so the reader hears of the station, in both languages."""
    from selfcheck.kiosk.i18n import t

    sc = make(pin="always")
    sc.handle(core.CardRead(CARD), 1)
    sc.handle(core.PinEntered("1234"), 2)
    sc.handle(patron_checked(PatronCheckRes(
        ok=False, reason="pin_paused",
        pin_locked_until=dt.datetime(2026, 5, 1, 3, 15, tzinfo=dt.UTC))), 3)
    v = sc.view(3)
    assert (v.mode, v.message, v.message_arg) == (core.Mode.IDLE, "patron_refused",
                                                  "pin_paused")
    assert "máy này" in t("reason.pin_paused", "vi") and "station" in t("reason.pin_paused",
                                                                         "en")


def test_cancel_on_the_pad_goes_back_to_idle_and_forgets_the_card() -> None:
    sc = make(pin="always")
    sc.handle(core.CardRead(CARD), 1)
    assert sc.handle(core.PinEntered(None), 2) == []
    assert sc.mode is core.Mode.IDLE and CARD not in strings_in(sc)
    sc.handle(core.CardRead(CARD), 3)
    sc.handle(core.Touch("cancel"), 4)
    assert sc.mode is core.Mode.IDLE


def test_pin_central_asks_only_when_the_central_says_so() -> None:
    sc = make(pin="central")
    assert sc.handle(core.CardRead(CARD), 1) == [core.CheckPatron(CARD)]
    sc.handle(patron_checked(PatronCheckRes(ok=False, reason="pin_required",
                                                pin_required=True)), 2)
    assert sc.mode is core.Mode.PIN and sc.view(2).pin_error == "pin_required"
    assert sc.handle(core.PinEntered(PIN), 3) == [core.CheckPatron(CARD, PIN)]
    sc.handle(patron_checked(OK), 4)
    assert sc.mode is core.Mode.BORROW


def test_pin_never_shows_a_pin_required_answer_as_a_refusal() -> None:
    sc = make(pin="never")
    sc.handle(core.CardRead(CARD), 1)
    sc.handle(patron_checked(PatronCheckRes(ok=False, reason="pin_required",
                                                pin_required=True)), 2)
    v = sc.view(2)
    assert (v.mode, v.message, v.message_arg) == (core.Mode.IDLE, "patron_refused",
                                                  "pin_required")


def test_the_pin_pad_times_out_like_any_screen() -> None:
    sc = make(pin="always", inactivity_s=10)
    sc.handle(core.CardRead(CARD), 1)
    sc.handle(core.Tick(), 12)
    assert sc.mode is core.Mode.IDLE and CARD not in strings_in(sc)


# -- account
ACCOUNT = AccountRes(ok=True, loans=[
    AccountLoan(item_id="39000010", title="Chí Phèo", due=dt.date(2026, 1, 1), overdue=True,
                renewable=False),
    AccountLoan(item_id="39000011", title="Vợ nhặt", due=dt.date(2026, 2, 1)),
    AccountLoan(item_id="39000012", title="Bỉ vỏ", due=dt.date(2026, 2, 2))],
    fines_total=37_000)


def open_account(sc: core.SelfCheck) -> None:
    sc.handle(core.CardRead(CARD), 1)
    sc.handle(patron_checked(OK), 1)
    assert sc.handle(core.Touch("account"), 2) == [core.LoadAccount("p-1")]
    assert sc.mode is core.Mode.ACCOUNT and sc.view(2).account is None  # loading
    sc.handle(account_loaded(ACCOUNT), 3)


def test_renew_all_sends_one_renewal_per_renewable_loan() -> None:
    sc = make()
    open_account(sc)
    actions = sc.handle(core.Touch("renew_all"), 4)
    assert [(a.kind, a.item_id, a.patron_ref) for a in only(actions, core.RecordTx)] == [
        ("renew", "39000011", "p-1"), ("renew", "39000012", "p-1")]
    assert not only(actions, core.WriteSecurity)
    for a in actions:
        sc.handle(core.Recorded(a.msg_id), 5)  # type: ignore[union-attr]
    first, second = only(actions, core.RecordTx)
    sc.handle(ack_received(AckTx(msg_id=first.msg_id, ok=True, item_id="39000011",
                                     due=dt.date(2026, 3, 1))), 6)
    out = sc.handle(ack_received(AckTx(msg_id=second.msg_id, ok=False,
                                           reason="on_hold_for_other",
                                           item_id="39000012")), 6)
    assert out == []  # no tag to write, no exception: the reader sees it
    got = {r.item_id: (r.status, r.due, r.reason) for r in sc.view(6).renewals}
    assert got == {"39000011": (core.Status.DONE, dt.date(2026, 3, 1), None),
                   "39000012": (core.Status.REFUSED, dt.date(2026, 2, 2),
                                "on_hold_for_other")}
    assert sc.handle(core.Touch("renew_all"), 7) != []  # a refused one may be tried again


def test_renew_one_and_no_answer_is_unconfirmed() -> None:
    sc = make(ack_timeout_s=5)
    open_account(sc)
    actions = sc.handle(core.Renew("39000012"), 4)
    (rec,) = only(actions, core.RecordTx)
    assert rec.kind == "renew" and rec.item_id == "39000012"
    assert sc.handle(core.Renew("39000012"), 4) == []  # already asked
    sc.handle(core.Recorded(rec.msg_id), 4)
    sc.handle(core.Tick(), 10)
    (r,) = sc.view(10).renewals
    assert (r.status, r.reason) == (core.Status.UNCONFIRMED, "no_answer")


def test_account_without_an_answer_says_so_and_back_returns_to_the_pad() -> None:
    sc = make()
    sc.handle(core.CardRead(CARD), 1)
    sc.handle(patron_checked(OK), 1)
    sc.handle(core.Touch("account"), 2)
    sc.handle(account_loaded(None), 3)
    assert sc.view(3).account_failed
    assert sc.handle(core.Touch("renew_all"), 3) == []
    sc.handle(core.Touch("done"), 4)
    assert sc.mode is core.Mode.BORROW
    assert len(only(sc.handle(core.TagsPresent((tag("E1", "1"),)), 5), core.RecordTx)) == 1


def test_renewals_go_on_the_receipt() -> None:
    sc = make(receipt="print", can_print=True)
    open_account(sc)
    (rec,) = only(sc.handle(core.Renew("39000011"), 4), core.RecordTx)
    sc.handle(core.Recorded(rec.msg_id), 4)
    sc.handle(ack_received(AckTx(msg_id=rec.msg_id, ok=True, item_id="39000011",
                                     due=dt.date(2026, 3, 1))), 5)
    sc.handle(core.Touch("done"), 6)
    (send,) = only(sc.handle(core.Touch("finish"), 6), core.SendReceipt)
    items = receipt.items_from_lines(send.lines)
    assert [(i.item_id, i.outcome, i.due) for i in items] == [
        ("39000011", "renewed", dt.date(2026, 3, 1))]


# -- offline
def test_offline_without_loans_policy_is_returns_only() -> None:
    sc = make(online=False)
    assert sc.handle(core.CardRead(CARD), 1) == []
    assert sc.view(1).message == "offline_no_loans"


def test_offline_card_is_looked_up_on_the_list_and_lends_up_to_its_limit() -> None:
    sc = make(online=False, offline_loans=True)
    assert sc.handle(core.CardRead(CARD), 1) == [core.CheckOffline(CARD)]
    sc.handle(core.OfflineChecked(core.OfflinePatron("p-1", "An", 1)), 2)
    v = sc.view(2)
    assert (v.mode, v.offline_session, v.offline_left) == (core.Mode.BORROW, True, 1)
    assert sc.handle(core.Touch("account"), 2) == []  # no account offline
    actions = sc.handle(core.TagsPresent((tag("E1", "1"), tag("E2", "2"))), 3)
    (rec,) = only(actions, core.RecordTx)
    assert (rec.kind, rec.patron_ref, rec.offline) == ("loan", "p-1", True)
    refused = [ln for ln in sc.view(3).lines if ln.status is core.Status.REFUSED]
    assert [ln.reason for ln in refused] == ["offline_limit"]
    # In the journal: accepted offline at once, and the tag is secured.
    out = sc.handle(core.Recorded(rec.msg_id), 4)
    assert only(out, core.WriteSecurity) == [core.WriteSecurity("E1", "on_loan")]
    line = sc.line(rec.msg_id)
    assert line is not None and line.status is core.Status.OFFLINE
    # A refusal that comes back later is a staff exception.
    out = sc.handle(ack_received(AckTx(msg_id=rec.msg_id, ok=False,
                                           reason="too_many_loans", item_id="1")), 5)
    assert only(out, core.KeepException) and sc.view(5).exceptions[0].msg_id == rec.msg_id


def test_offline_card_not_on_the_list_or_no_list_is_returns_only() -> None:
    sc = make(online=False, offline_loans=True)
    sc.handle(core.CardRead(CARD), 1)
    sc.handle(core.OfflineChecked(None), 2)
    v = sc.view(2)
    assert (v.mode, v.message) == (core.Mode.IDLE, "offline_no_loans")


def test_central_silent_behind_a_live_broker_falls_back_to_the_list() -> None:
    sc = make(offline_loans=True, ack_timeout_s=5)
    assert sc.handle(core.CardRead(CARD), 1) == [core.CheckPatron(CARD)]
    assert sc.handle(patron_checked(None), 6) == [core.CheckOffline(CARD)]
    assert not sc.view(6).central_ok
    sc.handle(core.OfflineChecked(core.OfflinePatron("p-1", "An", 3)), 6)
    assert sc.view(6).offline_session
    # And a return meanwhile is accepted offline at once, marked as such.
    sc.handle(core.Touch("finish"), 7)
    sc.handle(core.Touch("done"), 7)
    sc.handle(core.Touch("return"), 8)
    (rec,) = only(sc.handle(core.TagsPresent((tag("E9", "9"),)), 8), core.RecordTx)
    assert (rec.kind, rec.offline) == ("return", True)
    sc.handle(core.Recorded(rec.msg_id), 8)
    assert only(sc.handle(core.Tick(), 14), core.WriteSecurity)  # no answer: accepted
    # Any ack means the central is back.
    sc.handle(ack_received(AckTx(msg_id=rec.msg_id, ok=True, item_id="9")), 9)
    assert sc.view(9).central_ok


def test_online_loans_are_not_marked_offline() -> None:
    sc = make(offline_loans=True)
    sc.handle(core.CardRead(CARD), 1)
    sc.handle(patron_checked(OK), 1)
    (rec,) = only(sc.handle(core.TagsPresent((tag("E1", "1"),)), 2), core.RecordTx)
    assert rec.offline is False


# -- receipt lines from the library system, and return alerts in self-check mode
def test_print_lines_and_alerts_reach_the_lines() -> None:
    sc = make()
    sc.handle(core.Touch("return"), 1)
    (rec,) = only(sc.handle(core.TagsPresent((tag("E1", "1"),)), 1), core.RecordTx)
    sc.handle(core.Recorded(rec.msg_id), 1)
    sc.handle(ack_received(AckTx(msg_id=rec.msg_id, ok=True, item_id="1", hold=True,
                                     alert_type="01", print_lines=["Giữ cho bạn đọc khác"])),
              2)
    line = sc.line(rec.msg_id)
    assert line is not None and line.alert == "hold"
    assert line.print_lines == ("Giữ cho bạn đọc khác",)
    (item,) = receipt.items_from_lines([line])
    slip = receipt.build_receipt(receipt.SessionSummary(
        "Thư viện", "st-1", dt.datetime(2026, 1, 1, 9, 0), None, (item,)), "vi")
    assert "Giữ cho bạn đọc khác" in [ln.text for ln in slip.lines]


# -- the journal's offline list
def test_card_hash_is_the_documented_hmac() -> None:
    # The station and the central share card_hash; it must stay the formula the contract states.
    salt = "00112233445566778899aabbccddeeff"
    want = hmac.new(bytes.fromhex(salt), CARD.encode(), "sha256").hexdigest()[:32]
    assert card_hash(salt, CARD) == want
    assert "hexdigest()[:32]" in (OfflineEntry.model_fields["card_hash"].description or "")


def test_journal_offline_list_expiry_counts_and_no_card_numbers(tmp_path: Path) -> None:
    j = Journal(tmp_path / "st.db")
    salt = "00112233445566778899aabbccddeeff"
    now = 1_000_000.0
    h = card_hash(salt, CARD)
    assert j.offline_entry(h, now) is None  # no list: returns only
    j.store_offline_list(salt, now - 60, now + 3600, [(h, "p-1", "An", 2)])
    assert j.offline_entry(h, now) == ("p-1", "An", 2)
    assert j.offline_entry(card_hash(salt, "DG0009"), now) is None
    assert j.offline_entry(h, now + 3600) is None  # past valid_until
    at = dt.datetime.now(dt.UTC)

    def loan(seq: int) -> TxLoan:
        return TxLoan(msg_id=next(_ids), seq=seq, site="s", station="t", at=at,
                      item_id=f"3900000{seq}", patron_ref="p-1", deadline=at, offline=True)

    first = j.add("loan", "topic", loan)
    assert j.offline_entry(h, now) == ("p-1", "An", 1)  # counted across sessions
    j.add("return", "topic", lambda seq: TxReturn(msg_id=next(_ids), seq=seq, site="s",
                                                  station="t", at=at, item_id="1",
                                                  offline=True))
    assert j.offline_entry(h, now) == ("p-1", "An", 1)  # returns do not count
    j.delete(first.msg_id)  # acked
    assert [(k, acked) for _m, k, _i, _r, acked in j.offline_transactions()] == [
        ("loan", True), ("return", False)]
    # acked, but made after the list was generated: still counted until a new list
    assert j.offline_entry(h, now) == ("p-1", "An", 1)
    j.close()
    data = b"".join(p.read_bytes() for p in tmp_path.glob("st.db*"))
    assert CARD.encode() not in data
