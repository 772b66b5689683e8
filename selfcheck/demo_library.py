"""The demo's simulated books and cards: tags of the sample library, as a pad would hold them."""

from __future__ import annotations

from central.sample import ITEMS, PATRONS
from drivers.tags import iso28560_3
from kiosk.demo_kit import DemoBook, DemoCard

OWNER_ISIL = "VN-DEMO"


def demo_books() -> list[DemoBook]:
    books = []
    for n, item in enumerate(ITEMS, start=1):
        uid = bytes.fromhex(f"E0040150{n:08X}")
        memory = iso28560_3.encode(item["item_id"], owner_isil=OWNER_ISIL)
        books.append(DemoBook(uid, item["item_id"], item["title"], memory))
    return books


def demo_cards() -> list[DemoCard]:
    return [DemoCard(p["card_id"], p["name"]) for p in PATRONS]
