"""The Koha backend against our Koha stand-in (real HTTP on loopback, every request and answer
checked against Koha's specification) and the real SIP2 server for returns, both over one
library, with a real SQLite for the dedupe rows."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from selfcheck.central.backend import BackendUnavailable
from selfcheck.central.backends.koha.backend import KohaBackend
from selfcheck.central.backends.koha.client import KohaClient, KohaConfig
from selfcheck.central.backends.sip2.client import Sip2Config
from selfcheck.central.ledger import open_db
from selfcheck.central.schema import processed, sip2_claims
from selfcheck.lab.standins.koha_standin import Fault, Hold, KohaExtra, KohaStandIn, koha_running
from selfcheck.lab.standins.sip2_server import FaultProxy, Item, Library, Patron, running
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.messages import TxLoan, TxRenew, TxReturn
from tests.conftest import applied

TODAY = dt.date.today()


def library() -> Library:
    return Library(
        patrons={"DG0001": Patron("Nguyễn Văn An", pin="2468",
                                  fines=[("Trả muộn: Truyện Kiều", 15000),
                                         ("Mất thẻ", 20000)]),
                 "DG0002": Patron("Trần Thị Bích Ngọc", pin="1357"),
                 "DG0004": Patron("Phạm Thu Hằng", blocked=True),
                 "DG0005": Patron("Lê Hoàng Phúc", limit=1)},
        items={"39000001": Item("Truyện Kiều", sort_bin="A"), "39000002": Item("Số đỏ"),
               "39000003": Item("Dế Mèn phiêu lưu ký", sort_bin="B"),
               "39000004": Item("Tắt đèn"), "39000005": Item("Nỗi buồn chiến tranh"),
               "39000006": Item("Chí Phèo"), "39000007": Item("Vợ nhặt")})


def extra() -> KohaExtra:
    return KohaExtra(
        expired={"DG0003"}, not_for_loan={"39000007"},
        previously={("DG0001", "39000004")}, staff_confirm={"39000006"},
        holds=[Hold("DG0002", "Nỗi buồn chiến tranh"),  # queued first: 39000005 is wanted
               Hold("DG0001", "Nỗi buồn chiến tranh"),  # second in the queue
               Hold("DG0001", "Số đỏ", item="39000002", waiting=True,
                    expires=TODAY + dt.timedelta(days=5))])


Env = tuple[KohaBackend, Library, KohaStandIn, FaultProxy]


def make(tmp_path: Path, koha: KohaStandIn, proxy: FaultProxy, *, name: str = "c",
         auth: str = "basic", secret: str | None = None, sip2_pool: int = 2,
         **query: str) -> KohaBackend:
    user, pw = ((koha.x.client_id, koha.x.client_secret) if auth == "oauth2"
                else (koha.x.user, koha.x.password))
    params = {"timeout": "1", "pool": "4", "auth": auth, "library": "TVTINH", **query}
    url = (f"koha+http://{quote(user)}:{quote(secret or pw)}@127.0.0.1:{koha.port}/?"
           + "&".join(f"{k}={v}" for k, v in params.items()))
    sip2 = (f"sip2://sc:secret@127.0.0.1:{proxy.port}?institution=tv-test&location=tang-1"
            f"&timeout=1&pool={sip2_pool}")
    return KohaBackend(KohaConfig.parse(url), Sip2Config.parse(sip2),
                       open_db(f"sqlite:///{tmp_path / f'{name}.db'}"))


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    lib = library()
    with running(lib) as (_server, proxy), koha_running(lib, extra()) as koha:
        backend = make(tmp_path, koha, proxy)
        yield backend, lib, koha, proxy
        backend.close()
        assert koha.violations == []  # everything we sent and got matched Koha's spec


seq = iter(range(1, 10**6))


def loan(ref: str, item: str, station: str = "st-1") -> TxLoan:
    now = dt.datetime.now(dt.UTC)
    return TxLoan(msg_id=uuid7(), seq=next(seq), site="s", station=station, at=now,
                  item_id=item, patron_ref=ref, deadline=now + dt.timedelta(seconds=30))


def ret(item: str, station: str = "st-1") -> TxReturn:
    return TxReturn(msg_id=uuid7(), seq=next(seq), site="s", station=station,
                    at=dt.datetime.now(dt.UTC), item_id=item)


def renew(ref: str, item: str) -> TxRenew:
    return TxRenew(msg_id=uuid7(), seq=next(seq), site="s", station="st-1",
                   at=dt.datetime.now(dt.UTC), item_id=item, patron_ref=ref)


def ref_of(backend: KohaBackend, card: str = "DG0001") -> str:
    res = backend.check_patron(card)
    assert res.patron_ref
    return res.patron_ref


# -- patrons and PINs

def test_patron_check_reads_koha(env: Env) -> None:
    backend, lib, _koha, _ = env
    lib.items["39000001"].charged_to, lib.items["39000001"].due = "DG0001", TODAY
    ok = backend.check_patron("DG0001")
    assert ok.ok and ok.display_name == "An" and ok.loans == 1 and ok.patron_ref
    assert backend.check_patron("DG0004").reason == "patron_blocked"
    assert backend.check_patron("DG9999").reason == "unknown_patron"
    lib.patrons["DG0003"] = Patron("Đỗ Minh Châu")
    assert backend.check_patron("DG0003").reason == "card_expired"


def test_pin_checked_by_koha_and_locked_here(env: Env) -> None:
    backend, _, koha, _ = env
    right = backend.check_patron("DG0001", pin="2468")
    assert right.ok and right.patron_ref
    wrong = backend.check_patron("DG0001", pin="0000")
    assert wrong.reason == "wrong_pin" and wrong.patron_ref is None and wrong.pin_tries_left
    for _ in range(wrong.pin_tries_left):
        last = backend.check_patron("DG0001", pin="0000")
    assert last.reason == "pin_locked" and last.pin_locked_until
    asked = koha.count("POST", "/auth/password/validation")
    assert backend.check_patron("DG0001", pin="2468").reason == "pin_locked"
    assert koha.count("POST", "/auth/password/validation") == asked  # not asked while locked


# -- loans over REST

def test_loan_over_rest_once(env: Env) -> None:
    backend, lib, koha, _ = env
    ref = ref_of(backend)
    tx = loan(ref, "39000001")
    before = len(koha.requests)
    [ack] = applied(backend, [tx])
    assert koha.requests[before:] == [("GET", "/items"), ("GET", "/checkouts/availability"),
                                      ("POST", "/checkouts")]  # the patron id is known
    assert ack is not None and ack.ok and ack.title == "Truyện Kiều"
    assert ack.due == TODAY + dt.timedelta(days=14) and ack.desensitize
    assert lib.items["39000001"].charged_to == "DG0001" and lib.count("11", "39000001") == 1
    posts = koha.count("POST", "/checkouts")
    [again] = applied(backend, [tx])  # the station sent it again
    assert again is not None and again.repeat and again.due == ack.due
    assert koha.count("POST", "/checkouts") == posts and lib.count("11", "39000001") == 1


@pytest.mark.parametrize(("card", "item", "reason"), [
    ("DG0001", "39009999", "unknown_item"),  # no such barcode in Koha
    ("DG0001", "39000007", "not_for_loan"),
    ("DG0001", "39000005", "on_hold_for_other"),  # RESERVED for DG0002
    ("DG0001", "39000006", "needs_staff"),  # AGE_RESTRICTION: a librarian's to confirm
    ("DG0004", "39000001", "patron_blocked"),  # DEBARRED
])
def test_loan_refusals(env: Env, card: str, item: str, reason: str) -> None:
    backend, lib, koha, _ = env
    [ack] = applied(backend, [loan(ref_of(backend, card), item)])
    assert ack is not None and not ack.ok and ack.reason == reason
    assert koha.count("POST", "/checkouts") == 0 and not lib.log


def test_loan_refused_when_on_loan_to_another_or_too_many(env: Env) -> None:
    backend, _lib, _, _ = env
    [first] = applied(backend, [loan(ref_of(backend, "DG0005"), "39000001")])
    assert first is not None and first.ok
    [other] = applied(backend, [loan(ref_of(backend, "DG0001"), "39000001")])
    assert other is not None and other.reason == "on_loan_to_other"
    [many] = applied(backend, [loan(ref_of(backend, "DG0005"), "39000003")])
    assert many is not None and many.reason == "too_many_loans"


def test_loan_with_confirmation_token(env: Env) -> None:
    backend, lib, koha, _ = env
    [ack] = applied(backend, [loan(ref_of(backend), "39000004")])  # PREVISSUE: the reader may
    assert ack is not None and ack.ok and lib.items["39000004"].charged_to == "DG0001"
    assert koha.count("POST", "/checkouts") == 1  # with the token: no 412 first


def test_412_and_403_from_the_checkout(env: Env) -> None:
    backend, lib, koha, _ = env
    ref = ref_of(backend)
    koha.faults.append(Fault("/checkouts", "POST", status=412, times=2,
                             body={"error": "Confirmation error"}))
    [needs] = applied(backend, [loan(ref, "39000001")])  # asked again once, then no
    assert needs is not None and needs.reason == "refused"
    assert koha.count("GET", "/checkouts/availability") == 2
    koha.faults.append(Fault("/checkouts", "POST", status=403,
                             body={"error": "Checkout not authorized (DEBARRED)"}))
    [blocked] = applied(backend, [loan(ref, "39000003")])
    assert blocked is not None and blocked.reason == "patron_blocked"
    assert not lib.log
    koha.faults.append(Fault("/checkouts", "POST", status=412,
                             body={"error": "Confirmation error"}))
    [again] = applied(backend, [loan(ref, "39000003")])  # what Koha asked changed: once more
    assert again is not None and again.ok and lib.count("11", "39000003") == 1


# -- returns over SIP2, order kept across both

def test_return_over_sip2_ends_the_rest_checkout(env: Env) -> None:
    backend, lib, koha, _ = env
    ref = ref_of(backend)
    acks = applied(backend, [loan(ref, "39000001"), ret("39000001"), loan(ref, "39000001")])
    assert [a.ok for a in acks if a] == [True, True, True] and len(acks) == 3
    assert lib.log == [("11", "39000001"), ("09", "39000001"), ("11", "39000001")]
    pid = koha.patron_id("DG0001")
    assert koha.checkout_id("39000001") is not None
    assert [c for c in backend._checkouts(pid)]  # Koha sees the second loan


def test_loans_with_sip2_when_the_site_says_so(tmp_path: Path) -> None:
    lib = library()
    with running(lib) as (_s, proxy), koha_running(lib, extra()) as koha:
        backend = make(tmp_path, koha, proxy, loans="sip2")
        try:
            [ack] = applied(backend, [loan(ref_of(backend), "39000001")])
            assert ack is not None and ack.ok and koha.count("POST", "/checkouts") == 0
            assert lib.count("11", "39000001") == 1
        finally:
            backend.close()
        assert koha.violations == []


def test_two_bridges_apply_each_once_across_rest_and_sip2(env: Env) -> None:
    backend, lib, _, _ = env
    other = KohaBackend(backend.koha, backend.cfg, open_db(str(backend.engine.url)))
    try:
        ref = ref_of(backend)
        lib.items["39000002"].charged_to, lib.items["39000002"].due = "DG0002", TODAY
        batch = [loan(ref, "39000001"), ret("39000002"), loan(ref, "39000003", "st-2"),
                 ret("39000003", "st-2"), loan(ref, "39000004", "st-3")]
        with ThreadPoolExecutor(2) as pool:  # the same batch to both at once
            list(pool.map(lambda b: applied(b, batch), [backend, other]))
        for _ in range(3):  # the stations send what got no answer again
            last = applied(backend, batch)
        assert all(a is not None and a.ok for a in last)
        for item, command in (("39000001", "11"), ("39000002", "09"), ("39000003", "11"),
                              ("39000003", "09"), ("39000004", "11")):
            assert lib.count(command, item) == 1, (item, command)
        assert lib.items["39000003"].charged_to is None  # st-2's loan came before its return
    finally:
        other.close()


# -- renewals

def test_renewal_and_why_not(env: Env) -> None:
    backend, lib, koha, _ = env
    ref = ref_of(backend)
    applied(backend, [loan(ref, "39000001")])
    [ok] = applied(backend, [renew(ref, "39000001")])
    assert ok is not None and ok.ok and ok.due == TODAY + dt.timedelta(days=28)
    applied(backend, [renew(ref, "39000001")])
    [too_many] = applied(backend, [renew(ref, "39000001")])  # max_renewals 2
    assert too_many is not None and too_many.reason == "too_many_renewals"
    assert lib.count("29", "39000001") == 2
    [nothing] = applied(backend, [renew(ref, "39000003")])
    assert nothing is not None and nothing.reason == "not_on_loan"
    koha.x.holds.append(Hold("DG0002", "Dế Mèn phiêu lưu ký"))
    lib.items["39000003"].charged_to, lib.items["39000003"].due = "DG0001", TODAY
    [held] = applied(backend, [renew(ref, "39000003")])
    assert held is not None and held.reason == "on_hold_for_other"


def test_404_checkout_gone_is_not_on_loan(env: Env) -> None:
    backend, lib, koha, _ = env
    ref = ref_of(backend)
    applied(backend, [loan(ref, "39000001")])
    koha.faults.append(Fault("/checkouts/{checkout_id}/allows_renewal", status=404,
                             body={"error": "Checkout not found"}))
    [gone] = applied(backend, [renew(ref, "39000001")])
    assert gone is not None and gone.reason == "not_on_loan"
    assert lib.count("29", "39000001") == 0


# -- the account

def test_account_has_queue_positions_and_fine_amounts(env: Env) -> None:
    backend, _lib, _, _ = env
    ref = ref_of(backend)
    applied(backend, [loan(ref, "39000001"), loan(ref, "39000003")])
    res = backend.account(ref)
    assert res.ok
    assert [(ln.item_id, ln.title, ln.due) for ln in res.loans] == [
        ("39000001", "Truyện Kiều", TODAY + dt.timedelta(days=14)),
        ("39000003", "Dế Mèn phiêu lưu ký", TODAY + dt.timedelta(days=14))]
    assert all(ln.renewable and not ln.overdue for ln in res.loans)
    [ready] = res.holds_ready
    assert (ready.item_id, ready.title) == ("39000002", "Số đỏ")
    assert ready.pickup_by == TODAY + dt.timedelta(days=5)
    [waiting] = res.holds_waiting
    assert (waiting.title, waiting.position) == ("Nỗi buồn chiến tranh", 2)
    assert [(f.description, f.amount) for f in res.fines] == [
        ("Trả muộn: Truyện Kiều", 15000), ("Mất thẻ", 20000)]
    assert res.fines_total == 35000 and res.currency == "VND" and res.currency_exponent == 0
    assert backend.account("p-unknown").reason == "unknown_patron"


# -- Koha down, slow, broken

def test_5xx_is_no_answer_and_the_station_waits(env: Env) -> None:
    backend, lib, koha, _ = env
    ref = ref_of(backend)
    koha.faults.append(Fault("/checkouts/availability", status=500))
    batch = [loan(ref, "39000001"), ret("39000002"), ret("39000003", station="st-2")]
    first, later, other = applied(backend, batch)
    assert first is None and later is None  # nothing after it from that station either
    assert other is not None and other.ok  # another station goes on
    assert lib.count("09", "39000002") == 0 and lib.count("09", "39000003") == 1
    retry = applied(backend, batch[:2])
    assert all(a is not None and a.ok for a in retry)
    assert lib.count("11", "39000001") == 1


def test_get_retried_on_503(env: Env) -> None:
    backend, _, koha, _ = env
    koha.faults.append(Fault("/patrons", status=503))
    assert backend.check_patron("DG0001").ok  # urllib3 asked again after the 503
    assert koha.count("GET", "/patrons") == 2


def test_post_timeout_is_settled_by_asking(env: Env) -> None:
    backend, lib, koha, _ = env
    ref = ref_of(backend)
    tx = loan(ref, "39000001")
    koha.faults.append(Fault("/checkouts", "POST", hold_s=3, after=True))
    [lost] = applied(backend, [tx])  # applied by Koha, but the answer came too late
    assert lost is None and lib.count("11", "39000001") == 1
    with backend.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(sip2_claims)).scalar_one() == 1
    [ack] = applied(backend, [tx])  # the outcome was unknown: asked first, not lent twice
    assert ack is not None and ack.ok and ack.due == TODAY + dt.timedelta(days=14)
    assert lib.count("11", "39000001") == 1 and backend.counters.reconciled == 1
    with backend.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(processed)).scalar_one() == 1


def test_malformed_answer_is_counted_never_a_crash(env: Env) -> None:
    backend, _, koha, _ = env
    ref = ref_of(backend)
    koha.faults.append(Fault("/items", garbage=True))
    [ack] = applied(backend, [loan(ref, "39000001")])
    assert ack is None and backend.client.counters.malformed == 1
    koha.faults.append(Fault("/patrons", garbage=True))
    with pytest.raises(BackendUnavailable):
        backend.check_patron("DG0001")
    assert backend.client.counters.malformed == 2


def test_koha_down_is_no_answer(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lib = library()
    with running(lib) as (_s, proxy):
        koha = KohaStandIn(lib, extra()).start()
        backend = make(tmp_path, koha, proxy)
        try:
            ref = ref_of(backend)
            koha.stop()
            acks = applied(backend, [loan(ref, "39000001"), ret("39000002")])
            assert acks == [None, None] and not lib.log
            caplog.set_level(logging.DEBUG)
            with pytest.raises(BackendUnavailable):
                backend.check_patron("DG0001")
            assert "Retrying" in caplog.text and "/api/v1/patrons" in caplog.text
            assert "DG0001" not in caplog.text  # urllib3 logs URLs: never the card number
        finally:
            backend.close()


# -- authentication

def test_oauth2_token_cached_and_renewed_once_on_401(tmp_path: Path) -> None:
    lib = library()
    with running(lib) as (_s, proxy), koha_running(lib, extra()) as koha:
        backend = make(tmp_path, koha, proxy, auth="oauth2")
        try:
            ref = ref_of(backend)
            applied(backend, [loan(ref, "39000001")])
            assert koha.count("POST", "/oauth/token") == 1  # one token for every request
            koha.revoke_tokens()  # Koha restarted: the token no longer works
            assert backend.account(ref).ok
            assert koha.count("POST", "/oauth/token") == 2
            assert backend.client.counters.tokens == 2
        finally:
            backend.close()
        assert koha.violations == []


def test_oauth2_token_renewed_when_it_expires(tmp_path: Path) -> None:
    lib = library()
    now = [1000.0]
    with running(lib) as (_s, proxy), koha_running(lib, extra()) as koha:
        backend = make(tmp_path, koha, proxy, auth="oauth2")
        backend.client = KohaClient(backend.koha, clock=lambda: now[0])
        try:
            backend.check_patron("DG0001")
            now[0] += 3600 - 31  # still inside: 30 s before Koha's expiry
            backend.check_patron("DG0002")
            assert koha.count("POST", "/oauth/token") == 1
            now[0] += 2  # within the margin: a new token before Koha says no
            backend.check_patron("DG0002")
            assert koha.count("POST", "/oauth/token") == 2
        finally:
            backend.close()
        assert koha.violations == []


@pytest.mark.parametrize("auth", ["basic", "oauth2"])
def test_wrong_credentials_are_no_answer(tmp_path: Path, auth: str) -> None:
    lib = library()
    with running(lib) as (_s, proxy), koha_running(lib, extra()) as koha:
        backend = make(tmp_path, koha, proxy, auth=auth, secret="sai-mật-khẩu")
        try:
            with pytest.raises(BackendUnavailable, match="refused"):
                backend.check_patron("DG0001")
            assert applied(backend, [ret("39000001")])[0] is not None  # SIP2 returns go on
        finally:
            backend.close()
        assert koha.violations == []


# -- HTTPS with the site's CA

def _ca_and_server_cert(where: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 signed by it (openssl)."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=where, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        "/CN=Thu vien tinh CA", "-keyout", "ca.key", "-out", "ca.crt")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout",
        "koha.key", "-out", "koha.csr")
    (where / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "koha.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "koha.crt")
    return where / "ca.crt", where / "koha.crt", where / "koha.key"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")
def test_https_with_the_sites_ca(tmp_path: Path) -> None:
    ca, cert, key = _ca_and_server_cert(tmp_path)
    lib = library()
    with running(lib) as (_s, proxy), koha_running(lib, extra(), tls=(cert, key)) as koha:
        sip2 = Sip2Config.parse(f"sip2://sc:secret@127.0.0.1:{proxy.port}?institution=tv-test")
        base = (f"koha+https://{koha.x.user}:{quote(koha.x.password)}@127.0.0.1:{koha.port}"
                "?timeout=2")
        trusted = KohaBackend(KohaConfig.parse(f"{base}&ca={ca}"), sip2,
                              open_db(f"sqlite:///{tmp_path / 'a.db'}"))
        untrusted = KohaBackend(KohaConfig.parse(base), sip2,
                                open_db(f"sqlite:///{tmp_path / 'b.db'}"))
        try:
            assert trusted.check_patron("DG0001").ok
            with pytest.raises(BackendUnavailable):  # not a CA the system knows
                untrusted.check_patron("DG0001")
        finally:
            trusted.close()
            untrusted.close()
        assert koha.violations == []


# -- health: both doors

def test_health_probe_sees_rest_and_sip2(tmp_path: Path) -> None:
    from selfcheck.central.backends.koha.health import koha_probe

    lib = library()
    with running(lib) as (_s, proxy):
        koha = KohaStandIn(lib, extra()).start()
        good = make(tmp_path, koha, proxy)
        bad = make(tmp_path, koha, proxy, name="d", secret="sai-mật-khẩu")
        try:
            assert koha_probe(good.client, good.cfg)().state == "ok"
            refused = koha_probe(bad.client, bad.cfg)()
            assert refused.state == "login refused" and refused.detail.startswith("REST")
            wrong_sip2 = dataclasses.replace(good.cfg, password="sai")
            assert koha_probe(good.client, wrong_sip2)().state == "login refused"
            koha.stop()
            down = koha_probe(good.client, good.cfg)()
            assert down.state == "down" and "REST" in down.detail
        finally:
            good.close()
            bad.close()
