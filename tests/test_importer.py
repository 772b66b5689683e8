"""Catalogue import (central/importer.py, `selfcheck central import`) on a real SQLite file and
a real PostgreSQL: Koha-style CSVs with Vietnamese names, MARCXML and binary MARC21 (UTF-8 and
MARC-8) with 952 holdings, loan rules per category, and bad rows that change nothing."""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pymarc
import pytest
from pymarc import Field, Record, Subfield
from sqlalchemy import func, select

from selfcheck.central.backends.store import CirculationStore
from selfcheck.central.importer import CatalogueError, import_files, marc_title, parse_marc
from selfcheck.central.schema import items, patrons
from selfcheck.cli import main
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.messages import TxLoan
from tests.conftest import applied
from tests.dbs import KINDS, fresh_db

NOW = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)

RULES_CSV = "category,loan_days,max_loans\nADULT,21,5\nCHILD,7,2\n"
# Koha's borrowers export: more columns than we use, in Koha's order, with a UTF-8 BOM.
PATRONS_CSV = (
    "\ufeffborrowernumber,cardnumber,surname,firstname,branchcode,categorycode,dateexpiry,"
    "email\n"
    "1,DG1001,Nguyễn,Văn An,TVT,ADULT,2027-12-31,an@example.vn\n"
    "2,DG1002,Trần,Thị Bích Ngọc,TVT,ADULT,,\n"
    "3,DG1003,Lê,Hoàng Phúc,TVT,CHILD,31/05/2027,\n"
)
ITEMS_CSV = (
    "barcode,title,author,itemcallnumber,notforloan,location\n"
    "39100001,Số đỏ,Vũ Trọng Phụng,895.9223 V500T,0,VH\n"
    "39100002,Từ điển Tiếng Việt,Hoàng Phê,495.9223 H407P,1,TC\n"
)


def _field(tag: str, *pairs: str, ind: tuple[str, str] = (" ", " ")) -> Field:
    return Field(tag=tag, indicators=list(ind),  # type: ignore[arg-type]
                 subfields=[Subfield(pairs[i], pairs[i + 1]) for i in range(0, len(pairs), 2)])


def bib(title_a: str, title_b: str | None, author: str | None,
        holdings: list[tuple[str, ...]], utf8: bool = True) -> Record:
    # to_unicode=False keeps pymarc from marking the record UTF-8 when it writes it.
    rec = Record(force_utf8=utf8, to_unicode=utf8)
    rec.leader = pymarc.Leader("00000nam a2200000 a 4500" if utf8
                               else "00000nam  2200000 a 4500")
    rec.add_field(Field(tag="001", data="vn" + uuid7()[:8]))
    if author:
        rec.add_field(_field("100", "a", author, ind=("1", " ")))
    t245 = ["a", title_a] + (["b", title_b] if title_b else [])
    rec.add_field(_field("245", *t245, ind=("1", "0")))
    for h in holdings:
        rec.add_field(_field("952", *h))
    return rec


def records() -> list[Record]:
    return [
        bib("Dế Mèn phiêu lưu ký :", "truyện dài /", "Tô Hoài,",
            [("a", "TVT", "p", "39200001", "o", "895.92234 T450H", "c", "TN", "7", "0"),
             ("a", "TVT", "p", "39200002", "o", "895.92234 T450H", "c", "TN")]),
        bib("Truyện Kiều /", None, "Nguyễn Du",
            [("p", "39200003", "c", "VH"), ("p", "39200004", "7", "1", "c", "KHO")]),
        bib("Tạp chí không cho mượn", None, None, []),  # a bib with no items: a note
    ]


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CirculationStore]:
    with fresh_db(request.param, tmp_path) as url:
        s = CirculationStore(url)
        s.create()
        yield s
        s.close()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def count(store: CirculationStore, table: object) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def item_row(store: CirculationStore, item_id: str) -> dict[str, object]:
    with store.engine.connect() as conn:
        return dict(conn.execute(select(items).where(items.c.item_id == item_id))
                    .mappings().one())


def name_of(store: CirculationStore, card: str) -> str:
    """The full name as stored (a patron check gives the given name only)."""
    with store.engine.connect() as conn:
        return str(conn.execute(select(patrons.c.name).where(patrons.c.card_id == card))
                   .scalar_one())


def test_koha_patrons_rules_and_marcxml_items(store: CirculationStore, tmp_path: Path) -> None:
    xml = tmp_path / "koha.xml"
    writer = pymarc.XMLWriter(xml.open("wb"))
    for rec in records():
        writer.write(rec)
    writer.close()
    report = import_files(store.engine, rules_csv=write(tmp_path, "rules.csv", RULES_CSV),
                          patrons_csv=write(tmp_path, "patrons.csv", PATRONS_CSV),
                          items_file=xml)
    assert report.committed and report.problems == []
    assert report.inserted == {"rules": 2, "patrons": 3, "items": 4}
    assert report.notes == ["koha.xml: record 3: no 952 holdings, nothing to lend"]

    an = store.check_patron("DG1001", NOW.date())
    assert an.ok and an.display_name == "An" and an.max_loans == 5
    assert name_of(store, "DG1001") == "Nguyễn Văn An"
    phuc = store.check_patron("DG1003", NOW.date())
    assert name_of(store, "DG1003") == "Lê Hoàng Phúc" and phuc.max_loans == 2
    with store.engine.connect() as conn:
        expires = dict(conn.execute(select(patrons.c.card_id, patrons.c.expires)).all())
    assert expires == {"DG1001": dt.date(2027, 12, 31), "DG1002": None,
                       "DG1003": dt.date(2027, 5, 31)}

    de_men = item_row(store, "39200001")
    assert de_men["title"] == "Dế Mèn phiêu lưu ký : truyện dài"
    assert de_men["author"] == "Tô Hoài"
    assert (de_men["call_number"], de_men["sort_bin"], de_men["not_for_loan"]) == (
        "895.92234 T450H", "TN", False)
    assert item_row(store, "39200004")["not_for_loan"] is True
    assert item_row(store, "39200003")["title"] == "Truyện Kiều"

    # The imported rules apply: a CHILD borrows for 7 days, an ADULT for 21.
    for card, item, days in (("DG1003", "39200001", 7), ("DG1001", "39200003", 21)):
        ref = store.check_patron(card, NOW.date()).patron_ref
        assert ref
        (ack,) = applied(store, [TxLoan(msg_id=uuid7(), seq=1, site="s", station="st-1", at=NOW,
                                     item_id=item, patron_ref=ref,
                                     deadline=NOW + dt.timedelta(seconds=5))], NOW)
        assert ack.ok and ack.due == NOW.date() + dt.timedelta(days=days), ack


def test_binary_marc_in_utf8_and_marc8(store: CirculationStore, tmp_path: Path) -> None:
    mrc = tmp_path / "koha.mrc"
    utf8 = records()[:2]
    # A MARC-8 record (leader/09 blank), as older systems export: ANSEL diacritics before
    # their letter. pymarc writes leader-blank records as Latin-1, i.e. these bytes as they are.
    marc8 = bib(b"\xa3\xe3\xe2at r\xe1\xbdng ph\xbd\xbcng Nam /".decode("latin-1"), None, None,
                [("p", "39200005", "c", "TN")], utf8=False)
    # A UTF-8 record whose leader says MARC-8 (a misconfigured export): read as UTF-8.
    mislabelled = bib("Số đỏ", None, "Vũ Trọng Phụng", [("p", "39200006")], utf8=True)
    raw = bytearray(mislabelled.as_marc())
    raw[9:10] = b" "
    mrc.write_bytes(b"".join(r.as_marc() for r in utf8) + marc8.as_marc() + bytes(raw))

    report = import_files(store.engine, items_file=mrc)
    assert report.committed, report.lines()
    assert report.inserted == {"items": 6}
    assert report.notes == ["koha.mrc: record 4: leader says MARC-8 but the data is UTF-8; "
                            "read as UTF-8"]
    for item_id, title in (("39200001", "Dế Mèn phiêu lưu ký : truyện dài"),
                           ("39200005", "Đất rừng phương Nam"), ("39200006", "Số đỏ")):
        got = item_row(store, item_id)["title"]
        assert got == title and unicodedata.is_normalized("NFC", str(got))


def test_bad_rows_are_named_and_change_nothing(store: CirculationStore, tmp_path: Path) -> None:
    import_files(store.engine, rules_csv=write(tmp_path, "rules.csv", RULES_CSV))
    bad = write(tmp_path, "bad.csv",
                "cardnumber,surname,firstname,categorycode,dateexpiry\n"
                "DG2001,Phạm,Thu Hằng,ADULT,2027-01-01\n"
                "DG2002,Đỗ,Minh,ADULT,31-12-2027\n"        # line 3: date
                "DG2003,Vũ,Lan,STAFF,\n"                   # line 4: no such rule
                "DG2001,Phạm,Thu Hằng,ADULT,\n"            # line 5: card again
                ",Hồ,Xuân Hương,ADULT,\n"                  # line 6: no card number
                "DG2004,,,ADULT,\n")                       # line 7: no name
    report = import_files(store.engine, patrons_csv=bad)
    assert not report.committed
    assert {(p.where, p.field) for p in report.problems} == {
        ("line 3", "dateexpiry"), ("line 4", "categorycode"), ("line 5", "cardnumber"),
        ("line 6", "cardnumber"), ("line 7", "surname")}
    assert "'31-12-2027' is not a date" in str(report.problems[0])
    assert count(store, patrons) == 0
    assert report.lines()[-1].startswith("nothing imported: 5 bad row(s)")

    skipped = import_files(store.engine, patrons_csv=bad, skip_bad=True)
    assert skipped.committed and len(skipped.problems) == 5
    assert skipped.inserted == {"patrons": 1}
    assert name_of(store, "DG2001") == "Phạm Thu Hằng"

    # Items: a MARC holding without a barcode, a location too long for a sort bin.
    mrc = tmp_path / "bad.mrc"
    mrc.write_bytes(bib("Tắt đèn /", None, "Ngô Tất Tố",
                        [("o", "895.9223 NG450T"), ("p", "39300001", "c", "X" * 17)]).as_marc())
    report = import_files(store.engine, items_file=mrc)
    assert [(p.where, p.field) for p in report.problems] == [("record 1", "952$p"),
                                                            ("record 1", "952$c")]
    assert count(store, items) == 0

    with pytest.raises(CatalogueError, match="not a record length"):
        import_files(store.engine, items_file=write(tmp_path, "junk.mrc", "hello world"))
    with pytest.raises(CatalogueError, match="line 1: no column barcode or item_id"):
        import_files(store.engine, items_file=write(tmp_path, "i.csv", "title\nSố đỏ\n"))
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("cardnumber,surname,categorycode\nX1,Lê,ADULT\n".encode("cp1258"))
    with pytest.raises(CatalogueError, match="not UTF-8"):
        import_files(store.engine, patrons_csv=latin1)
    assert count(store, patrons) == 1


def test_a_second_import_updates_and_keeps_patron_references(store: CirculationStore,
                                                             tmp_path: Path) -> None:
    rules_csv = write(tmp_path, "rules.csv", RULES_CSV)
    patrons_csv = write(tmp_path, "patrons.csv", PATRONS_CSV)
    items_csv = write(tmp_path, "items.csv", ITEMS_CSV)
    first = import_files(store.engine, rules_csv=rules_csv, patrons_csv=patrons_csv,
                         items_file=items_csv)
    assert first.inserted == {"rules": 2, "patrons": 3, "items": 2}
    ref = store.check_patron("DG1002").patron_ref
    assert item_row(store, "39100002")["not_for_loan"] is True

    write(tmp_path, "patrons.csv", PATRONS_CSV.replace("Thị Bích Ngọc", "Thị Ngọc")
          + "4,DG1004,Hoàng,Minh Châu,TVT,CHILD,,\n")
    write(tmp_path, "items.csv", ITEMS_CSV.replace("Số đỏ", "Số đỏ (tái bản)"))
    again = import_files(store.engine, patrons_csv=patrons_csv, items_file=items_csv)
    assert again.inserted == {"patrons": 1, "items": 0}
    assert again.updated == {"patrons": 3, "items": 2}
    second = store.check_patron("DG1002")
    assert second.patron_ref == ref and name_of(store, "DG1002") == "Trần Thị Ngọc"
    assert item_row(store, "39100001")["title"] == "Số đỏ (tái bản)"


def test_isbd_punctuation_is_stripped_from_titles() -> None:
    assert marc_title(bib("Truyện Kiều /", None, None, [])) == "Truyện Kiều"
    assert marc_title(bib("Số đỏ :", "tiểu thuyết /", None, [])) == "Số đỏ : tiểu thuyết"
    assert marc_title(bib("Tắt đèn.", None, None, [])) == "Tắt đèn"


def test_parse_marc_reports_an_unreadable_record(tmp_path: Path) -> None:
    good = bib("Truyện Kiều /", None, None, [("p", "1")]).as_marc()
    broken = b"00050nam a2200037 a 4500" + b"x" * 26
    path = tmp_path / "mixed.mrc"
    path.write_bytes(good + broken)
    parsed = parse_marc(path)
    assert [r["item_id"] for _, r in parsed.rows] == ["1"]
    # its directory is 12 bytes of 'x': found before pymarc reads the record
    assert [(p.where, p.field) for p in parsed.problems] == [("record 2", "directory")]


@pytest.mark.parametrize("kind", KINDS)
def test_selfcheck_central_import(kind: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    with fresh_db(kind, tmp_path) as url:
        rules_csv = write(tmp_path, "rules.csv", RULES_CSV)
        patrons_csv = write(tmp_path, "patrons.csv", PATRONS_CSV)
        items_csv = write(tmp_path, "items.csv", ITEMS_CSV)
        code = main(["central", "import", "--db", url, "--rules", str(rules_csv),
                     "--patrons", str(patrons_csv), "--items", str(items_csv)])
        out = capsys.readouterr().out
        assert code == 0, out
        assert "rules: 2 new, 0 updated" in out and "patrons: 3 new" in out
        assert "items: 2 new" in out

        bad = write(tmp_path, "bad.csv", "barcode,title,notforloan\n39100009,Tắt đèn,maybe\n")
        assert main(["central", "import", "--db", url, "--items", str(bad)]) == 1
        out = capsys.readouterr().out
        assert "rejected: bad.csv: line 2: notforloan: 'maybe' is not a number" in out
        assert "nothing imported" in out
        assert main(["central", "import", "--db", url, "--items",
                     str(tmp_path / "missing.xml")]) == 2
        store = CirculationStore(url)
        assert name_of(store, "DG1001") == "Nguyễn Văn An"
        assert count(store, items) == 2
        store.close()


def test_pins_come_with_the_patrons_as_hashes_and_a_file_without_them_keeps_them(
        store: CirculationStore, tmp_path: Path) -> None:
    rules_csv = write(tmp_path, "rules.csv", RULES_CSV)
    with_pins = write(tmp_path, "pins.csv", "cardnumber,surname,firstname,categorycode,pin\n"
                      "DG2001,Nguyễn,Văn An,ADULT,4711\n"
                      "DG2002,Trần,Thị Mai,ADULT,\n"
                      "DG2003,Lê,Phúc,ADULT,12\n")
    report = import_files(store.engine, rules_csv=rules_csv, patrons_csv=with_pins,
                          skip_bad=True)
    assert [(p.where, p.field) for p in report.problems] == [("line 4", "pin")]
    with store.engine.connect() as conn:
        stored = dict(conn.execute(select(patrons.c.card_id, patrons.c.pin_hash)).all())
    assert stored["DG2001"].startswith("scrypt$") and "4711" not in stored["DG2001"]
    assert stored["DG2002"] is None and "DG2003" not in stored
    assert store.check_patron("DG2001", pin="4711").ok
    assert store.check_patron("DG2001", pin="0000").reason == "wrong_pin"

    again = write(tmp_path, "again.csv", "cardnumber,surname,firstname,categorycode\n"
                  "DG2001,Nguyễn,Văn Anh,ADULT\n")
    import_files(store.engine, patrons_csv=again)
    assert store.check_patron("DG2001", pin="4711").ok  # the PIN on file stays
