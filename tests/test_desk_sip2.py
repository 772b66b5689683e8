"""The desk over SIP2 against the pysip2 server (lab/standins/sip2_server.py): PIN in AD decided by
CQ with a local lockout, the account from 63 item lists and 17, holds at loan, late offline
loans and their reconciliation."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfcheck.central.backends.sip2 import messages as m
from selfcheck.central.backends.sip2.backend import Sip2Backend
from selfcheck.central.backends.sip2.codec import Message
from selfcheck.lab.standins.sip2_server import Item, Library, Patron, running
from selfcheck.mqtt.ids import uuid7
from tests.conftest import applied
from tests.test_sip2_backend import loan, make, ret

TODAY = dt.date.today()


def library() -> Library:
    return Library(
        patrons={"DG0001": Patron("Nguyễn Văn An", pin="1234"),
                 "DG0005": Patron("Võ Thị Mai", pin="5555", holds_ready=["39000012"],
                                  holds_waiting=["Những ngôi sao xa xôi"],
                                  fines=[("Trả sách quá hạn", 12_000),
                                         ("Làm rách bìa sách", 25_000)])},
        items={"39000010": Item("Chí Phèo", charged_to="DG0005",
                                due=TODAY - dt.timedelta(days=6), hold_queue=1),
               "39000011": Item("Vợ nhặt", charged_to="DG0005",
                                due=TODAY + dt.timedelta(days=11)),
               "39000012": Item("Bỉ vỏ", hold_pickup=TODAY + dt.timedelta(days=5)),
               "39000009": Item("Lão Hạc", hold_queue=1),
               "39000001": Item("Truyện Kiều")})


@pytest.fixture
def sip(tmp_path: Path) -> Iterator[tuple[Sip2Backend, Library]]:
    lib = library()
    with running(lib) as (_server, proxy):
        backend = make(tmp_path, proxy)
        yield backend, lib
        backend.close()


def test_pin_goes_in_ad_and_cq_decides_with_a_local_lockout(
        sip: tuple[Sip2Backend, Library], caplog: pytest.LogCaptureFixture) -> None:
    backend, _ = sip
    caplog.set_level(logging.DEBUG)
    ok = backend.check_patron("DG0001", pin="1234")
    assert ok.ok and ok.patron_ref and ok.display_name == "An"
    wrong = backend.check_patron("DG0001", pin="0000")
    assert (wrong.reason, wrong.pin_required, wrong.pin_tries_left, wrong.patron_ref) == (
        "wrong_pin", True, 2, None)
    backend.check_patron("DG0001", pin="0001")
    locked = backend.check_patron("DG0001", pin="0002")
    assert locked.reason == "pin_locked" and locked.pin_locked_until is not None
    assert backend.check_patron("DG0001", pin="1234").reason == "pin_locked"
    # no PIN given: still locked (the lock is the card's, whatever the station sends)
    assert backend.check_patron("DG0001").reason == "pin_locked"
    assert backend.check_patron("NOPE", pin="1").reason == "unknown_patron"
    text = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert "1234" not in text and "0002" not in text


def test_account_from_63_item_lists_and_17(sip: tuple[Sip2Backend, Library]) -> None:
    backend, _ = sip
    ref = backend.check_patron("DG0005", pin="5555").patron_ref
    assert ref
    acc = backend.account(ref, TODAY)
    assert acc.ok and acc.currency == "VND" and acc.currency_exponent == 0
    assert [(ln.item_id, ln.title, ln.due, ln.overdue, ln.renewable) for ln in acc.loans] == [
        ("39000010", "Chí Phèo", TODAY - dt.timedelta(days=6), True, False),
        ("39000011", "Vợ nhặt", TODAY + dt.timedelta(days=11), False, True)]
    assert [(h.item_id, h.title, h.pickup_by) for h in acc.holds_ready] == [
        ("39000012", "Bỉ vỏ", TODAY + dt.timedelta(days=5))]
    assert [(h.title, h.position) for h in acc.holds_waiting] == [
        ("Những ngôi sao xa xôi", None)]  # SIP2 has no queue position
    assert acc.fines_total == 37_000
    assert [f.description for f in acc.fines] == ["Trả sách quá hạn 12000",
                                                  "Làm rách bìa sách 25000"]
    assert backend.account("p-unknown").reason == "unknown_patron"


def test_hold_refusal_and_late_offline_loans(sip: tuple[Sip2Backend, Library]) -> None:
    backend, lib = sip
    ref = backend.check_patron("DG0001").patron_ref
    assert ref
    (held,) = applied(backend, [loan(ref, "39000009")])
    assert held is not None and (held.ok, held.reason) == (False, "on_hold_for_other")
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    late = loan(ref, "39000001").model_copy(update={"deadline": past})
    offline = late.model_copy(update={"msg_id": uuid7(), "offline": True})
    # No block: Koha lends an offline loan whatever the holds, but not an item it lacks.
    refused = loan(ref, "39009999").model_copy(update={"deadline": past, "offline": True})
    a, b, c = applied(backend, [late, offline, refused])
    assert a is not None and (a.ok, a.reason) == (False, "late")
    assert b is not None and b.ok and lib.items["39000001"].charged_to == "DG0001"
    assert c is not None and c.reason == "unknown_item"
    from sqlalchemy import select

    from selfcheck.central.schema import reconciliation

    with backend.engine.connect() as conn:
        rows = conn.execute(select(reconciliation.c.msg_id, reconciliation.c.reason)).all()
    assert [tuple(r) for r in rows] == [(refused.msg_id, "unknown_item")]
    (back,) = applied(backend, [ret("39000001")])
    assert back is not None and back.ok and back.transit_to is None


def test_checkin_reply_hold_and_transit_fields_are_read() -> None:
    # pysip2's CheckinResponse has no CT / CY, so the server cannot send them: read a reply
    # built here.
    reply = Message("10", "1YNY" + m.sip_date(dt.datetime.now(dt.UTC)),
                    (("AO", "tv"), ("AB", "39000014"), ("AQ", "Kho"), ("CV", "02"),
                     ("CT", "chi-nhanh-2"), ("CY", "DG0002")))
    r = m.circulation(reply)
    assert (r.alert_type, r.destination, r.hold_patron) == ("02", "chi-nhanh-2", "DG0002")


def test_offline_list_over_sip2_is_empty_but_valid(sip: tuple[Sip2Backend, Library]) -> None:
    backend, _ = sip
    res = backend.offline_list("thu-vien-test")
    assert res.entries == [] and res.pages == 1 and len(res.salt) == 32
