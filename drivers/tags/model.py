"""What a decoded library tag says, whatever data model it was written in."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class TagDecodeError(ValueError):
    """Tag data that fits no model. Names the byte offset and the reason."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"byte {offset}: {reason}")
        self.offset = offset
        self.reason = reason


class TagInfo(BaseModel):
    """The library data on a tag. `model` says which data model it came from.

    `type_of_usage` is the main class in every model (1 circulating, 2 not for loan,
    8 patron card, ...); ISO 28560-2 also carries a sub-qualifier in `usage_subtype`.
    `variant` names a known deviation from the standard layout (None: as the standard says).
    """

    model_config = ConfigDict(frozen=True)

    model: str
    primary_item_id: str
    type_of_usage: int | None = None
    parts_in_item: int | None = None
    part_number: int | None = None
    country: str | None = None
    owner_isil: str | None = None
    title: str | None = None
    shelf_location: str | None = None
    variant: str | None = None
    usage_subtype: int | None = None
    uid: str | None = None
