"""Every decoder against its seeds and the checked-in corpus of malformed inputs a fuzzer (or
a hostile station) found, a short fuzz run, and the findings that needed more than a decoder
(slow paths, CLI behaviour)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from selfcheck.central.backends.sip2 import codec
from selfcheck.central.importer import (
    CatalogueError,
    parse_items_csv,
    parse_marc,
    parse_patrons,
    parse_rules,
)
from selfcheck.cli import main
from selfcheck.cli.errors import UserError
from selfcheck.drivers.pad import m810_codec
from selfcheck.kiosk.settings import StationSettings
from selfcheck.lab.fuzz.cmd import run_target
from selfcheck.lab.fuzz.targets import Target, all_targets
from selfcheck.mqtt.connection import BrokerAddress

CORPUS = Path(__file__).parent / "corpus"
TARGETS = {t.name: t for t in all_targets()}
# Decoders whose every corpus file is malformed as a whole: each must be refused. The others
# may also decode one with the bad part left out (a SIP2 hold queue of '²' is no count).
MUST_REFUSE = {"mqtt", "station-config", "tag-28560-2"}


def _corpus() -> list[tuple[str, Path]]:
    return [(d.name, f) for d in sorted(CORPUS.iterdir()) for f in sorted(d.glob("*.bin"))]


def test_every_corpus_folder_names_a_decoder() -> None:
    assert {name for name, _ in _corpus()} <= set(TARGETS)
    assert len(_corpus()) >= 25


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_decode(name: str) -> None:
    target = TARGETS[name]
    for seed in target.seeds:
        try:
            target.run(seed)
        except target.allowed:
            pass  # some seeds are meant for another decoder (tag-28560-2 seeds on -3)


@pytest.mark.parametrize(("name", "path"), _corpus(), ids=lambda v: getattr(v, "stem", v))
def test_corpus_input_gets_the_documented_error(name: str, path: Path) -> None:
    target: Target = TARGETS[name]
    data = path.read_bytes()
    if name not in MUST_REFUSE:
        try:
            target.run(data)
        except target.allowed:
            pass
        return
    with pytest.raises(target.allowed) as info:
        target.run(data)
    assert str(info.value)  # says what is wrong


def test_sip2_unicode_digits_are_not_numbers() -> None:
    from selfcheck.central.backends.sip2 import messages as sm

    def reply(name: str) -> codec.Message:
        return codec.decode((CORPUS / "sip2-reply" / f"{name}.bin").read_bytes(),
                            codec.Profile())

    assert sm.item(reply("item-hold-queue-superscript-two")).hold_queue_length is None
    assert sm.patron(reply("patron-limit-arabic-digit")).charged_limit is None
    assert sm.circulation(reply("due-date-arabic-digits")).due is None
    # in the fixed part: refused by the codec (the fixed part is ASCII) or by the parser
    parse = {"64": sm.patron, "18": sm.item, "66": sm.renew_all_result}
    for name in ("patron-count-superscript", "item-status-superscript",
                 "renew-all-fullwidth-count"):
        with pytest.raises(codec.Sip2ProtocolError):
            msg = reply(name)
            parse[msg.command](msg)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_short_fuzz_run_finds_nothing(name: str) -> None:
    result = run_target(TARGETS[name], 2000, seed=7, seconds=0.5)
    assert result.inputs > 20
    assert not result.findings, [(f.kind, f.where, f.data[:80]) for f in
                                 result.findings.values()]


def test_fuzz_command_reports_inputs_per_second(capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    code = main(["fuzz", "--decoder", "mqtt", "--decoder", "sip2-reply", "--inputs", "300",
                 "--findings", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = {ln.split()[0]: ln.split() for ln in out.splitlines()[1:]}
    assert set(lines) == {"mqtt", "sip2-reply", "total"}
    assert lines["mqtt"][1] == "300" and float(lines["mqtt"][2]) > 0
    assert main(["fuzz", "--decoder", "nope"]) == 2


# -- findings that are more than "an exception escaped"
def test_sip2_checksum_is_exactly_four_hex_digits() -> None:
    good = codec.encode(codec.Message("94", "1"), codec.Profile(), sequence=1)
    assert codec.decode(good, codec.Profile()).command == "94"
    for bad in (b"-9F9", b" 9F9", b"+9F9", b"9f_9"):
        with pytest.raises(codec.Sip2ChecksumError, match="four hex digits"):
            codec.decode(good[:-5] + bad + b"\r", codec.Profile())


def test_3m_decoder_probes_each_position_a_bounded_number_of_times() -> None:
    """A noisy line fed byte by byte (as a serial port delivers it) costs a few probes per
    byte, not a rescan of the buffer per byte."""
    probes = 0

    class Counting(m810_codec.Decoder):
        def _probe(self, buf: bytearray, i: int) -> int:
            nonlocal probes
            probes += 1
            return super()._probe(buf, i)

    noise = (CORPUS / "pad-3m810" / "noise-plausible-starts.bin").read_bytes() * 3
    frame = m810_codec.inventory_response([bytes.fromhex("E004010000001234")]).encode()
    decoder = Counting()
    frames = [f for b in noise + frame for f in decoder.feed(bytes([b]))]
    assert [f.cmd for f in frames] == [0xFE]
    assert probes < 4 * len(noise), probes


def test_csv_import_with_hundreds_of_quotes_does_not_hang(tmp_path: Path) -> None:
    path = tmp_path / "rules.csv"
    path.write_text("category,loan_days,max_loans\n" + '"' * 400 + ",21,5\nADULT,21,5\n")
    done: list[object] = []

    def parse() -> None:
        try:
            done.append(parse_rules(path))
        except CatalogueError as exc:
            done.append(exc)

    worker = threading.Thread(target=parse, daemon=True)
    worker.start()
    worker.join(20)  # csv.Sniffer took minutes here
    assert done, "the import hung"


def test_csv_delimiter_from_the_header(tmp_path: Path) -> None:
    for sep in (",", ";", "\t"):
        path = tmp_path / "rules.csv"
        path.write_text(sep.join(("category", "loan_days", "max_loans")) + "\n"
                        + sep.join(("ADULT", "21", "5")) + "\n")
        parsed = parse_rules(path)
        assert [r["category"] for _, r in parsed.rows] == ["ADULT"], sep


@pytest.mark.parametrize("broker", ["h:0", "h:99999", "h:１８８３", "h:-1", "h:"])
def test_broker_port_out_of_range_is_a_config_error_naming_broker(broker: str) -> None:
    with pytest.raises(ValueError, match="broker"):
        BrokerAddress.parse(broker)
    with pytest.raises(ValidationError) as info:
        StationSettings(broker=broker)
    assert info.value.errors()[0]["loc"] == ("broker",)


def test_config_naming_a_folder_is_an_error(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["station", "--config", str(tmp_path)]) == 2
    got = capsys.readouterr()
    out = got.out + got.err
    assert "not a file" in out and str(tmp_path) in out


def test_long_ca_file_is_a_config_error(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "station.toml"
    config.write_bytes((CORPUS / "station-config" / "long-ca-file.bin").read_bytes())
    assert main(["station", "--config", str(config)]) == 2
    got = capsys.readouterr()
    assert "ca_file" in got.out + got.err


# -- configs and catalogue imports: the shapes in the corpus, refused with where and what
def _through_the_station_command(path: Path) -> None:
    """What `selfcheck station --config PATH` does first: the language, then the settings,
    each failure rendered as the user sees it, in both languages."""
    import argparse

    from selfcheck.cli.station import config_lang, load_or_explain

    config_lang(path)
    args = argparse.Namespace(config=path, broker=None, journal=None, fullscreen=False)
    try:
        load_or_explain(args)
    except UserError as exc:
        for lang in ("vi", "en"):
            assert exc.text(lang).strip(), f"an empty message for {exc.key}"
        raise


def test_every_station_config_corpus_file_is_a_user_error_through_the_command(
        tmp_path: Path) -> None:
    """The station command's own path (the language read first, then the settings), which
    once let tomllib's RecursionError through as a traceback; the fuzz seeds go through it
    too (they are the lab's, below the command)."""
    from selfcheck.lab.fuzz.targets import CONFIG_SEEDS

    files = sorted((CORPUS / "station-config").glob("*.bin"))
    assert files
    for n, data in enumerate([p.read_bytes() for p in files] + list(CONFIG_SEEDS)):
        path = tmp_path / f"{n}.toml"
        path.write_bytes(data)
        if n < len(files):  # the corpus holds only configs that must be refused
            with pytest.raises(UserError):
                _through_the_station_command(path)
            continue
        try:
            _through_the_station_command(path)
        except UserError:
            pass


def _import_csv(path: Path) -> tuple[list[str], list[str]]:
    """The problems the three CSV readers name, and the whole-file refusals."""
    problems: list[str] = []
    refused: list[str] = []
    for parse in (parse_rules, parse_patrons, parse_items_csv):
        try:
            problems += [str(p) for p in parse(path).problems]
        except CatalogueError as exc:
            refused.append(str(exc))
    return problems, refused


@pytest.mark.parametrize("path", sorted((CORPUS / "import-csv").glob("*.bin")),
                         ids=lambda p: p.stem)
def test_import_csv_corpus_is_refused_naming_the_line(path: Path, tmp_path: Path) -> None:
    csv_file = tmp_path / "import.csv"
    csv_file.write_bytes(path.read_bytes())
    problems, refused = _import_csv(csv_file)
    named = problems + [r for r in refused if "no column" not in r]
    assert named, (problems, refused)
    assert all("line 2" in n for n in named), named


@pytest.mark.parametrize("path", sorted((CORPUS / "import-marc").glob("*.bin")),
                         ids=lambda p: p.stem)
def test_import_marc_corpus_is_refused_naming_the_record(path: Path, tmp_path: Path) -> None:
    mrc = tmp_path / "import.mrc"
    mrc.write_bytes(path.read_bytes())
    parsed = parse_marc(mrc)
    assert parsed.rows == []
    assert [(p.where, p.field) for p in parsed.problems] == [("record 1", "directory")]
