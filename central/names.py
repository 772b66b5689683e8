"""What of a reader's name leaves the central: the given name only (DESIGN.md, invariant 5).

Vietnamese names put the family name first, so the given name is the last word ("Nguyễn Văn
An" -> "An"). Enough to greet the reader on the screen and on the offline list; too little to
tell a passer-by or a stolen station who holds the card.
"""

from __future__ import annotations

MAX = 64  # characters: OfflineEntry.display_name's limit


def given_name(name: str | None) -> str | None:
    """The last word of `name`, or None when there is none."""
    words = (name or "").split()
    return words[-1][:MAX] if words else None
