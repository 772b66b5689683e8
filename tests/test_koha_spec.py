"""The checker of Koha's specification can fail (wrong requests and wrong answers are caught),
the client's configuration is parsed with clear errors, and the mapping of Koha's codes."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from selfcheck.central.backends.koha import mapping as km
from selfcheck.central.backends.koha.client import KohaConfig, KohaProtocolError
from selfcheck.lab.standins.koha_spec import SPEC, Spec, Violation
from selfcheck.lab.standins.koha_standin import koha_running
from selfcheck.lab.standins.sip2_server import Item, Library, Patron

BASIC = {"authorization": "Basic eDp5"}
JSON = {**BASIC, "content-type": "application/json"}


@pytest.fixture(scope="module")
def spec() -> Spec:
    return Spec.load()


def test_the_copy_in_the_repo_is_the_shared_one() -> None:
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "koha-openapi"
    if not shared.is_dir():
        pytest.skip("no shared/ beside the checkout")
    mine = SPEC.parent
    for name in ("koha-swagger-subset.yaml", "checkins-bywater-devel.yaml"):
        assert (mine / name).read_bytes() == (shared / name).read_bytes()


@pytest.mark.parametrize(("method", "path", "query", "headers", "body", "why"), [
    ("POST", "/api/v1/checkouts", "", JSON, b'{"patron_id": 1, "barcode": "39000001"}',
     "'barcode' was unexpected"),  # POST /checkouts takes item_id, not a barcode
    ("POST", "/api/v1/checkouts", "", JSON, b'{"patron_id": "1", "item_id": 2}',
     "is not of type 'integer'"),
    ("GET", "/api/v1/items", "barcode=39000001", BASIC, b"", "unknown query parameter"),
    ("GET", "/api/v1/checkouts/availability", "patron_id=abc", BASIC, b"", "not an integer"),
    ("GET", "/api/v1/patrons", "cardnumber=DG1", {}, b"", "no credentials"),
    ("POST", "/api/v1/checkins", "", JSON, b'{"item_id": 1}', "no such operation"),
    ("GET", "/api/v1/items", "", {**BASIC, "x-koha-embed": "biblio"}, b"", "is not one of"),
    ("POST", "/api/v1/auth/password/validation", "", JSON, b'{"userid": "a"}',
     "'password' is a required property"),
    ("POST", "/api/v1/oauth/token", "", {"content-type": "application/json"},
     b'{"grant_type": "client_credentials"}', "form data expected"),
])
def test_wrong_requests_are_rejected(spec: Spec, method: str, path: str, query: str,
                                     headers: dict[str, str], body: bytes, why: str) -> None:
    with pytest.raises(Violation, match=why):
        spec.check_request(method, path, query, headers, body)


def test_right_requests_pass(spec: Spec) -> None:
    req = spec.check_request("GET", "/api/v1/checkouts/availability", "patron_id=1&item_id=2",
                             BASIC, b"")
    assert req.op.template == "/checkouts/availability"
    assert req.query == {"patron_id": 1, "item_id": 2}
    req = spec.check_request("POST", "/api/v1/checkouts/7/renewal", "", BASIC, b"")
    assert req.path_params == {"checkout_id": 7}


def test_wrong_answers_are_rejected(spec: Spec) -> None:
    op = spec.operation("GET", "/patrons")
    with pytest.raises(Violation, match="'surname' is a required property"):
        spec.check_response(op, 200, [{"patron_id": 1, "library_id": "A",
                                       "category_id": "B"}])
    with pytest.raises(Violation, match="status 418 is not declared"):
        spec.check_response(op, 418, {"error": "teapot"})
    checkout = spec.operation("POST", "/checkouts")
    with pytest.raises(Violation, match="due_date"):
        spec.check_response(checkout, 201, {"checkout_id": 1, "due_date": "ngày mai"})


def test_the_stand_in_rejects_a_wrong_request_over_http() -> None:
    lib = Library(patrons={"DG0001": Patron("Nguyễn Văn An")},
                  items={"39000001": Item("Truyện Kiều")})
    with koha_running(lib) as koha:
        r = requests.post(f"http://127.0.0.1:{koha.port}/api/v1/checkouts",
                          json={"patron_id": 1, "barcode": "39000001"},
                          auth=(koha.x.user.encode(), koha.x.password.encode()), timeout=5)
        assert r.status_code == 400 and "barcode" in r.json()["errors"][0]["message"]
        assert len(koha.violations) == 1 and lib.items["39000001"].charged_to is None


# -- configuration

def test_config_parse() -> None:
    cfg = KohaConfig.parse("koha+https://sc:m%E1%BA%ADt@koha.thuvien.vn/?library=TVTINH"
                           "&timeout=3&ca=/etc/ssl/koha.pem&confirm=previssue")
    assert cfg.base_url == "https://koha.thuvien.vn/api/v1" and cfg.secret == "mật"
    assert (cfg.auth, cfg.library_id, cfg.timeout_s, cfg.ca_file) == (
        "basic", "TVTINH", 3.0, "/etc/ssl/koha.pem")
    assert cfg.confirms == {"PREVISSUE"} and cfg.loans == "rest"
    assert cfg.branch("tv-huyen") == "TVTINH"  # library= for every site
    b = KohaConfig.parse("koha+https://sc@koha?library=TVTINH&branches=tv-huyen:TVHUYEN,"
                         "tv-xa:TVXA")
    assert (b.branch("tv-huyen"), b.branch("tv-xa"), b.branch("tv-tinh")) == (
        "TVHUYEN", "TVXA", "TVTINH")
    assert KohaConfig.parse("koha+https://sc@koha").branch("tvtinh") == "TVTINH"
    assert KohaConfig.parse("koha+https://sc@koha").confirms == {"PREVISSUE"}
    assert "mật" not in str(cfg) and "mật" not in repr(cfg)
    o = KohaConfig.parse("koha+https://id:sec@10.0.0.5:8443/koha/api/v1?auth=oauth2&loans=sip2")
    assert o.base_url == "https://10.0.0.5:8443/koha/api/v1" and o.auth == "oauth2"


@pytest.mark.parametrize(("url", "why"), [
    ("https://a:b@koha", "is not koha"),
    ("koha+http://a:b@koha.thuvien.vn", "only to this machine"),
    ("koha+https://koha.thuvien.vn", "USER@"),
    ("koha+https://a:b@koha?auth=cookie", "basic or oauth2"),
    ("koha+https://a:b@koha?timeout=x", "timeout is not a number"),
    ("koha+https://a:b@koha?barcode=1", "unknown parameter"),
    ("koha+https://a:b@koha?loans=rfid", "rest or sip2"),
    ("koha+https://a:b@koha?confirm=PREVISSUE,RENTALCHARGE", "reader's to accept"),
    ("koha+https://a:b@koha?branches=tv-huyen", "site:CODE"),
    ("koha+https://a:b@koha?branches=TV:X", "site:CODE"),
    ("koha+https://a:b@koha?branches=tv:A,tv:B", "twice"),
    ("koha+https://a:b@koha?library=TV TINH", "branch code"),
])
def test_config_errors(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        KohaConfig.parse(url)


def test_central_needs_a_sip2_url_for_returns_and_no_secret_in_argv(tmp_path: Path) -> None:
    secret = tmp_path / "koha.secret"
    secret.write_text("mật-khẩu\n")
    secret.chmod(0o600)
    base = [sys.executable, "-m", "selfcheck.cli", "central", "--db",
            f"sqlite:///{tmp_path / 'c.db'}", "--ils-secret-file", str(secret), "--ils"]
    out = subprocess.run([*base, "koha+https://sc@koha.thuvien.vn"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "--ils-circulation" in out.stderr
    assert "Traceback" not in out.stderr
    shown = subprocess.run([*base, "koha+https://sc:mật@koha.thuvien.vn"],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 2 and "--ils-secret-file" in shown.stderr
    helped = subprocess.run([*base[:4], "--help"], capture_output=True, text=True, timeout=60)
    assert "koha+https://" in helped.stdout and "--ils-circulation" in helped.stdout


# -- mapping (no I/O)

def test_loan_decision() -> None:
    ok = frozenset({"PREVISSUE"})
    a = km.KAvailability

    def decide(avail: km.KAvailability, confirmed: tuple[str, ...] = ()) -> km.LoanDecision:
        return km.loan_decision(avail, ok, confirmed, currency="VND")

    assert decide(a(blockers={"TOO_MANY": 5, "current_loan_count": 5})).reason == \
        "too_many_loans"
    assert decide(a(blockers={"EXPIRED": 1, "DEBT": 2})).reason == "patron_blocked"
    assert decide(a(blockers={"NO_MORE_RENEWALS": 1})).reason == "too_many_renewals"
    assert decide(a(confirms={"RESERVED": 1, "resfirstname": "An"},
                    confirmation_token="t")).reason == "on_hold_for_other"
    assert decide(a(confirms={"PREVISSUE": 1}, confirmation_token="t")).go
    assert decide(a(confirms={"PREVISSUE": 1})).reason == "refused"  # no token
    assert decide(a(confirms={"RENEW_ISSUE": 1})).already
    assert decide(a()).go
    # a librarian's: the parts of a set, the loan period a desk shortens, an age limit
    for code in ("ADDITIONAL_MATERIALS", "HIGHHOLDS", "AGE_RESTRICTION", "ITEM_LOST",
                 "SOMETHING_NEWER"):
        assert decide(a(confirms={code: 1}, confirmation_token="t")).reason == "needs_staff"
    # the reader's: asked with the amount, lent once confirmed
    rent = a(confirms={"RENTALCHARGE": "5000.000000"}, confirmation_token="t")
    asked = decide(rent)
    assert asked.reason == "needs_confirmation" and not asked.go and asked.confirm is not None
    assert (asked.confirm.code, asked.confirm.amount, asked.confirm.currency) == (
        "rental_charge", 5000, "VND")
    assert decide(rent, ("rental_charge",)).go
    both = a(confirms={"RENTALCHARGE": 5000, "ADDITIONAL_MATERIALS": "CD"},
             confirmation_token="t")
    assert decide(both, ("rental_charge",)).reason == "needs_staff"  # staff first
    usd = km.loan_decision(a(confirms={"RENTALCHARGE": 1.5}, confirmation_token="t"), ok, (),
                           currency="USD")
    assert usd.confirm is not None and (usd.confirm.amount, usd.confirm.currency_exponent) == (
        150, 2)
    assert km.forbidden_reason({"error": "Checkout not authorized (WTHDRAWN)"}) == \
        "not_for_loan"
    assert km.forbidden_reason("nonsense") == "refused"
    assert km.conflict_reason({"error": "Item not found", "error_code": "ITEM_NOT_FOUND"}) == \
        "unknown_item"
    assert km.conflict_reason({"error": "Patron not found"}) == "unknown_patron"


@pytest.mark.parametrize(("error", "reason"), [
    ("too_many", "too_many_renewals"), ("item_denied_renewal", "too_many_renewals"),
    ("auto_too_late", "too_many_renewals"), ("too_soon", "too_soon"),
    ("auto_renew", "auto_renew"), ("auto_too_soon", "auto_renew"),
    ("overdue", "overdue_blocks"), ("restriction", "patron_blocked"),
    ("auto_too_much_oweing", "patron_blocked"), ("auto_account_expired", "card_expired"),
    ("on_reserve", "on_hold_for_other"), ("recalled", "on_hold_for_other"),
    ("onsite_checkout", "not_for_loan"), ("too_unseen", "needs_staff"),
    ("no_checkout", "not_on_loan"), ("a_code_from_a_later_koha", "refused"),
])
def test_each_renewal_error_has_its_reason(error: str, reason: str) -> None:
    assert km.renewal_reason(km.KAllowsRenewal(allows_renewal=False, error=error)) == reason
    assert km.renewal_refusal({"error": f"Renewal not authorized ({error})"}) == reason


def test_malformed_answers_raise_protocol_errors() -> None:
    with pytest.raises(KohaProtocolError, match="due_date"):
        km.parse(km.KCheckout, {"checkout_id": 1, "due_date": "mai"}, "POST /checkouts")
    with pytest.raises(KohaProtocolError):
        km.parse_list(km.KItem, {"item_id": 1}, "GET /items")
    assert km.minor(12.5, "USD") == 1250 and km.minor(15000.0, "VND") == 15000
    assert km.minor(-3, "VND") == 0
    p = km.KPatron(patron_id=1, surname="Nguyễn", firstname="Văn An",
                   expiry_date=dt.date(2000, 1, 1))
    assert km.patron_reason(p, dt.date.today()) == "card_expired"
