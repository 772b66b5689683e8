"""The demo's simulated books and cards: tags of the sample library, as a pad would hold them."""

from __future__ import annotations

from selfcheck.central.sample import ITEMS, PATRONS
from selfcheck.drivers.tags import iso28560_3
from selfcheck.kiosk.demo_kit import DemoBook, DemoCard

OWNER_ISIL = "VN-DEMO"
STAFF_CARD = "NV0001"
SET_ITEM = "39000008"  # tagged as a set of two parts in the desk scenarios
OTHER_ITEM = "51000001"  # a book of another library, left on our pad
DESK_WHERE = {"vi": "tầng 1, cạnh cửa ra vào", "en": "ground floor, by the entrance"}


def demo_books(desk: bool = False) -> list[DemoBook]:
    """The sample library's books, one tag each. With `desk`, the self-service desk's
    extra cases: the last book as a set of two parts, and a book of another library."""
    books = []
    for n, item in enumerate(ITEMS, start=1):
        uid = bytes.fromhex(f"E0040150{n:08X}")
        if desk and item["item_id"] == SET_ITEM:
            for part in (1, 2):
                memory = iso28560_3.encode(item["item_id"], owner_isil=OWNER_ISIL,
                                           parts_in_item=2, part_number=part)
                books.append(DemoBook(bytes.fromhex(f"E00401A0{n:06X}{part:02X}"),
                                      item["item_id"], f"{item['title']} ({part}/2)", memory,
                                      part))
            continue
        memory = iso28560_3.encode(item["item_id"], owner_isil=OWNER_ISIL)
        books.append(DemoBook(uid, item["item_id"], item["title"], memory))
    if desk:
        books.append(DemoBook(bytes.fromhex("E0040199000000A1"), OTHER_ITEM,
                              "Lão Hạc (VN-HN)", iso28560_3.encode(OTHER_ITEM,
                                                                  owner_isil="VN-HN")))
    return books


def demo_cards(desk: bool = False) -> list[DemoCard]:
    cards = [DemoCard(p["card_id"], p["name"]) for p in PATRONS]
    if desk:
        cards.append(DemoCard(STAFF_CARD, "Thủ thư"))
    return cards
