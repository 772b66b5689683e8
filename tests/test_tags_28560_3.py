"""ISO 28560-3 codec: published vectors, variants, optional blocks, round trips, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfcheck.drivers.tags import decode_tag, fallback, iso28560_2, iso28560_3
from selfcheck.drivers.tags.model import TagDecodeError

# GallusMax/libdanrfid, src/test/java/org/rfid/libdanrfid/DDMDataTest.java and CRCTest.java:
# a Danish data model tag for item "11223344", owner DE-705, CRC 0x3E51.
DDM_VECTOR = bytes.fromhex("11010131313232333334340000000000000000513e4445373035000000000000")

# GallusMax/libdanrfid, DM11DataTest.java: Bibliotheca "DM11" tags with a bit-packed 8-digit
# barcode and a CRC libdanrfid could not identify. Not the nibble-swapped 28560-3 variant;
# we must refuse them rather than misread them.
DM11_VECTORS = [
    "0B41244D54655D18000000000000BB4CA484FF4F42504401500400000000F555",
    "0B410441100441100000000000000ACDA484FF4F42504401500400000000F555",
    "0B41244D54655D10000000000000E148A484FF4F42504401500400000000F555",
]


def test_libdanrfid_vector_decodes() -> None:
    assert iso28560_3.crc(DDM_VECTOR) == 0x3E51
    info = decode_tag(DDM_VECTOR)
    assert info.model == "28560-3"
    assert info.primary_item_id == "11223344"
    assert (info.type_of_usage, info.parts_in_item, info.part_number) == (1, 1, 1)
    assert (info.country, info.owner_isil, info.variant) == ("DE", "DE-705", None)


def test_libdanrfid_vector_round_trips() -> None:
    encoded = iso28560_3.encode("11223344", owner_isil="DE-705", block_len=32)
    assert encoded == DDM_VECTOR


@pytest.mark.parametrize("hexdata", DM11_VECTORS)
def test_dm11_bit_packed_tags_are_refused(hexdata: str) -> None:
    with pytest.raises(TagDecodeError):
        decode_tag(bytes.fromhex(hexdata))


def test_crc_error_names_the_byte() -> None:
    bad = bytearray(DDM_VECTOR)
    bad[5] ^= 0x01
    with pytest.raises(TagDecodeError) as exc:
        iso28560_3.decode(bytes(bad))
    assert exc.value.offset == 19
    assert "CRC" in exc.value.reason


def test_34_byte_block_crc_covers_bytes_32_33() -> None:
    tag = iso28560_3.encode("X1", owner_isil="VN-HN000000123")  # 11-character ISIL rest
    assert len(tag) == 34
    assert iso28560_3.decode(tag).owner_isil == "VN-HN000000123"
    with pytest.raises(TagDecodeError, match="CRC"):
        iso28560_3.decode(tag[:33] + b"4")


def test_old_signature_still_works() -> None:
    tag = iso28560_3.encode("300123", type_of_usage=2, parts_in_item=2, part_number=1,
                            owner_isil="DK-710100")
    info = decode_tag(tag)
    assert (info.type_of_usage, info.parts_in_item, info.part_number) == (2, 2, 1)


@pytest.mark.parametrize("variant", [
    "nibble-swapped", "swapped-set-info", "block-reversed",
    "nibble-swapped+swapped-set-info", "nibble-swapped+swapped-set-info+block-reversed",
])
def test_variants_are_read_and_reported(variant: str) -> None:
    tag = iso28560_3.encode("B0001", type_of_usage=2, parts_in_item=3, part_number=2,
                            owner_isil="VN-HN0001", variant=variant)
    info = decode_tag(tag)
    assert info.variant == variant
    assert (info.primary_item_id, info.type_of_usage) == ("B0001", 2)
    assert (info.parts_in_item, info.part_number) == (3, 2)


def test_bibliotheca_byte_0_reads_as_not_for_loan() -> None:
    # libdanrfid DDMData.java: BIBLIOTHECA_PRAESENZ = 0x21 (usage 2 in the high nibble)
    tag = iso28560_3.encode("B0001", type_of_usage=2, variant="nibble-swapped")
    assert tag[0] == 0x21


def test_long_item_id_and_title_use_optional_blocks() -> None:
    item = "VN-HN-2024-000000012345"
    tag = iso28560_3.encode(item, owner_isil="VN-HN0001", title="Truyện Kiều")
    assert tag[3:19] == item[:16].encode()
    info = iso28560_3.decode(tag)
    assert (info.primary_item_id, info.title) == (item, "Truyện Kiều")
    # optional blocks after a 32-byte basic block too
    short = iso28560_3.encode(item, block_len=32, title="Kiều")
    assert iso28560_3.decode(short).primary_item_id == item


def test_optional_block_checksum_error_names_the_byte() -> None:
    tag = bytearray(iso28560_3.encode("A1", title="Kim Vân Kiều"))
    tag[40] ^= 0x20
    with pytest.raises(TagDecodeError) as exc:
        iso28560_3.decode(bytes(tag))
    assert exc.value.offset == 34 + 3
    assert "checksum" in exc.value.reason


def test_short_data_and_bad_version() -> None:
    with pytest.raises(TagDecodeError, match="32 bytes"):
        iso28560_3.decode(DDM_VECTOR[:31])
    tag = bytearray(iso28560_3.encode("A1", type_of_usage=3))
    tag[0] = 0x33
    value = iso28560_3.crc(bytes(tag))
    tag[19], tag[20] = value & 0xFF, value >> 8
    with pytest.raises(TagDecodeError) as exc:
        iso28560_3.decode(bytes(tag))
    assert exc.value.offset == 0


_ID = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=40)
_TITLE = st.text(min_size=1, max_size=60).filter(lambda t: "\x00" not in t)
_ISIL = st.builds(lambda c, r: f"{c}-{r}", st.sampled_from(["VN", "DK", "DE"]),
                  st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=9))


@settings(max_examples=200, deadline=None)
@given(item=_ID, usage=st.integers(0, 15), parts=st.integers(0, 255), data=st.data(),
       isil=st.none() | _ISIL, title=st.none() | _TITLE,
       block_len=st.sampled_from([32, 34]))
def test_round_trip(item: str, usage: int, parts: int, data: st.DataObject, isil: str | None,
                    title: str | None, block_len: int) -> None:
    part = data.draw(st.integers(0, parts))
    tag = iso28560_3.encode(item, type_of_usage=usage, parts_in_item=parts, part_number=part,
                            owner_isil=isil, title=title, block_len=block_len)
    info = decode_tag(tag)
    assert info.model == "28560-3"
    assert (info.primary_item_id, info.type_of_usage) == (item, usage)
    assert (info.parts_in_item, info.part_number) == (parts, part)
    assert (info.owner_isil, info.title, info.variant) == (isil, title, None)


_DECODERS = [iso28560_3.decode, iso28560_2.decode, fallback.decode_barcode, decode_tag]


def _no_crash(data: bytes) -> None:
    for decoder in _DECODERS:
        try:
            decoder(data)
        except TagDecodeError:
            pass
    try:
        decode_tag(data, uid=b"\xe0\x04")
    except TagDecodeError:  # pragma: no cover - a uid always decodes
        raise AssertionError("uid fallback failed") from None


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=96))
def test_fuzz_random_bytes(data: bytes) -> None:
    _no_crash(data)


_VALID = [
    DDM_VECTOR,
    iso28560_3.encode("VN-HN-2024-000000012345", title="Truyện Kiều"),
    iso28560_3.encode("B1", variant="nibble-swapped+block-reversed", type_of_usage=2),
    iso28560_2.encode("123456789012", owner_isil="DE-Heu1", parts_in_item=12, part_number=3,
                      shelf_location="QA268.L55", type_of_usage=1, title="Truyện Kiều"),
    fallback.encode_barcode("30012345", 32),
]


@settings(max_examples=1000, deadline=None)
@given(base=st.sampled_from(_VALID), edits=st.lists(
    st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.integers(0, 120))
def test_fuzz_mutated_tags(base: bytes, edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(base)
    for pos, value in edits:
        if data:
            data[pos % len(data)] = value
    _no_crash(bytes(data))
    _no_crash(bytes(data[:cut]))


# The CRC's extent (DESIGN.md says "bytes 0-18 and 21-31 followed by two zero bytes"; the
# public implementations, libdanrfid CRC.DDCRC and THWildau ISO28560_3BasicBlock.TagCRC, take
# 0-18 and 21-33, zero-filling a 32-byte block): the two agree whenever bytes 32-33 are zero.
def test_crc_reference_string_and_extent() -> None:
    from binascii import crc_hqx

    # libdanrfid CRC.java: "RFID tag data model" -> 1AEE, the Danish model's check value
    assert crc_hqx(b"RFID tag data model", 0xFFFF) == 0x1AEE
    block32 = iso28560_3.encode("39000001", owner_isil="VN-HN0001", block_len=32)
    design = crc_hqx(block32[21:32] + b"\x00\x00", crc_hqx(block32[:19], 0xFFFF))
    assert iso28560_3.crc(block32) == design == block32[19] | block32[20] << 8
    # a 34-byte block with an 11-character ISIL rest: bytes 32-33 are in the CRC
    long = iso28560_3.encode("39000001", owner_isil="VN-HN000000123")
    assert long[19] | long[20] << 8 == crc_hqx(long[21:34], crc_hqx(long[:19], 0xFFFF))
    assert iso28560_3.decode(long).variant is None


def test_34_byte_block_with_short_crc_is_accepted_as_variant() -> None:
    from binascii import crc_hqx

    tag = bytearray(iso28560_3.encode("39000001", owner_isil="VN-HN000000123"))
    short = crc_hqx(bytes(tag[21:32]) + b"\x00\x00", crc_hqx(bytes(tag[:19]), 0xFFFF))
    tag[19], tag[20] = short & 0xFF, short >> 8
    info = iso28560_3.decode(bytes(tag) + b"\x00\x00")
    assert info.owner_isil == "VN-HN000000123"
    assert info.variant == "short-crc"
    # a 32-byte block followed by an optional block is not mistaken for one
    with_title = iso28560_3.encode("39000001", owner_isil="VN-HN000012", title="Truyện Kiều",
                                   block_len=32)
    info = iso28560_3.decode(with_title)
    assert info.title == "Truyện Kiều" and info.variant is None


def test_truncated_reads_are_recognised() -> None:
    from selfcheck.drivers.tags import truncated

    plain = iso28560_3.encode("39000001", owner_isil="VN-HN0001")
    assert not truncated(plain + b"\x00\x00")
    titled = iso28560_3.encode("39000001", title="Dế Mèn phiêu lưu ký" * 2)
    assert truncated(titled[:36]) and not truncated(titled)
    two = iso28560_2.encode("39000001", owner_isil="VN-HN0001",
                            title="Cho tôi xin một vé đi tuổi thơ")
    assert len(two) > 36
    assert truncated(two[:36]) and not truncated(two)
    assert not truncated(bytes(36)) and not truncated(b"")
