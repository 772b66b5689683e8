"""A Receipt to the ESC/POS bytes of one print job: no I/O, so a job can be checked byte for
byte and sent over any transport.

Vietnamese has 134 accented letters; no single-byte ESC/POS code page holds them all, so a
site picks one of three ways (printer.vietnamese):

- "image" (default): the text is drawn with a TrueType font (DejaVu Sans) and sent as a raster
  bit image (GS v 0), which every ESC/POS printer prints. Correct on any printer, whatever its
  code pages, at the cost of more bytes (about 64 bytes a dot row on 80 mm paper).
- "text-cp1258": ESC t n selects WPC1258 and the text goes as CP1258: base letter plus a
  combining tone mark. Fast and crisp, but n differs by make (Epson 52, clones 94 or 27) and
  many firmwares print the combining mark in a cell of its own ("Truye ̣n"): use it only
  where the site's printer was seen to stack the marks.
- "text-magic": python-escpos's own encoder for the printer's capability profile, which
  switches code pages per character (TCVN-3 on Epson). Depends on the profile being right.
"""

from __future__ import annotations

import textwrap
import unicodedata
from collections.abc import Callable
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from selfcheck.drivers.printer import cp1258
from selfcheck.drivers.printer.config import PrinterConfig, PrinterConfigError
from selfcheck.drivers.printer.document import Receipt, ReceiptLine

ESC, GS = b"\x1b", b"\x1d"
INIT = ESC + b"@"  # also resets the code page to 0, so ESC t comes after it
LF = b"\n"
ALIGN_LEFT, ALIGN_CENTER = ESC + b"a\x00", ESC + b"a\x01"
BOLD_ON, BOLD_OFF = ESC + b"E\x01", ESC + b"E\x00"
TITLE_ON, TITLE_OFF = ESC + b"!\x18", ESC + b"!\x00"  # ESC ! : emphasized + double height
FEED_BEFORE_CUT = ESC + b"d\x05"  # the cutter sits a few lines above the print head
CUT = {"full": GS + b"V\x00", "partial": GS + b"V\x01", "none": b""}
_Encoder = Callable[[str], bytes]
RASTER_BAND = 256  # dot rows per GS v 0: small bands keep every printer's buffer happy

FONT_DIRS = (
    "/usr/share/fonts/truetype/dejavu",  # Debian, Raspberry Pi OS: fonts-dejavu-core
    "/usr/share/fonts/dejavu",
    "/usr/share/fonts/TTF",
)


def codepage_select(n: int) -> bytes:
    return ESC + b"t" + bytes([n])


def render(receipt: Receipt, cfg: PrinterConfig) -> bytes:
    if cfg.vietnamese == "image":
        body = render_image_body(receipt, cfg)
    elif cfg.vietnamese == "text-cp1258":
        body = codepage_select(cfg.codepage) + _text_body(receipt, cfg.columns, cp1258.encode)
    else:
        body = _text_body(receipt, cfg.columns, _magic_encoder(cfg.profile))
    tail = FEED_BEFORE_CUT + CUT[cfg.cut] if cfg.cut != "none" else ESC + b"d\x03"
    return INIT + body + tail


def _text_body(receipt: Receipt, columns: int, encode: _Encoder) -> bytes:
    out = bytearray()
    for line in receipt.lines:
        out += _text_line(line, columns, encode)
    return bytes(out)


def _text_line(line: ReceiptLine, columns: int, encode: _Encoder) -> bytes:
    if line.style == "rule":
        return b"-" * columns + LF
    if line.style == "blank":
        return LF
    text = b"".join(encode(w) + LF for w in _wrap(line.text, columns))
    if line.style == "title":
        return ALIGN_CENTER + TITLE_ON + text + TITLE_OFF + ALIGN_LEFT
    if line.style == "center":
        return ALIGN_CENTER + text + ALIGN_LEFT
    if line.style == "bold":
        return BOLD_ON + text + BOLD_OFF
    return text


def _wrap(text: str, columns: int) -> list[str]:
    return textwrap.wrap(unicodedata.normalize("NFC", text), columns) or [""]


def _magic_encoder(profile: str) -> _Encoder:
    """python-escpos's MagicEncode on a Dummy printer: it emits ESC t switches as needed."""
    from escpos.printer import Dummy

    printer = Dummy(profile=profile)

    def encode(text: str) -> bytes:
        printer.clear()
        printer.text(text)
        return bytes(printer.output)

    return encode


# -- image mode


@cache
def load_fonts(path: str | None, size: int) -> tuple[ImageFont.FreeTypeFont, ...]:
    """(regular, bold, title) fonts; refuses a font that has no Vietnamese letters, since
    it would print boxes."""
    regular = Path(path) if path else _find_font("DejaVuSans.ttf")
    bold = regular.with_name(regular.stem + "-Bold" + regular.suffix)
    bold = bold if bold.exists() else regular
    try:
        fonts = (
            ImageFont.truetype(str(regular), size, layout_engine=ImageFont.Layout.BASIC),
            ImageFont.truetype(str(bold), size, layout_engine=ImageFont.Layout.BASIC),
            ImageFont.truetype(str(bold), size * 3 // 2, layout_engine=ImageFont.Layout.BASIC),
        )
    except OSError as exc:
        raise PrinterConfigError(f"printer.font: cannot load {str(regular)!r}: {exc}") from None
    # A missing glyph draws as the .notdef box, the same as a private-use character.
    if _glyph(fonts[0], "ệ") == _glyph(fonts[0], "\ue000"):
        raise PrinterConfigError(f"printer.font: {str(regular)!r} has no Vietnamese letters")
    return fonts


def _glyph(font: ImageFont.FreeTypeFont, ch: str) -> bytes:
    side = int(font.size * 2)
    img = Image.new("L", (side, side), 0)
    ImageDraw.Draw(img).text((0, 0), ch, font=font, fill=255)
    return img.tobytes()


def _find_font(name: str) -> Path:
    for d in FONT_DIRS:
        if (Path(d) / name).exists():
            return Path(d) / name
    raise PrinterConfigError(
        f"printer.font: not set and {name} not found in {', '.join(FONT_DIRS)} "
        "(install fonts-dejavu-core, or set printer.font to a TTF with Vietnamese letters)"
    )


def render_image(receipt: Receipt, cfg: PrinterConfig) -> Image.Image:
    """The receipt drawn black on white, 1 bit per dot, `paper_width_px` wide."""
    regular, bold, title = load_fonts(cfg.font, cfg.font_size)
    width, margin = cfg.paper_width_px, cfg.font_size // 4
    gap = cfg.font_size // 4
    rows: list[tuple[str, ImageFont.FreeTypeFont, str]] = []  # text, font, style
    for line in receipt.lines:
        if line.style in ("rule", "blank"):
            rows.append(("", regular, line.style))
            continue
        font = {"title": title, "bold": bold}.get(line.style, regular)
        rows += [(w, font, line.style) for w in _wrap_px(line.text, font, width - 2 * margin)]
    heights = [_line_height(f) + gap for _, f, _ in rows]
    img = Image.new("L", (width, sum(heights) + gap), 255)
    draw = ImageDraw.Draw(img)
    y = gap
    for (text, font, style), h in zip(rows, heights, strict=True):
        if style == "rule":
            draw.line([(margin, y + h // 2), (width - margin, y + h // 2)], fill=0, width=2)
        elif text:
            centred = style in ("title", "center")
            x = (width - font.getlength(text)) / 2 if centred else margin
            draw.text((x, y), text, font=font, fill=0)
        y += h
    # A hard threshold, not dithering: crisp strokes and the same bytes on every run.
    return img.point(lambda v: 255 if v >= 128 else 0, mode="1")


def _line_height(font: ImageFont.FreeTypeFont) -> int:
    ascent, descent = font.getmetrics()
    return ascent + descent


def _wrap_px(text: str, font: ImageFont.FreeTypeFont, max_px: int) -> list[str]:
    words, lines, cur = unicodedata.normalize("NFC", text).split(), [], ""
    for word in words:
        trial = f"{cur} {word}" if cur else word
        if cur and font.getlength(trial) > max_px:
            lines.append(cur)
            cur = word
        else:
            cur = trial
    return [*lines, cur] if cur else [""]


def raster(img: Image.Image) -> bytes:
    """GS v 0 commands for a 1-bit image, in bands of RASTER_BAND rows.

    GS v 0 m xL xH yL yH d...: m=0 normal density; x = bytes per row; y = rows; each byte is
    8 dots, most significant bit leftmost, 1 = black. PIL's "1" mode packs the same way
    with 1 = white, hence the inversion.
    """
    from PIL import ImageOps

    bw = ImageOps.invert(img.convert("L")).convert("1", dither=Image.Dither.NONE)
    width_bytes = (bw.width + 7) // 8
    out = bytearray()
    for top in range(0, bw.height, RASTER_BAND):
        band = bw.crop((0, top, width_bytes * 8, min(top + RASTER_BAND, bw.height)))
        out += (GS + b"v0\x00" + width_bytes.to_bytes(2, "little")
                + band.height.to_bytes(2, "little") + band.tobytes())
    return bytes(out)


def render_image_body(receipt: Receipt, cfg: PrinterConfig) -> bytes:
    return ALIGN_LEFT + raster(render_image(receipt, cfg))
