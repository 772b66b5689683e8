"""What the demo's simulated pad and card reader hold: books with tag memory, cards."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DemoBook:
    uid: bytes
    item_id: str
    title: str
    memory: bytes


@dataclass(frozen=True)
class DemoCard:
    card_id: str
    name: str
