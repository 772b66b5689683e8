"""The Koha backend against a stand-in that behaves as Koha's code does
(lab/standins/koha_standin.py):
loose matching and paging of lists, 201 from password validation, the branch taken from
x-koha-library, 409 for what does not exist, each renewal error, confirmations the reader or
a librarian must give, a heavy reader's account, and loans and renewals Koha made while
their answer was lost. Every request goes over real HTTP and is checked against Koha's
specification; returns and titles over the real SIP2 server."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from selfcheck.central.backend import BackendUnavailable
from selfcheck.central.backends.koha import backend as kb
from selfcheck.central.backends.koha.backend import KohaBackend
from selfcheck.lab.standins.koha_standin import Fault, Hold, KohaExtra, KohaStandIn, koha_running
from selfcheck.lab.standins.sip2_server import FaultProxy, Item, Library, Patron, running
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.messages import TxLoan, TxRenew
from tests.conftest import applied
from tests.test_koha_backend import extra, library, make, ref_of

TODAY = dt.date.today()
seq = iter(range(1, 10**6))
LOANS, HOLDS = 25, 30  # the heavy reader's


def loan(ref: str, item: str, *, site: str = "s", confirmed: tuple[str, ...] = (),
         at: dt.datetime | None = None) -> TxLoan:
    now = at or dt.datetime.now(dt.UTC)
    return TxLoan(msg_id=uuid7(), seq=next(seq), site=site, station="st-1", at=now,
                  item_id=item, patron_ref=ref, deadline=now + dt.timedelta(seconds=4),
                  confirmed=list(confirmed))  # type: ignore[arg-type]


def renew(ref: str, item: str) -> TxRenew:
    return TxRenew(msg_id=uuid7(), seq=next(seq), site="s", station="st-1",
                   at=dt.datetime.now(dt.UTC), item_id=item, patron_ref=ref)


Env = tuple[KohaBackend, Library, KohaStandIn, FaultProxy]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    lib = library()
    with running(lib) as (_server, proxy), koha_running(lib, extra()) as koha:
        backend = make(tmp_path, koha, proxy, branches="tv-huyen:TVHUYEN")
        yield backend, lib, koha, proxy
        backend.close()
        assert koha.violations == []


# -- a crowd: patron 12 beside 112 and 120 (and card DG0012 beside DG00120), 14 beside 214

def crowd(delay_s: float = 0.0) -> tuple[Library, KohaExtra]:
    """DG0012 (patron_id 12) has 25 loans, 30 holds (2 on the shelf, 28 in queues, biblio
    level) and 3 fines; its neighbours by LIKE '%12%' have loans of their own."""
    patrons = {"DG0012": Patron("Ngô Thị Mười Hai", limit=99, fines=[
        ("Trả muộn: Truyện Kiều", 15000), ("Mất thẻ", 20000), ("Sách hỏng bìa", 30000)]),
        "DG0112": Patron("Lý Văn Một Trăm", limit=99), "DG0120": Patron("Mai Anh Hai Mươi"),
        "DG00120": Patron("Đinh Công Tráng"), "DG0014": Patron("Hồ Xuân Hương"),
        "DG0214": Patron("Cao Bá Quát")}
    items = {f"510000{n:02d}": Item(f"Sách mượn số {n}", charged_to="DG0012",
                                    due=TODAY + dt.timedelta(days=n))
             for n in range(1, LOANS + 1)}
    items["510000011"] = Item("Mã vạch dài hơn")  # LIKE '%51000001%' finds it too
    for n, card in enumerate(["DG0112"] * 3 + ["DG0120"] * 3, 1):
        items[f"520000{n:02d}"] = Item(f"Sách của người khác số {n}", charged_to=card,
                                       due=TODAY + dt.timedelta(days=3))
    items["53000001"] = Item("Thơ Cao Bá Quát", charged_to="DG0214", due=TODAY)
    holds = []
    for n in range(1, HOLDS + 1):
        items[f"540000{n:02d}"] = Item(f"Sách đặt trước số {n}")
        waiting = n <= 2
        holds.append(Hold("DG0012", f"Sách đặt trước số {n}",
                          item=f"540000{n:02d}" if waiting else None, waiting=waiting,
                          expires=TODAY + dt.timedelta(days=4) if waiting else None))
    lib = Library(patrons=patrons, items=items, delay_s=delay_s)
    return lib, KohaExtra(delay_s=delay_s, holds=holds, patron_ids={
        "DG0012": 12, "DG0112": 112, "DG0120": 120, "DG00120": 1201, "DG0014": 14,
        "DG0214": 214})


def test_the_stand_in_matches_loosely_and_pages_as_koha_does() -> None:
    lib, x = crowd()
    with koha_running(lib, x) as koha:
        def get(**params: str) -> requests.Response:
            return requests.get(f"http://127.0.0.1:{koha.port}/api/v1/checkouts",
                                params={"patron_id": "12", **params},
                                auth=(x.user.encode(), x.password.encode()), timeout=5)

        assert len(get(_per_page="-1").json()) == 25 + 6  # 12, 112 and 120
        assert len(get(_per_page="-1", _match="exact").json()) == 25
        first = get(_match="exact")
        assert len(first.json()) == 20 and first.headers["X-Total-Count"] == "25"
        assert koha.violations == []


def test_a_reader_sees_and_renews_only_their_own_loans(tmp_path: Path) -> None:
    lib, x = crowd()
    with running(lib) as (_s, proxy), koha_running(lib, x) as koha:
        backend = make(tmp_path, koha, proxy)
        try:
            twelve = backend.check_patron("DG0012")
            assert twelve.ok and twelve.display_name == "Hai"  # DG0012's, not DG00120's
            assert twelve.patron_ref
            res = backend.account(twelve.patron_ref)
            mine = {b for b, it in lib.items.items() if it.charged_to == "DG0012"}
            assert len(res.loans) == 25 and {ln.item_id for ln in res.loans} == mine
            acks = applied(backend, [renew(twelve.patron_ref, ln.item_id)
                                     for ln in res.loans])  # "renew all"
            assert all(a is not None and a.ok for a in acks)
            assert {i for c, i in lib.log if c == "29"} == mine
            fourteen = ref_of(backend, "DG0014")
            assert backend.account(fourteen).loans == []
            [other] = applied(backend, [renew(fourteen, "53000001")])  # 214's
            assert other is not None and other.reason == "not_on_loan"
            assert lib.count("29", "53000001") == 0
            [one] = applied(backend, [loan(ref_of(backend, "DG0014"), "51000001")])
            assert one is not None and one.reason == "on_loan_to_other"  # not 510000011
        finally:
            backend.close()
        assert koha.violations == []


def test_every_list_is_asked_for_exactly_and_whole(env: Env) -> None:
    backend, _lib, koha, _ = env
    ref = backend.check_patron("DG0001", pin="2468").patron_ref
    assert ref
    applied(backend, [loan(ref, "39000001"), renew(ref, "39000001"), loan(ref, "39000009")])
    backend.account(ref)
    lists = [(t, q) for t, q in koha.queries if t in (
        "/patrons", "/items", "/checkouts", "/patrons/{patron_id}/holds")]
    assert {t for t, _ in lists} == {"/patrons", "/items", "/checkouts",
                                     "/patrons/{patron_id}/holds"}
    for template, query in lists:
        assert (query.get("_match"), query.get("_per_page")) == ("exact", -1), template


# -- the PIN: 201 (204 before 23.11), identifier, and our credentials apart from the reader's

def test_a_right_pin_is_201_naming_the_patron(env: Env) -> None:
    backend, _lib, koha, _ = env
    assert backend.check_patron("DG0001", pin="2468").ok
    assert koha.count("POST", "/auth/password/validation") == 1
    # Koha matches an identifier as a userid before a card number: DG0001 has no userid
    # and DG0002's is "DG0001", so Koha validates DG0002's PIN at DG0001's card
    koha.x.userids.update({"DG0001": None, "DG0002": "DG0001"})
    wrong = backend.check_patron("DG0001", pin="1357")
    assert wrong.reason == "wrong_pin" and wrong.patron_ref is None


def test_a_right_pin_on_koha_before_23_11(tmp_path: Path) -> None:
    lib = library()
    with running(lib) as (_s, proxy), \
            koha_running(lib, KohaExtra(password_204=True)) as koha:
        backend = make(tmp_path, koha, proxy)
        try:
            assert backend.check_patron("DG0001", pin="2468").ok  # identifier, then userid
            assert koha.count("POST", "/auth/password/validation") == 2
            assert backend.check_patron("DG0001", pin="0000").reason == "wrong_pin"
            assert backend.check_patron("DG0002", pin="1357").ok
            assert koha.count("POST", "/auth/password/validation") == 4  # userid at once
        finally:
            backend.close()
        assert koha.violations == []


def test_koha_refusing_us_is_never_a_wrong_pin(env: Env) -> None:
    backend, _, koha, _ = env
    koha.x.denied.add("POST /auth/password/validation")  # no `borrowers` permission: 403
    for _ in range(8):
        with pytest.raises(BackendUnavailable, match="refused"):
            backend.check_patron("DG0001", pin="2468")
    koha.x.denied.clear()
    wrong = backend.check_patron("DG0001", pin="0000")  # the first wrong PIN, not the ninth
    assert wrong.reason == "wrong_pin" and wrong.pin_tries_left == \
        backend.pin_policy.max_failures - 1


# -- the branch of a loan

def test_a_loan_is_recorded_at_the_stations_branch(env: Env) -> None:
    backend, _lib, koha, _ = env
    ref = ref_of(backend)
    acks = applied(backend, [loan(ref, "39000001", site="tv-huyen"), loan(ref, "39000003")])
    assert all(a is not None and a.ok for a in acks)
    assert koha.branch_of("39000001") == "TVHUYEN"  # branches=tv-huyen:TVHUYEN
    assert koha.branch_of("39000003") == "TVTINH"  # library=TVTINH for the other sites
    assert {c.item_id: c.library_id for c in backend._checkouts(koha.patron_id("DG0001"))} \
        == {koha.item_id("39000001"): "TVHUYEN", koha.item_id("39000003"): "TVTINH"}


def test_a_branch_koha_does_not_know_lends_nothing(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    lib = library()
    with running(lib) as (_s, proxy), koha_running(lib, extra()) as koha:
        backend = make(tmp_path, koha, proxy, branches="s:TVXA")
        try:
            [ack] = applied(backend, [loan(ref_of(backend), "39000001")])
            assert ack is None and not lib.log  # no answer: the station goes offline
            assert "branches=" in caplog.text
        finally:
            backend.close()


# -- 409 and the renewal errors, each with its reason

@pytest.mark.parametrize(("code", "reason"), [("ITEM_NOT_FOUND", "unknown_item"),
                                              ("PATRON_NOT_FOUND", "unknown_patron")])
def test_409_is_something_koha_does_not_have(env: Env, code: str, reason: str) -> None:
    backend, lib, koha, _ = env
    ref = ref_of(backend)
    koha.faults.append(Fault("/checkouts", "POST", status=409,
                             body={"error": "not found", "error_code": code}))
    [ack] = applied(backend, [loan(ref, "39000001")])
    assert ack is not None and ack.reason == reason and not lib.log
    looked_up = koha.count("GET", "/patrons")
    applied(backend, [loan(ref, "39000003")])
    assert koha.count("GET", "/patrons") == looked_up + (reason == "unknown_patron")


@pytest.mark.parametrize(("error", "reason"), [
    ("too_soon", "too_soon"), ("auto_renew", "auto_renew"), ("auto_too_soon", "auto_renew"),
    ("overdue", "overdue_blocks"), ("restriction", "patron_blocked"),
    ("item_denied_renewal", "too_many_renewals"), ("recalled", "on_hold_for_other"),
    ("onsite_checkout", "not_for_loan"), ("auto_account_expired", "card_expired"),
])
def test_each_renewal_refusal_has_its_reason(env: Env, error: str, reason: str) -> None:
    backend, lib, koha, _ = env
    ref = ref_of(backend)
    applied(backend, [loan(ref, "39000001")])
    koha.x.renewal_errors["39000001"] = error
    [ack] = applied(backend, [renew(ref, "39000001")])
    assert ack is not None and ack.reason == reason and lib.count("29", "39000001") == 0
    renewable = backend.account(ref).loans
    assert [(ln.item_id, ln.renewable) for ln in renewable] == [("39000001", False)]


def test_a_renewal_refused_at_the_last_moment_has_its_reason(env: Env) -> None:
    backend, _lib, koha, _ = env
    ref = ref_of(backend)
    applied(backend, [loan(ref, "39000001")])
    koha.faults.append(Fault("/checkouts/{checkout_id}/renewal", "POST", status=403,
                             body={"error": "Renewal not authorized (too_soon)"}))
    [ack] = applied(backend, [renew(ref, "39000001")])
    assert ack is not None and ack.reason == "too_soon"


def test_koha_refusing_us_is_never_a_refused_loan(env: Env) -> None:
    backend, lib, koha, _ = env
    ref = ref_of(backend)
    koha.x.denied.add("POST /checkouts")  # 403 from Koha's authenticator, not the operation
    [ack] = applied(backend, [loan(ref, "39000001")])
    assert ack is None and not lib.log  # no answer (Koha refuses us), never "patron_blocked"


# -- confirmations: the reader's, a librarian's

def test_a_rental_charge_is_asked_then_lent(env: Env) -> None:
    backend, lib, koha, _ = env
    koha.x.rental["39000003"] = "5000.000000"  # as Koha gives a decimal column
    ref = ref_of(backend)
    [asked] = applied(backend, [loan(ref, "39000003")])
    assert asked is not None and not asked.ok and asked.reason == "needs_confirmation"
    assert asked.confirm is not None and asked.title == "Dế Mèn phiêu lưu ký"
    assert (asked.confirm.code, asked.confirm.amount, asked.confirm.currency,
            asked.confirm.currency_exponent) == ("rental_charge", 5000, "VND", 0)
    assert koha.count("POST", "/checkouts") == 0 and not lib.log
    [lent] = applied(backend, [loan(ref, "39000003", confirmed=("rental_charge",))])
    assert lent is not None and lent.ok and lib.count("11", "39000003") == 1
    assert koha.count("POST", "/checkouts") == 1  # with the token: no 412 first
    assert ("Phí thuê: Dế Mèn phiêu lưu ký", 5000) in lib.patrons["DG0001"].fines


def test_parts_of_a_set_need_staff(env: Env) -> None:
    backend, lib, koha, _ = env
    koha.x.materials["39000004"] = "1 sách, 1 đĩa CD"
    [ack] = applied(backend, [loan(ref_of(backend, "DG0002"), "39000004",
                                   confirmed=("rental_charge",))])
    assert ack is not None and ack.reason == "needs_staff" and ack.confirm is None
    assert koha.count("POST", "/checkouts") == 0 and not lib.log


def test_a_confirmation_token_is_bound_to_the_item() -> None:
    lib = library()
    x = extra()
    x.previously.update({("DG0001", "39000001"), ("DG0001", "39000003")})
    with koha_running(lib, x) as koha:
        auth = (x.user.encode(), x.password.encode())
        base = f"http://127.0.0.1:{koha.port}/api/v1"
        pid = koha.patron_id("DG0001")
        token = requests.get(f"{base}/checkouts/availability", auth=auth, timeout=5, params={
            "patron_id": pid, "item_id": koha.item_id("39000001")}).json()["confirmation_token"]
        other = requests.post(f"{base}/checkouts", auth=auth, timeout=5,
                              params={"confirmation": token},
                              json={"patron_id": pid, "item_id": koha.item_id("39000003")})
        assert other.status_code == 412 and not lib.log  # the same codes, another item
        own = requests.post(f"{base}/checkouts", auth=auth, timeout=5,
                            params={"confirmation": token},
                            json={"patron_id": pid, "item_id": koha.item_id("39000001")})
        assert own.status_code == 201 and lib.log == [("11", "39000001")]
        assert koha.violations == []


# -- a heavy reader's account

def test_a_heavy_readers_account_in_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    """25 loans, 30 holds, 3 fines with Koha and SIP2 each answering in 50 ms. The client
    before took 57 REST and 60 SIP2 requests one after the other (6.1-6.7 s, past the
    station's 5 s); now the REST requests are one per loan plus five, in four rounds, and
    the SIP2 titles are asked once per biblio, several at once, and kept."""
    lib, x = crowd(delay_s=0.05)
    with running(lib) as (_s, proxy), koha_running(lib, x) as koha:
        backend = make(tmp_path, koha, proxy, sip2_pool=4)
        try:
            ref = ref_of(backend, "DG0012")
            sent: list[str] = []
            call = backend.pool.call
            backend.pool.call = lambda msg, **kw: sent.append(msg.command) or call(  # type: ignore[method-assign]
                msg, **kw)
            rest = len(koha.requests)
            started = time.perf_counter()
            res = backend.account(ref)
            cold = time.perf_counter() - started
            rest, sip2 = len(koha.requests) - rest, len(sent)
            assert len(res.loans) == LOANS and all(ln.title for ln in res.loans)
            assert len(res.holds_ready) == 2 and len(res.holds_waiting) == HOLDS - 2
            assert all(h.title for h in res.holds_ready) and \
                all(not w.title.startswith("#") for w in res.holds_waiting)
            assert [f.amount for f in res.fines] == [15000, 20000, 30000]
            assert rest == LOANS + 5  # checkouts, holds, balance, items, biblios' items
            assert koha.count("GET", "/items") == 2
            assert sip2 == LOANS + HOLDS  # one title each: all different biblios
            started = time.perf_counter()
            again = backend.account(ref)
            warm = time.perf_counter() - started
            assert again == res and len(sent) == sip2  # the titles are kept
        finally:
            backend.close()
        assert koha.violations == []
    with capsys.disabled():
        print(f"\n  heavy account at 50 ms a request: {cold:.2f} s with titles over SIP2, "
              f"{warm:.2f} s with them known; {rest} REST requests (was 57), "
              f"{sip2} SIP2 item information (was 60)")


def test_an_account_without_titles_rather_than_none(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    lib, x = crowd()
    with running(lib) as (_s, proxy), koha_running(lib, x) as koha:
        backend = make(tmp_path, koha, proxy)
        try:
            ref = ref_of(backend, "DG0012")
            monkeypatch.setattr(kb, "ACCOUNT_BUDGET_S", 0.3)
            proxy.hold_reply_s = 0.8  # SIP2 slower than the budget (its timeout is 1 s)
            started = time.perf_counter()
            res = backend.account(ref)
            took = time.perf_counter() - started
            assert len(res.loans) == LOANS and not any(ln.title for ln in res.loans)
            assert len(res.holds_waiting) == HOLDS - 2 and len(res.fines) == 3
            assert took < 0.8  # not waiting for the titles
        finally:
            proxy.hold_reply_s = 0.0
            backend.close()


# -- answers lost after Koha did it

def test_a_loan_koha_made_is_answered_as_made_even_past_its_deadline(env: Env) -> None:
    backend, lib, koha, _ = env
    tx = loan(ref_of(backend), "39000001")
    koha.faults.append(Fault("/checkouts", "POST", status=500, after=True))
    [lost] = applied(backend, [tx])
    assert lost is None and lib.count("11", "39000001") == 1  # Koha has the loan
    [ack] = applied(backend, [tx], now=tx.deadline + dt.timedelta(seconds=10))
    assert ack is not None and ack.ok and ack.due == TODAY + dt.timedelta(days=14)
    assert lib.count("11", "39000001") == 1 and koha.count("POST", "/checkouts") == 1


def test_a_loan_koha_did_not_make_is_late_past_its_deadline(env: Env) -> None:
    backend, lib, koha, _ = env
    tx = loan(ref_of(backend), "39000001")
    koha.faults.append(Fault("/checkouts", "POST", status=500))
    assert applied(backend, [tx]) == [None] and not lib.log
    [ack] = applied(backend, [tx], now=tx.deadline + dt.timedelta(seconds=10))
    assert ack is not None and ack.reason == "late" and not lib.log


@pytest.mark.parametrize("fault", [Fault("/checkouts/{checkout_id}/renewal", "POST",
                                         status=500, after=True),
                                   Fault("/checkouts/{checkout_id}/renewal", "POST",
                                         hold_s=3, after=True)],
                         ids=["500", "timeout"])
def test_a_renewal_whose_answer_was_lost_is_never_sent_twice(env: Env, fault: Fault) -> None:
    backend, lib, koha, _ = env
    ref = ref_of(backend)
    applied(backend, [loan(ref, "39000001")])
    tx = renew(ref, "39000001")
    koha.faults.append(fault)
    assert applied(backend, [tx]) == [None] and lib.count("29", "39000001") == 1
    [ack] = applied(backend, [tx])
    assert ack is not None and ack.ok and ack.due == TODAY + dt.timedelta(days=28)
    assert lib.count("29", "39000001") == 1
    assert koha.count("POST", "/checkouts/{checkout_id}/renewal") == 1
    [checkout] = backend._checkouts(koha.patron_id("DG0001"))
    assert checkout.renewals_count == 1


def test_a_renewal_koha_did_not_make_is_sent_again(env: Env) -> None:
    backend, lib, koha, _ = env
    ref = ref_of(backend)
    applied(backend, [loan(ref, "39000001")])
    tx = renew(ref, "39000001")
    koha.faults.append(Fault("/checkouts/{checkout_id}/renewal", "POST", status=500))
    assert applied(backend, [tx]) == [None] and lib.count("29", "39000001") == 0
    [ack] = applied(backend, [tx])
    assert ack is not None and ack.ok and lib.count("29", "39000001") == 1
