"""The layout audit: every screen of the station, at a given size, language and theme, checked
for what stops a reader: text cut off, touch targets that overlap, are smaller than 9 mm along
either axis or closer than 2 mm to the next (in mm of the real panel, whose pixels need not be
square), text under 3.5 mm high (the top bar's under 3 mm), text with too little contrast,
controls whose edge (fill or drawn edge) stands out less than 3:1 from around them (WCAG
1.4.11). Also the sample screens the gallery draws.

Needs a Kivy window (kiosk.ui.boot.configure first); runs every screen in one window,
resizing it between sizes."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from selfcheck.drivers.seen import TagUid
from selfcheck.kiosk import core

SIZES = ((800, 480), (1024, 600), (1280, 800), (1920, 1080), (720, 1280), (1080, 1920))
THEMES = ("normal", "large", "contrast")
LANGS = ("vi", "en")
# Labels that may end in "…" when too long: the bar's title. Everything else must fit.
MAY_ELLIPSISE = {"title"}
AA, AA_LARGE = 4.5, 3.0
TOUCH_MM, GAP_MM = 9.0, 2.0
READ_MM, BAR_READ_MM = 3.5, 3.0  # text a reader reads at arm's length; the top bar's
# The sample station's `places` setting: library codes to the names readers know.
PLACES = {"VN-HN-01": "Thư viện Hà Nội", "VN-HN-02": "Thư viện quận Hoàn Kiếm"}


@dataclass(frozen=True)
class Violation:
    screen: str
    widget: str
    size: tuple[int, int]
    lang: str
    theme: str
    why: str

    def __str__(self) -> str:
        w, h = self.size
        return (f"{self.screen} {w}x{h} {self.lang} {self.theme}: {self.widget}: {self.why}")


# -- the sample screens -------------------------------------------------------------------
_DUE = dt.date(2026, 12, 12)
_LONG = ("Lược sử thời gian: từ Vụ Nổ Lớn đến các lỗ đen, "
         "ấn bản minh họa có bổ sung và sửa chữa")


def _line(n: int, **kw: Any) -> core.Line:
    base: dict[str, Any] = dict(uid=f"E0040150{n:08X}", kind="loan", status=core.Status.DONE,
                                item_id=f"3900{n:04d}", msg_id=f"m{n}", title=f"Sách số {n}",
                                due=_DUE, security="done")
    base.update(kw)
    return core.Line(**base)


def sample_views(lang: str) -> list[tuple[str, core.View]]:
    """One View per screen the station shows, with the long and difficult cases in it."""
    s = core.Status
    name = "Khai"  # the central sends the given name only (central/names.py), online or not
    v = core.View(mode=core.Mode.IDLE, lang=lang, online=True, patron_name=None, lines=(),
                  countdown=None, message=None)
    borrowed = (
        _line(1, title="Truyện Kiều"),
        _line(2, title=_LONG),
        _line(3, status=s.REFUSED, reason="not_for_loan", title="Từ điển Việt - Anh"),
        _line(4, title=None, item_id="39000008"),
        _line(5, status=s.WAITING, title="Số đỏ"),
        _line(6, title="Dế Mèn phiêu lưu ký", screen_message="Sách mới, hạn 7 ngày"),
        _line(7, title="Chí Phèo", security="failed"),
        *(_line(n, title=f"Tuyển tập truyện ngắn {n}") for n in range(8, 13)),
    )
    offline = (_line(41, status=s.OFFLINE, due=None, security="pending", title="Vợ nhặt"),
               _line(42, status=s.OFFLINE, due=None, security="done", title=_LONG))
    returned = (
        _line(21, kind="return", sort_bin="A", due=None, title="Truyện Kiều"),
        _line(22, kind="return", alert="hold", sort_bin="H", due=None, title="Số đỏ"),
        _line(23, kind="return", alert="transit", transit_to="VN-HN-02", due=None,
              title=_LONG),
        _line(24, kind="return", status=s.REFUSED, reason="not_on_loan", due=None,
              title="Tắt đèn"),
    )
    account = core.Account(
        ok=True, fines_total=37000,
        loans=(core.AccountLoan(item_id="39000010", title="Nhật ký trong tù", due=_DUE,
                                overdue=True, renewable=False),
               core.AccountLoan(item_id="39000011", title=_LONG, due=_DUE),
               *(core.AccountLoan(item_id=f"390001{n:02d}", title=f"Giáo trình {n}", due=_DUE)
                 for n in range(1, 6))),
        holds_ready=(core.HoldReady(item_id="39000012", title="Đất rừng phương Nam",
                                    pickup_by=_DUE, pickup_at="VN-HN-01"),),
        holds_waiting=(core.HoldWaiting(title="Nỗi buồn chiến tranh", position=2),),
        fines=(core.Fine(description="Trả sách quá hạn", amount=37000),))
    pending = (core.PendingWrite(TagUid("E004015000000001"), "39000001", "Truyện Kiều", "on_loan"),)
    late = (core.LateRefusal("m9", "39000009", "Vang bóng một thời", "on_loan_to_other"),)
    # the book whose tag could not be unlocked waits on the banner too
    failed = (core.PendingWrite(TagUid(f"E0040150{7:08X}"), "39000007", "Chí Phèo",
                                "on_loan"),)
    session = replace(v, mode=core.Mode.BORROW, patron_name=name, lines=borrowed,
                      countdown=40)
    charge = core.Confirmation("rental_charge", 1250000, "VND", 0)
    asking = dict(status=s.ASKING, reason="needs_confirmation", confirm=charge, security="none")
    return [
        ("idle", v),
        ("idle-refused", replace(v, message="patron_refused", message_arg="patron_blocked")),
        ("idle-pending", replace(v, pending=pending)),
        ("checking", replace(v, mode=core.Mode.CHECKING)),
        ("out-of-service", replace(v, mode=core.Mode.OUT_OF_SERVICE, out_of_service=True,
                                   service_message="Máy bảo trì đến 14:00 / "
                                   "Maintenance until 14:00")),
        ("borrow", replace(session, pending=failed)),
        ("borrow-offline", replace(session, offline_session=True, offline_left=2,
                                   online=False, lines=offline)),
        ("borrow-more-time", replace(session, countdown=15)),
        ("return", replace(v, mode=core.Mode.RETURN, lines=returned, countdown=40)),
        ("pin", replace(v, mode=core.Mode.PIN, pin_error="wrong_pin", pin_tries_left=2,
                        countdown=40)),
        ("pin-more-time", replace(v, mode=core.Mode.PIN, countdown=9)),
        ("account", replace(session, mode=core.Mode.ACCOUNT, account=account)),
        # the longest title, and two more books to answer after it
        ("confirm-loan", replace(session, mode=core.Mode.CONFIRM_LOAN, lines=(
            _line(31, title=_LONG, **asking), _line(32, **asking), _line(33, **asking),
            *borrowed[:2]))),
        ("confirm-loan-more-time", replace(session, mode=core.Mode.CONFIRM_LOAN, countdown=12,
                                           lines=(_line(34, title="Số đỏ", **asking),))),
        ("confirm-count", replace(session, mode=core.Mode.CONFIRM_COUNT, count=4,
                                  count_read=3)),
        ("receipt", replace(session, mode=core.Mode.RECEIPT,
                            receipt_options=("print", "email"))),
        ("email", replace(session, mode=core.Mode.EMAIL, receipt_state="bad_address")),
        ("email-more-time", replace(session, mode=core.Mode.EMAIL, countdown=5)),
        ("summary-refused", replace(session, mode=core.Mode.SUMMARY, countdown=12,
                                    receipt_state="printed")),
        ("summary-return", replace(v, mode=core.Mode.SUMMARY, lines=returned[:2],
                                   countdown=8)),
        ("help", replace(session, mode=core.Mode.HELP, help_reason="button", countdown=170)),
        ("help-called", replace(session, mode=core.Mode.HELP, help_reason="called",
                                countdown=170)),
        ("staff", replace(v, mode=core.Mode.STAFF, pending=pending, exceptions=late,
                          countdown=40)),
        ("return-station", replace(v, mode=core.Mode.RETURN_STATION, lines=returned[:2])),
        ("return-station-transit", replace(v, mode=core.Mode.RETURN_STATION,
                                           lines=returned[:3])),
    ]


# -- colour -------------------------------------------------------------------------------
def _lin(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def luminance(rgb: Iterable[float]) -> float:
    r, g, b = (_lin(c) for c in list(rgb)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(fg: Iterable[float], bg: Iterable[float]) -> float:
    a, b = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def _over(fg: tuple[float, ...], bg: tuple[float, ...]) -> tuple[float, ...]:
    a = fg[3] if len(fg) > 3 else 1.0
    return tuple(fg[i] * a + bg[i] * (1 - a) for i in range(3))


def _canvas_color(widget: Any) -> tuple[float, ...] | None:
    """The colour a widget paints behind itself (canvas.before: Color then Rectangle)."""
    from kivy.graphics import Color, Rectangle

    before = getattr(widget.canvas, "before", None)
    color = None
    found = None
    for instr in (before.children if before is not None else []):
        if isinstance(instr, Color):
            color = tuple(instr.rgba)
        elif isinstance(instr, Rectangle) and color is not None and color[3] > 0:
            found = color
    return found


def background(widget: Any, base: tuple[float, ...] = (1, 1, 1, 1)) -> tuple[float, ...]:
    """What is behind a widget's text: its own button colour, else the nearest painted
    ancestor."""
    from kivy.uix.button import Button

    chain = []
    w = widget
    while w is not None and w is not w.parent:
        chain.append(w)
        w = w.parent
    bg: tuple[float, ...] = base[:3]
    for w in reversed(chain):
        painted = _canvas_color(w)
        if painted is not None:
            bg = _over(painted, bg)
        if isinstance(w, Button) and w.background_normal == "":
            bg = _over(tuple(w.background_color), bg)
    return bg


_COLOR_TAG = re.compile(r"\[color=#?([0-9a-fA-F]{6})")


# -- the checks ---------------------------------------------------------------------------
def _name(widget: Any, ids: dict[int, str]) -> str:
    own = ids.get(id(widget))
    if own:
        return own
    parent = widget.parent
    path = type(widget).__name__
    while parent is not None and parent is not parent.parent:
        pid = ids.get(id(parent))
        if pid:
            return f"{pid}/{path}"
        if type(parent).__name__ in ("ItemLine", "AccountLine", "ExceptionLine"):
            path = f"{type(parent).__name__}/{path}"
        parent = parent.parent
    return path


def _visible(root: Any) -> Iterator[Any]:
    """Widgets drawn on screen: not hidden by opacity 0 or a zero size."""
    if root.opacity <= 0 or root.width <= 0 or root.height <= 0:
        return
    yield root
    for child in root.children:
        yield from _visible(child)


def _rect(widget: Any) -> tuple[float, float, float, float]:
    x, y = widget.to_window(widget.x, widget.y)
    return x, y, x + widget.width, y + widget.height


def _in_scroll(widget: Any) -> Any:
    from kivy.uix.scrollview import ScrollView

    w = widget.parent
    while w is not None and w is not w.parent:
        if isinstance(w, ScrollView):
            return w
        w = w.parent
    return None


def _text_needs(widget: Any) -> tuple[float, float, bool]:
    """The size the widget's whole text needs (at its wrapping width), and whether a one-line
    rendering would be cut with "…"."""
    from kivy.core.text import Label as CoreLabel
    from kivy.core.text.markup import MarkupLabel

    cls = MarkupLabel if widget.markup else CoreLabel
    width = widget.text_size[0]
    opts = dict(text=widget.text, font_size=widget.font_size, bold=widget.bold,
                italic=widget.italic, font_name=widget.font_name, halign=widget.halign,
                padding=widget.padding, line_height=widget.line_height)
    label = cls(text_size=(width, None), **opts)
    label.refresh()
    w, h = label.content_size if hasattr(label, "content_size") else label.texture.size
    cut = False
    if widget.shorten and width:
        one = cls(text_size=(None, None), **opts)
        one.refresh()
        cut = one.content_size[0] > width + 1 or "\n" in widget.text
    return w, h, cut


def audit_tree(roots: Iterable[Any], ids: dict[int, str], screen: str,
               size: tuple[int, int], lang: str, level: str, px_mm: tuple[float, float],
               ppi: float) -> list[Violation]:
    """Each root's widgets must stay inside the root (what spills out is drawn under its
    neighbours); see the module doc for the rest."""
    from kivy.uix.button import Button
    from kivy.uix.label import Label

    out: list[Violation] = []

    def bad(widget: Any, why: str) -> None:
        out.append(Violation(screen, _name(widget, ids), size, lang, level, why))

    widgets = [(w, _rect(root)) for root in roots for w in _visible(root)]
    in_bar = {id(w) for root in roots if ids.get(id(getattr(root, "__self__", root))) == "bar"
              for w in _visible(root)}
    buttons = []
    for w, (bx0, by0, bx1, by1) in widgets:
        x0, y0, x1, y1 = _rect(w)
        scroll = _in_scroll(w)
        if scroll is None and (x0 < bx0 - 1 or y0 < by0 - 1 or x1 > bx1 + 1 or y1 > by1 + 1):
            if (isinstance(w, Label) and w.text) or isinstance(w, Button):
                bad(w, f"outside the screen ({x0:.0f},{y0:.0f})-({x1:.0f},{y1:.0f})")
        if scroll is not None:
            # only the part inside the list's window is seen and touched
            v0, v1 = scroll.to_window(scroll.x, scroll.y), scroll.to_window(scroll.right,
                                                                             scroll.top)
            x0, y0, x1, y1 = max(x0, v0[0]), max(y0, v0[1]), min(x1, v1[0]), min(y1, v1[1])
        if isinstance(w, Button) and not w.disabled and x1 - x0 > 1 and y1 - y0 > 1:
            buttons.append((w, (x0, y0, x1, y1)))
            # the control's boundary: its fill, or the edge drawn over it, against what is
            # around it
            fill, around = background(w), background(w.parent)
            edge = getattr(w, "edge_color", None)
            seen = [fill] + ([_over(tuple(edge), fill)] if edge is not None else [])
            ratio = max(contrast(c, around) for c in seen)
            if ratio < AA_LARGE - 0.005:
                bad(w, f"edge {ratio:.2f}:1 under {AA_LARGE}:1 ({_hex(fill)} on {_hex(around)})")
            mm = (w.width / px_mm[0], w.height / px_mm[1])
            if min(mm) < TOUCH_MM - 0.05:
                bad(w, f"touch target {w.width:.0f}x{w.height:.0f} px, {mm[0]:.1f}x{mm[1]:.1f}"
                       f" mm, under {TOUCH_MM:.0f} mm")
        if not isinstance(w, Label) or not w.text.strip():
            continue
        need_w, need_h, cut = _text_needs(w)
        short = w.text.replace("\n", " ")[:40]
        least = BAR_READ_MM if id(w) in in_bar else READ_MM
        if w.font_size / px_mm[1] < least - 0.05:
            bad(w, f"text {w.font_size:.1f} px, {w.font_size / px_mm[1]:.1f} mm high, under "
                   f"{least} mm: {short!r}")
        if cut and ids.get(id(w)) not in MAY_ELLIPSISE:
            bad(w, f"text ellipsised: {short!r}")
        elif w.text_size[0] is None and need_w > w.width + 1:
            bad(w, f"text {need_w:.0f} px wide in {w.width:.0f} px: {short!r}")
        if not w.shorten and need_h > w.height + 1:
            bad(w, f"text {need_h:.0f} px high in {w.height:.0f} px: {short!r}")
        # contrast, WCAG: large is 18 pt, or 14 pt bold (CSS px are 1/96 in)
        css_px = w.font_size * 96.0 / ppi
        large = css_px >= 24 or (w.bold and css_px >= 18.66)
        bg = background(w)
        colours = [tuple(w.color)]
        if w.markup:
            colours += [(*tuple(int(h[i:i + 2], 16) / 255 for i in (0, 2, 4)), 1.0)
                        for h in _COLOR_TAG.findall(w.text)]
        for fg in colours:
            ratio = contrast(_over(fg, bg), bg)
            need = AA_LARGE if large else AA
            if ratio < need - 0.005:
                bad(w, f"contrast {ratio:.2f}:1 under {need}:1 "
                       f"(text {_hex(fg)} on {_hex(bg)}): {short!r}")
    for i, (a, ra) in enumerate(buttons):
        for b, rb in buttons[i + 1:]:
            ix = min(ra[2], rb[2]) - max(ra[0], rb[0])
            iy = min(ra[3], rb[3]) - max(ra[1], rb[1])
            if ix > 1 and iy > 1:
                bad(a, f"overlaps {_name(b, ids)} by {ix:.0f}x{iy:.0f} px")
                continue
            # side by side (or one above the other): the space between, in mm on that axis
            gap = (-ix / px_mm[0] if iy > 1 else -iy / px_mm[1] if ix > 1 else None)
            if gap is not None and gap < GAP_MM - 0.05:
                bad(a, f"{gap:.1f} mm from {_name(b, ids)}, under {GAP_MM:.0f} mm")
    return out


def _hex(rgb: Iterable[float]) -> str:
    return "#" + "".join(f"{round(c * 255):02x}" for c in list(rgb)[:3])


# -- the runner ---------------------------------------------------------------------------
class Harness:
    """The station's screens in the current Kivy window, fed sample views."""

    def __init__(self) -> None:
        from kivy.base import EventLoop
        from kivy.core.window import Window

        from selfcheck.kiosk.ui.screens import StationRoot

        EventLoop.ensure_window()
        self.window = Window
        # A site that says where its desk is: the longest help text the audit can meet.
        self.station = StationRoot(on_button=lambda _b: None, desk_where={
            "vi": "tầng 1, cạnh cửa ra vào, bên trái quầy gửi đồ",
            "en": "ground floor, by the entrance, left of the cloakroom"},
            places=PLACES, offline_loan_days=14)
        Window.add_widget(self.station)
        # ids hold weak proxies: the names go by the widgets themselves
        self.ids = {id(w.__self__): name for name, w in self.station.ids.items()}

    def settle(self) -> None:
        """Frames until the layout stops moving (every widget where it was a frame ago)."""
        from kivy.clock import Clock
        from kivy.lang import Builder

        # Layout and label textures run on the clock, canvas colours on the Builder's sync:
        # no need to draw frames until a PNG
        last = None
        for _ in range(40):
            Clock.tick()
            Clock.tick_draw()
            Builder.sync()
            now = tuple((round(w.x), round(w.y), round(w.width), round(w.height))
                        for w in self.station.walk(restrict=True))
            if now == last:
                return
            last = now

    def show(self, size: tuple[int, int], lang: str, level: str, view: core.View,
             ppi: float | None = None) -> None:
        from selfcheck.kiosk.ui.theme import panel_ppi, panel_px_mm, theme

        if tuple(self.window.size) != size:
            self.window.size = size
        self.station.size = size
        theme.set_panel(ppi or panel_ppi(size), None if ppi else panel_px_mm(size))
        theme.level = level
        self.station.render(view)
        # the idle screen puts the usual theme back for the next reader: set this one after
        # it, or the large and contrast idle screens would never be drawn or checked
        if theme.level != level:
            theme.level = level
        if view.mode is core.Mode.EMAIL:
            self.station.email = ""
            for ch in "nguyen.thi.minh.khai":
                self.station.type_key(ch)
            self.station.type_key("@gmail.com")
        self.settle()

    def audit(self, screen: str, size: tuple[int, int], lang: str, level: str) -> list[Violation]:
        from selfcheck.kiosk.ui.theme import theme

        st = self.station
        current = st.ids.screens.current_screen
        roots = [st.ids.head, st.ids.bar, current, st.ids.pending_banner]
        if st.ids.more_time_bar.parent is st.ids.main.__self__:  # else inside the screen
            roots.append(st.ids.more_time_bar)
        return audit_tree(roots, self.ids, screen, size, lang, level, theme.px_mm, theme.ppi)


def run(sizes: Iterable[tuple[int, int]] = SIZES, langs: Iterable[str] = LANGS,
        themes: Iterable[str] = THEMES, screens: Iterable[str] | None = None,
        each: Callable[[Harness, str, tuple[int, int], str, str], None] | None = None,
        ) -> tuple[int, list[Violation]]:
    """Audit every sample screen at each size x language x theme; `each` is called after each
    one is drawn (the gallery's screenshots). The number of screens audited, and what
    failed."""
    harness = Harness()
    wanted = set(screens) if screens else None
    found: list[Violation] = []
    count = 0
    for level in themes:
        for size in sizes:
            for lang in langs:
                for name, view in sample_views(lang):
                    if wanted and name not in wanted:
                        continue
                    harness.show(size, lang, level, view)
                    found += harness.audit(name, size, lang, level)
                    count += 1
                    if each is not None:
                        each(harness, name, size, lang, level)
    return count, found
