"""The central's PIN rules and patron sessions, against the production broker profile (TLS,
passwords, per-station rules) and `selfcheck central --load-sample` as a process: what one
station's stolen credentials still get.

The central runs `--pin always --pin-site site-2=never --pin-category child=never`; st-a and
st-b are at site-1, st-c at site-2."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from selfcheck.central.backends.store import CirculationStore
from selfcheck.lab.broker import Broker
from selfcheck.lab.stack import CentralProcess
from selfcheck.mqtt import messages, topics
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.security import ClientSecurity
from selfcheck.mqtt.station_link import StationLink
from tests.conftest import ROOT, wait_until

ROLES = """\
station   st-a          site-1
station   st-b          site-1
station   st-c          site-2
bridge    central-bridge-1
"""
SITE_OF = {"st-a": "site-1", "st-b": "site-1", "st-c": "site-2"}
PINS = {"DG0001": "1234", "DG0002": "2468", "DG0005": "5555"}  # central/sample.py


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("creds")
    (base / "roles").write_text(ROLES)
    subprocess.run([str(ROOT / "deploy" / "mosquitto" / "make-credentials"),
                    str(base / "roles"), str(base / "out")], check=True, capture_output=True)
    return base / "out"


@pytest.fixture(scope="module")
def central(creds: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[Broker, str]]:
    work = tmp_path_factory.mktemp("central")
    broker = Broker(work / "broker", secure=creds).start()
    db = f"sqlite:///{work / 'central.db'}"
    proc = CentralProcess(broker.plain_address, db, pin="always", log=work / "central.log")
    proc.args += ["--pin-site", "site-2=never", "--pin-category", "child=never",
                  "--password-file", str(creds / "secrets" / "central-bridge-1.pass")]
    try:
        proc.start()
        yield broker, db
    finally:
        proc.stop()
        broker.stop()


class Station:
    """One station's broker login, as a thief holding its password file would use it."""

    def __init__(self, broker: Broker, creds: Path, name: str) -> None:
        self.site, self.name = SITE_OF[name], name
        self.acks: dict[str, messages.AckTx] = {}
        self.seq = 0
        self.link = StationLink(
            self.site, name, broker.address, version="t", next_session=lambda: 1,
            on_ack=lambda a: self.acks.update({a.msg_id: a}),
            security=ClientSecurity(name, (creds / "secrets" / f"{name}.pass").read_text(),
                                    tls=True, ca_file=creds / "ca.crt"))
        self.link.start()
        assert self.link.connected.wait(10), f"{name} did not connect"

    def patron(self, card: str, pin: str | None = None) -> messages.PatronCheckRes:
        res = self.link.request("patron", messages.PatronCheckReq(card_id=card, pin=pin)
                                ).result(15)
        assert isinstance(res, messages.PatronCheckRes)
        return res

    def account(self, ref: str) -> messages.AccountRes:
        res = self.link.request("account", messages.AccountReq(patron_ref=ref)).result(15)
        assert isinstance(res, messages.AccountRes)
        return res

    def lend(self, item: str, ref: str) -> messages.AckTx:
        self.seq += 1
        now = dt.datetime.now(dt.UTC)
        tx = messages.TxLoan(msg_id=uuid7(), seq=self.seq, site=self.site, station=self.name,
                             at=now, item_id=item, patron_ref=ref,
                             deadline=now + dt.timedelta(seconds=30))
        assert self.link.send(topics.tx(self.site, self.name, "loan"), messages.encode(tx))
        wait_until(lambda: tx.msg_id in self.acks, 20, "the ack")
        return self.acks[tx.msg_id]

    def close(self) -> None:
        self.link.stop()


Login = Callable[[str], Station]


@pytest.fixture
def station(central: tuple[Broker, str], creds: Path) -> Iterator[Login]:
    """station("st-a"): that station's login, made once per test."""
    broker, _ = central
    made: dict[str, Station] = {}

    def login(name: str) -> Station:
        if name not in made:
            made[name] = Station(broker, creds, name)
        return made[name]

    yield login
    for s in made.values():
        s.close()


def nothing_revealed(res: messages.PatronCheckRes) -> bool:
    return res.patron_ref is None and res.display_name is None and res.loans == 0


def on_loan(db: str) -> dict[str, str]:
    store = CirculationStore(db)
    try:
        return store.on_loan()
    finally:
        store.close()


def test_a_locked_card_is_refused_without_a_pin(station: Login) -> None:
    """Fault: three wrong PINs locked the card, yet a check without a PIN named its reader.
    At st-c the site's rule is `never`: the lock still holds."""
    st = station("st-c")
    tries = [st.patron("DG0002", pin) for pin in ("0000", "0001", "0002")]
    assert [t.reason for t in tries] == ["wrong_pin", "wrong_pin", "pin_locked"]
    bare = st.patron("DG0002")
    assert (bare.ok, bare.reason) == (False, "pin_locked") and bare.pin_locked_until
    assert nothing_revealed(bare)
    assert station("st-a").patron("DG0002").reason == "pin_locked"  # every station
    # the site's `never` for a card with no failures: no PIN, the given name only
    phuc = st.patron("DG0003")
    assert phuc.ok and phuc.display_name == "Phúc"


def test_always_asks_for_the_pin_and_says_nothing_of_the_card(
        station: Login) -> None:
    st = station("st-a")
    for card in ("DG0001", "DG0006", "DG9999"):  # a PIN, none on file, no such card
        res = st.patron(card)
        assert (res.ok, res.reason, res.pin_required) == (False, "pin_required", True), card
        assert nothing_revealed(res), card
    # the category's rule comes before the site's: children need none
    child = st.patron("DG0003")
    assert child.ok and child.patron_ref and child.display_name == "Phúc"


def test_a_reference_from_another_stations_session_lends_nothing(
        station: Login, central: tuple[Broker, str]) -> None:
    _, db = central
    ref = station("st-b").patron("DG0001", PINS["DG0001"]).patron_ref
    assert ref
    ack = station("st-a").lend("39000004", ref)
    assert (ack.ok, ack.reason, ack.due, ack.title) == (False, "no_session", None, None)
    assert "39000004" not in on_loan(db)


def test_another_readers_account_reveals_nothing(station: Login) -> None:
    mai = station("st-b").patron("DG0005", PINS["DG0005"])  # loans, holds and fines
    assert mai.ok and mai.patron_ref
    st = station("st-a")
    assert st.patron("DG0001", PINS["DG0001"]).ok  # a session of its own, for another reader
    acc = st.account(mai.patron_ref)
    assert (acc.ok, acc.reason) == (False, "no_session")
    assert (acc.loans, acc.holds_ready, acc.holds_waiting, acc.fines, acc.fines_total) == (
        [], [], [], [], 0)
    assert station("st-b").account(mai.patron_ref).ok  # the control: where it was opened


def test_the_reader_with_the_pin_borrows_and_is_greeted_by_given_name(
        station: Login, central: tuple[Broker, str]) -> None:
    _, db = central
    st = station("st-a")
    asked = st.patron("DG0005")
    assert asked.reason == "pin_required" and nothing_revealed(asked)
    mai = st.patron("DG0005", PINS["DG0005"])
    assert mai.ok and mai.patron_ref and mai.display_name == "Mai"  # not "Võ Thị Mai"
    ack = st.lend("39000002", mai.patron_ref)
    assert ack.ok and ack.title == "Số đỏ"
    assert on_loan(db)["39000002"] == mai.patron_ref
    acc = st.account(mai.patron_ref)
    assert acc.ok and "39000002" in [ln.item_id for ln in acc.loans]
    assert acc.fines_total == 37_000
