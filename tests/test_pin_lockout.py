"""Wrong PINs from one station's credentials, over the real broker and `selfcheck central` as a
process: a card waits before it locks, a station trying many cards pauses itself rather than
locking readers out, and staff see it all (`central report`, `central unlock-pin`, the
per-station metrics the alerts read)."""

from __future__ import annotations

import datetime as dt
import socket
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from selfcheck.central.backends.store import CirculationStore
from selfcheck.central.engine import open_engine
from selfcheck.central.fleet import guard
from selfcheck.central.fleet.state import FleetState
from selfcheck.cli import main
from selfcheck.lab.broker import Broker
from selfcheck.lab.stack import CentralProcess
from selfcheck.lab.standins.sip2_server import Library, Patron, running
from selfcheck.mqtt import messages
from selfcheck.mqtt.station_link import StationLink
from tests.conftest import wait_until
from tests.test_sip2_backend import make

SITE = "thu-vien-hn"
PINS = {"DG0001": "1234", "DG0002": "2468", "DG0005": "5555"}  # central/sample.py
CARDS = ("DG0001", "DG0002", "DG0003", "DG0005", "DG0006")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Central:
    def __init__(self, db: str, metrics: str) -> None:
        self.db, self.metrics = db, metrics

    def scrape(self) -> str:
        with urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=10) as r:
            return str(r.read().decode())


@pytest.fixture
def central(broker: Broker, tmp_path: Path) -> Iterator[Central]:
    db = f"sqlite:///{tmp_path / 'central.db'}"
    metrics = f"127.0.0.1:{_free_port()}"
    proc = CentralProcess(broker.address, db, pin="always", log=tmp_path / "central.log")
    proc.args += ["--metrics", metrics]
    try:
        proc.start()
        yield Central(db, metrics)
    finally:
        proc.stop()


Check = Callable[[str, str | None], messages.PatronCheckRes]


@pytest.fixture
def station(broker: Broker) -> Iterator[Callable[[str], Check]]:
    links: dict[str, StationLink] = {}

    def at(name: str) -> Check:
        if name not in links:
            links[name] = StationLink(SITE, name, broker.address, version="t",
                                      next_session=lambda: 1, on_ack=lambda a: None)
            links[name].start()
            assert links[name].connected.wait(10)
        link = links[name]

        def check(card: str, pin: str | None) -> messages.PatronCheckRes:
            res = link.request("patron", messages.PatronCheckReq(card_id=card, pin=pin)
                               ).result(20)
            assert isinstance(res, messages.PatronCheckRes)
            return res
        return check

    yield at
    for link in links.values():
        link.stop()


def _report(db: str, capsys: pytest.CaptureFixture[str], lang: str = "en") -> str:
    assert main(["central", "report", "--db", db, "--lang", lang]) == 0
    return capsys.readouterr().out


def test_one_station_trying_many_cards_pauses_itself_and_locks_no_card(
        central: Central, station: Callable[[str], Check],
        capsys: pytest.CaptureFixture[str]) -> None:
    """Fault: three wrong PINs locked any card, so a stolen station's credentials could lock
    one reader after another. Ten wrong PINs spread over five cards now pause that station;
    no card is locked, and the readers use their cards at the next station."""
    thief = station("st-a")
    answers = [thief(card, "0000") for _ in range(2) for card in CARDS]
    assert {a.reason for a in answers} == {"wrong_pin"}
    paused = thief("DG0001", PINS["DG0001"])  # even the right PIN: the station is paused
    assert (paused.ok, paused.reason, paused.patron_ref) == (False, "pin_paused", None)
    assert paused.pin_locked_until is not None
    assert paused.pin_locked_until - dt.datetime.now(dt.UTC) > dt.timedelta(minutes=10)
    honest = station("st-b")
    for card, pin in PINS.items():  # no reader was locked out
        res = honest(card, pin)
        assert res.ok and res.patron_ref, card
    out = _report(central.db, capsys)
    assert "st-a" in out and "station paused" in out
    assert "1 station(s) gave wrong PINs, 1 paused now" in out
    metrics = central.scrape()
    assert f'selfcheck_central_wrong_pins_total{{site="{SITE}",station="st-a"}} 10.0' in metrics
    assert f'selfcheck_central_pin_paused{{site="{SITE}",station="st-a"}} 1.0' in metrics
    assert _fleet_alerts(central.db) == {(SITE, "st-a"): ["pin_guessing"],
                                         (SITE, "st-b"): []}


def _fleet_alerts(db: str) -> dict[tuple[str, str], list[str]]:
    """The fleet's alerts from the central's database, as its service reads them."""
    fleet = FleetState()
    fleet.get(SITE, "st-b")  # a station the fleet knows of, with nothing against it
    engine = open_engine(db)
    try:
        now = dt.datetime.now(dt.UTC).timestamp()
        held = guard.signals(engine, now)
    finally:
        engine.dispose()
    assert held is not None
    guard.apply(fleet, held, now)
    return {key: rec.alerts(now) for key, rec in fleet.stations.items()}


def test_a_card_waits_a_growing_while_before_it_locks(
        central: Central, station: Callable[[str], Check],
        capsys: pytest.CaptureFixture[str]) -> None:
    """Fault: the third wrong PIN locked the card for a quarter of an hour. Now it waits a
    minute, and the next wrong PIN after the wait doubles it; staff see the card waiting and
    may lift it, which is logged with their name."""
    st = station("st-c")
    tries = [st("DG0002", pin) for pin in ("0000", "0001", "0002")]
    assert [t.reason for t in tries] == ["wrong_pin", "wrong_pin", "pin_locked"]
    until = tries[-1].pin_locked_until
    assert until is not None
    wait = until - dt.datetime.now(dt.UTC)
    assert dt.timedelta(seconds=20) < wait <= dt.timedelta(minutes=1)
    assert st("DG0002", PINS["DG0002"]).reason == "pin_locked"  # the wait holds
    store = CirculationStore(central.db)
    try:
        ref = store.ref_of("DG0002")
    finally:
        store.close()
    out = _report(central.db, capsys)
    assert ref in out and "waiting" in out and "card waits" in out
    assert main(["central", "unlock-pin", "--db", central.db, "--ref", ref, "--by", "thu-thu",
                 "--lang", "en"]) == 0
    assert "lifted" in capsys.readouterr().out
    assert st("DG0002", PINS["DG0002"]).ok  # at once, not after the wait
    vi = _report(central.db, capsys, "vi")
    assert "thẻ được mở khóa" in vi and "thu-thu" in vi
    assert main(["central", "unlock-pin", "--db", central.db, "--ref", "p-nobody"]) == 1
    wait_until(lambda: 'station="st-c"} 3.0' in central.scrape(), 10, "st-c's count")


def test_the_station_budget_stands_in_front_of_the_library_system(tmp_path: Path) -> None:
    """Over SIP2 the library system checks the PIN (and may lock cards itself): a station over
    its wrong-PIN budget is refused before the library system is asked at all."""
    cards = {f"DG10{n:02d}": f"{n:04d}" for n in range(1, 6)}
    lib = Library(patrons={c: Patron(f"Bạn đọc {c}", pin=p) for c, p in cards.items()})
    with running(lib) as (_server, proxy):
        backend = make(tmp_path, proxy)
        try:
            wrong = [backend.check_patron(c, pin="9999", site=SITE, station="st-a")
                     for _ in range(2) for c in cards]
            assert {w.reason for w in wrong} == {"wrong_pin"}
            asked = len(lib.languages)
            paused = backend.check_patron("DG1001", pin=cards["DG1001"], site=SITE,
                                          station="st-a")
            assert (paused.reason, paused.patron_ref) == ("pin_paused", None)
            assert len(lib.languages) == asked  # the library system never saw it
            assert backend.check_patron("DG1001", pin=cards["DG1001"], site=SITE,
                                        station="st-b").ok
        finally:
            backend.close()


def test_a_library_can_set_the_station_budget_from_the_command_line(
        broker: Broker, station: Callable[[str], Check], tmp_path: Path) -> None:
    """`--pin-station-budget N`: a busy desk of children mistyping may need more than ten,
    and 0 turns the pause off (each card still slows and locks on its own count)."""
    db = f"sqlite:///{tmp_path / 'central.db'}"
    proc = CentralProcess(broker.address, db, pin="always", log=tmp_path / "central.log")
    proc.args += ["--pin-station-budget", "12"]
    with proc:
        desk = station("st-a")
        answers = [desk(card, "0000") for _ in range(2) for card in CARDS]  # 10 wrong
        answers.append(desk("DG0001", "0000"))  # the 11th
        assert "pin_paused" not in {a.reason for a in answers}
        assert desk("DG0005", PINS["DG0005"]).ok  # under 12: not paused
        answers = [desk("DG0002", "0000"), desk("DG0003", "0000")]  # the 12th pauses it
        assert desk("DG0005", PINS["DG0005"]).reason == "pin_paused"


def test_a_station_pause_doubles_up_to_four_hours(tmp_path: Path) -> None:
    """Fault: the pause went on doubling to about ten days (15 minutes * 2**10): a station
    that met its budget by mischance was out of PIN checks for days."""
    from selfcheck.central import pin as pins
    from selfcheck.central.ledger import open_db
    from selfcheck.central.pin_guard import PinGuard, station_counts

    engine = open_db(f"sqlite:///{tmp_path / 'central.db'}")
    guard_ = PinGuard(engine)
    none, now = pins.PinState(0, None), dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)
    pauses = []
    try:
        for _ in range(12):  # a station hammering on, each time its pause is over
            for _ in range(10):
                guard_.wrong(SITE, "st-a", None, none, none, now, pins.PinPolicy())
            until = station_counts(engine)[0]["paused_until"].replace(tzinfo=dt.UTC)
            pauses.append((until - now) // dt.timedelta(minutes=1))
            now = until
    finally:
        engine.dispose()
    assert pauses == [15, 30, 60, 120] + [240] * 8
