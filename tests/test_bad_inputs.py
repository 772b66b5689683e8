"""Bad station configs and bad catalogue files through the real command line: each refused with
a message that names the setting, the line or the record, never a traceback, and an import
that is refused changes nothing in the database."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from pymarc import Field, Indicators, Record, Subfield

from tests.conftest import ROOT

SELFCHECK = ROOT / ".venv" / "bin" / "selfcheck"


def selfcheck(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # English messages whatever the machine's locale; the station's journal, if one were
    # ever opened, would land in the test's folder.
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "SDL_VIDEODRIVER": "offscreen"}
    env = {k: v for k, v in env.items() if not k.startswith("SELFCHECK_")}
    return subprocess.run([str(SELFCHECK), *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120, stdin=subprocess.DEVNULL)


def refused(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    out = result.stdout + result.stderr
    assert "Traceback" not in out, out
    assert result.returncode == code, out
    for word in words:
        assert word in out, (word, out)
    return out


# -- the station config
CONFIGS = [
    # tomllib parses nesting recursively: 600 levels ran it out of stack
    ("nested-arrays", 'lang = "en"\nsite = "demo-lib"\nx = ' + "[" * 600 + "]" * 600 + "\n",
     ["line 3", "nested more than"]),
    ("nested-tables", 'lang = "en"\n\n\na = ' + "{b = " * 600 + "1" + "}" * 600 + "\n",
     ["line 4", "nested more than"]),
    ("journal-in-proc", 'lang = "en"\njournal = "/proc/self/station.db"\n',
     ["'journal'", "/proc"]),
    ("journal-in-sys", 'lang = "en"\njournal = "/sys/station.db"\n', ["'journal'", "/sys"]),
    ("broker-host-with-a-space", 'lang = "en"\nbroker = "broker lan:8883"\n',
     ["'broker'", "host 'broker lan'"]),
    ("card-options-for-the-simulated-reader",
     'lang = "en"\ncard_options = {format = "nonsense", x = [1, {y = 2}]}\n',
     ["'card_options'", "'format'", "takes no options"]),
    ("card-options-the-scanner-has-not",
     'lang = "en"\ncard_reader = "barcode-serial"\ncard_url = "/dev/null"\n'
     'card_options = {baudrate = "fast"}\n', ["'card_options'", "baudrate"]),
]


@pytest.mark.parametrize(("text", "words"), [c[1:] for c in CONFIGS], ids=[c[0] for c in CONFIGS])
def test_a_bad_station_config_is_named_not_a_traceback(text: str, words: list[str],
                                                       tmp_path: Path) -> None:
    config = tmp_path / "station.toml"
    config.write_text(text)
    refused(selfcheck("station", "--headless", "--config", str(config), cwd=tmp_path), 2,
            str(config), *words)
    assert not (tmp_path / "var").exists()  # stopped before the station opened anything


def test_the_doctor_names_a_deep_config_too(tmp_path: Path) -> None:
    config = tmp_path / "station.toml"
    config.write_text("x = " + "[" * 600 + "]" * 600 + "\n")
    out = selfcheck("doctor", "--config", str(config), cwd=tmp_path)
    assert "Traceback" not in out.stdout + out.stderr
    assert "line 1" in out.stdout + out.stderr


def test_good_card_options_and_brokers_still_pass(tmp_path: Path) -> None:
    from selfcheck.kiosk.settings import StationSettings

    s = StationSettings(card_reader="nfc", card_url="usb",
                        card_options={"format": "decimal-reversed", "targets": ["212F"]},
                        journal=tmp_path / "j.db", broker="broker.lan:1883",
                        allow_insecure=True)
    assert s.card_options["format"] == "decimal-reversed"
    for broker in ("::1:1883", "127.0.0.1:1883", "localhost:1883", "mqtt_central:1883"):
        assert StationSettings(broker=broker, journal=tmp_path / "j.db",
                               allow_insecure=True).broker == broker


# -- `selfcheck central import`
RULES = "category,loan_days,max_loans\nADULT,21,5\n"


def count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        n: int = conn.execute(f"select count(*) from {table}").fetchone()[0]
        return n


def marc(title: str, barcode: str) -> bytes:
    r = Record(force_utf8=True)
    r.add_field(Field("245", Indicators("1", "0"), [Subfield("a", title)]))
    r.add_field(Field("952", Indicators(" ", " "), [Subfield("p", barcode)]))
    data = bytearray(r.as_marc())
    data[9:10] = b"a"
    return bytes(data)


def broken_directory(at: int, value: bytes) -> bytes:
    data = bytearray(marc("Tắt đèn", "39100001"))
    data[at:at + len(value)] = value
    return bytes(data)


IMPORTS = [
    # (name, option, file name, content, exit code, words)
    ("cell-of-200000-characters", "--items", "items.csv",
     b"barcode,title\n39100001," + b"x" * 200_000 + b"\n", 2, ["items.csv: line 2"]),
    ("400-quotes-on-a-line", "--items", "items.csv",
     b"barcode,title\n39100001," + b'"' * 400 + b"\n", 1, ["items.csv: line 2: title", "quote"]),
    ("nul-in-a-patron-name", "--patrons", "patrons.csv",
     b"cardnumber,surname,firstname,categorycode\nDG1,Nguy\x00en,An,ADULT\n", 1,
     ["patrons.csv: line 2: surname", "U+0000"]),
    ("marc-directory-length-past-the-end", "--items", "items.mrc",
     broken_directory(27, b"9999"), 1, ["items.mrc: record 1: directory", "tag 245"]),
    ("marc-directory-offset-past-the-end", "--items", "items.mrc",
     broken_directory(31, b"99999"), 1, ["items.mrc: record 1: directory", "tag 245"]),
    ("marc-directory-not-digits", "--items", "items.mrc",
     broken_directory(24, b"24X0abcd9999"), 1, ["items.mrc: record 1: directory"]),
    ("marc-directory-unterminated", "--items", "items.mrc",
     marc("Tắt đèn", "39100001").replace(b"\x1e", b"0", 1), 1,
     ["items.mrc: record 1: directory"]),
]


@pytest.mark.parametrize(("option", "name", "content", "code", "words"),
                         [c[1:] for c in IMPORTS], ids=[c[0] for c in IMPORTS])
def test_a_bad_catalogue_file_is_named_and_imports_nothing(
        option: str, name: str, content: bytes, code: int, words: list[str],
        tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    url = f"sqlite:///{db}"
    rules = tmp_path / "rules.csv"
    rules.write_text(RULES)
    bad = tmp_path / name
    bad.write_bytes(content)
    refused(selfcheck("central", "import", "--db", url, "--rules", str(rules), option,
                      str(bad), cwd=tmp_path), code, *words)
    # one transaction: the good rules file did not go in either
    assert count(db, "rules") == 0
    assert count(db, "patrons") == 0 and count(db, "items") == 0


def test_the_good_rows_of_a_file_still_import(tmp_path: Path) -> None:
    """The control: the same command with well-formed files imports them."""
    db = tmp_path / "central.db"
    rules = tmp_path / "rules.csv"
    rules.write_text(RULES)
    items_csv = tmp_path / "items.csv"
    items_csv.write_text('barcode,title\n39100001,"Tắt đèn, ""tiểu thuyết"""\n')
    mrc = tmp_path / "items.mrc"
    mrc.write_bytes(marc("Số đỏ", "39100002"))
    for option, path in (("--items", items_csv), ("--items", mrc)):
        result = selfcheck("central", "import", "--db", f"sqlite:///{db}", "--rules",
                           str(rules), option, str(path), cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
    assert count(db, "items") == 2
    with sqlite3.connect(db) as conn:
        titles = sorted(r[0] for r in conn.execute("select title from items"))
    assert titles == ["Số đỏ", 'Tắt đèn, "tiểu thuyết"']
