"""`selfcheck reader scan|simulate`, `selfcheck tag program` and the open_pad factory."""

from __future__ import annotations

import argparse

import pytest

from selfcheck.cli import reader as cli
from selfcheck.drivers.pad import open_pad
from selfcheck.drivers.pad.ascii import AsciiPad
from selfcheck.drivers.pad.feig import FeigPad
from selfcheck.drivers.pad.m810 import M810Pad
from selfcheck.drivers.pad.simulated import SimulatedPad
from selfcheck.drivers.pad.simulators import FeigSimulator, M810Simulator
from selfcheck.drivers.tags import iso28560_3

UID = bytes.fromhex("E004010012345678")
BLANK = bytes.fromhex("E0040100AAAAAAAA")


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    cli.register(sub)
    tag = sub.add_parser("tag").add_subparsers(dest="tag_command", required=True)
    cli.register_tag_program(tag)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_factory_kinds() -> None:
    assert isinstance(open_pad("3m810", "loop://"), M810Pad)
    assert isinstance(open_pad("feig", "loop://"), FeigPad)
    assert isinstance(open_pad("ascii", "loop://"), AsciiPad)
    assert isinstance(open_pad("sim", ""), SimulatedPad)
    with pytest.raises(ValueError):
        open_pad("nope", "")


@pytest.mark.parametrize("sim_cls,kind", [(M810Simulator, "3m810"), (FeigSimulator, "feig")])
def test_scan_once(sim_cls: type, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    with sim_cls(listen="127.0.0.1:0") as sim:
        sim.place(UID, iso28560_3.encode("39000789", owner_isil="VN-HN0001"))
        sim.place(BLANK, bytes(36))
        assert run("reader", "scan", "--type", kind, "--url", sim.url, "--once") == 0
    lines = sorted(capsys.readouterr().out.splitlines())
    assert lines[0].startswith("E004010012345678  item=39000789 ")
    assert "owner=VN-HN0001" in lines[0]
    assert lines[1].startswith("E0040100AAAAAAAA  (does not decode:")


def test_program_writes_tag_and_afi(capsys: pytest.CaptureFixture[str]) -> None:
    with M810Simulator(pty=True) as sim:
        sim.place(BLANK, bytes(36), afi=0x00)
        assert run("tag", "program", "--type", "3m810", "--url", sim.url,
                   "--item-id", "39000999", "--owner-isil", "VN-HN0001", "--afi", "loan") == 0
        tag = sim.tag(BLANK)
        assert tag is not None
        assert iso28560_3.decode(bytes(tag.memory)).primary_item_id == "39000999"
        assert tag.afi == 0xC2
    assert "programmed item=39000999 afi=C2" in capsys.readouterr().out


def test_program_needs_one_tag(capsys: pytest.CaptureFixture[str]) -> None:
    with FeigSimulator(pty=True) as sim:
        sim.place(UID, bytes(36))
        sim.place(BLANK, bytes(36))
        assert run("tag", "program", "--type", "feig", "--url", sim.url,
                   "--item-id", "1") == 1
    assert "exactly one tag" in capsys.readouterr().err


def test_simulate_command_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("reader", "simulate", "--type", "feig", "--pty", "--book", "39000001",
               "--tag", "E004010012345678:00112233:C2", "--seconds", "0.2") == 0
    assert "with 2 tag(s)" in capsys.readouterr().out


def test_one_lock_afi_rule_for_drivers_simulator_and_settings() -> None:
    # The simulated pad and the station's settings refuse 0x28 by the drivers' own rule.
    from selfcheck.drivers.pad.base import LOCK_AFI, PadError, afi_problem

    why = afi_problem(LOCK_AFI)
    assert why is not None and "Lock AFI" in why
    assert afi_problem(0x07) is None and afi_problem(0x100) == "AFI 256 is not a byte"
    pad = SimulatedPad()
    with pytest.raises(PadError, match="Lock AFI"):
        pad.write_afi(b"\xe0" + bytes(7), LOCK_AFI)
