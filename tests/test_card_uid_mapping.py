from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from selfcheck.drivers.card.config import CardConfigError
from selfcheck.drivers.card.uid_mapping import UidFormat, UidMapping, load_uid_mapping, map_uid

UID = bytes.fromhex("04A2B3C4")


@pytest.mark.parametrize(
    ("fmt", "pad", "expected"),
    [
        ("hex", 0, "04A2B3C4"),
        ("hex-reversed", 0, "C4B3A204"),
        ("decimal", 0, "77771716"),  # 0x04A2B3C4
        ("decimal-reversed", 0, "3300106756"),  # 0xC4B3A204, as a Wiegand reader prints it
        ("decimal", 10, "0077771716"),
        ("hex", 12, "000004A2B3C4"),
        ("decimal-reversed", 4, "3300106756"),  # padding never truncates
    ],
)
def test_formats(fmt, pad, expected):
    assert map_uid(UID, load_uid_mapping({"format": fmt, "pad": pad})) == expected


def test_seven_byte_uid_and_leading_zero_bytes():
    uid = bytes.fromhex("0004A1B2C3D4E5")
    assert map_uid(uid, UidMapping()) == "0004A1B2C3D4E5"  # hex keeps every byte
    assert map_uid(uid, UidMapping(format=UidFormat.DECIMAL)) == str(0x04A1B2C3D4E5)


def test_empty_uid_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        map_uid(b"", UidMapping())


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"format": "HEX"}, "format"),
        ({"format": "decimal_reversed"}, "format"),
        ({"pad": -2}, "pad"),
        ({"pad": "wide"}, "pad"),
        ({"padding": 8}, "padding"),  # a typo is not silently ignored
    ],
)
def test_bad_config_names_the_field(data, field):
    with pytest.raises(CardConfigError) as err:
        load_uid_mapping(data)
    assert err.value.field == field
    assert f"{field!r}" in str(err.value)
    assert "card UID mapping" in str(err.value)


@given(st.binary(min_size=1, max_size=10), st.integers(0, 30))
def test_formats_invert(uid, pad):
    hex_text = map_uid(uid, UidMapping(pad=pad))
    assert bytes.fromhex(hex_text[-2 * len(uid):]) == uid
    rev = map_uid(uid, UidMapping(format=UidFormat.HEX_REVERSED))
    assert bytes.fromhex(rev)[::-1] == uid
    big = int(map_uid(uid, UidMapping(format=UidFormat.DECIMAL, pad=pad)))
    little = int(map_uid(uid, UidMapping(format=UidFormat.DECIMAL_REVERSED)))
    assert big.to_bytes(len(uid), "big") == uid
    assert little.to_bytes(len(uid), "little") == uid
    assert len(hex_text) == max(pad, 2 * len(uid))
