"""A loan the library system makes only with the reader's consent (a rental charge): the core
asks on screen, one book at a time, and on a yes sends a new loan carrying what was accepted."""

from __future__ import annotations

import datetime as dt

from selfcheck.kiosk import core, core_table
from selfcheck.kiosk.runtime.edge import ack_received
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.messages import AckTx, LoanConfirm
from tests.test_core import borrow_session, tag

CHARGE = LoanConfirm(code="rental_charge", amount=5000, currency="VND", currency_exponent=0)


def make(**cfg: object) -> core.SelfCheck:
    """A core whose msg_ids are real UUIDv7s, so that the wire's acks can answer them."""
    sc = core.SelfCheck(core.CoreConfig(**cfg), uuid7)  # type: ignore[arg-type]
    sc.handle(core.Connectivity(True), 0)
    return sc


def needs_confirmation(msg_id: str, item: str) -> core.AckReceived:
    return ack_received(AckTx(msg_id=msg_id, ok=False, item_id=item,
                              reason="needs_confirmation", confirm=CHARGE))


def waiting_loans(sc: core.SelfCheck, *items: str, at: float = 2) -> list[core.RecordTx]:
    """Books on the pad, each recorded and waiting for the central's answer."""
    tags = tuple(tag(f"E00{n}", item) for n, item in enumerate(items, 1))
    recs = [a for a in sc.handle(core.TagsPresent(tags), at) if isinstance(a, core.RecordTx)]
    for rec in recs:
        sc.handle(core.Recorded(rec.msg_id), at + 0.1)
    return recs


def asked(sc: core.SelfCheck, now: float) -> core.Line | None:
    return next((ln for ln in sc.view(now).lines if ln.status is core.Status.ASKING), None)


def test_the_edge_carries_what_the_reader_is_asked() -> None:
    answer = needs_confirmation("0190a3c2-7b1e-7cc0-8d4e-1234567890ab", "39000001").ack
    assert answer.confirm == core.Confirmation("rental_charge", 5000, "VND", 0)
    assert answer.reason == "needs_confirmation" and not answer.ok


def test_ack_with_confirm_asks_and_a_yes_sends_a_new_loan_with_it_confirmed() -> None:
    sc = make()
    borrow_session(sc)
    (rec,) = waiting_loans(sc, "39000001")
    assert rec.confirmed == ()
    assert sc.handle(needs_confirmation(rec.msg_id, "39000001"), 3) == []
    assert sc.mode is core.Mode.CONFIRM_LOAN
    line = asked(sc, 3)
    assert line is not None and line.msg_id == rec.msg_id
    assert line.confirm == core.Confirmation("rental_charge", 5000, "VND", 0)
    assert line.security == "none"  # not lent: the tag is left as it is
    # Finish is no button of the question: the reader answers first
    assert sc.handle(core.Touch("finish"), 4) == []
    assert sc.ignored[(core.Mode.CONFIRM_LOAN, "Touch finish")] == 1

    (again,) = sc.handle(core.Touch("loan_yes"), 5)
    assert isinstance(again, core.RecordTx)
    assert (again.kind, again.item_id, again.patron_ref) == ("loan", "39000001", "p-1")
    assert again.msg_id != rec.msg_id and again.confirmed == ("rental_charge",)
    assert sc.mode is core.Mode.BORROW
    (line,) = sc.view(5).lines
    assert (line.status, line.msg_id, line.confirm) == (core.Status.RECORDING, again.msg_id,
                                                        None)
    # A repeat of the question (the first loan sent twice) asks nothing again
    assert sc.handle(needs_confirmation(rec.msg_id, "39000001"), 5.05) == []
    assert sc.mode is core.Mode.BORROW and sc.view(5.05).lines[0].msg_id == again.msg_id
    assert sc.view(5.05).exceptions == ()
    # Then as any loan: waiting, the answer, the tag
    sc.handle(core.Recorded(again.msg_id), 5.1)
    assert sc.view(5.1).lines[0].status is core.Status.WAITING
    due = dt.date(2026, 12, 6)
    out = sc.handle(ack_received(AckTx(msg_id=again.msg_id, ok=True, item_id="39000001",
                                       due=due)), 6)
    assert out == [core.WriteSecurity("E001", "on_loan")]
    assert (sc.view(6).lines[0].status, sc.view(6).lines[0].due) == (core.Status.DONE, due)


def test_a_no_refuses_the_line_and_sends_nothing() -> None:
    sc = make()
    borrow_session(sc)
    (rec,) = waiting_loans(sc, "39000001")
    sc.handle(needs_confirmation(rec.msg_id, "39000001"), 3)
    assert sc.handle(core.Touch("loan_no"), 4) == []
    assert sc.mode is core.Mode.BORROW
    (line,) = sc.view(4).lines
    assert (line.status, line.reason, line.msg_id) == (core.Status.REFUSED,
                                                       "needs_confirmation", rec.msg_id)
    # the same question again (a repeated answer) does not bring the dialog back
    assert sc.handle(needs_confirmation(rec.msg_id, "39000001"), 4.5) == []
    assert sc.mode is core.Mode.BORROW and sc.view(4.5).lines[0].status is core.Status.REFUSED
    sc.handle(core.Touch("finish"), 5)
    assert sc.mode is core.Mode.SUMMARY


def test_several_books_are_asked_about_one_at_a_time() -> None:
    sc = make()
    borrow_session(sc)
    recs = waiting_loans(sc, "39000001", "39000002", "39000003")
    sc.handle(needs_confirmation(recs[0].msg_id, "39000001"), 3)
    sc.handle(needs_confirmation(recs[1].msg_id, "39000002"), 3.1)
    sc.handle(ack_received(AckTx(msg_id=recs[2].msg_id, ok=True, item_id="39000003")), 3.2)
    first = asked(sc, 3.2)
    assert sc.mode is core.Mode.CONFIRM_LOAN and first is not None
    assert first.item_id == "39000001"
    assert sc.view(3.2).lines[2].status is core.Status.DONE  # other answers still arrive
    (yes,) = sc.handle(core.Touch("loan_yes"), 4)
    assert isinstance(yes, core.RecordTx) and yes.item_id == "39000001"
    second = asked(sc, 4)
    assert sc.mode is core.Mode.CONFIRM_LOAN and second is not None
    assert second.item_id == "39000002"
    assert sc.handle(core.Touch("cancel"), 5) == []  # cancel is a no
    assert sc.mode is core.Mode.BORROW
    statuses = [ln.status for ln in sc.view(5).lines]
    assert statuses == [core.Status.RECORDING, core.Status.REFUSED, core.Status.DONE]


def test_timeout_while_asking_ends_the_session_and_sends_nothing() -> None:
    sc = make(inactivity_s=30.0)
    borrow_session(sc)
    (rec,) = waiting_loans(sc, "39000001")
    sc.handle(needs_confirmation(rec.msg_id, "39000001"), 3)
    assert sc.mode is core.Mode.CONFIRM_LOAN
    view = sc.view(20)
    assert view.countdown is not None and view.countdown <= 20  # the more-time warning shows
    assert sc.handle(core.Tick(), 20) == []
    assert sc.mode is core.Mode.CONFIRM_LOAN
    assert sc.handle(core.Tick(), 33.1) == []
    assert sc.mode is core.Mode.IDLE and sc.view(34).lines == ()


def test_the_question_waits_for_the_reader_to_come_back_to_the_pad() -> None:
    sc = make()
    borrow_session(sc)
    (rec,) = waiting_loans(sc, "39000001")
    sc.handle(core.Touch("help"), 2.5)
    sc.handle(needs_confirmation(rec.msg_id, "39000001"), 3)
    assert sc.mode is core.Mode.HELP  # not over the help screen
    sc.handle(core.Touch("cancel"), 4)
    assert sc.mode is core.Mode.CONFIRM_LOAN
    sc.handle(core.Touch("help"), 5)  # help from the question goes back to it
    sc.handle(core.Touch("cancel"), 6)
    assert sc.mode is core.Mode.CONFIRM_LOAN
    sc.handle(core.Touch("loan_no"), 7)
    assert sc.mode is core.Mode.BORROW


def test_a_question_after_finish_is_a_refusal() -> None:
    sc = make(confirm_count=True)
    borrow_session(sc)
    recs = waiting_loans(sc, "39000001", "39000002")
    sc.handle(core.Touch("finish"), 3)
    assert sc.mode is core.Mode.CONFIRM_COUNT
    sc.handle(needs_confirmation(recs[0].msg_id, "39000001"), 3.5)
    assert sc.mode is core.Mode.CONFIRM_COUNT  # counting: asked when back at the pad
    sc.handle(core.Touch("count_back"), 4)
    assert sc.mode is core.Mode.CONFIRM_LOAN
    sc.handle(core.Touch("loan_no"), 4.5)
    sc.handle(core.Touch("finish"), 5)
    for _ in range(2):
        sc.handle(core.Touch("count_plus"), 5.1)
    sc.handle(core.Touch("count_ok"), 5.2)
    assert (sc.mode, sc.view(5.2).finishing) == (core.Mode.BORROW, True)  # one still waits
    # the reader said they are done: no question now, the loan is not borrowed
    assert sc.handle(needs_confirmation(recs[1].msg_id, "39000002"), 6) == []
    assert sc.mode is core.Mode.SUMMARY
    assert [(ln.status, ln.reason) for ln in sc.view(6).lines] == [
        (core.Status.REFUSED, "needs_confirmation")] * 2


def test_an_unanswered_question_at_finish_is_not_borrowed() -> None:
    sc = make(confirm_count=True)
    borrow_session(sc)
    (rec,) = waiting_loans(sc, "39000001")
    sc.handle(core.Touch("finish"), 3)
    sc.handle(needs_confirmation(rec.msg_id, "39000001"), 3.5)
    sc.handle(core.Touch("count_plus"), 4)
    sc.handle(core.Touch("count_ok"), 4.1)
    assert sc.mode is core.Mode.SUMMARY
    assert sc.view(4.1).lines[0].status is core.Status.REFUSED


def test_a_question_after_the_answer_timed_out_stays_not_borrowed() -> None:
    sc = make(ack_timeout_s=5.0)
    borrow_session(sc)
    (rec,) = waiting_loans(sc, "39000001")
    sc.handle(core.Tick(), 8)
    assert sc.view(8).lines[0].status is core.Status.UNCONFIRMED
    assert sc.handle(needs_confirmation(rec.msg_id, "39000001"), 9) == []
    assert sc.mode is core.Mode.BORROW
    assert sc.view(9).lines[0].status is core.Status.UNCONFIRMED


def test_needs_staff_is_a_plain_refusal() -> None:
    sc = make()
    borrow_session(sc)
    (rec,) = waiting_loans(sc, "39000001")
    sc.handle(ack_received(AckTx(msg_id=rec.msg_id, ok=False, item_id="39000001",
                                 reason="needs_staff")), 3)
    assert sc.mode is core.Mode.BORROW
    line = sc.view(3).lines[0]
    assert (line.status, line.reason, line.confirm) == (core.Status.REFUSED, "needs_staff", None)


def test_the_question_is_a_mode_of_the_table() -> None:
    pairs = core_table.transitions()
    assert (core.Mode.CONFIRM_LOAN, "Touch loan_yes", "_press_loan_yes") in pairs
    assert (core.Mode.CONFIRM_LOAN, "Touch loan_no", "_press_loan_no") in pairs
    assert (core.Mode.CONFIRM_LOAN, "Touch cancel", "_press_loan_no") in pairs
    assert not any(e == "Touch loan_yes" for m, e, _ in pairs if m is not core.Mode.CONFIRM_LOAN)
    assert not any(e == "Touch done" for m, e, _ in pairs if m is core.Mode.CONFIRM_LOAN)
    steps = core_table.edges()
    assert "AckReceived" in steps[(core.Mode.BORROW, core.Mode.CONFIRM_LOAN)]
    assert "Touch loan_yes" in steps[(core.Mode.CONFIRM_LOAN, core.Mode.BORROW)]
    assert 'borrow -- "AckReceived' in core_table.diagram()
