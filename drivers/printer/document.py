"""What the printer and the mailer take: a receipt as styled lines, in one language. The
station builds it (selfcheck.kiosk.receipt); the drivers only lay it out."""

from __future__ import annotations

import textwrap
import unicodedata
from dataclasses import dataclass
from typing import Literal

Style = Literal["title", "text", "bold", "rule", "blank", "center"]


@dataclass(frozen=True)
class ReceiptLine:
    text: str
    style: Style = "text"


@dataclass(frozen=True)
class Receipt:
    lang: str
    subject: str  # for the e-mail
    lines: tuple[ReceiptLine, ...]

    def as_text(self, width: int = 42) -> str:
        """Plain text (UTF-8 e-mail, logs of a demo): rules drawn, long lines wrapped."""
        out: list[str] = []
        for line in self.lines:
            if line.style == "rule":
                out.append("-" * width)
            elif line.style == "blank":
                out.append("")
            elif line.style in ("title", "center"):
                out.extend(w.center(width).rstrip() for w in wrap(line.text, width))
            else:
                out.extend(wrap(line.text, width))
        return "\n".join(out) + "\n"


def wrap(text: str, width: int) -> list[str]:
    """Lines of at most `width` characters (NFC, so a Vietnamese letter counts as one)."""
    return textwrap.wrap(unicodedata.normalize("NFC", text), width) or [""]
