"""The circulation store on real SQLite files and a real PostgreSQL: rules, dedupe, repeats."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from selfcheck.central.backends.store import CirculationStore
from selfcheck.central.sample import load_sample
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.messages import TxLoan, TxRenew, TxReturn
from tests.conftest import applied

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
NOW = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)


def _pg_available() -> bool:
    try:
        with create_engine(PG_ADMIN).connect():
            return True
    except Exception:
        return False


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path) -> Iterator[CirculationStore]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        store = CirculationStore(f"sqlite:///{tmp_path / 'c.db'}")
        load_sample(store, extra_items=5, extra_patrons=2)
        yield store
        store.close()
        return
    if not _pg_available():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    name = "selfcheck_" + secrets.token_hex(4)
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    store = CirculationStore(f"postgresql://postgres@127.0.0.1:5432/{name}")
    load_sample(store, extra_items=5, extra_patrons=2)
    yield store
    store.close()
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


def ref(store: CirculationStore, card: str) -> str:
    res = store.check_patron(card, NOW.date())
    assert res.patron_ref
    return res.patron_ref


seq = iter(range(1, 10**6))


def loan(store: CirculationStore, card: str, item: str, **kw: object) -> TxLoan:
    fields: dict[str, object] = dict(msg_id=uuid7(), seq=next(seq), site="s", station="st-1",
                                     at=NOW, item_id=item, patron_ref=ref(store, card),
                                     deadline=NOW + dt.timedelta(seconds=5))
    fields.update(kw)
    return TxLoan(**fields)  # type: ignore[arg-type]


def ret(item: str) -> TxReturn:
    return TxReturn(msg_id=uuid7(), seq=next(seq), site="s", station="st-1", at=NOW,
                    item_id=item)


def test_loan_then_return_with_due_date_and_sort_bin(any_store: CirculationStore) -> None:
    (ack,) = applied(any_store, [loan(any_store, "DG0001", "39000001")], NOW)
    assert ack.ok and ack.title == "Truyện Kiều" and ack.due == dt.date(2026, 12, 6)
    assert any_store.on_loan() == {"39000001": ref(any_store, "DG0001")}
    (back,) = applied(any_store, [ret("39000001")], NOW)
    assert back.ok and back.sort_bin == "A"
    assert any_store.on_loan() == {}
    kinds = [r["kind"] for r in any_store.history(["39000001"])]
    assert kinds == ["loan", "return"]


def test_a_repeat_is_answered_from_the_dedupe_row_and_applied_once(
        any_store: CirculationStore) -> None:
    tx = loan(any_store, "DG0001", "39000002")
    first, again_in_batch = applied(any_store, [tx, tx], NOW)
    (later,) = applied(any_store, [tx], NOW + dt.timedelta(hours=1))
    assert first.ok and not first.repeat
    assert again_in_batch.repeat and later.repeat
    assert later.due == first.due
    assert len(any_store.history(["39000002"])) == 1


def test_rules_refuse_with_reasons(any_store: CirculationStore) -> None:
    s = any_store
    cases = [
        (loan(s, "DG0001", "39000007"), "not_for_loan"),
        (loan(s, "DG0001", "00000000"), "unknown_item"),
        (loan(s, "DG0001", "39000004", deadline=NOW - dt.timedelta(seconds=1)), "late"),
        (loan(s, "DG0001", "39000004", patron_ref="p-nobody"), "unknown_patron"),
    ]
    for tx, reason in cases:
        (ack,) = applied(s, [tx], NOW)
        assert (ack.ok, ack.reason) == (False, reason), reason
    assert s.check_patron("DG0004").reason == "patron_blocked"
    assert s.check_patron("nope").reason == "unknown_patron"
    applied(s, [loan(s, "DG0001", "39000005")], NOW)
    (other,) = applied(s, [loan(s, "DG0002", "39000005")], NOW)
    assert other.reason == "on_loan_to_other"
    # a child may hold 3 loans
    for item in ("39000001", "39000002", "39000003"):
        assert applied(s, [loan(s, "DG0003", item)], NOW)[0].ok
    (over,) = applied(s, [loan(s, "DG0003", "39000006")], NOW)
    assert over.reason == "too_many_loans"
    assert s.check_patron("DG0003").loans == 3
    assert s.history(["39000007", "39000006"]) == []


def test_renew_moves_the_due_date(any_store: CirculationStore) -> None:
    s = any_store
    applied(s, [loan(s, "DG0001", "39000008")], NOW)
    later = NOW + dt.timedelta(days=10)
    renew = TxRenew(msg_id=uuid7(), seq=next(seq), site="s", station="st-1", at=later,
                    item_id="39000008", patron_ref=ref(s, "DG0001"))
    (ack,) = applied(s, [renew], later)
    assert ack.ok and ack.due == dt.date(2026, 12, 16)
    stranger = renew.model_copy(update={"msg_id": uuid7(), "patron_ref": ref(s, "DG0002")})
    assert applied(s, [stranger], later)[0].reason == "not_on_loan"


def test_expired_card_is_refused(any_store: CirculationStore) -> None:
    any_store.add_patrons([{"card_id": "OLD1", "name": "Đỗ Văn Cũ", "category": "adult",
                            "expires": dt.date(2026, 1, 1)}])
    res = any_store.check_patron("OLD1", NOW.date())
    assert (res.ok, res.reason) == (False, "card_expired")


def test_one_batch_applies_in_order(any_store: CirculationStore) -> None:
    s = any_store
    first = loan(s, "DG0001", "49000001")
    other = loan(s, "DG0002", "49000001")
    back = ret("49000001")
    again = loan(s, "DG0002", "49000001")
    acks = applied(s, [first, other, back, again], NOW)
    assert [(a.ok, a.reason) for a in acks] == [(True, None), (False, "on_loan_to_other"),
                                                (True, None), (True, None)]
    assert s.on_loan() == {"49000001": ref(s, "DG0002")}
    assert s.check_patron("DG0001").loans == 0 and s.check_patron("DG0002").loans == 1


def test_the_samples_pins_are_checked_against_their_stored_hashes(
        store: CirculationStore) -> None:
    """The sample library's hashes are made once, not at each load: each is the hash of its
    patron's PIN (and of no other), each with a salt of its own."""
    from selfcheck.central import pin as pins
    from selfcheck.central.sample import PIN_HASHES, PINS

    assert PIN_HASHES.keys() == PINS.keys()
    for card, pin in PINS.items():
        assert pins.verify_pin(pin, PIN_HASHES[card])
        assert not pins.verify_pin("0000", PIN_HASHES[card])
        # DG0004's card is blocked: refused for that once the PIN is right
        want = "patron_blocked" if card == "DG0004" else None
        assert store.check_patron(card, pin=pin).reason == want
        assert store.check_patron(card, pin="0000").reason == "wrong_pin"
    assert len({h.split("$")[4] for h in PIN_HASHES.values()}) == len(PIN_HASHES)
