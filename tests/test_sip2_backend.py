"""The SIP2 backend against a real SIP2 server (pysip2's ACS, lab/standins/sip2_server.py), with the
transport broken on purpose: dropped connections, slow answers, garbled bytes, CR LF."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from selfcheck.central.backends.sip2.backend import Sip2Backend
from selfcheck.central.backends.sip2.client import Sip2Config, Sip2Pool, Sip2Unavailable
from selfcheck.central.ledger import Ledger, open_db
from selfcheck.central.schema import processed, sip2_claims
from selfcheck.lab.standins.sip2_server import (
    FaultProxy,
    Item,
    Library,
    Patron,
    Sip2Library,
    running,
)
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.messages import TxLoan, TxRenew, TxReturn
from tests.conftest import applied, wait_until


def library() -> Library:
    return Library(
        patrons={"DG0001": Patron("Nguyễn Văn An"), "DG0004": Patron("Phạm Thu Hằng",
                                                                       blocked=True),
                 "DG0005": Patron("Lê Hoàng Phúc", limit=1)},
        items={"39000001": Item("Truyện Kiều", sort_bin="A"), "39000002": Item("Số đỏ"),
               "39000003": Item("Dế Mèn phiêu lưu ký", sort_bin="B"),
               "39000004": Item("Tắt đèn")})


Env = tuple[Sip2Backend, Library, FaultProxy]


def make(tmp_path: Path, proxy: FaultProxy, name: str = "c", **query: str) -> Sip2Backend:
    params = {"institution": "tv-test", "location": "tang-1", "timeout": "3", "pool": "2",
              **query}
    url = f"sip2://sc:secret@127.0.0.1:{proxy.port}?" + "&".join(f"{k}={v}"
                                                               for k, v in params.items())
    return Sip2Backend(Sip2Config.parse(url), open_db(f"sqlite:///{tmp_path / f'{name}.db'}"))


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    lib = library()
    with running(lib) as (_server, proxy):
        backend = make(tmp_path, proxy)
        yield backend, lib, proxy
        backend.close()


seq = iter(range(1, 10**6))


def loan(ref: str, item: str) -> TxLoan:
    now = dt.datetime.now(dt.UTC)
    return TxLoan(msg_id=uuid7(), seq=next(seq), site="s", station="st-1", at=now, item_id=item,
                  patron_ref=ref, deadline=now + dt.timedelta(seconds=30))


def ret(item: str) -> TxReturn:
    return TxReturn(msg_id=uuid7(), seq=next(seq), site="s", station="st-1",
                    at=dt.datetime.now(dt.UTC), item_id=item)


def renew(ref: str, item: str) -> TxRenew:
    return TxRenew(msg_id=uuid7(), seq=next(seq), site="s", station="st-1",
                   at=dt.datetime.now(dt.UTC), item_id=item, patron_ref=ref)


def ref_of(backend: Sip2Backend, card: str = "DG0001") -> str:
    res = backend.check_patron(card)
    assert res.patron_ref
    return res.patron_ref


def test_patron_check_maps_63(env: Env) -> None:
    backend, _, _ = env
    ok = backend.check_patron("DG0001")
    assert ok.ok and ok.display_name == "An" and ok.max_loans == 5
    assert ok.patron_ref and "DG0001" not in ok.patron_ref
    assert backend.check_patron("DG0001").patron_ref == ok.patron_ref  # stable
    blocked = backend.check_patron("DG0004")
    assert (blocked.ok, blocked.reason) == (False, "patron_blocked")
    unknown = backend.check_patron("XX9999")
    assert (unknown.ok, unknown.reason, unknown.patron_ref) == (False, "unknown_patron", None)
    assert unknown.screen_message == ["Không tìm thấy bạn đọc"]


def test_loan_renew_return_carry_sip2_results_into_the_ack(env: Env) -> None:
    backend, lib, _ = env
    ref = ref_of(backend)
    (a,) = applied(backend, [loan(ref, "39000001")])
    assert a is not None and a.ok and a.title == "Truyện Kiều" and a.desensitize is True
    assert a.due == dt.date.today() + dt.timedelta(days=14)
    assert a.screen_message == ["Mượn thành công"] and a.print_lines
    assert "Truyện Kiều" in a.print_lines[0]
    assert lib.items["39000001"].charged_to == "DG0001"
    (r,) = applied(backend, [renew(ref, "39000001")])
    assert r is not None and r.ok and r.due == dt.date.today() + dt.timedelta(days=28)
    (b,) = applied(backend, [ret("39000001")])
    assert b is not None and b.ok and b.resensitize is True and b.sort_bin == "A"
    assert b.screen_message == ["Trả sách thành công"] and lib.items["39000001"].charged_to is None
    assert "tang-1" in lib.seen  # AP on the checkin


def test_refusals_get_a_reason_and_the_library_systems_words(env: Env) -> None:
    backend, lib, _ = env
    ref, other = ref_of(backend), ref_of(backend, "DG0005")
    lib.items["39000002"].charged_to = "DG0005"
    blocked = ref_of(backend, "DG0004")
    acks = applied(backend, [loan(ref, "39000002"), loan(ref, "NOPE"), loan(blocked, "39000003"),
                          renew(ref, "39000004"), loan(other, "39000004"),
                          loan("p-unknown", "39000001")])
    assert [(a.ok, a.reason) for a in acks if a] == [
        (False, "on_loan_to_other"), (False, "unknown_item"), (False, "patron_blocked"),
        (False, "not_on_loan"), (False, "too_many_loans"), (False, "unknown_patron")]
    assert acks[0] is not None and acks[0].screen_message == ["Sách đang được mượn"]


def test_a_repeat_is_answered_from_the_store_not_sent_again(env: Env) -> None:
    backend, lib, _ = env
    tx = loan(ref_of(backend), "39000003")
    (first,) = applied(backend, [tx])
    (again,) = applied(backend, [tx])
    assert first and again and again.repeat and again.due == first.due
    assert lib.count("11", "39000003") == 1


def test_a_batch_keeps_each_stations_order_and_each_items(env: Env) -> None:
    backend, lib, _ = env
    ref = ref_of(backend)
    lib.delay_s = 0.05
    a1, a2 = loan(ref, "39000001"), ret("39000001")
    b1, b2 = loan(ref, "39000002"), ret("39000002")
    b1, b2 = (t.model_copy(update={"station": "st-2"}) for t in (b1, b2))
    c1 = loan(ref, "39000003")
    acks = applied(backend, [a1, b1, a2, c1, b2])
    assert all(a and a.ok for a in acks)
    assert lib.items["39000001"].charged_to is None and lib.items["39000003"].charged_to
    for first, then in ((a1, a2), (b1, b2), (a2, c1)):  # c1 follows a2 at station st-1
        order = [(c, i) for c, i in lib.log if i == first.item_id or i == then.item_id]
        code = {"loan": "11", "return": "09"}
        assert order.index((code[kind(first)], first.item_id)) < \
            order.index((code[kind(then)], then.item_id))


def kind(tx: TxLoan | TxReturn | TxRenew) -> str:
    return "loan" if isinstance(tx, TxLoan) else "return" if isinstance(tx, TxReturn) \
        else "renew"


def test_after_a_station_transaction_without_answer_its_later_ones_wait(env: Env) -> None:
    """Seq order towards the library system: nothing of the station's overtakes the one that
    got no answer, not even on another item."""
    backend, lib, proxy = env
    ref = ref_of(backend)
    first, later = loan(ref, "39000001"), ret("39000002")
    proxy.drop_request = True
    assert applied(backend, [first, later]) == [None, None]  # both come again, in order
    assert lib.count("09", "39000002") == 0
    again = applied(backend, [first, later])
    assert all(a and a.ok and not a.repeat for a in again)
    assert lib.count("11", "39000001") == 1 and lib.count("09", "39000002") == 1


def test_ascii_profile_against_a_cp850_server(tmp_path: Path) -> None:
    lib = Library(patrons={"DG0001": Patron("Nguyen Van An")},
                  items={"1": Item("Café Élan")})
    with running(lib, encoding="cp850") as (_s, proxy):
        backend = make(tmp_path, proxy, encoding="ascii", location="Thư-viện-tỉnh")
        try:
            ref = ref_of(backend)
            (a,) = applied(backend, [loan(ref, "1")])
            assert a is not None and a.ok and a.title == "Café Élan"
            (b,) = applied(backend, [ret("1")])
            assert b is not None and b.ok
        finally:
            backend.close()
    assert "Thu-vien-tinh" in lib.seen  # login CP and checkin AP, folded


def test_crlf_replies_and_garbled_frames_both_ways(env: Env) -> None:
    backend, lib, proxy = env
    ref = ref_of(backend)
    proxy.crlf = True
    proxy.corrupt_request = True  # the ACS answers 96; the same frame goes again
    (a,) = applied(backend, [loan(ref, "39000001")])
    assert a is not None and a.ok
    proxy.corrupt_reply = True  # we ask 97; the ACS sends its last reply again
    (b,) = applied(backend, [ret("39000001")])
    assert b is not None and b.ok
    assert lib.count("11", "39000001") == 1 and lib.count("09", "39000001") == 1


def test_connection_dropped_before_the_request_reaches_the_ils(env: Env) -> None:
    backend, lib, proxy = env
    ref = ref_of(backend)
    proxy.drop_request = True
    tx = loan(ref, "39000001")
    assert applied(backend, [tx]) == [None]  # no answer now: the station sends it again
    (a,) = applied(backend, [tx])
    assert a is not None and a.ok and not a.repeat
    assert lib.count("11", "39000001") == 1


def test_answer_lost_after_the_ils_did_it_is_settled_not_doubled(env: Env) -> None:
    backend, lib, proxy = env
    ref = ref_of(backend)
    tx = loan(ref, "39000002")
    proxy.drop_reply = True
    assert applied(backend, [tx]) == [None]
    assert lib.items["39000002"].charged_to == "DG0001"  # the ILS did it
    (a,) = applied(backend, [tx])  # the resend: asked (63 charged items), not sent again
    assert a is not None and a.ok and a.desensitize and a.title == "Số đỏ"
    assert a.due == dt.date.today() + dt.timedelta(days=14)
    assert lib.count("11", "39000002") == 1 and backend.counters.reconciled == 1
    back = ret("39000002")
    proxy.drop_reply = True
    assert applied(backend, [back]) == [None]
    (b,) = applied(backend, [back])
    assert b is not None and b.ok and lib.count("09", "39000002") == 1


def test_a_loan_made_after_all_is_settled_before_it_is_called_late(env: Env) -> None:
    """The station resends after the deadline: the central asks before answering "late",
    and a loan the library system made is answered as made (the station, which told the
    reader otherwise, checks it back in); one it did not make is late, and never sent."""
    backend, lib, proxy = env
    ref = ref_of(backend)
    made, missed = loan(ref, "39000002"), loan(ref, "39000003")
    proxy.drop_reply = True
    assert applied(backend, [made]) == [None]
    proxy.drop_request = True
    assert applied(backend, [missed]) == [None]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)  # past both deadlines
    a, b = applied(backend, [made, missed], now=later)
    assert a is not None and a.ok and a.due is not None and lib.count("11", "39000002") == 1
    assert b is not None and (b.ok, b.reason) == (False, "late")
    assert lib.count("11", "39000003") == 0 and lib.items["39000003"].charged_to is None


def test_a_renewal_whose_answer_was_lost_is_never_sent_twice(env: Env) -> None:
    backend, lib, proxy = env
    ref = ref_of(backend)
    (lent,) = applied(backend, [loan(ref, "39000001")])
    assert lent is not None and lent.ok
    lib.items["39000001"].due = dt.date.today() + dt.timedelta(days=3)  # due soon
    once = renew(ref, "39000001")
    proxy.only = "29"  # the renewal itself, not the item information before it
    proxy.drop_reply = True
    assert applied(backend, [once]) == [None]
    renewed_due = lib.items["39000001"].due
    (a,) = applied(backend, [once])  # the resend: the due date moved, so it was done
    assert a is not None and a.ok and a.due == renewed_due
    assert lib.count("29", "39000001") == 1
    twice = renew(ref, "39000001")
    proxy.drop_request = True  # this one never reaches the library system
    assert applied(backend, [twice]) == [None]
    (b,) = applied(backend, [twice])
    assert b is not None and b.ok and lib.count("29", "39000001") == 2


def test_slow_answers_time_out_and_the_retry_settles(env: Env) -> None:
    backend, lib, _ = env
    ref = ref_of(backend)
    tx = loan(ref, "39000004")
    lib.delay_s = 4.5  # over the 3 s timeout
    assert applied(backend, [tx]) == [None]
    lib.delay_s = 0
    wait_until(lambda: lib.count("11", "39000004") == 1, 30)  # the slow checkout lands
    (a,) = applied(backend, [tx])
    assert a is not None and a.ok and lib.count("11", "39000004") == 1
    with backend.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(sip2_claims)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(processed)).scalar_one() == 1


def test_a_crash_between_the_ils_answer_and_the_local_commit(tmp_path: Path) -> None:
    """Bridge A sends the checkout and dies before its commit; bridge B, on the same local
    database, gets the redelivery after A's lease and settles it without a second checkout."""
    lib = library()
    with running(lib) as (_s, proxy):
        a = make(tmp_path, proxy, name="shared")
        ref = ref_of(a)
        tx = loan(ref, "39000001")
        bridge_a = Ledger(a.engine, a, owner="a")
        bridge_a._commit = lambda *args: (_ for _ in ()).throw(SystemExit("killed"))  # type: ignore
        with pytest.raises(SystemExit):  # dies after the ILS answered, before its commit
            bridge_a.apply([tx])
        assert lib.count("11", "39000001") == 1
        b = make(tmp_path, proxy, name="shared")
        b.lease = dt.timedelta(seconds=5)
        bridge_b = Ledger(b.engine, b, owner="b")
        assert bridge_b.apply([tx]) == [None]  # A's claim is still inside its lease: A may be alive
        threading.Event().wait(5.1)  # the lease itself: after it, A's claim is B's to settle
        (ack,) = bridge_b.apply([tx])
        assert ack is not None and ack.ok and lib.count("11", "39000001") == 1
        a.close()
        b.close()


def test_ils_down_then_back(tmp_path: Path) -> None:
    lib = library()
    server = Sip2Library(lib).start()
    proxy = FaultProxy(server.port)
    backend = make(tmp_path, proxy)
    ref = ref_of(backend)
    server.stop()
    tx = loan(ref, "39000001")
    assert applied(backend, [tx]) == [None]
    with pytest.raises(Sip2Unavailable):
        backend.check_patron("DG0001")
    server2 = Sip2Library(lib).start()
    proxy.target = server2.port
    (a,) = applied(backend, [tx])
    assert a is not None and a.ok and lib.count("11", "39000001") == 1
    backend.close()
    proxy.close()
    server2.stop()


def test_keepalive_and_wrong_password(tmp_path: Path) -> None:
    lib = library()
    with running(lib) as (_s, proxy):
        cfg = Sip2Config.parse(f"sip2://sc:secret@127.0.0.1:{proxy.port}?institution=x"
                               "&keepalive=0.2")
        pool = Sip2Pool(cfg)
        from selfcheck.central.backends.sip2 import messages as m
        pool.call(m.sc_status(), idempotent=True)
        threading.Event().wait(0.6)  # the keepalive sends 99 on the idle connection
        assert proxy.connections == 1
        pool.close()
        bad = Sip2Pool(Sip2Config.parse(f"sip2://sc:wrong@127.0.0.1:{proxy.port}?institution=x"))
        with pytest.raises(Sip2Unavailable, match="login") as err:
            bad.call(m.sc_status())
        assert err.value.sent is False
        bad.close()
