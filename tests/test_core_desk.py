"""The self-service desk rules of the core (station side): stacks and counts,
multi-part items, the station's own refusals, tag security from the ack, pending writes,
staff mode, return-station mode, help and receipts. Events in, actions out, no I/O."""

from __future__ import annotations

import itertools

from selfcheck.drivers.seen import SeenTag, TagUid
from selfcheck.drivers.tags import TagInfo
from selfcheck.kiosk import core
from selfcheck.kiosk.runtime.edge import ack_received, patron_checked
from selfcheck.mqtt.messages import AckTx, PatronCheckRes

_ids = (f"0190a3c2-7b1e-7cc0-8d4e-{n:012x}" for n in itertools.count(1))
STAFF = "NV0001"


def make(**cfg: object) -> core.SelfCheck:
    cfg.setdefault("staff_cards", frozenset({STAFF}))
    sc = core.SelfCheck(core.CoreConfig(**cfg), lambda: next(_ids))  # type: ignore[arg-type]
    sc.handle(core.Connectivity(True), 0)
    return sc


def tag(uid: str, item: str | None = "39000001", **info: object) -> SeenTag:
    if item is None:
        return SeenTag(uid, None, "byte 19: CRC mismatch")
    return SeenTag(uid, TagInfo(model="28560-3", primary_item_id=item, **info))  # type: ignore[arg-type]


def borrow(sc: core.SelfCheck, now: float = 1) -> None:
    sc.handle(core.CardRead("DG0001"), now)
    sc.handle(patron_checked(PatronCheckRes(ok=True, patron_ref="p-1",
                                                display_name="Nguyễn Văn An")), now)
    assert sc.mode is core.Mode.BORROW


def place(sc: core.SelfCheck, *tags: SeenTag, now: float = 2) -> list[core.Action]:
    actions = sc.handle(core.TagsPresent(tags), now)
    for a in actions:
        if isinstance(a, core.RecordTx):
            sc.handle(core.Recorded(a.msg_id), now)
    return actions


def records(actions: list[core.Action]) -> list[core.RecordTx]:
    return [a for a in actions if isinstance(a, core.RecordTx)]


def lend(sc: core.SelfCheck, *tags: SeenTag, now: float = 2) -> list[core.RecordTx]:
    """Books placed and borrowed: each has its answer (the summary waits for them)."""
    recs = records(place(sc, *tags, now=now))
    for rec in recs:
        sc.handle(ack(rec.msg_id, item_id=rec.item_id), now)
    return recs


def ack(msg_id: str, ok: bool = True, **kw: object) -> core.AckReceived:
    return ack_received(AckTx(msg_id=msg_id, ok=ok, item_id=str(kw.pop("item_id", "x")),
                                  **kw))  # type: ignore[arg-type]


# -- stacks and the reader's count
def test_stack_with_confirmed_count_goes_to_the_summary() -> None:
    sc = make(confirm_count=True)
    borrow(sc)
    assert len(lend(sc, tag("E1", "1"), tag("E2", "2"))) == 2
    sc.handle(core.Touch("finish"), 3)
    assert sc.mode is core.Mode.CONFIRM_COUNT and sc.view(3).count == 0
    sc.handle(core.Touch("count_plus"), 3)
    sc.handle(core.Touch("count_plus"), 3)
    sc.handle(core.Touch("count_ok"), 3)
    assert sc.mode is core.Mode.SUMMARY


def test_the_summary_waits_for_the_books_still_processed() -> None:
    """A loan still processed is neither borrowed nor failed: Finish waits for its outcome,
    its answer or its time-out (then told "not borrowed"), and only then the summary."""
    sc = make(ack_timeout_s=5)
    borrow(sc)
    lend(sc, tag("E1", "1"))
    (b,) = records(place(sc, tag("E1", "1"), tag("E2", "2"), now=2))
    sc.handle(core.Touch("finish"), 3)
    v = sc.view(3)
    assert (v.mode, v.finishing) == (core.Mode.BORROW, True)
    assert sc.handle(core.Touch("finish"), 3.5) == []  # already on its way
    assert sc.handle(core.Tick(), 6.9) == [] and sc.mode is core.Mode.BORROW
    out = sc.handle(core.Tick(), 7)
    assert out == [core.ToldNotLent(b.msg_id, "2", None)] and sc.mode is core.Mode.SUMMARY
    assert [ln.status for ln in sc.view(7).lines] == [core.Status.DONE,
                                                       core.Status.UNCONFIRMED]
    assert not sc.view(7).finishing
    sc = make()  # an answer in time: the summary comes with it
    borrow(sc)
    (c,) = records(place(sc, tag("E1", "1")))
    sc.handle(core.Touch("finish"), 3)
    sc.handle(ack(c.msg_id, item_id="1"), 4)
    assert sc.mode is core.Mode.SUMMARY and sc.view(4).lines[0].status is core.Status.DONE


def test_count_mismatch_is_explained_and_the_reader_goes_back_to_the_pad() -> None:
    sc = make(confirm_count=True)
    borrow(sc)
    place(sc, tag("E1", "1"), tag("E2", "2"))
    sc.handle(core.Touch("finish"), 3)
    for _ in range(3):
        sc.handle(core.Touch("count_plus"), 3)
    sc.handle(core.Touch("count_ok"), 3)
    v = sc.view(3)
    assert (v.mode, v.count_read, v.count) == (core.Mode.CONFIRM_COUNT, 2, 3)
    sc.handle(core.Touch("count_back"), 4)
    assert sc.mode is core.Mode.BORROW
    assert len(records(place(sc, tag("E1", "1"), tag("E2", "2"), tag("E3", "3"), now=5))) == 1
    sc.handle(core.Touch("finish"), 6)
    assert sc.view(6).count_read is None  # a fresh question
    sc.handle(core.Touch("count_minus"), 6)  # never below zero
    assert sc.view(6).count == 0


def test_no_count_asked_without_the_site_option_or_without_books() -> None:
    sc = make()
    borrow(sc)
    lend(sc, tag("E1", "1"))
    sc.handle(core.Touch("finish"), 3)
    assert sc.mode is core.Mode.SUMMARY
    sc = make(confirm_count=True)
    borrow(sc)
    sc.handle(core.Touch("finish"), 3)
    assert sc.mode is core.Mode.SUMMARY


# -- multi-part items
def two_parts(n: int) -> SeenTag:
    return tag(f"P{n}", "39000008", parts_in_item=2, part_number=n)


def test_multipart_all_parts_together_is_one_transaction_secured_on_each_tag() -> None:
    for rule in ("accept", "warn", "refuse"):
        sc = make(multipart=rule)
        borrow(sc)
        (rec,) = records(place(sc, two_parts(1), two_parts(2)))
        (line,) = sc.view(2).lines
        assert (line.uids, line.warning) == (("P1", "P2"), None)
        out = sc.handle(ack(rec.msg_id), 3)
        assert out == [core.WriteSecurity("P1", "on_loan"), core.WriteSecurity("P2", "on_loan")]
        sc.handle(core.SecurityWritten("P1", True), 3.1)
        assert sc.view(3.1).lines[0].security == "pending"  # P2 is still being written
        sc.handle(core.SecurityWritten("P2", True), 3.2)
        assert sc.view(3.2).lines[0].security == "done"


def test_multipart_refuse_waits_for_the_missing_part_then_lends() -> None:
    sc = make(multipart="refuse")
    borrow(sc)
    assert place(sc, two_parts(1)) == []
    line = sc.view(2).lines[0]
    assert (line.status, line.reason) == (core.Status.PARTS, "parts_missing")
    (rec,) = records(place(sc, two_parts(1), two_parts(2), now=3))
    assert rec.item_id == "39000008"
    assert sc.view(3).lines[0].status is core.Status.WAITING


def test_multipart_refuse_never_completed_is_refused_at_finish() -> None:
    sc = make(multipart="refuse")
    borrow(sc)
    place(sc, two_parts(2))
    sc.handle(core.Touch("finish"), 3)
    line = sc.view(3).lines[0]
    assert (line.status, line.reason) == (core.Status.REFUSED, "parts_missing")


def test_multipart_warn_lends_with_a_warning_and_secures_the_late_part() -> None:
    sc = make(multipart="warn")
    borrow(sc)
    (rec,) = records(place(sc, two_parts(1)))
    assert sc.view(2).lines[0].warning == "parts_missing"
    assert sc.handle(ack(rec.msg_id), 3) == [core.WriteSecurity("P1", "on_loan")]
    out = place(sc, two_parts(1), two_parts(2), now=4)
    assert out == [core.WriteSecurity("P2", "on_loan")]  # joins the loan: no second tx
    assert sc.view(4).lines[0].warning is None and len(sc.view(4).lines) == 1


def test_multipart_accept_says_nothing() -> None:
    sc = make(multipart="accept")
    borrow(sc)
    place(sc, two_parts(1))
    assert sc.view(2).lines[0].warning is None


# -- the station's own refusals
def test_other_library_and_not_for_loan_are_refused_before_anything_is_sent() -> None:
    sc = make(owner_isil="VN-DEMO")
    borrow(sc)
    out = place(sc, tag("E1", "1", owner_isil="VN-OTHER"), tag("E2", "2", type_of_usage=2),
                tag("E3", "3", owner_isil="vn-demo"))
    assert [r.item_id for r in records(out)] == ["3"]
    reasons = {ln.item_id: (ln.status, ln.reason) for ln in sc.view(2).lines}
    assert reasons["1"] == (core.Status.REFUSED, "other_library")
    assert reasons["2"] == (core.Status.REFUSED, "not_for_loan")


def test_not_for_loan_book_can_still_be_returned() -> None:
    sc = make()
    sc.handle(core.Touch("return"), 1)
    assert len(records(place(sc, tag("E2", "2", type_of_usage=2)))) == 1


# -- tag security from the ack
def test_sip2_desensitize_no_keeps_the_tag_and_shows_the_message() -> None:
    sc = make()
    borrow(sc)
    (rec,) = records(place(sc, tag("E1", "1")))
    out = sc.handle(ack(rec.msg_id, desensitize=False, screen_message=["Đĩa: nhận ở quầy"]), 3)
    assert out == []
    line = sc.view(3).lines[0]
    assert (line.status, line.security, line.screen_message) == (
        core.Status.DONE, "kept", "Đĩa: nhận ở quầy")


def test_sip2_resensitize_yes_and_no_on_returns() -> None:
    sc = make()
    sc.handle(core.Touch("return"), 1)
    a, b = records(place(sc, tag("E1", "1"), tag("E2", "2")))
    assert sc.handle(ack(a.msg_id, resensitize=True), 3) == [
        core.WriteSecurity("E1", "in_library")]
    assert sc.handle(ack(b.msg_id, resensitize=False), 3) == []


def test_refusal_carries_the_library_systems_words() -> None:
    sc = make()
    borrow(sc)
    (rec,) = records(place(sc, tag("E1", "1")))
    sc.handle(ack(rec.msg_id, ok=False, reason="refused", screen_message=["Liên hệ thủ thư"]), 3)
    assert sc.view(3).lines[0].screen_message == "Liên hệ thủ thư"


# -- pending security writes
def _failed_write(sc: core.SelfCheck) -> list[core.Action]:
    borrow(sc)
    (rec,) = records(place(sc, tag("E1", "1", title="Truyện Kiều")))
    sc.handle(ack(rec.msg_id), 3)
    return sc.handle(core.SecurityWritten("E1", False), 3.1)


def test_failed_write_is_kept_shown_after_the_session_and_written_when_back() -> None:
    sc = make()
    out = _failed_write(sc)
    assert out == [core.SavePending(core.PendingWrite("E1", "1", "Truyện Kiều", "on_loan"))]
    sc.handle(core.Touch("finish"), 4)
    sc.handle(core.Touch("done"), 5)
    assert sc.mode is core.Mode.IDLE and [p.uid for p in sc.view(5).pending] == ["E1"]
    assert sc.handle(core.TagsPresent((tag("E1", "1"),)), 6) == [
        core.WriteSecurity("E1", "on_loan")]
    assert sc.handle(core.TagsPresent((tag("E1", "1"),)), 6.1) == []  # one write in flight
    assert sc.handle(core.SecurityWritten("E1", True), 7) == [core.ClearPending("E1", "written")]
    assert sc.view(7).pending == ()


def test_pending_writes_survive_a_restart() -> None:
    sc = make()
    pending = core.PendingWrite("E9", "39000009", "Số đỏ", "in_library")
    assert sc.handle(core.Restored((pending,)), 0) == []
    assert sc.view(0).pending == (pending,)
    assert sc.handle(core.TagsPresent((tag("E9", "39000009"),)), 1) == [
        core.WriteSecurity("E9", "in_library")]


def test_staff_skip_is_logged_and_reported() -> None:
    sc = make()
    _failed_write(sc)
    sc.handle(core.Touch("finish"), 4)
    sc.handle(core.Touch("done"), 5)
    assert sc.handle(core.StaffSkip("E1"), 5) == []  # not in staff mode: nothing
    sc.handle(core.CardRead(STAFF), 6)
    assert sc.mode is core.Mode.STAFF
    out = sc.handle(core.StaffSkip("E1"), 7)
    ref = core.staff_ref(STAFF)
    assert out == [core.ClearPending("E1", "skipped", ref),
                   core.Notify("security_write_skipped", "info", f"skipped by {ref}", "1")]
    assert STAFF not in repr(out)  # the card number itself is never logged
    assert sc.view(7).pending == ()


# -- staff mode
def test_staff_card_opens_staff_mode_which_closes_and_reopens_the_station() -> None:
    sc = make()
    assert sc.handle(core.CardRead(STAFF), 1) == []  # no patron check for staff
    assert sc.mode is core.Mode.STAFF
    sc.handle(core.Touch("staff_oos"), 2)
    assert sc.view(2).out_of_service
    sc.handle(core.Touch("staff_exit"), 3)
    assert sc.mode is core.Mode.OUT_OF_SERVICE and sc.out_of_service
    sc.handle(core.CardRead("DG0001"), 4)
    assert sc.mode is core.Mode.OUT_OF_SERVICE  # readers cannot use it
    sc.handle(core.CardRead(STAFF), 5)
    sc.handle(core.Touch("staff_in_service"), 6)
    sc.handle(core.Touch("staff_exit"), 7)
    assert sc.mode is core.Mode.IDLE and not sc.out_of_service


def test_staff_card_works_offline_and_staff_mode_times_out() -> None:
    sc = make(inactivity_s=30)
    sc.handle(core.Connectivity(False), 0)
    sc.handle(core.CardRead(STAFF), 1)
    assert sc.mode is core.Mode.STAFF
    sc.handle(core.Tick(), 32)
    assert sc.mode is core.Mode.IDLE


def test_late_refusal_becomes_a_staff_exception_once() -> None:
    sc = make()
    late = ack("0190a3c2-7b1e-7cc0-8d4e-00000000beef", ok=False, reason="patron_blocked",
               item_id="39000002", title="Số đỏ")
    out = sc.handle(late, 1)
    exc = core.LateRefusal("0190a3c2-7b1e-7cc0-8d4e-00000000beef", "39000002", "Số đỏ",
                           "patron_blocked")
    assert out == [core.KeepException(exc),
                   core.Notify("tx_refused_late", "warning", "patron_blocked", "39000002")]
    assert sc.handle(late, 2) == []  # a repeat adds nothing
    assert sc.handle(ack("0190a3c2-7b1e-7cc0-8d4e-00000000f00d"), 3) == []  # late yes: fine
    sc.handle(core.CardRead(STAFF), 4)
    assert sc.handle(core.StaffDismiss(exc.msg_id), 5) == [core.DropException(exc.msg_id)]
    assert sc.view(5).exceptions == ()


def test_offline_return_refused_later_is_an_exception_too() -> None:
    sc = make(ack_timeout_s=5)
    sc.handle(core.Touch("return"), 1)
    (rec,) = records(place(sc, tag("E1", "1")))
    sc.handle(core.Tick(), 8)
    assert sc.view(8).lines[0].status is core.Status.OFFLINE
    out = sc.handle(ack(rec.msg_id, ok=False, reason="unknown_item"), 9)
    assert isinstance(out[0], core.KeepException)


# -- return station
def test_return_station_takes_books_without_a_card_and_shows_alerts() -> None:
    sc = make(station_mode="return-station")
    assert sc.mode is core.Mode.RETURN_STATION
    a, b, c = records(place(sc, tag("E1", "1"), tag("E2", "2"), tag("E3", "3")))
    assert {a.kind, b.kind, c.kind} == {"return"}
    sc.handle(ack(a.msg_id, sort_bin="A", hold=True, alert_type="01"), 3)
    sc.handle(ack(b.msg_id, sort_bin="T", alert_type="04", transit_to="bac-ninh"), 3)
    sc.handle(ack(c.msg_id, sort_bin="B", alert_type="02", hold=True), 3)
    lines = {ln.item_id: ln for ln in sc.view(3).lines}
    assert (lines["1"].alert, lines["1"].sort_bin) == ("hold", "A")
    assert (lines["2"].alert, lines["2"].transit_to) == ("transit", "bac-ninh")
    assert lines["3"].alert == "hold_transit"
    sc.handle(core.Tick(), 10_000)  # no countdown: the station keeps taking books
    assert sc.mode is core.Mode.RETURN_STATION and len(sc.view(10_000).lines) == 3
    sc.handle(core.CardRead("DG0001"), 10_001)
    assert sc.view(10_001).message == "return_station_no_card"


def test_return_station_keeps_its_latest_lines() -> None:
    sc = make(station_mode="return-station", return_station_lines=3)
    for n in range(5):
        (rec,) = records(place(sc, tag(f"E{n}", str(n)), now=n))
        sc.handle(ack(rec.msg_id), n)
        sc.handle(core.TagsPresent(()), n + 0.5)  # lifted and put in the bin
    assert [ln.item_id for ln in sc.view(5).lines] == ["2", "3", "4"]


def test_return_station_lines_leave_after_a_quiet_time_and_on_a_card() -> None:
    """No session ends at a return station: the previous reader's titles go after a quiet
    time and when a new card is read, except a book still on the pad or still processed."""
    sc = make(station_mode="return-station", return_station_clear_s=20, ack_timeout_s=60)
    a, b = records(place(sc, tag("E1", "1"), tag("E2", "2"), now=0))
    sc.handle(ack(a.msg_id), 1)
    sc.handle(core.SecurityWritten(TagUid("E1"), ok=True), 1)
    sc.handle(core.TagsPresent((tag("E2", "2"),)), 2)  # one lifted, one being processed
    sc.handle(core.Tick(), 21)
    assert [ln.item_id for ln in sc.view(21).lines] == ["1", "2"]  # not quiet long enough
    sc.handle(core.TagsPresent(()), 22)
    sc.handle(core.Tick(), 41.9)
    assert len(sc.view(41.9).lines) == 2
    sc.handle(core.Tick(), 42)
    assert [ln.item_id for ln in sc.view(42).lines] == ["2"]  # still waiting for its answer
    sc.handle(ack(b.msg_id), 43)
    sc.handle(core.SecurityWritten(TagUid("E2"), ok=True), 43)
    sc.handle(core.Tick(), 44)
    assert sc.view(44).lines == ()
    (c,) = records(place(sc, tag("E3", "3"), now=50))
    sc.handle(ack(c.msg_id), 51)
    sc.handle(core.SecurityWritten(TagUid("E3"), ok=True), 51)
    records(place(sc, tag("E4", "4"), now=52))  # E3 lifted, E4 on the pad
    sc.handle(core.CardRead("DG0001"), 53)  # the next reader
    assert [ln.item_id for ln in sc.view(53).lines] == ["4"]


def test_return_station_staff_mode_and_back() -> None:
    sc = make(station_mode="return-station")
    sc.handle(core.CardRead(STAFF), 1)
    assert sc.mode is core.Mode.STAFF
    sc.handle(core.Touch("staff_exit"), 2)
    assert sc.mode is core.Mode.RETURN_STATION


# -- help
def test_three_refused_cards_in_a_row_call_staff() -> None:
    sc = make()
    refused = PatronCheckRes(ok=False, reason="patron_blocked")
    out: list[core.Action] = []
    for n in range(3):
        sc.handle(core.CardRead("DG0004"), n)
        out = sc.handle(patron_checked(refused), n + 0.1)
    assert sc.mode is core.Mode.HELP and sc.view(3).help_reason == "failures"
    assert [a.kind for a in out if isinstance(a, core.Notify)] == ["staff_needed"]
    sc.handle(core.Touch("cancel"), 4)
    assert sc.mode is core.Mode.IDLE


def test_a_success_resets_the_failure_count() -> None:
    sc = make()
    borrow(sc)
    place(sc, tag("U1", None), tag("U2", None))
    place(sc, tag("U1", None), tag("U2", None), tag("E1", "1"), now=3)  # a good read
    place(sc, tag("U1", None), tag("U2", None), tag("E1", "1"), tag("U3", None), now=4)
    assert sc.mode is core.Mode.BORROW


def test_three_unreadable_tags_call_staff_and_the_session_resumes() -> None:
    sc = make()
    borrow(sc)
    out = place(sc, tag("U1", None), tag("U2", None), tag("U3", None))
    assert sc.mode is core.Mode.HELP
    assert any(isinstance(a, core.Notify) and a.kind == "staff_needed" for a in out)
    sc.handle(core.Touch("cancel"), 3)
    assert sc.mode is core.Mode.BORROW and len(sc.view(3).lines) == 3


def test_more_time_restarts_the_inactivity_limit() -> None:
    sc = make()
    borrow(sc)
    assert sc.view(30).countdown is not None
    sc.handle(core.Touch("more_time"), 40)
    sc.handle(core.Tick(), 60)
    assert sc.mode is core.Mode.BORROW
    # a button with its row, not a touch the core ignores
    assert not any(what == "Touch more_time" for _mode, what in sc.ignored)


def test_help_button_from_anywhere_and_staff_card_answers_it() -> None:
    sc = make()
    out = sc.handle(core.Touch("help"), 1)
    assert sc.mode is core.Mode.HELP and sc.view(1).help_reason == "button"
    assert out == []  # help explains first
    assert sc.handle(core.Touch("call_staff"), 2) == [
        core.Notify("staff_needed", "critical", "the reader asked for staff")]
    assert sc.view(2).help_reason == "called"
    assert sc.handle(core.Touch("call_staff"), 2) == []  # once
    assert sc.handle(core.Touch("help"), 2) == []
    sc.handle(core.CardRead(STAFF), 3)
    assert sc.mode is core.Mode.STAFF


# -- receipts
def test_receipt_ask_offers_what_the_station_has() -> None:
    sc = make(receipt="ask", can_print=True, can_email=False)
    borrow(sc)
    lend(sc, tag("E1", "1"))
    sc.handle(core.Touch("finish"), 3)
    v = sc.view(3)
    assert (v.mode, v.receipt_options) == (core.Mode.RECEIPT, ("print",))
    assert sc.handle(core.Touch("receipt_email"), 3) == []  # not offered
    (send,) = sc.handle(core.Touch("receipt_print"), 4)
    assert isinstance(send, core.SendReceipt) and send.via == "print"
    assert (send.lang, send.patron_name, len(send.lines)) == ("vi", "Nguyễn Văn An", 1)
    assert sc.view(4).receipt_state == "printing" and sc.mode is core.Mode.SUMMARY
    sc.handle(core.ReceiptSent("print", True), 5)
    assert sc.view(5).receipt_state == "printed"


def test_receipt_none_and_no_books_skip_the_question() -> None:
    sc = make(receipt="ask", can_print=True)
    borrow(sc)
    sc.handle(core.Touch("finish"), 3)
    assert sc.mode is core.Mode.SUMMARY  # nothing to put on a receipt
    sc = make(receipt="ask", can_print=True)
    borrow(sc)
    lend(sc, tag("E1", "1"))
    sc.handle(core.Touch("finish"), 3)
    sc.handle(core.Touch("receipt_none"), 4)
    assert (sc.mode, sc.view(4).receipt_state) == (core.Mode.SUMMARY, None)


def test_receipt_print_site_prints_without_asking_and_no_printer_means_none() -> None:
    sc = make(receipt="print", can_print=True)
    borrow(sc)
    lend(sc, tag("E1", "1"))
    out = sc.handle(core.Touch("finish"), 3)
    assert isinstance(out[0], core.SendReceipt) and sc.mode is core.Mode.SUMMARY
    sc = make(receipt="print", can_print=False)
    borrow(sc)
    lend(sc, tag("E1", "1"))
    assert sc.handle(core.Touch("finish"), 3) == [] and sc.mode is core.Mode.SUMMARY


def test_email_receipt_checks_the_address_and_does_not_keep_it() -> None:
    sc = make(receipt="ask", can_email=True)
    borrow(sc)
    lend(sc, tag("E1", "1"))
    sc.handle(core.Touch("finish"), 3)
    sc.handle(core.Touch("receipt_email"), 3)
    assert sc.mode is core.Mode.EMAIL
    assert sc.handle(core.EmailEntered("not an address"), 4) == []
    assert sc.view(4).receipt_state == "bad_address"
    (send,) = sc.handle(core.EmailEntered("an@example.vn"), 5)
    assert isinstance(send, core.SendReceipt) and send.to == "an@example.vn"
    assert "example" not in repr(sc.view(5))


def test_typing_an_address_is_activity_the_screen_does_not_time_out() -> None:
    sc = make(receipt="ask", can_email=True)
    borrow(sc)
    lend(sc, tag("E1", "1"))
    sc.handle(core.Touch("finish"), 3)
    sc.handle(core.Touch("receipt_email"), 3)
    limit = sc.config.inactivity_s
    # a reader typing slowly: a key well within each limit, for twice the limit
    for i in range(1, 5):
        sc.handle(core.Typed(), 3 + i * limit / 2 - 1)
        sc.handle(core.Tick(), 3 + i * limit / 2)
        assert sc.mode is core.Mode.EMAIL, i
    sc.handle(core.Tick(), 3 + 2 * limit + limit)  # then nothing: back to idle
    assert sc.mode is not core.Mode.EMAIL
    # a key outside the keyboard's screens changes nothing
    assert sc.handle(core.Typed(), 10 * limit) == []
