"""The staff's stock-take screen offscreen, driven by touches (`selfcheck demo --scenario
stocktake`): the staff card, the stock-take button, shelf A, two stacks with a pause between,
finished; every screen audited (9 mm targets 2 mm apart, text at least 3.5 mm, contrast,
nothing outside) at the smallest landscape panel and the portrait one, in each language. The
demo's own check reads the report from the central store: found, missing, misplaced, on loan
but seen, unknown.

The call-number range and the idle time-out (`selfcheck demo --scenario stocktake-calls`): a
range typed on the keyboard, refused when To comes before From and when nothing is in it,
then opened; a stack; left alone, the stock-take pauses and the station goes back to idle."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_ui import png_size, run_demo

pytestmark = pytest.mark.ui
SHOTS = ["stocktake-shelves", "first-stack", "stocktake-paused", "second-stack",
         "stocktake-confirm", "stocktake-finished"]
CALLS_SHOTS = ["calls-entry", "calls-order", "calls-empty", "calls-running", "calls-stack"]


@pytest.mark.parametrize(("lang", "size"), [("vi", "800x480"), ("en", "720x1280")])
def test_staff_take_stock_of_a_shelf_by_touch(tmp_path: Path, lang: str, size: str) -> None:
    proc, shots = run_demo(tmp_path, "--lang", lang, "--scenario", "stocktake", "--size", size)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "demo: stocktake: as expected" in proc.stdout
    assert "'found': 4, 'missing': 2, 'misplaced': 1, 'on_loan': 1, 'unknown': 1" in proc.stdout
    assert [p.stem.split("-", 1)[1] for p in shots] == SHOTS
    w, h = size.split("x")
    assert {png_size(p) for p in shots} == {(int(w), int(h))}


# -- the call-number range, and the idle time-out

@pytest.mark.parametrize(("lang", "size"), [("vi", "800x480"), ("en", "720x1280")])
def test_staff_take_stock_of_a_call_number_range_then_walk_away(
        tmp_path: Path, lang: str, size: str) -> None:
    proc, shots = run_demo(tmp_path, "--lang", lang, "--scenario", "stocktake-calls",
                           "--size", size)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "demo: stocktake-calls: as expected" in proc.stdout
    assert [p.stem.split("-", 1)[1] for p in shots] == CALLS_SHOTS
    w, h = size.split("x")
    assert {png_size(p) for p in shots} == {(int(w), int(h))}
