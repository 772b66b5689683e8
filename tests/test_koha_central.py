"""End to end: `selfcheck central --ils koha+http://... --ils-circulation sip2://...` as a
process behind a real Mosquitto; a station's link asks for the patron and the account and
sends a loan and a return. The loan goes to Koha over REST, the return over SIP2, to one
library (the stand-in and the SIP2 server share it)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from selfcheck.lab.broker import Broker
from selfcheck.lab.stack import CentralProcess
from selfcheck.lab.standins.koha_standin import koha_running
from selfcheck.lab.standins.sip2_server import running
from selfcheck.mqtt import messages, topics
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.station_link import StationLink
from tests.conftest import wait_until
from tests.test_koha_backend import extra, library

SITE, STATION = "tv-tinh", "st-k"


def test_central_on_koha_and_sip2(tmp_path: Path, broker: Broker) -> None:
    lib = library()
    acks: dict[str, messages.AckTx] = {}
    with running(lib) as (_server, proxy), koha_running(lib, extra()) as koha:
        central = CentralProcess(broker.address, f"sqlite:///{tmp_path / 'central.db'}",
                                 sample=False, log=tmp_path / "central.log")
        files = {"koha": koha.x.password, "sip2": "secret"}
        for name, text in files.items():  # secrets in files, never in argv
            (tmp_path / name).write_text(text + "\n")
            (tmp_path / name).chmod(0o600)
        central.args += [
            "--ils", f"koha+http://{koha.x.user}@127.0.0.1:{koha.port}?timeout=2"
            "&branches=tv-tinh:TVTINH",
            "--ils-secret-file", str(tmp_path / "koha"),
            "--ils-circulation", f"sip2://sc@127.0.0.1:{proxy.port}"
            "?institution=tv-test&location=tang-1",
            "--ils-password-file", str(tmp_path / "sip2")]
        central.start()
        link = StationLink(SITE, STATION, broker.address, version="t",
                           next_session=lambda: 1, on_ack=lambda a: acks.update({a.msg_id: a}))
        link.start()
        try:
            assert link.connected.wait(10)
            check = link.request("patron", messages.PatronCheckReq(card_id="DG0001",
                                                                   pin="2468")).result(15)
            assert isinstance(check, messages.PatronCheckRes) and check.ok
            assert check.display_name == "An" and check.patron_ref
            now = dt.datetime.now(dt.UTC)
            lend = messages.TxLoan(msg_id=uuid7(), seq=1, site=SITE, station=STATION, at=now,
                                   item_id="39000001", patron_ref=check.patron_ref,
                                   deadline=now + dt.timedelta(seconds=30))
            back = messages.TxReturn(msg_id=uuid7(), seq=2, site=SITE, station=STATION,
                                     at=now, item_id="39000003")
            lib.items["39000003"].charged_to = "DG0001"
            lib.items["39000003"].due = dt.date.today()
            for tx, kind in ((lend, "loan"), (back, "return")):
                assert link.send(topics.tx(SITE, STATION, kind), messages.encode(tx))
            wait_until(lambda: len(acks) == 2, 20, "both acks")
            assert acks[lend.msg_id].ok and acks[lend.msg_id].title == "Truyện Kiều"
            assert acks[back.msg_id].ok and acks[back.msg_id].resensitize
            assert lib.log == [("11", "39000001"), ("09", "39000003")]
            assert koha.count("POST", "/checkouts") == 1  # the loan went over REST
            acc = link.request("account", messages.AccountReq(patron_ref=check.patron_ref)
                               ).result(15)
            assert isinstance(acc, messages.AccountRes) and acc.ok
            assert [ln.item_id for ln in acc.loans] == ["39000001"]
            assert [(w.title, w.position) for w in acc.holds_waiting] == [
                ("Nỗi buồn chiến tranh", 2)]
            assert [f.amount for f in acc.fines] == [15000, 20000]
        finally:
            link.stop()
            central.stop()
        assert koha.violations == []
        assert "DG0001" not in (tmp_path / "central.log").read_text()  # no card numbers
