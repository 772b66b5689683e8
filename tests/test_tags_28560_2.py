"""ISO 28560-2 codec and the ISO/IEC 15962 compaction schemes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfcheck.drivers.tags import compaction as cp
from selfcheck.drivers.tags import decode_tag, iso28560_2
from selfcheck.drivers.tags.model import TagDecodeError

# Vectors from ISO 28560-2 Annex C and D, as printed in its Russian adoption
# GOST R ISO 28560-2-2014 (ajdocs.ru/gsp/38726/36 and /39). The scanned text reads "86" and
# "Об" for the 3rd and 7th shelf-location bytes; the 6-bit code table gives B6 and D6.
ANNEX_D_ITEM = bytes.fromhex("9100051CBE991A14")  # 123456789012, integer, offset byte 0
ANNEX_D_CONTENT = bytes.fromhex("0201D0")  # OIDs 3, 4 and 6 follow
ANNEX_D_SET = bytes.fromhex("140204B3")  # set info "1203", integer compaction
ANNEX_D_SHELF = bytes.fromhex("441CB6E2E335D6")  # "QA268.L55", 6-bit compaction
ANNEX_C_ISIL = ("DE-Heu1", bytes.fromhex("21408E16BF1F"))  # Table C.3


def test_annex_d_elements() -> None:
    tag = iso28560_2.encode("123456789012", owner_isil="DE-Heu1", parts_in_item=12,
                            part_number=3, shelf_location="QA268.L55")
    assert tag.startswith(ANNEX_D_ITEM + ANNEX_D_CONTENT)
    assert ANNEX_D_SET in tag
    assert bytes((0x46, 7)) + ANNEX_D_SHELF in tag
    info = decode_tag(tag)
    assert info.model == "28560-2"
    assert info.primary_item_id == "123456789012"
    assert (info.parts_in_item, info.part_number) == (12, 3)
    assert (info.owner_isil, info.country, info.shelf_location) == ("DE-Heu1", "DE", "QA268.L55")


def test_annex_d_bytes_decode() -> None:
    isil = bytes((0x03, len(ANNEX_C_ISIL[1]))) + ANNEX_C_ISIL[1]
    tag = ANNEX_D_ITEM + ANNEX_D_CONTENT + isil + ANNEX_D_SET + b"\x46\x07" + ANNEX_D_SHELF
    info = iso28560_2.decode(tag + b"\x00")
    assert (info.primary_item_id, info.owner_isil, info.shelf_location) == (
        "123456789012", "DE-Heu1", "QA268.L55")


def test_annex_c_isil_compaction() -> None:
    text, raw = ANNEX_C_ISIL
    assert cp.isil_pack(text) == raw
    assert cp.isil_unpack(raw) == text
    # Annex C example 2 (a long digit run latches into the numeric set)
    assert cp.isil_unpack(cp.isil_pack("CH-000134-1")) == "CH-000134-1"


def test_vietnamese_title_uses_utf8_and_the_oid_extension_byte() -> None:
    tag = iso28560_2.encode("HN-000123", owner_isil="VN-HN0001", type_of_usage=1,
                            title="Truyện Kiều")
    title = "Truyện Kiều".encode()
    # precursor: no offset, compaction 7 (UTF-8), relative OID 15 -> extension byte 17 - 15
    assert bytes((0x7F, 0x02, len(title))) + title in tag
    info = decode_tag(tag)
    assert (info.title, info.type_of_usage, info.usage_subtype) == ("Truyện Kiều", 1, 0)
    assert len(tag) % 4 == 0


@pytest.mark.parametrize(("text", "code"), [
    ("123456789012", cp.INTEGER), ("0012345678", cp.NUMERIC), ("ABCDEFGH", cp.BIT5),
    ("QA268.L55", cp.BIT6), ("abc-123_x", cp.BIT7), ("Ærø", cp.OCTET), ("Kiều", cp.UTF8),
])
def test_each_compaction_scheme(text: str, code: int) -> None:
    got, raw = cp.pack_text(text)
    assert got == code
    assert cp.unpack_text(code, raw) == text
    tag = iso28560_2.encode(text)
    assert (tag[0] >> 4) & 7 == code
    assert iso28560_2.decode(tag).primary_item_id == text


def test_offset_byte_aligns_the_item_id() -> None:
    tag = iso28560_2.encode("A1", owner_isil="VN-HN0001")
    assert tag[0] & 0x80
    pad = tag[1]
    assert (3 + tag[2] + pad) % 4 == 0


def test_ebv8_length() -> None:
    title = "Đ" * 100  # 200 UTF-8 bytes: a two-byte length
    info = iso28560_2.decode(iso28560_2.encode("1", title=title))
    assert info.title == title


@pytest.mark.parametrize(("data", "offset", "words"), [
    (b"\x00" * 8, 0, "no data elements"),
    (bytes.fromhex("0301410000"), 0, "not the primary item id"),
    (bytes.fromhex("1105AB"), 0, "run past the end"),
    (bytes.fromhex("710230C300"), 0, "UTF-8"),
    (bytes.fromhex("110101110102"), 3, "twice"),
    (bytes.fromhex("1101011001"), 3, "relative OID 0"),
    (bytes.fromhex("1101012502000000"), 3, "type of usage"),
])
def test_errors_name_the_byte(data: bytes, offset: int, words: str) -> None:
    with pytest.raises(TagDecodeError) as exc:
        iso28560_2.decode(data)
    assert exc.value.offset == offset
    assert words in exc.value.reason


def test_dsfid_constant() -> None:
    assert iso28560_2.DSFID == 0x06


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_text_compaction_round_trip(text: str) -> None:
    code, raw = cp.pack_text(text)
    assert cp.unpack_text(code, raw) == text


@settings(max_examples=200, deadline=None)
@given(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-:/", max_size=20))
def test_isil_compaction_round_trip(text: str) -> None:
    assert cp.isil_unpack(cp.isil_pack(text)) == text


_TEXT = st.text(min_size=1, max_size=30).filter(lambda t: t.strip() == t)


@settings(max_examples=200, deadline=None)
@given(item=_TEXT, isil=st.none() | st.sampled_from(["VN-HN0001", "VN-000134-1", "DE-Heu1"]),
       usage=st.none() | st.integers(0, 15), sub=st.integers(0, 15),
       parts=st.none() | st.integers(1, 999), data=st.data(),
       shelf=st.none() | _TEXT, title=st.none() | _TEXT)
def test_round_trip(item: str, isil: str | None, usage: int | None, sub: int,
                    parts: int | None, data: st.DataObject, shelf: str | None,
                    title: str | None) -> None:
    part = data.draw(st.integers(0, parts)) if parts else None
    tag = iso28560_2.encode(item, owner_isil=isil, type_of_usage=usage, usage_subtype=sub,
                            parts_in_item=parts, part_number=part, shelf_location=shelf,
                            title=title)
    info = iso28560_2.decode(tag)
    assert info.primary_item_id == item
    assert (info.owner_isil, info.shelf_location, info.title) == (isil, shelf, title)
    assert info.type_of_usage == usage
    assert info.usage_subtype == (sub if usage is not None else None)
    assert (info.parts_in_item, info.part_number) == ((parts, part) if parts else (None, None))
