"""Where a seated reader (a wheelchair user) can reach on a portrait station: controls between
380 and 1,220 mm above the floor (ADA 308.2 and EN 301 549's forward reach), on a panel whose
lower edge is 800 mm up. A floor kiosk's top is higher than that: its controls keep below."""

from __future__ import annotations

PANEL_BOTTOM_MM = 800.0  # the lower edge of a station's panel above the floor
REACH_MM = (380.0, 1220.0)  # the least and greatest height of a control, seated


def height_mm(y_px: float, px_mm_down: float) -> float:
    """How high above the floor a point `y_px` up from the panel's lower edge is."""
    return PANEL_BOTTOM_MM + y_px / px_mm_down


def out_of_reach_px(height_px: float, px_mm_down: float) -> float:
    """How many px at the top of a panel this tall are above a seated reader's reach."""
    top_mm = height_mm(height_px, px_mm_down)
    return max(0.0, (top_mm - REACH_MM[1]) * px_mm_down)
