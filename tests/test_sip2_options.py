"""SIP2 URL options against the real SIP2 server (lab/standins/sip2_server.py): single-byte code
pages, passwords sent exactly as typed, the patron language code, login and check-in locations
apart, and '+' / '#' in the URL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import quote

import pytest

from selfcheck.central.backends.sip2.backend import Sip2Backend
from selfcheck.central.backends.sip2.client import Connection, Sip2Config, Sip2LoginRefused
from selfcheck.central.backends.sip2.codec import Profile
from selfcheck.central.ledger import open_db
from selfcheck.lab.standins.sip2_server import Item, Library, Patron, running
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.messages import TxLoan, TxReturn
from tests.conftest import applied


def url(port: int, user: str = "sc", password: str = "secret", **query: str) -> str:
    params = {"institution": "tv-test", "timeout": "2", "pool": "1", **query}
    return (f"sip2://{user}:{password}@127.0.0.1:{port}?"
            + "&".join(f"{k}={v}" for k, v in params.items()))


def test_cp1258_writes_vietnamese_with_combining_marks() -> None:
    p = Profile("cp1258")
    data = p.encode("Nguyễn Văn Ấn, Truyện Kiều")
    assert data.decode("cp1258") != "Nguyễn Văn Ấn, Truyện Kiều"  # marks apart on the wire
    assert p.decode(data, "AE") == "Nguyễn Văn Ấn, Truyện Kiều"  # and composed again
    assert Profile("cp850").encode("Café Thư-viện") == "Café Thu-vien".encode("cp850")


def test_code_page_server_and_a_password_never_folded(tmp_path: Path) -> None:
    # A cp850 library system whose SIP2 account has a password with ä, '+' and '#'.
    lib = Library(patrons={"DG0001": Patron("Nguyen Van An")}, items={"1": Item("Café Élan")},
                  password="pä+ss#1")
    with running(lib, encoding="cp850") as (server, _proxy):
        secret = quote("pä+ss#1", safe="+")  # '#' must be %23; '+' may stay as it is
        assert "+" in secret and "%23" in secret
        cfg = Sip2Config.parse(url(server.port, password=secret, encoding="CP850",
                                   location="Thư-viện-Café", checkin_location="quầy-trả"))
        assert cfg.password == "pä+ss#1" and cfg.profile.name == "cp850"
        Connection(cfg).close()  # 93 accepted: the password went as typed, in cp850
        backend = Sip2Backend(cfg, open_db(f"sqlite:///{tmp_path / 'c.db'}"))
        try:
            res = backend.check_patron("DG0001")
            assert res.ok and res.patron_ref
            now = dt.datetime.now(dt.UTC)
            (a,) = applied(backend, [TxLoan(msg_id=uuid7(), seq=1, site="s", station="st",
                                         at=now, item_id="1", patron_ref=res.patron_ref,
                                         deadline=now + dt.timedelta(seconds=30))])
            assert a is not None and a.ok and a.title == "Café Élan"  # read back in cp850
            (b,) = applied(backend, [TxReturn(msg_id=uuid7(), seq=2, site="s", station="st",
                                           at=now, item_id="1")])
            assert b is not None and b.ok
        finally:
            backend.close()
    # Login CP and check-in AP apart; what cp850 lacks lost its marks, what it has kept them.
    assert "Thu-vien-Café" in lib.seen and "quay-tra" in lib.seen
    assert lib.seen.index("quay-tra") > lib.seen.index("Thu-vien-Café")
    assert set(lib.languages) == {"000"}  # no SIP2 code for Vietnamese: unknown, not English


def test_folding_the_password_would_have_been_refused() -> None:
    lib = Library(password="pä+ss#1")
    with running(lib, encoding="cp850") as (server, _proxy):
        cfg = Sip2Config.parse(url(server.port, password="pa+ss%231", encoding="cp850"))
        with pytest.raises(Sip2LoginRefused):
            Connection(cfg)


def test_language_and_options() -> None:
    lib = Library(patrons={"DG0001": Patron("An")})
    with running(lib) as (server, _proxy):
        cfg = Sip2Config.parse(url(server.port, language="001", terminal_password="t+1",
                                   keepalive="60", error_detection="0"))
        assert (cfg.language, cfg.terminal_password, cfg.keepalive_s) == ("001", "t+1", 60)
        assert cfg.profile.error_detection is False
        backend = Sip2Backend(cfg, open_db("sqlite://"))
        try:
            assert backend.check_patron("DG0001").ok
        finally:
            backend.close()
    assert lib.languages == ["001"]


def test_passwords_the_encoding_cannot_carry_are_refused() -> None:
    with pytest.raises(ValueError, match="password has characters that encoding ascii"):
        Sip2Config.parse("sip2://sc:m%E1%BA%ADt@h:1?institution=x&encoding=ascii")
    with pytest.raises(ValueError, match="terminal_password"):
        Sip2Config.parse("sip2://h:1?institution=x&encoding=cp850&terminal_password=m%E1%BA%ADt")
    assert Sip2Config.parse("sip2://sc:m%E1%BA%ADt@h:1?institution=x").password == "mật"
