"""A small sample library with Vietnamese titles and names, for the demo and the tests."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the station's demo reads the data here without loading the store
    from selfcheck.central.backends.store import CirculationStore

RULES: list[dict[str, Any]] = [
    {"category": "adult", "loan_days": 14, "max_loans": 5},
    {"category": "child", "loan_days": 7, "max_loans": 3},
]

PATRONS: list[dict[str, Any]] = [
    {"card_id": "DG0001", "name": "Nguyễn Văn An", "category": "adult"},
    {"card_id": "DG0002", "name": "Trần Thị Bích Ngọc", "category": "adult"},
    {"card_id": "DG0003", "name": "Lê Hoàng Phúc", "category": "child"},
    {"card_id": "DG0004", "name": "Phạm Thu Hằng", "category": "adult", "blocked": True},
    {"card_id": "DG0005", "name": "Võ Thị Mai", "category": "adult"},  # the account demo
    {"card_id": "DG0006", "name": "Hoàng Minh Tuấn", "category": "adult"},
]

# Demo PINs, kept in the store as salted hashes only. DG0003 and DG0006 have none.
PINS: dict[str, str] = {"DG0001": "1234", "DG0002": "2468", "DG0004": "1111",
                        "DG0005": "5555"}
# Their hashes (central/pin.py), made once: hashing is slow on purpose, and every test store,
# demo and benchmark loads the sample afresh.
PIN_HASHES: dict[str, str] = {
    "DG0001": "scrypt$16384$8$1$ef8b8721857c6824ffcd3f85d516964c$"
              "cabd76bbbec9b8abc61ab4e60d19fcf5996871320ecca801e26fbfef9ee8acca",
    "DG0002": "scrypt$16384$8$1$2acb4e7bfacc3e859d948a77ab572c07$"
              "89d094c277a5cfb6e75394a297a8464d02707633afbb81cfa249f1f034a0e6f6",
    "DG0004": "scrypt$16384$8$1$6945f38423c16373f07a9c0e9f628793$"
              "65f087c76e652549373adc611c588dc0a8e86f6c6d6debe88a40594473733dd8",
    "DG0005": "scrypt$16384$8$1$a760219150930ebc34d262377cfff5d3$"
              "bf68cfe2c068e1784499f661bf4cb32ae1f00f165a1da78cb00d11c653121a07",
}

ITEMS: list[dict[str, Any]] = [
    {"item_id": "39000001", "title": "Truyện Kiều", "author": "Nguyễn Du", "sort_bin": "A"},
    {"item_id": "39000002", "title": "Số đỏ", "author": "Vũ Trọng Phụng", "sort_bin": "A"},
    {"item_id": "39000003", "title": "Dế Mèn phiêu lưu ký", "author": "Tô Hoài",
     "sort_bin": "B"},
    {"item_id": "39000004", "title": "Tắt đèn", "author": "Ngô Tất Tố", "sort_bin": "A"},
    {"item_id": "39000005", "title": "Nỗi buồn chiến tranh", "author": "Bảo Ninh",
     "sort_bin": "A"},
    {"item_id": "39000006", "title": "Đất rừng phương Nam", "author": "Đoàn Giỏi",
     "sort_bin": "B"},
    {"item_id": "39000007", "title": "Từ điển Tiếng Việt", "author": "Hoàng Phê",
     "not_for_loan": True, "sort_bin": "R"},
    {"item_id": "39000008", "title": "Cho tôi xin một vé đi tuổi thơ",
     "author": "Nguyễn Nhật Ánh", "sort_bin": "B"},
    # For the holds, account and transit demos (see LOANS, HOLDS below).
    {"item_id": "39000009", "title": "Lão Hạc", "author": "Nam Cao", "sort_bin": "A"},
    {"item_id": "39000010", "title": "Chí Phèo", "author": "Nam Cao", "sort_bin": "A"},
    {"item_id": "39000011", "title": "Vợ nhặt", "author": "Kim Lân", "sort_bin": "A",
     "home_site": "chi-nhanh-2"},
    {"item_id": "39000012", "title": "Bỉ vỏ", "author": "Nguyên Hồng", "sort_bin": "A"},
    {"item_id": "39000013", "title": "Những ngôi sao xa xôi", "author": "Lê Minh Khuê",
     "sort_bin": "B"},
    {"item_id": "39000014", "title": "Chiếc thuyền ngoài xa", "author": "Nguyễn Minh Châu",
     "sort_bin": "B"},
]

# Relative to the day the sample is loaded: (card, item, days since the loan, days to due).
LOANS: list[tuple[str, str, int, int]] = [
    ("DG0005", "39000010", 20, -6),  # overdue, and held for DG0002: not renewable
    ("DG0005", "39000011", 3, 11),  # belongs to chi-nhanh-2: returned here, it goes in transit
    ("DG0006", "39000013", 2, 12),
]

# (card, item, pickup site or None for any, status, days to pickup_by or None), queue order.
HOLDS: list[tuple[str, str, str | None, str, int | None]] = [
    ("DG0002", "39000009", None, "waiting", None),  # on the shelf: DG0001 may not borrow it
    ("DG0002", "39000010", None, "waiting", None),
    ("DG0005", "39000012", None, "ready", 5),  # waiting for DG0005 on the hold shelf
    ("DG0002", "39000013", None, "waiting", None),
    ("DG0005", "39000013", None, "waiting", None),  # second in line
    ("DG0001", "39000014", "chi-nhanh-2", "waiting", None),  # returned here: transit
]

FINES: list[tuple[str, str, int]] = [
    ("DG0005", "Trả sách quá hạn: Chí Phèo", 12_000),
    ("DG0005", "Làm rách bìa sách: Số đỏ", 25_000),
]


def synthetic_items(count: int) -> list[dict[str, Any]]:
    """Extra circulating items for load tests: ids 49000001, 49000002, ..."""
    return [{"item_id": f"49{n:06d}", "title": f"Sách thử nghiệm số {n}", "sort_bin": "C"}
            for n in range(1, count + 1)]


def synthetic_patrons(count: int) -> list[dict[str, Any]]:
    return [{"card_id": f"TN{n:05d}", "name": f"Bạn đọc thử {n}", "category": "adult"}
            for n in range(1, count + 1)]


def load_sample(store: CirculationStore, extra_items: int = 0, extra_patrons: int = 0, *,
                scenarios: bool = False) -> None:
    """Create the tables and fill an empty store with the sample library (patrons get their
    demo PINs). `scenarios` adds the loans, holds and fines the demo scenarios play with
    (dates relative to today); the tests that count loans leave them out."""
    store.create()
    if not store.is_empty():
        return
    store.add_rules(RULES)
    store.add_patrons(PATRONS + synthetic_patrons(extra_patrons))
    store.add_items(ITEMS + synthetic_items(extra_items))
    for card, digest in PIN_HASHES.items():
        store.set_pin_hash(card, digest)
    if scenarios:
        load_scenarios(store)


def load_scenarios(store: CirculationStore) -> None:
    now = dt.datetime.now(dt.UTC)
    today = now.date()
    store.add_loans([{"item_id": item, "patron_ref": store.ref_of(card),
                      "loaned_at": now - dt.timedelta(days=ago),
                      "due": today + dt.timedelta(days=due)} for card, item, ago, due in LOANS])
    store.add_holds([{"item_id": item, "patron_ref": store.ref_of(card), "pickup_site": site,
                      "status": status, "placed_at": now - dt.timedelta(days=30 - n),
                      "pickup_by": None if by is None else today + dt.timedelta(days=by)}
                     for n, (card, item, site, status, by) in enumerate(HOLDS)])
    store.add_fines([{"patron_ref": store.ref_of(card), "description": text, "amount": amount,
                      "created_at": now} for card, text, amount in FINES])
