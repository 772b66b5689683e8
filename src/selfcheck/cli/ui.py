"""`selfcheck ui audit` and `selfcheck ui gallery`: every screen of the station at every
screen size, language and theme, checked (text cut off, overlapping or small touch targets,
contrast) or drawn as PNGs with an HTML contact sheet for a librarian to review."""

from __future__ import annotations

import argparse
import html
import time
from collections.abc import Sequence
from pathlib import Path

from selfcheck.kiosk.settings import parse_size

SIZES = ("800x480", "1024x600", "1280x800", "1920x1080", "720x1280", "1080x1920")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="the station's screens: layout audit, gallery")
    ui = p.add_subparsers(dest="ui_command", required=True)
    for name, helptext in (("audit", "check every screen; exit 1 on any violation"),
                           ("gallery", "write every screen as PNGs and an HTML sheet")):
        q = ui.add_parser(name, help=helptext)
        q.add_argument("--size", action="append", type=_size, metavar="WxH",
                       help=f"repeatable (default: all of {', '.join(SIZES)})")
        q.add_argument("--lang", action="append", choices=["vi", "en"],
                       help="repeatable (default: vi and en)")
        q.add_argument("--theme", action="append", choices=["normal", "large", "contrast"],
                       help="repeatable (default: all three)")
        q.add_argument("--screen", action="append", help="only these sample screens")
        if name == "gallery":
            q.add_argument("--out", type=Path, default=Path("gallery"),
                           help="folder for the PNGs and index.html (default: ./gallery)")
            q.add_argument("--audit", action="store_true", help="audit too; exit 1 on any")
        q.set_defaults(func=run_audit if name == "audit" else run_gallery)


def _size(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _start(args: argparse.Namespace) -> tuple[list[tuple[int, int]], list[str], list[str]]:
    from selfcheck.kiosk.ui.boot import configure

    sizes = args.size or [parse_size(s) for s in SIZES]
    configure(headless=True, size=sizes[0])
    from kivy.config import Config

    Config.set("graphics", "maxfps", "0")  # frames as fast as they draw: no waiting
    return sizes, args.lang or ["vi", "en"], args.theme or ["normal", "large", "contrast"]


def run_audit(args: argparse.Namespace) -> int:
    sizes, langs, themes = _start(args)
    from selfcheck.kiosk.ui import audit

    started = time.monotonic()
    count, found = audit.run(sizes, langs, themes, args.screen)
    for v in found:
        print(v)
    print(f"ui audit: {count} screens ({len(sizes)} sizes x {len(langs)} languages x "
          f"{len(themes)} themes) in {time.monotonic() - started:.0f} s, "
          f"{len(found)} violations")
    return 1 if found or not count else 0


def run_gallery(args: argparse.Namespace) -> int:
    sizes, langs, themes = _start(args)
    from selfcheck.kiosk.ui import audit

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    shots: list[tuple[str, tuple[int, int], str, str, str, int]] = []
    found: list[audit.Violation] = []

    def shoot(h: audit.Harness, name: str, size: tuple[int, int], lang: str,
              level: str) -> None:
        from kivy.base import EventLoop

        EventLoop.idle()  # one drawn frame
        file = f"{name}-{size[0]}x{size[1]}-{lang}-{level}.png"
        h.station.export_to_png(str(out / file))
        found.extend(h.audit(name, size, lang, level) if args.audit else [])
        shots.append((name, size, lang, level, file, len(found)))

    count, _ = audit.run(sizes, langs, themes, args.screen, each=shoot)
    (out / "index.html").write_text(_sheet(shots, found), encoding="utf-8")
    for v in found:
        print(v)
    print(f"ui gallery: {count} screens in {out / 'index.html'}"
          + (f", {len(found)} violations" if args.audit else ""))
    return 1 if found else 0


def _sheet(shots: list[tuple[str, tuple[int, int], str, str, str, int]],
           found: Sequence[object]) -> str:
    """A contact sheet: one section per size, a row per screen, a column per language and
    theme; images at half size, full size on a click."""
    by_size: dict[tuple[int, int], list[tuple[str, str, str, str]]] = {}
    for name, size, lang, level, file, _ in shots:
        by_size.setdefault(size, []).append((name, lang, level, file))
    parts = ["<!doctype html><meta charset='utf-8'><title>Selfcheck station: every screen"
             "</title><style>body{font-family:sans-serif;background:#eee}"
             "figure{display:inline-block;margin:6px;vertical-align:top}"
             "figcaption{font-size:13px}img{border:1px solid #999;background:#fff}"
             "</style><h1>Selfcheck station: every screen</h1>",
             f"<p>{len(shots)} screens. Violations from the audit: {len(found)}</p><ul>"]
    parts += [f"<li>{html.escape(str(v))}</li>" for v in found]
    parts.append("</ul><nav>" + " · ".join(
        f"<a href='#s{w}x{h}'>{w}x{h}</a>" for (w, h) in by_size) + "</nav>")
    for (w, h), items in by_size.items():
        parts.append(f"<h2 id='s{w}x{h}'>{w}x{h}</h2>")
        scale = 360 / max(w, h)
        names = list(dict.fromkeys(n for n, *_ in items))
        for name in names:
            parts.append(f"<h3>{html.escape(name)}</h3><div>")
            for n, lang, level, file in items:
                if n == name:
                    parts.append(
                        f"<figure><a href='{file}'><img src='{file}' loading='lazy' "
                        f"width='{int(w * scale)}' height='{int(h * scale)}'></a>"
                        f"<figcaption>{lang} · {level}</figcaption></figure>")
            parts.append("</div>")
    return "\n".join(parts)
