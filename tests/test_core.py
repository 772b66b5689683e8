"""The self-check core alone: events in, actions out, no I/O."""

from __future__ import annotations

import datetime as dt
import itertools

from selfcheck.drivers.seen import SeenTag
from selfcheck.drivers.tags import TagInfo
from selfcheck.kiosk import core
from selfcheck.kiosk.runtime.edge import ack_received, patron_checked
from selfcheck.mqtt.messages import AckTx, PatronCheckRes

_ids = (f"id-{n}" for n in itertools.count(1))


def make(**cfg: object) -> core.SelfCheck:
    sc = core.SelfCheck(core.CoreConfig(**cfg), lambda: next(_ids))  # type: ignore[arg-type]
    sc.handle(core.Connectivity(True), 0)
    return sc


def tag(uid: str, item: str | None = "39000001") -> SeenTag:
    if item is None:
        return SeenTag(uid, None, "byte 19: CRC mismatch")
    return SeenTag(uid, TagInfo(model="28560-3", primary_item_id=item))


def ok_patron() -> PatronCheckRes:
    return PatronCheckRes(ok=True, patron_ref="p-1", display_name="Nguyễn Văn An", max_loans=5)


def borrow_session(sc: core.SelfCheck) -> None:
    assert sc.handle(core.CardRead("DG0001"), 1) == [core.CheckPatron("DG0001")]
    assert sc.mode is core.Mode.CHECKING
    sc.handle(patron_checked(ok_patron()), 1.1)
    assert sc.mode is core.Mode.BORROW


def ack(msg_id: str, ok: bool = True, **kw: object) -> core.AckReceived:
    return ack_received(AckTx(msg_id=f"0190a3c2-7b1e-7cc0-8d4e-{msg_id[-12:]:0>12}",
                                  ok=ok, item_id="x", **kw))  # type: ignore[arg-type]


def test_loan_is_recorded_then_confirmed_then_secured() -> None:
    sc = make()
    borrow_session(sc)
    actions = sc.handle(core.TagsPresent((tag("E001", "39000001"),)), 2)
    assert len(actions) == 1 and isinstance(actions[0], core.RecordTx)
    rec = actions[0]
    assert (rec.kind, rec.item_id, rec.patron_ref) == ("loan", "39000001", "p-1")
    assert sc.view(2).lines[0].status is core.Status.RECORDING
    sc.handle(core.Recorded(rec.msg_id), 2.1)
    assert sc.view(2.1).lines[0].status is core.Status.WAITING
    due = dt.date(2026, 12, 6)
    out = sc.handle(ack_received(AckTx(msg_id="0190a3c2-7b1e-7cc0-8d4e-1234567890ab",
                                           ok=True, item_id="39000001")), 2.2)
    assert out == []  # an ack for another msg_id changes nothing
    real = AckTx.model_construct(msg_id=rec.msg_id, ok=True, item_id="39000001",
                                 title="Truyện Kiều", due=due, reason=None, sort_bin=None,
                                 hold=False, repeat=False)
    out = sc.handle(ack_received(real), 2.3)
    assert out == [core.WriteSecurity("E001", "on_loan")]  # tag second, after the yes
    line = sc.view(2.3).lines[0]
    assert (line.status, line.title, line.due, line.security) == (
        core.Status.DONE, "Truyện Kiều", due, "pending")
    sc.handle(core.SecurityWritten("E001", True), 2.4)
    assert sc.view(2.4).lines[0].security == "done"


def _recorded(sc: core.SelfCheck, uid: str, item: str, now: float) -> str:
    (rec,) = sc.handle(core.TagsPresent((tag(uid, item),)), now)
    assert isinstance(rec, core.RecordTx)
    sc.handle(core.Recorded(rec.msg_id), now)
    return rec.msg_id


def _ack(msg_id: str, ok: bool, **kw: object) -> core.AckReceived:
    fields = dict(msg_id=msg_id, ok=ok, item_id="x", title=None, due=None, reason=None,
                  sort_bin=None, hold=False, repeat=False)
    fields.update(kw)
    return ack_received(AckTx.model_construct(**fields))  # type: ignore[arg-type]


def test_refused_loan_shows_reason_and_does_not_touch_the_tag() -> None:
    sc = make()
    borrow_session(sc)
    msg_id = _recorded(sc, "E001", "39000007", 2)
    assert sc.handle(_ack(msg_id, False, reason="not_for_loan"), 3) == []
    line = sc.view(3).lines[0]
    assert (line.status, line.reason, line.security) == (core.Status.REFUSED, "not_for_loan",
                                                         "none")


def test_same_book_twice_is_one_transaction_and_lifted_book_is_rewritten() -> None:
    sc = make()
    borrow_session(sc)
    msg_id = _recorded(sc, "E001", "39000001", 2)
    assert sc.handle(core.TagsPresent((tag("E001"),)), 2.5) == []
    sc.handle(_ack(msg_id, True), 3)
    sc.handle(core.TagsPresent(()), 3.1)  # lifted too early
    sc.handle(core.SecurityWritten("E001", False), 3.2)
    assert sc.view(3.2).lines[0].security == "failed"
    out = sc.handle(core.TagsPresent((tag("E001"),)), 4)  # put back
    assert out == [core.WriteSecurity("E001", "on_loan")]
    assert len(sc.view(4).lines) == 1


def test_no_answer_loan_is_unconfirmed_return_is_accepted_offline() -> None:
    sc = make(ack_timeout_s=5)
    borrow_session(sc)
    _recorded(sc, "E001", "39000001", 2)
    assert sc.handle(core.Tick(), 6.9) == []
    # the journal keeps what the reader was told until the answer comes
    (told,) = sc.handle(core.Tick(), 7.1)
    assert isinstance(told, core.ToldNotLent) and told.item_id == "39000001"
    line = sc.view(7.1).lines[0]
    assert (line.status, line.reason) == (core.Status.UNCONFIRMED, "no_answer")
    assert sc.handle(core.Tick(), 7.5) == []  # told once

    sc.handle(core.TagsPresent(()), 7.5)  # the reader takes the book off again
    sc.handle(core.Touch("cancel"), 8)
    sc.handle(core.Touch("return"), 9)
    assert sc.mode is core.Mode.RETURN
    (rec,) = sc.handle(core.TagsPresent((tag("E002", "39000002"),)), 9)
    assert isinstance(rec, core.RecordTx) and rec.kind == "return" and rec.patron_ref is None
    sc.handle(core.Recorded(rec.msg_id), 9)
    assert sc.handle(core.Tick(), 14.5) == [core.WriteSecurity("E002", "in_library")]
    assert sc.view(14.5).lines[0].status is core.Status.OFFLINE
    # the late ack does not write the tag again
    assert sc.handle(_ack(rec.msg_id, True, sort_bin="A"), 20) == []
    assert sc.view(20).lines[0].status is core.Status.DONE


def test_offline_policy_none_refuses_returns_too() -> None:
    sc = make(ack_timeout_s=5, offline_returns=False)
    sc.handle(core.Touch("return"), 1)
    msg_id = _recorded(sc, "E002", "39000002", 1)
    assert sc.handle(core.Tick(), 7) == []
    assert sc.line(msg_id) is not None
    assert sc.view(7).lines[0].status is core.Status.UNCONFIRMED


def test_offline_station_refuses_cards_but_takes_returns() -> None:
    sc = make()
    sc.handle(core.Connectivity(False), 0.5)
    assert sc.handle(core.CardRead("DG0001"), 1) == []
    view = sc.view(1)
    assert (view.mode, view.message) == (core.Mode.IDLE, "offline_no_loans")
    assert sc.view(100).message is None  # the message goes away
    sc.handle(core.Touch("return"), 101)
    assert isinstance(sc.handle(core.TagsPresent((tag("E1"),)), 101)[0], core.RecordTx)


def test_refused_patron_back_to_idle_with_reason() -> None:
    sc = make()
    sc.handle(core.CardRead("DG0004"), 1)
    sc.handle(patron_checked(PatronCheckRes(ok=False, reason="patron_blocked")), 1.2)
    view = sc.view(1.3)
    assert (view.mode, view.message, view.message_arg) == (core.Mode.IDLE, "patron_refused",
                                                           "patron_blocked")
    sc.handle(core.CardRead("DG0001"), 2)
    sc.handle(patron_checked(None), 3)  # no answer
    assert sc.view(3).message == "offline_no_loans"


def test_books_already_on_the_pad_are_borrowed_when_the_card_is_read() -> None:
    sc = make()
    sc.handle(core.TagsPresent((tag("E1", "1"), tag("E2", "2"))), 0.5)
    sc.handle(core.CardRead("DG0001"), 1)
    actions = sc.handle(patron_checked(ok_patron()), 1.1)
    assert sorted(a.item_id for a in actions if isinstance(a, core.RecordTx)) == ["1", "2"]


def test_unreadable_tag_is_shown_not_sent() -> None:
    sc = make()
    borrow_session(sc)
    assert sc.handle(core.TagsPresent((tag("E9", None),)), 2) == []
    line = sc.view(2).lines[0]
    assert line.status is core.Status.UNREADABLE and "CRC" in (line.reason or "")


def test_inactivity_countdown_returns_to_idle_and_resets_language() -> None:
    sc = make(inactivity_s=30, default_lang="vi")
    borrow_session(sc)
    sc.handle(core.Touch("lang"), 2)
    assert sc.lang == "en"
    assert sc.view(12).countdown == 20
    sc.handle(core.Tick(), 31.9)
    assert sc.mode is core.Mode.BORROW
    sc.handle(core.Tick(), 32.1)
    view = sc.view(32.1)
    assert (view.mode, view.lang, view.lines, view.patron_name) == (core.Mode.IDLE, "vi", (),
                                                                   None)


def test_finish_shows_summary_then_done_goes_idle() -> None:
    sc = make(summary_s=10)
    borrow_session(sc)
    sc.handle(core.Touch("finish"), 2)
    assert sc.mode is core.Mode.SUMMARY and sc.view(2).countdown == 10
    sc.handle(core.Tick(), 12.5)
    assert sc.mode is core.Mode.IDLE


def test_touches_that_do_not_apply_change_nothing() -> None:
    sc = make()
    sc.handle(core.Touch("finish"), 1)
    assert sc.mode is core.Mode.IDLE
    borrow_session(sc)
    assert sc.handle(core.Touch("return"), 2) == []
    assert sc.mode is core.Mode.BORROW
    assert sc.handle(core.CardRead("DG0002"), 3) == []  # finish first
    assert sc.view(3).patron_name == "Nguyễn Văn An"


def test_a_loan_undone_after_the_reader_was_told_no_is_kept_for_staff_once() -> None:
    sc = make(ack_timeout_s=5)
    borrow_session(sc)
    _recorded(sc, "E001", "39000001", 2)
    sc.handle(core.Tick(), 7.1)
    undone = core.LoanUndone("id-1", "39000001", "Truyện Kiều")
    kept = core.LateRefusal("id-1", "39000001", "Truyện Kiều", "compensated")
    assert sc.handle(undone, 8) == [
        core.KeepException(kept),
        core.Notify("loan_undone", "warning", "checked back in", "39000001")]
    line = sc.view(8).lines[0]
    assert (line.status, line.reason) == (core.Status.UNCONFIRMED, "no_answer")
    assert sc.handle(undone, 9) == []  # a repeat adds nothing
    assert sc.view(9).exceptions == (kept,)


def test_a_repeat_of_an_undone_loans_ack_does_not_show_it_done() -> None:
    sc = make(ack_timeout_s=5)
    borrow_session(sc)
    msg_id = _recorded(sc, "E001", "39000001", 2)
    sc.handle(core.Tick(), 7.1)
    sc.handle(core.LoanUndone(msg_id, "39000001", None), 8)
    assert sc.handle(_ack(msg_id, True), 9) == []  # the resend's repeat
    line = sc.view(9).lines[0]
    assert line.status is core.Status.UNCONFIRMED and line.security != "pending"


def test_a_loan_still_waiting_when_the_reader_goes_is_told_not_lent() -> None:
    sc = make(ack_timeout_s=5, inactivity_s=60)
    borrow_session(sc)
    msg_id = _recorded(sc, "E001", "39000001", 2)
    actions = sc.handle(core.Touch("cancel"), 3)
    assert core.ToldNotLent(msg_id, "39000001", None) in actions
    assert sc.mode is core.Mode.IDLE
