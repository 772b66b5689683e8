"""The central's PIN rules (central/pin_rules.py) and patron sessions (central/sessions.py):
the pure policies, then each backend and the ledger applying them. The same over a real
broker and the production profile: tests/test_pin_sessions.py."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from selfcheck.central import pin as pins
from selfcheck.central.backends.sip2.backend import Sip2Backend
from selfcheck.central.backends.sip2.client import Sip2Config
from selfcheck.central.backends.store import CirculationStore
from selfcheck.central.ledger import Ledger, open_db
from selfcheck.central.names import given_name
from selfcheck.central.pin_rules import (
    Demand,
    PinRule,
    PinRules,
    demand,
    parse_assignment,
    parse_rule,
    refusal,
)
from selfcheck.central.sample import load_sample
from selfcheck.central.sessions import CLOCK_SLACK, Sessions, judge
from selfcheck.lab.standins.koha_standin import koha_running
from selfcheck.lab.standins.sip2_server import Library, Patron, running
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.messages import PatronCheckRes, TxLoan, TxRenew, TxReturn
from tests import test_koha_backend as koha_env
from tests import test_sip2_backend as sip2_env
from tests.dbs import KINDS, fresh_db

NOW = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)
NEVER, ALWAYS, AFTER = PinRule.NEVER, PinRule.ALWAYS, PinRule.AFTER_FAILURE
FRESH = pins.PinState(0, None)
FAILED = pins.PinState(1, None)
LOCKED = pins.PinState(0, NOW + 10 * MIN)
LOCK_OVER = pins.PinState(0, NOW - MIN)  # locked once, no right PIN since


# -- the policy, pure
def test_the_most_specific_rule_wins() -> None:
    rules = PinRules(ALWAYS, sites={"xa-1": NEVER}, categories={"child": AFTER})
    assert rules.rule("tinh", "adult") is ALWAYS  # the default
    assert rules.rule("xa-1", "adult") is NEVER  # the site's
    assert rules.rule("xa-1", "child") is AFTER  # the category's, before the site's
    assert rules.rule("xa-1", None) is NEVER  # no category known (SIP2, an unknown card)
    assert PinRules().rule("xa-1", "child") is NEVER  # the library API leaves it to callers


@pytest.mark.parametrize(("rule", "state", "pin_given", "wanted"), [
    (NEVER, FRESH, False, Demand.NONE), (NEVER, FAILED, False, Demand.NONE),
    (NEVER, FRESH, True, Demand.CHECK),
    (ALWAYS, FRESH, False, Demand.REQUIRED), (ALWAYS, FRESH, True, Demand.CHECK),
    (AFTER, FRESH, False, Demand.NONE), (AFTER, None, False, Demand.NONE),
    (AFTER, FAILED, False, Demand.REQUIRED), (AFTER, LOCK_OVER, False, Demand.REQUIRED),
    (AFTER, FAILED, True, Demand.CHECK),
    # a lock holds under every rule, with or without a PIN
    (NEVER, LOCKED, False, Demand.LOCKED), (NEVER, LOCKED, True, Demand.LOCKED),
    (ALWAYS, LOCKED, True, Demand.LOCKED), (AFTER, LOCKED, False, Demand.LOCKED),
])
def test_demand(rule: PinRule, state: pins.PinState | None, pin_given: bool,
                wanted: Demand) -> None:
    assert demand(rule, state, NOW, pin_given=pin_given) is wanted


def test_a_lock_that_ran_out_lets_the_right_pin_through() -> None:
    assert demand(NEVER, LOCKED, NOW + 11 * MIN, pin_given=False) is Demand.NONE
    assert demand(ALWAYS, LOCKED, NOW + 11 * MIN, pin_given=True) is Demand.CHECK


def test_refusals_name_no_one() -> None:
    locked = refusal(Demand.LOCKED, LOCKED)
    asked = refusal(Demand.REQUIRED, None)
    assert locked == PatronCheckRes(ok=False, reason="pin_locked",
                                    pin_locked_until=NOW + 10 * MIN)
    assert asked == PatronCheckRes(ok=False, reason="pin_required", pin_required=True)
    assert refusal(Demand.NONE, None) is None and refusal(Demand.CHECK, FAILED) is None


def test_rules_from_the_command_line() -> None:
    assert parse_rule("after-failure") is AFTER and parse_rule(" Always ") is ALWAYS
    assert parse_assignment("xa-1=never") == ("xa-1", NEVER)
    for bad in ("sometimes", ""):
        with pytest.raises(ValueError, match="is not never, always or after_failure"):
            parse_rule(bad)
    for bad in ("xa-1", "=always", "xa-1=maybe"):
        with pytest.raises(ValueError):
            parse_assignment(bad)


def test_given_name_only() -> None:
    assert given_name("Nguyễn Văn An") == "An" and given_name("  Trần Thị Bích Ngọc ") == "Ngọc"
    assert given_name("An") == "An" and given_name("") is None and given_name(None) is None


def test_session_judged_by_arrival_then_by_when_it_was_done() -> None:
    ends, idle = NOW + 5 * MIN, 10 * MIN
    assert judge(None, NOW, idle) is None  # never opened
    assert judge(ends, NOW, idle) == NOW + idle  # in time: extended
    assert judge(NOW + 30 * MIN, NOW, idle) == NOW + 30 * MIN  # never shortened
    late = ends + 20 * MIN  # arrives after an outage
    assert judge(ends, late, idle, at=ends - MIN) == ends  # done in time: yes, not extended
    assert judge(ends, late, idle, at=ends + CLOCK_SLACK) == ends  # a clock a bit ahead
    assert judge(ends, late, idle, at=ends + CLOCK_SLACK + MIN) is None
    assert judge(ends, late, idle) is None  # a request is never late


# -- the sessions in the central's database, and the ledger in front of the backend
@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CirculationStore]:
    with fresh_db(request.param, tmp_path) as url:
        s = CirculationStore(url)
        load_sample(s, extra_items=5)
        yield s
        s.close()


seq = iter(range(1, 10**6))


def loan(ref: str, item: str, at: dt.datetime, *, station: str = "st-1",
         offline: bool = False) -> TxLoan:
    return TxLoan(msg_id=uuid7(), seq=next(seq), site="s", station=station, at=at,
                  item_id=item, patron_ref=ref, deadline=at + dt.timedelta(days=2),
                  offline=offline)


def test_sessions_are_per_station_and_reader_and_end_when_idle(
        store: CirculationStore) -> None:
    sessions = Sessions(store.engine, 10 * MIN)
    sessions.open("s", "st-1", "p-1", NOW)
    assert sessions.use("s", "st-1", "p-1", NOW + 9 * MIN)  # extends it to 19 min
    assert sessions.use("s", "st-1", "p-1", NOW + 18 * MIN)
    assert not sessions.use("s", "st-2", "p-1", NOW)  # another station
    assert not sessions.use("s", "st-1", "p-2", NOW)  # another reader
    assert not sessions.use("other", "st-1", "p-1", NOW)  # another site
    assert not sessions.use("s", "st-1", "p-1", NOW + 29 * MIN)  # idle too long
    sessions.open("s", "st-1", "p-1", NOW + 30 * MIN)  # the card again
    assert sessions.use("s", "st-1", "p-1", NOW + 31 * MIN)
    with pytest.raises(ValueError):
        Sessions(store.engine, dt.timedelta(0))


def test_the_ledger_lends_only_within_the_session(store: CirculationStore) -> None:
    sessions = Sessions(store.engine, 10 * MIN)
    ledger = Ledger(store.engine, store, sessions=sessions)
    an, ngoc = store.ref_of("DG0001"), store.ref_of("DG0002")
    sessions.open("s", "st-1", an, NOW)
    mine, theirs, elsewhere = (loan(an, "39000001", NOW), loan(ngoc, "39000002", NOW),
                               loan(an, "39000003", NOW, station="st-2"))
    renewal = TxRenew(msg_id=uuid7(), seq=next(seq), site="s", station="st-2", at=NOW,
                      item_id="39000001", patron_ref=an)
    back = TxReturn(msg_id=uuid7(), seq=next(seq), site="s", station="st-2", at=NOW,
                    item_id="39000004")  # no reader: no session needed
    offline = loan(ngoc, "39000005", NOW - 60 * MIN, offline=True)  # the offline list's
    acks = ledger.apply([mine, theirs, elsewhere, renewal, back, offline], NOW)
    assert [(a.ok, a.reason) for a in acks if a] == [
        (True, None), (False, "no_session"), (False, "no_session"), (False, "no_session"),
        (True, None), (True, None)]
    assert store.on_loan() == {"39000001": an, "39000005": ngoc}
    # a repeat is answered as first answered, session or not
    again = ledger.apply([mine, theirs], NOW + 60 * MIN)
    assert [(a.ok, a.reason, a.repeat) for a in again if a] == [
        (True, None, True), (False, "no_session", True)]
    # after an outage: judged by when it was done, not by when it came
    late, too_late = (loan(an, "49000001", NOW + 9 * MIN),
                      loan(an, "49000002", NOW + 30 * MIN))
    acks = ledger.apply([late, too_late], NOW + 60 * MIN)
    assert [(a.ok, a.reason) for a in acks if a] == [(True, None), (False, "no_session")]
    # without sessions (tools, imports): as before
    (plain,) = Ledger(store.engine, store).apply([loan(ngoc, "49000003", NOW)], NOW)
    assert plain is not None and plain.ok


# -- each backend: the rule decides, whatever the station sends
def test_the_store_after_failure_and_its_categories(store: CirculationStore) -> None:
    store.pin_rules = PinRules(AFTER, categories={"child": ALWAYS})
    assert store.check_patron("DG0002", now=NOW).ok  # no failure yet: no PIN asked
    assert store.check_patron("DG0002", pin="0000", now=NOW).reason == "wrong_pin"
    asked = store.check_patron("DG0002", now=NOW)  # now the guesser must go on guessing
    assert (asked.reason, asked.patron_ref, asked.display_name) == ("pin_required", None, None)
    assert store.check_patron("DG0002", pin="2468", now=NOW).display_name == "Ngọc"
    assert store.check_patron("DG0002", now=NOW).ok  # the right PIN cleared it
    assert store.check_patron("DG0003", now=NOW).reason == "pin_required"  # a child
    assert store.check_patron("DG9999", now=NOW).reason == "unknown_patron"
    store.pin_rules = PinRules(ALWAYS)
    assert store.check_patron("DG9999", now=NOW).reason == "pin_required"  # says nothing
    assert store.check_patron("DG9999", pin="1", now=NOW).reason == "unknown_patron"


def test_sip2_the_sites_rule_before_the_library_system_is_asked(tmp_path: Path) -> None:
    lib = Library(patrons={"DG0001": Patron("Nguyễn Văn An", pin="1234")})
    with running(lib) as (_server, proxy):
        backend = sip2_env.make(tmp_path, proxy)
        try:
            backend.pin_rules = PinRules(NEVER, sites={"tinh": ALWAYS})
            asked = backend.check_patron("DG0001", site="tinh")
            assert (asked.reason, asked.patron_ref, asked.display_name) == (
                "pin_required", None, None)
            assert lib.languages == []  # no 63 went out: nothing asked, nothing learnt
            ok = backend.check_patron("DG0001", pin="1234", site="tinh")
            assert ok.ok and ok.display_name == "An"
            assert backend.check_patron("DG0001", site="xa").display_name == "An"
            for wrong in ("0", "1", "2"):
                backend.check_patron("DG0001", pin=wrong, site="xa")
            assert backend.check_patron("DG0001", site="xa").reason == "pin_locked"
        finally:
            backend.close()


def test_koha_the_patrons_category_and_given_name(tmp_path: Path) -> None:
    lib = koha_env.library()
    with running(lib) as (_server, proxy), koha_running(lib, koha_env.extra()) as koha:
        backend = koha_env.make(tmp_path, koha, proxy)
        try:
            backend.pin_rules = PinRules(ALWAYS)  # the stand-in's patrons are all "BD"
            for card in ("DG0002", "DG9999"):
                res = backend.check_patron(card)
                assert (res.reason, res.patron_ref, res.display_name) == (
                    "pin_required", None, None), card
            ok = backend.check_patron("DG0002", pin="1357")
            assert ok.ok and ok.display_name == "Ngọc"  # firstname "Thị Bích Ngọc"
            backend.pin_rules = PinRules(ALWAYS, categories={"BD": NEVER})
            assert backend.check_patron("DG0002").ok
            backend.pin_rules = PinRules(NEVER)
            for wrong in ("0", "1", "2"):
                backend.check_patron("DG0002", pin=wrong)
            locked = backend.check_patron("DG0002")
            assert (locked.reason, locked.patron_ref) == ("pin_locked", None)
        finally:
            backend.close()
        assert koha.violations == []


def test_the_rules_are_set_from_the_command_line() -> None:
    from tests.test_cli_errors import selfcheck

    out = selfcheck("central", "--pin", "sometimes")
    assert out.returncode == 2 and "'sometimes' is not never, always or after_failure" in \
        out.stderr
    out = selfcheck("central", "--pin-site", "xa-1")
    assert out.returncode == 2 and "'xa-1' is not NAME=RULE" in out.stderr
    out = selfcheck("central", "--session-idle", "5")
    assert out.returncode == 2 and "give 30 to 86400 seconds" in out.stderr
    assert "Traceback" not in out.stderr
    shown = selfcheck("central", "--help").stdout
    assert all(o in shown for o in ("--pin ", "--pin-site", "--pin-category", "--session-idle"))


# -- one card's wrong PINs, given at once (several bridges, or a pool's threads)
PATIENT = pins.PinPolicy(max_failures=100, lock_after=200)  # no wait stops the count


def _at_once(n: int, call: Callable[[], object]) -> None:
    start = threading.Barrier(n)
    errors: list[BaseException] = []

    def one() -> None:
        start.wait()
        try:
            call()
        except BaseException as exc:  # pragma: no cover - said by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_pins_given_at_once_are_all_counted_by_the_store(
        kind: str, tmp_path: Path) -> None:
    """Fault: the count was read, then written, the row not locked: on PostgreSQL two
    checks at once counted one."""
    with fresh_db(kind, tmp_path) as url:
        store = CirculationStore(url, pin_policy=PATIENT)
        try:
            load_sample(store)
            _at_once(8, lambda: store.check_patron("DG0001", pin="0000"))
            assert pins.PinState(8, None) == _store_state(store, "DG0001")
        finally:
            store.close()


def _store_state(store: CirculationStore, card: str) -> pins.PinState:
    from sqlalchemy import select

    from selfcheck.central.schema import patrons
    with store.engine.connect() as conn:
        row = conn.execute(select(patrons.c.pin_failures, patrons.c.pin_locked_until)
                           .where(patrons.c.card_id == card)).one()
    return pins.PinState(row.pin_failures, row.pin_locked_until)


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_pins_given_at_once_are_all_counted_over_sip2(
        kind: str, tmp_path: Path) -> None:
    """Fault: the count was read in one transaction and written in another: 8 wrong PINs at
    once counted 4 (SIP2 and Koha alike: Koha's backend counts through SIP2's)."""
    with fresh_db(kind, tmp_path) as url:
        cfg = Sip2Config.parse("sip2://sc:secret@127.0.0.1:9?institution=tv-test&pool=2")
        backend = Sip2Backend(cfg, open_db(url), pin_policy=PATIENT)
        try:
            ref = backend._ref("DG0001")  # no library system asked: the count only
            _at_once(8, lambda: backend._wrong_pin(ref, dt.datetime.now(dt.UTC)))
            assert backend._pin_state(ref) == pins.PinState(8, None)
        finally:
            backend.close()
