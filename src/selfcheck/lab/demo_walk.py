"""The scripted headless scenarios of `selfcheck demo`: the walk (a card, three books
borrowed, the same three returned), refusals, and the self-service desk's stack, multi-part,
pending security write, return station, receipt, PIN, account and offline loans. Driven by
touches on the real widgets; a PNG of every screen they pass. What each must leave behind:
selfcheck/lab/demo_scenarios.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from kivy.core.window import Window
from kivy.uix.widget import Widget

from selfcheck.kiosk import core
from selfcheck.kiosk.ui.app import StationApp
from selfcheck.kiosk.ui.stocktake import TEXTS as TEXTS_STOCKTAKE
from selfcheck.lab.demo_library import DESK_WHERE, OTHER_ITEM, SET_ITEM, STAFF_CARD
from selfcheck.lab.demo_scenarios import (
    ACCOUNT_CARD,
    CALLS_IDLE_S,
    CALLS_IN_RANGE,
    CALLS_RANGE,
    CALLS_STACK,
    OFFLINE_CARD,
    OFFLINE_LOAN,
    OFFLINE_RETURN,
    PIN_CARD,
    PIN_ITEM,
    RS_ITEMS,
    STACK_ITEMS,
    STOCKTAKE_SHELF,
    STOCKTAKE_STACKS,
    WALK_ITEMS,
)
from selfcheck.lab.finger import Finger

WALK_CARD = "DG0001"
CENTRAL: Any = None  # the demo's CentralProcess, set by selfcheck.demo.play


async def press(widget: Widget) -> None:
    """A finger on the widget's centre, after a frame so that the layout is current."""
    await asyncio.sleep(0.1)
    x, y = widget.to_window(*widget.center)
    Finger(x, y).tap()


async def until(check: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class Shooter:
    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.count = 0
        self.files: list[Path] = []

    async def shot(self, name: str) -> None:
        if self.folder is None:
            return
        await asyncio.sleep(0.25)  # let Kivy draw the frame the change asked for
        self.count += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"{self.count:02d}-{name}.png"
        shoot_station(target)
        self.files.append(target)


def shoot_station(target: Path) -> None:
    """A PNG of the station alone, at its own size (the demo panel is not part of it)."""
    from kivy.app import App

    app = App.get_running_app()
    station = getattr(app, "station", None)
    if station is None:
        written = Window.screenshot(name=str(target.with_name("shot.png")))
        Path(written).replace(target)
        return
    station.export_to_png(str(target))


def confirmed(view: Callable[[], core.View], count: int) -> Callable[[], bool]:
    return lambda: sum(ln.status is core.Status.DONE for ln in view().lines) == count


async def finish(app: StationApp, shoot: Shooter | None = None, shot: str | None = None) -> None:
    """Finish, the summary (a PNG of it when named), then Done: back to idle."""
    station, view = app.station, app.runtime.view
    assert station is not None
    await press(station.ids.finish_button)
    await until(lambda: view().mode is core.Mode.SUMMARY, "the summary")
    if shoot is not None and shot:
        await shoot.shot(shot)
    await press(station.ids.done_button)
    await until(lambda: view().mode is core.Mode.IDLE, "idle")


async def walk(app: StationApp, shots: Path | None, lang: str = "vi") -> int:
    stage = await start(app, lang, shots)
    view, demo, station, shoot = stage
    await shoot.shot("idle")

    await sign_in(app, WALK_CARD, lang)
    await shoot.shot("patron")
    await one_by_one(stage, WALK_ITEMS, "loan", "borrowed")
    await press(demo.lift_all)
    await finish(app, shoot, "borrow-summary")

    await to_returns(app, lang)
    await shoot.shot("return")
    await one_by_one(stage, WALK_ITEMS, "return", "returned")
    await press(station.ids.finish_button)
    await until(lambda: view().mode is core.Mode.SUMMARY, "the summary")
    await shoot.shot("return-summary")
    await press(demo.lift_all)
    # Done, as a reader who has read it: left alone the summary lasts 40 s (read, then asked
    # about), which the time-out tests wait for once rather than every walk at every size.
    await press(station.ids.done_button)
    await until(lambda: view().mode is core.Mode.IDLE, "idle after the summary")
    await shoot.shot("idle-again")
    return 0


async def refusals(app: StationApp, shots: Path | None, lang: str = "vi") -> int:
    """A blocked card, then a reference-only book: both refused with their reasons."""
    view, demo, _station, shoot = await start(app, lang, shots)
    await press(demo.card_buttons["DG0004"])
    await until(lambda: view().message == "patron_refused", "the refusal")
    await shoot.shot("blocked-card")
    await sign_in(app, WALK_CARD, lang)
    await press(demo.book_buttons["39000007"])
    await until(lambda: any(ln.status is core.Status.REFUSED for ln in view().lines),
                "the refusal of a reference book")
    await shoot.shot("not-for-loan")
    await press(demo.lift_all)
    await finish(app, shoot, "refusal-summary")
    return 0


class Stage(NamedTuple):
    """What every scenario works with: the station's view, the demo panel, the station
    screen and the screenshot taker."""

    view: Callable[[], core.View]
    demo: Any
    station: Any
    shoot: Shooter


async def start(app: StationApp, lang: str, shots: Path | None = None) -> Stage:
    """Every scenario's prologue: wait for the station to connect, switch to `lang`."""
    rt, demo, station = app.runtime, app.demo, app.station
    assert demo is not None and station is not None
    await until(lambda: rt.view().online, "the station to connect")
    if rt.view().lang != lang:
        await press(station.ids.lang)
    return Stage(rt.view, demo, station, Shooter(shots))


async def one_by_one(stage: Stage, items: tuple[str, ...], what: str, shot: str) -> None:
    """Each book put on the pad in turn, confirmed before the next; then its security write."""
    view = stage.view
    for n, item in enumerate(items, start=1):
        await press(stage.demo.book_buttons[item])
        await until(confirmed(view, n), f"{what} {n} to be confirmed")
        await stage.shoot.shot(f"{shot}-{n}")
    await until(lambda: all(ln.security == "done" for ln in view().lines), "security writes")


async def sign_in(app: StationApp, card: str, lang: str) -> None:
    assert app.demo is not None
    await _enter(app, app.demo.card_buttons[card], core.Mode.BORROW, "the patron screen", lang)


async def to_returns(app: StationApp, lang: str) -> None:
    assert app.station is not None
    await _enter(app, app.station.ids.return_button, core.Mode.RETURN, "the return screen", lang)


async def _enter(app: StationApp, button: Widget, mode: core.Mode, what: str,
                 lang: str) -> None:
    """Press `button`, wait for `mode`; a new session starts in the site's language, so
    switch to `lang` again."""
    assert app.station is not None
    await press(button)
    await until(lambda: app.runtime.view().mode is mode, what)
    if app.runtime.view().lang != lang:
        await press(app.station.ids.lang)


def both(a: Callable[[], bool], b: Callable[[], bool]) -> Callable[[], bool]:
    return lambda: a() and b()


def settled(view: Callable[[], core.View]) -> Callable[[], bool]:
    """Every line has its answer and every security write is done."""
    busy = (core.Status.RECORDING, core.Status.WAITING)
    return lambda: all(ln.status not in busy and ln.security != "pending"
                       for ln in view().lines)


async def stack(app: StationApp, shots: Path | None, lang: str = "vi") -> int:
    """Three books at once, one of another library; the reader says 4, we read 3: the
    mismatch is explained, the missing book is put down, the count then matches."""
    view, demo, station, shoot = await start(app, lang, shots)
    await sign_in(app, "DG0002", lang)
    for key in (*STACK_ITEMS[:2], OTHER_ITEM):
        demo.book_buttons[key].state = "down"  # put down together: one stack
    await until(lambda: len(view().lines) == 3 and settled(view)(), "the stack")
    await shoot.shot("stack")
    await press(station.ids.finish_button)
    await until(lambda: view().mode is core.Mode.CONFIRM_COUNT, "the count question")
    for _ in range(4):
        await press(station.ids.count_plus)
    await shoot.shot("count-4")
    await press(station.ids.count_ok)
    await until(lambda: view().count_read == 3, "the mismatch")
    await shoot.shot("count-mismatch")
    await press(station.ids.count_back)
    await until(lambda: view().mode is core.Mode.BORROW, "back to the pad")
    await press(demo.book_buttons[STACK_ITEMS[2]])
    await until(lambda: len(view().lines) == 4 and settled(view)(), "the fourth book")
    await press(station.ids.finish_button)
    await until(lambda: view().mode is core.Mode.CONFIRM_COUNT, "the count question")
    for _ in range(4):
        await press(station.ids.count_plus)
    await press(station.ids.count_ok)
    await until(lambda: view().mode is core.Mode.SUMMARY, "the summary")
    await shoot.shot("stack-summary")
    await press(demo.lift_all)
    await press(station.ids.done_button)
    await until(lambda: view().mode is core.Mode.IDLE, "idle")
    return 0


async def multipart(app: StationApp, shots: Path | None, lang: str = "vi") -> int:
    """A set of two parts under the site rule 'refuse': part 1 alone waits, with the reason;
    part 2 joins, one loan is made and both tags are secured."""
    view, demo, _station, shoot = await start(app, lang, shots)
    await sign_in(app, "DG0003", lang)
    await press(demo.book_buttons[f"{SET_ITEM}/1"])
    await until(lambda: any(ln.status is core.Status.PARTS for ln in view().lines),
                "part 1 waiting for part 2")
    await shoot.shot("part-missing")
    await press(demo.book_buttons[f"{SET_ITEM}/2"])
    await until(lambda: confirmed(view, 1)() and settled(view)(), "the set lent and secured")
    await shoot.shot("set-complete")
    pad = app.runtime.watcher.pad
    afis = {pad.afi_of(b.uid) for b in demo._books  # type: ignore[attr-defined]
            if b.item_id == SET_ITEM}
    if afis != {app.runtime.config.afi.on_loan}:
        print(f"demo: the set's tags have AFI {afis}, expected on loan")
        return 1
    await press(demo.lift_all)
    await finish(app, shoot, "multipart-summary")
    return 0


async def security_pending(app: StationApp, shots: Path | None, lang: str = "vi") -> int:
    """Two loans whose security write fails (lifted too early): both kept as pending writes
    and shown after the session. The first book is put back and written; staff skip the
    second with a staff card."""
    view, demo, station, shoot = await start(app, lang, shots)
    pad = app.runtime.watcher.pad
    books = {b.item_id: b for b in demo._books}
    first, second = books["39000001"], books["39000002"]
    pad.failing_writes |= {first.uid, second.uid}  # type: ignore[attr-defined]
    await sign_in(app, WALK_CARD, lang)
    await press(demo.book_buttons[first.item_id])
    await press(demo.book_buttons[second.item_id])
    await until(lambda: len(view().pending) == 2, "two pending security writes")
    await shoot.shot("write-failed")
    await press(demo.lift_all)
    await finish(app)
    await shoot.shot("idle-pending")
    pad.failing_writes.clear()  # type: ignore[attr-defined]
    await press(demo.book_buttons[first.item_id])  # put back: written now
    await until(lambda: len(view().pending) == 1, "the first write to be done")
    await press(demo.lift_all)
    await press(demo.card_buttons[STAFF_CARD])
    await until(lambda: view().mode is core.Mode.STAFF, "staff mode")
    await shoot.shot("staff-exceptions")
    line = next(iter(station.ids.staff_lines.children))
    await press(line.children[0])  # the line's skip button
    await until(lambda: not view().pending, "the skip")
    await shoot.shot("staff-skipped")
    await press(station.ids.staff_exit)
    await until(lambda: view().mode is core.Mode.IDLE, "idle")
    await asyncio.sleep(0.5)  # let the journal writes land
    return 0


async def return_station(app: StationApp, shots: Path | None, lang: str = "vi") -> int:
    """A return station: no card; books come one after another, each shows its title, its
    sort bin and any hold or transit alert."""
    view, demo, _, shoot = await start(app, lang, shots)
    assert view().mode is core.Mode.RETURN_STATION
    await shoot.shot("return-station")
    for n, item in enumerate(RS_ITEMS, start=1):
        await press(demo.book_buttons[item])
        await until(both(confirmed(view, n), settled(view)), f"return {n}")
        await shoot.shot(f"rs-returned-{n}")
        await press(demo.book_buttons[item])  # into the bin
    await press(demo.card_buttons[WALK_CARD])
    # a new reader: the books returned before (all in the bin) leave the screen
    await until(lambda: view().message == "return_station_no_card" and not view().lines,
                "the no-card hint, the previous titles gone")
    await shoot.shot("rs-no-card")
    return 0


async def receipt(app: StationApp, shots: Path | None, lang: str = "vi") -> int:
    """A loan, then the receipt question: print; the printer simulator gets the slip."""
    view, demo, station, shoot = await start(app, lang, shots)
    await sign_in(app, WALK_CARD, lang)
    await press(demo.book_buttons["39000001"])
    await until(lambda: confirmed(view, 1)() and settled(view)(), "the loan")
    await press(demo.lift_all)
    await press(station.ids.finish_button)
    await until(lambda: view().mode is core.Mode.RECEIPT, "the receipt question")
    await shoot.shot("receipt-choice")
    await press(station.ids.receipt_print)
    await until(lambda: view().receipt_state in ("printed", "failed"), "the receipt")
    await shoot.shot("receipt-printed")
    if view().receipt_state != "printed":
        print("demo: the receipt was not printed")
        return 1
    await press(station.ids.done_button)
    await until(lambda: view().mode is core.Mode.IDLE, "idle")
    return 0


async def type_pin(app: StationApp, digits: str) -> None:
    station = app.station
    assert station is not None
    for d in digits:
        await press(station.pin_buttons[d])


async def pin(app: StationApp, shots: Path | None, lang: str = "vi") -> int:
    """PIN pad on every card (site rule `always`): a wrong PIN shows the tries left, the
    right one opens the session; one book borrowed."""
    view, demo, station, shoot = await start(app, lang, shots)
    await press(demo.card_buttons[PIN_CARD])
    await until(lambda: view().mode is core.Mode.PIN, "the PIN pad")
    await shoot.shot("pin-pad")
    await type_pin(app, "9999")
    if station.ids.pin_dots.text != "••••":
        print(f"demo: the PIN pad shows {station.ids.pin_dots.text!r}, not four dots")
        return 1
    await shoot.shot("pin-typed")
    await press(station.ids.pin_ok)
    await until(lambda: view().mode is core.Mode.PIN and view().pin_error == "wrong_pin",
                "the wrong-PIN answer")
    await shoot.shot("pin-wrong")
    await type_pin(app, "1234")
    await press(station.ids.pin_ok)
    await until(lambda: view().mode is core.Mode.BORROW, "the patron screen")
    await shoot.shot("pin-accepted")
    await press(demo.book_buttons[PIN_ITEM])
    await until(lambda: confirmed(view, 1)() and settled(view)(), "the loan")
    await shoot.shot("pin-borrowed")
    await press(demo.lift_all)
    await finish(app)
    return 0


async def account(app: StationApp, shots: Path | None, lang: str = "vi") -> int:
    """DG0005's account: an overdue loan held for another reader, a loan to renew, a hold
    ready, a hold waiting (second in line), 37 000 VND of fines. Renew all: the renewable
    loan is renewed, the other shows why not."""
    view, _, station, shoot = await start(app, lang, shots)
    await sign_in(app, ACCOUNT_CARD, lang)
    await shoot.shot("account-patron")
    await press(station.ids.account_button)
    await until(lambda: view().mode is core.Mode.ACCOUNT and view().account is not None,
                "the account")
    await shoot.shot("account")
    await press(station.ids.renew_all)
    await until(lambda: bool(view().renewals) and all(
        r.status in (core.Status.DONE, core.Status.REFUSED) for r in view().renewals),
        "the renewals")
    await shoot.shot("account-renewed")
    results = {r.item_id: r.status for r in view().renewals}
    if results != {"39000011": core.Status.DONE}:
        print(f"demo: renewals {results}")
        return 1
    await press(station.ids.account_back)
    await until(lambda: view().mode is core.Mode.BORROW, "back to the pad")
    await finish(app)
    return 0


async def offline(app: StationApp, shots: Path | None, lang: str = "vi") -> int:
    """The offline list arrives on connect; the central stops; a reader on the list borrows
    a book offline and another book is returned; the central starts again and the outbox
    drains into it."""
    view, demo, station, shoot = await start(app, lang, shots)
    rt = app.runtime
    await until(lambda: rt.journal.offline_meta() is not None, "the offline list")
    assert CENTRAL is not None
    await asyncio.to_thread(CENTRAL.stop)
    await shoot.shot("offline-idle")
    await press(demo.card_buttons[OFFLINE_CARD])
    await until(lambda: view().mode is core.Mode.BORROW, "the offline patron screen")
    if view().lang != lang:
        await press(station.ids.lang)
    if not view().offline_session:
        print("demo: the session is not an offline one")
        return 1
    await shoot.shot("offline-patron")
    await press(demo.book_buttons[OFFLINE_LOAN])
    await until(lambda: any(ln.status is core.Status.OFFLINE for ln in view().lines)
                and settled(view)(), "the offline loan")
    await shoot.shot("offline-borrowed")
    await press(demo.lift_all)
    await finish(app, shoot, "offline-summary")
    await to_returns(app, lang)
    await press(demo.book_buttons[OFFLINE_RETURN])
    await until(lambda: any(ln.status is core.Status.OFFLINE for ln in view().lines)
                and settled(view)(), "the offline return")
    await shoot.shot("offline-returned")
    await press(demo.lift_all)
    await finish(app)
    await asyncio.to_thread(CENTRAL.start)
    await until(lambda: rt.journal.depth()[0] == 0, "the outbox to drain", timeout_s=60)
    await shoot.shot("offline-synced")
    return 0


async def reader_care(app: StationApp, shots: Path | None, lang: str = "vi") -> int:
    """Time limits, help and the summary's advice: the time-out question shows only in the
    last 20 s and its button gives the time back; help explains, and staff come only on
    its own button; a refused book's summary says to leave it; idle shows no title."""
    from selfcheck.kiosk.i18n import t

    view, demo, station, shoot = await start(app, lang, shots)
    rt = app.runtime
    await sign_in(app, WALK_CARD, lang)
    if station.more_time_shown:
        print("demo: the time-out question showed before the last 20 s")
        return 1
    await until(lambda: station.more_time_shown, "the time-out question",
                timeout_s=rt.config.timeouts.inactivity_s)
    await shoot.shot("more-time")
    await press(station.ids.more_time_button)
    await until(lambda: not station.more_time_shown and view().mode is core.Mode.BORROW
                and (view().countdown or 0) > 20, "more time")
    await press(station.ids.help)
    await until(lambda: view().mode is core.Mode.HELP, "the help screen")
    if not station.call_shown or view().help_reason != "button":
        print("demo: help called staff before the reader asked")
        return 1
    if DESK_WHERE[lang] not in station.ids.help_text.text:
        print("demo: help does not say where the staff desk is")
        return 1
    await shoot.shot("help")
    await press(station.ids.help_call)
    await until(lambda: view().help_reason == "called", "staff called")
    await shoot.shot("help-called")
    await press(station.ids.help_back)
    await until(lambda: view().mode is core.Mode.BORROW, "back to the pad")
    await press(demo.book_buttons["39000007"])
    await until(lambda: any(ln.status is core.Status.REFUSED for ln in view().lines),
                "the refusal of a reference book")
    await press(demo.lift_all)
    await press(station.ids.finish_button)
    title = view().lines[0].title or "?"
    advice = t("summary.leave_refused", lang)
    await until(lambda: view().mode is core.Mode.SUMMARY
                and station.ids.summary_thanks.text == advice, "the summary's advice")
    await shoot.shot("refused-summary")
    await press(station.ids.done_button)
    await until(lambda: view().mode is core.Mode.IDLE, "idle")
    await shoot.shot("idle-after")
    shown = [(w.text, _chain(w)) for w in station.walk(restrict=True)
             if getattr(w, "text", None) and getattr(w, "opacity", 1) > 0 and title in w.text
             and w.get_root_window() is not None and _on_current(station, w)]
    if shown:
        print(f"demo: idle shows the last reader's title in {shown}")
        return 1
    return 0


def _chain(widget: Any) -> str:
    names: list[str] = []
    while widget is not None and widget is not widget.parent and len(names) < 12:
        names.append(getattr(widget, "name", "") or type(widget).__name__)
        widget = widget.parent
    return "/".join(reversed(names))


def _on_current(station: Any, widget: Widget) -> bool:
    """On the current screen (or the bar and banner), not on a screen not shown."""
    screens = station.ids.screens.__self__  # ids hold weak proxies
    w: Any = widget
    while w is not None and w is not station and w is not w.parent:
        if w.parent is screens:
            return w is screens.current_screen
        w = w.parent
    return True


Script = Callable[[StationApp, Path | None, str], Awaitable[int]]
async def accessibility(app: StationApp, shots: Path | None, lang: str = "vi") -> int:
    """Large text, then high contrast, from the accessibility button; a loan in each; the
    theme goes back to normal at idle."""
    from selfcheck.kiosk.ui.theme import theme

    view, demo, station, shoot = await start(app, lang, shots)
    await press(station.ids.a11y)
    await until(lambda: theme.level == "large", "large text")
    await shoot.shot("large-idle")
    await sign_in(app, WALK_CARD, lang)
    await press(demo.book_buttons[WALK_ITEMS[0]])
    await until(both(confirmed(view, 1), settled(view)), "the loan in large text")
    await shoot.shot("large-borrowed")
    await press(station.ids.a11y)
    await until(lambda: theme.level == "contrast", "high contrast")
    await press(demo.lift_all)
    await press(demo.book_buttons[WALK_ITEMS[1]])
    await until(both(confirmed(view, 2), settled(view)), "the loan in high contrast")
    await shoot.shot("contrast-borrowed")
    await press(demo.lift_all)
    await finish(app, shoot, "contrast-summary")
    await until(lambda: theme.level == "normal", "the theme back to normal at idle")
    return 0


def panel_look(screen: Any, shoot: Shooter, lang: str,
               problems: list[str]) -> Callable[[str], Awaitable[None]]:
    """A staff panel's `look`: audit it (9 mm targets, text size, contrast, nothing outside)
    into `problems`, and shoot the screen."""
    from selfcheck.kiosk.ui.audit import audit_tree
    from selfcheck.kiosk.ui.theme import theme

    async def look(name: str) -> None:
        from kivy.clock import Clock

        # what changed is drawn and laid out over the next frames: a few, however slow
        drawn = Clock.frames_displayed + 3
        await asyncio.sleep(0.3)
        await until(lambda: Clock.frames_displayed >= drawn, "the panel drawn")
        panel = screen.panel
        names = {id(panel.b_left): "left", id(panel.b_right): "right", id(panel.title): "title"}
        size = (int(screen.width), int(screen.height))
        problems.extend(str(v) for v in audit_tree([panel], names, name, size, lang,
                                                    theme.level, theme.px_mm, theme.ppi))
        if shoot.folder is not None:
            shoot.count += 1
            shoot.folder.mkdir(parents=True, exist_ok=True)
            target = shoot.folder / f"{shoot.count:02d}-{name}.png"
            screen.export_to_png(str(target))
            shoot.files.append(target)

    return look


async def staff_panel(app: StationApp, lang: str, shots: Path | None
                      ) -> tuple[Stage, Any, list[str], Callable[[str], Awaitable[None]]]:
    """A staff panel scenario's prologue: the stage, the station screen (whose `panel` the
    staff task opens), the problems found and the panel's `look`."""
    stage = await start(app, lang, shots)
    screen: Any = getattr(app, "screen", None)
    assert screen is not None
    problems: list[str] = []
    return stage, screen, problems, panel_look(screen, stage.shoot, lang, problems)


async def stocktake(app: StationApp, shots: Path | None, lang: str = "vi") -> int:
    """Staff take stock of shelf A: the staff card, the stock-take button, the shelf; a stack
    of four (one from shelf B), a pause, the paused stock-take taken up again, a stack with a
    book on loan and another library's book, then finished. Each screen audited (sizes,
    contrast, nothing outside) and shot."""
    (view, demo, station, _shoot), screen, problems, look = await staff_panel(app, lang, shots)
    panel, st = screen.panel, app.runtime.stocktake

    def option(start: str) -> Widget:
        found = [b for b in panel.rows.children if getattr(b, "text", "").startswith(start)]
        assert found, f"no option {start!r} among {[b.text for b in panel.rows.children]}"
        return found[0]

    async def put(stack: tuple[str, ...], what: str) -> None:
        for item in stack:
            await press(demo.book_buttons[item])
        await until(lambda: {b.item_id for b in st.run.books.values()} >= set(stack)
                    and st.run.waiting == 0, what)
        await look(what.replace(" ", "-"))
        await press(demo.lift_all)

    await press(demo.card_buttons[STAFF_CARD])
    await until(lambda: view().mode is core.Mode.STAFF, "staff mode")
    await press(screen.entry)
    await until(lambda: bool(panel.rows.children), "the shelves")
    await look("stocktake-shelves")
    shelf = TEXTS_STOCKTAKE.t("shelf", lang, place=STOCKTAKE_SHELF, items=0)
    await press(option(shelf.split(":")[0] + ":"))  # "Kệ A:" / "Shelf A:"
    await until(lambda: st.active, "the stock-take to start")
    await put(STOCKTAKE_STACKS[0], "first stack")
    await press(panel.b_left)  # pause
    await until(lambda: not st.active and panel.stage == "message", "the pause")
    await look("stocktake-paused")
    await press(panel.b_right)  # back to the shelves: the paused one first
    await until(lambda: bool(panel.rows.children) and not panel.busy, "the shelves again")
    await press(panel.rows.children[-1])  # the first option: take up the paused one
    await until(lambda: st.active, "the stock-take taken up")
    await put(STOCKTAKE_STACKS[1], "second stack")
    await press(panel.b_right)  # finish
    await until(lambda: panel.stage == "confirm", "the question")
    await look("stocktake-confirm")
    await press(panel.b_right)  # confirm
    await until(lambda: panel.stage == "message" and st.run.stocktake_id is None, "the end")
    await look("stocktake-finished")
    await press(panel.b_left)
    await until(lambda: panel.parent is None, "back to the staff screen")
    await press(station.ids.staff_exit)
    await until(lambda: view().mode is core.Mode.IDLE, "idle")
    for p in problems:
        print(f"demo: {p}")
    return 1 if problems else 0


async def stocktake_calls(app: StationApp, shots: Path | None, lang: str = "vi") -> int:
    """Staff type a call-number range on the stock-take's keyboard, get it refused twice (To
    before From, then a range with no book), open it, count a stack and walk away: the
    stock-take pauses and the station goes back to idle after the staff screen's time-out."""
    (view, demo, _station, _shoot), screen, problems, look = await staff_panel(app, lang,
                                                                                shots)
    panel, st = screen.panel, app.runtime.stocktake

    async def type_in(field: str, text: str) -> None:
        await press(panel.fields[field])
        for ch in text:
            await press(panel.call_keys["space" if ch == " " else ch])
        await until(lambda: panel.calls[field] == text, f"{text!r} typed in {field}")

    async def clear(field: str) -> None:
        await press(panel.fields[field])
        while panel.calls[field]:
            await press(panel.call_keys["delete"])

    def said(key: str) -> bool:
        return not panel.busy and panel.title.text == panel.t(key)

    await press(demo.card_buttons[STAFF_CARD])
    await until(lambda: view().mode is core.Mode.STAFF, "staff mode")
    await press(screen.entry)
    await until(lambda: bool(panel.rows.children) and not panel.busy, "the places")
    await press(panel.b_right)
    await until(lambda: panel.stage == "calls", "the range entry")
    await type_in("from", "9")
    await look("calls-entry")
    await type_in("to", "1")  # before From: refused here, as the central would
    await press(panel.c_start)
    await until(lambda: said("calls.order"), "To before From refused")
    await look("calls-order")
    await clear("to")  # To empty: From alone, "9", which no book's call number starts with
    await press(panel.c_start)
    await until(lambda: said("calls.empty"), "the central's empty_place")
    if st.active or panel.stage != "calls" or panel.calls["from"] != "9":
        problems.append("stocktake-calls: an empty range changed what was typed or started")
    await look("calls-empty")
    await clear("from")
    await type_in("from", CALLS_RANGE[0])
    await type_in("to", CALLS_RANGE[1])
    await press(panel.c_start)
    await until(lambda: st.active, "the range's stock-take")
    info = st.info
    got = None if info is None else (info.place.kind, info.place.value, info.place.upto,
                                     info.expected)
    if got != ("calls", *CALLS_RANGE, CALLS_IN_RANGE):
        problems.append(f"stocktake-calls: opened {got}")
    await look("calls-running")
    await press(demo.book_buttons[CALLS_STACK])
    await until(lambda: CALLS_STACK in {b.item_id for b in st.run.books.values()}
                and st.run.waiting == 0 and st.run.counts.found == 1, "the stack counted")
    await look("calls-stack")
    listed = list(panel.rows.children)
    # Left alone: the countdown runs down to half; a touch starts it again, then nothing. The
    # station goes idle a whole time-out after the touch, not half of one: the touch counted
    # (however late a loaded machine lets it land within that half).
    await until(lambda: (view().countdown or 0) <= CALLS_IDLE_S / 2, "half the idle time",
                timeout_s=CALLS_IDLE_S + 10)
    # The warning's seconds went by on the panel, the list's books did not change: the same
    # lines, not new ones each second (each rebuild redraws the screen for half a second).
    if not listed or list(map(id, listed)) != list(map(id, panel.rows.children)):
        problems.append("stocktake-calls: the list was rebuilt while what it shows stayed")
    await press(panel.title)
    touched = time.monotonic()
    await until(lambda: panel.parent is None and view().mode is core.Mode.IDLE,
                "back to idle", timeout_s=CALLS_IDLE_S + 15)
    left = time.monotonic() - touched
    if left < CALLS_IDLE_S - 1.5:  # the core's tick is a second: no sooner than that allows
        problems.append(f"left {left:.1f} s after the last touch, not {CALLS_IDLE_S} s")
    await until(lambda: not st.active, "the stock-take paused")
    for p in problems:
        print(f"demo: {p}")
    return 1 if problems else 0


async def tagging(app: StationApp, shots: Path | None, lang: str = "vi") -> int:
    """Staff tag books (converting to RFID): the staff card, the tagging button; the
    simulated barcode scanner reads a barcode the library does not know (refused), then books
    put on the pad blank are written, read back and counted; two tags at once are refused; a
    tag holding another item's data is written only after "Overwrite". Each screen audited
    and shot; demo_scenarios.TAGGING says what the central must have recorded."""
    from selfcheck.drivers.tags import iso28560_3
    from selfcheck.kiosk.ui.audit import audit_tree
    from selfcheck.kiosk.ui.theme import theme
    from selfcheck.lab.demo_scenarios import TAGGING_ITEMS, TAGGING_UNKNOWN

    view, demo, station, shoot = await start(app, lang, shots)
    screen: Any = getattr(app, "tagging_screen", None)
    assert screen is not None
    panel, desk = screen.panel, app.runtime.tagging
    pad: Any = app.runtime.watcher.pad  # the demo's SimulatedPad: books placed by hand
    scanner: Any = app.runtime.card  # the demo's barcode scanner is its card reader
    problems: list[str] = []

    async def look(name: str, where: Widget | None = None) -> None:
        await asyncio.sleep(0.3)
        size = (int(screen.width), int(screen.height))
        problems.extend(str(v) for v in audit_tree([where or panel], {}, name, size, lang,
                                                    theme.level, theme.px_mm, theme.ppi))
        if shots is not None:
            shoot.count += 1
            shots.mkdir(parents=True, exist_ok=True)
            target = shots / f"{shoot.count:02d}-{name}.png"
            screen.export_to_png(str(target))
            shoot.files.append(target)

    def uid(n: int) -> bytes:
        return bytes.fromhex(f"E00401AA{n:08X}")

    await press(demo.card_buttons[STAFF_CARD])
    await until(lambda: view().mode is core.Mode.STAFF, "staff mode")
    await look("tagging-staff", screen.entry.parent)  # the way in, beside the staff's own
    await press(screen.entry)
    await until(lambda: panel.parent is not None and desk.active, "the tagging screen")
    await look("tagging-scan")
    scanner.present(TAGGING_UNKNOWN)
    await until(lambda: desk.view().message == "tagging.unknown", "the unknown barcode")
    await look("tagging-unknown")
    for n, item in enumerate(TAGGING_ITEMS, start=1):
        scanner.present(item)
        await until(lambda: desk.view().phase == "place", f"{item} looked up")
        if n == 2:  # two tags at once: refused until one goes
            pad.place(uid(n), bytes(36), 0)
            pad.place(uid(99), bytes(36), 0)
            await until(lambda: desk.view().message == "tagging.too_many", "two tags")
            await look("tagging-two-tags")
            pad.lift(uid(99))
        elif n == 3:  # a tag holding another item's data: only on staff's yes
            old = iso28560_3.encode("CU-0001")
            pad.place(uid(n), old + bytes(-len(old) % 4), 0x07)
            await until(lambda: desk.view().phase == "confirm", "the overwrite question")
            await look("tagging-confirm")
            await press(panel.buttons["overwrite"])
        else:
            pad.place(uid(n), bytes(36), 0)
        await until(partial(lambda k: desk.view().session == k, n), f"{item} tagged")
        if n == 1:
            await look("tagging-done")
        pad.lift(uid(n))
        await until(lambda: desk.view().on_pad == 0, "the book lifted")
    await until(lambda: desk.view().queued == 0, "every tag recorded at the central")
    await look("tagging-recorded")
    await press(panel.buttons["back"])
    await until(lambda: view().mode is core.Mode.STAFF and panel.parent is None, "staff screen")
    await press(station.ids.staff_exit)
    await until(lambda: view().mode is core.Mode.IDLE, "idle")
    for p in problems:
        print(f"demo: {p}")
    return 1 if problems else 0


SCENARIOS: dict[str, Script] = {
    "pin": pin, "account": account, "stack": stack, "multipart": multipart,
    "security-pending": security_pending, "return-station": return_station,
    "offline": offline, "receipt": receipt, "walk": walk, "refusals": refusals,
    "accessibility": accessibility, "reader-care": reader_care, "stocktake": stocktake,
    "stocktake-calls": stocktake_calls,
    "tagging": tagging,
}
