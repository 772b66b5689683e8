"""A small sample library with Vietnamese titles and names, for the demo and the tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the station's demo reads the data here without loading the store
    from central.store import CirculationStore

RULES: list[dict[str, Any]] = [
    {"category": "adult", "loan_days": 14, "max_loans": 5},
    {"category": "child", "loan_days": 7, "max_loans": 3},
]

PATRONS: list[dict[str, Any]] = [
    {"card_id": "DG0001", "name": "Nguyễn Văn An", "category": "adult"},
    {"card_id": "DG0002", "name": "Trần Thị Bích Ngọc", "category": "adult"},
    {"card_id": "DG0003", "name": "Lê Hoàng Phúc", "category": "child"},
    {"card_id": "DG0004", "name": "Phạm Thu Hằng", "category": "adult", "blocked": True},
]

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
]


def synthetic_items(count: int) -> list[dict[str, Any]]:
    """Extra circulating items for load tests: ids 49000001, 49000002, ..."""
    return [{"item_id": f"49{n:06d}", "title": f"Sách thử nghiệm số {n}", "sort_bin": "C"}
            for n in range(1, count + 1)]


def synthetic_patrons(count: int) -> list[dict[str, Any]]:
    return [{"card_id": f"TN{n:05d}", "name": f"Bạn đọc thử {n}", "category": "adult"}
            for n in range(1, count + 1)]


def load_sample(store: CirculationStore, extra_items: int = 0, extra_patrons: int = 0) -> None:
    """Create the tables and fill an empty store with the sample library."""
    store.create()
    if not store.is_empty():
        return
    store.add_rules(RULES)
    store.add_patrons(PATRONS + synthetic_patrons(extra_patrons))
    store.add_items(ITEMS + synthetic_items(extra_items))
