"""What the demo's simulated pad and card reader hold: books with tag memory, cards."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DemoBook:
    uid: bytes
    item_id: str
    title: str
    memory: bytes
    part: int = 0  # a part of a multi-part item (1, 2, ...); 0: a single tag

    @property
    def key(self) -> str:
        """The demo panel's name for the tag: the item id, with the part for a set."""
        return f"{self.item_id}/{self.part}" if self.part else self.item_id


@dataclass(frozen=True)
class DemoCard:
    card_id: str
    name: str
