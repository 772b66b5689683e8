"""`selfcheck tag decode|encode`, run as a separate process like staff would run it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from selfcheck import cli as selfcheck_cli

DDM_VECTOR = "11010131313232333334340000000000000000513e4445373035000000000000"  # libdanrfid


def _entry() -> list[str]:
    # The full `selfcheck` entry point once every module in COMMANDS exists; until then the
    # tag commands' own entry point, which builds the same `tag` parser.
    if all(importlib.util.find_spec(name) for name in selfcheck_cli.COMMANDS):
        return [sys.executable, "-m", "selfcheck.cli"]
    return [sys.executable, "-m", "selfcheck.cli.tag"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_entry(), "tag", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_registered_in_selfcheck() -> None:
    assert "selfcheck.cli.tag" in selfcheck_cli.COMMANDS


def test_decode_28560_3_vector() -> None:
    out = run("decode", DDM_VECTOR)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["model"] == "28560-3"
    assert info["primary_item_id"] == "11223344"
    assert (info["parts_in_item"], info["part_number"], info["type_of_usage"]) == (1, 1, 1)
    assert info["owner_isil"] == "DE-705"


def test_encode_then_decode_each_model() -> None:
    for model in ("28560-3", "28560-2"):
        enc = run("encode", "--model", model, "--item-id", "HN-000123", "--owner-isil",
                  "VN-HN0001", "--type-of-usage", "1", "--parts", "2", "--part", "1",
                  "--title", "Truyện Kiều")
        assert enc.returncode == 0, enc.stderr
        dec = run("decode", enc.stdout.strip(), "--model", model)
        assert dec.returncode == 0, dec.stderr
        info = json.loads(dec.stdout)
        assert info["model"] == model
        assert info["primary_item_id"] == "HN-000123"
        assert info["owner_isil"] == "VN-HN0001"
        assert info["title"] == "Truyện Kiều"
        assert (info["parts_in_item"], info["part_number"], info["type_of_usage"]) == (2, 1, 1)


def test_crc_failure_exits_2_and_says_why() -> None:
    bad = DDM_VECTOR[:38] + "52" + DDM_VECTOR[40:]
    out = run("decode", bad, "--model", "28560-3")
    assert out.returncode == 2
    assert "byte 19" in out.stderr and "CRC" in out.stderr
    assert out.stdout == ""


def test_data_fitting_no_model_exits_2() -> None:
    out = run("decode", "ff" * 32)
    assert out.returncode == 2
    assert "fits no tag model" in out.stderr and "byte" in out.stderr


def test_uid_fallback() -> None:
    out = run("decode", "00" * 32, "--uid", "E004010012345678")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"model": "uid", "primary_item_id": "E004010012345678",
                                      "uid": "E004010012345678"}


@pytest.mark.parametrize("args", [("decode", "zz"), ("encode", "--model", "28560-3")])
def test_bad_arguments_exit_2(args: tuple[str, ...]) -> None:
    assert run(*args).returncode == 2


def test_encode_refuses_bad_values() -> None:
    out = run("encode", "--model", "28560-3", "--item-id", "X", "--owner-isil", "VIETNAM")
    assert out.returncode == 2
    assert "owner_isil" in out.stderr
