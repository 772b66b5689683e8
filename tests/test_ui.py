"""The Kivy station offscreen, driven by touches: the scripted walks of `selfcheck demo`."""

from __future__ import annotations

import hashlib
import itertools
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ui
ROOT = Path(__file__).resolve().parent.parent


def run_demo(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[Path]]:
    shots = tmp_path / "shots"
    env = dict(os.environ, SDL_VIDEODRIVER="offscreen")
    proc = subprocess.run([sys.executable, "-m", "selfcheck.cli", "demo", "--headless",
                           "--screenshots", str(shots), "--workdir", str(tmp_path / "work"),
                           *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=240)
    return proc, sorted(shots.glob("*.png"))


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_walk_vietnamese_borrows_and_returns_three_books(tmp_path: Path) -> None:
    proc, shots = run_demo(tmp_path, "--lang", "vi")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 loans, 3 returns" in proc.stdout
    names = [p.stem.split("-", 1)[1] for p in shots]
    assert names == ["idle", "patron", "borrowed-1", "borrowed-2", "borrowed-3",
                     "borrow-summary", "return", "returned-1", "returned-2", "returned-3",
                     "return-summary", "idle-again"]
    assert {png_size(p) for p in shots} == {(1280, 800)}
    # every screen the walk passes looks different from the one before it
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in shots]
    assert all(a != b for a, b in itertools.pairwise(digests))


def test_refusals_in_english_leave_the_store_untouched(tmp_path: Path) -> None:
    proc, shots = run_demo(tmp_path, "--lang", "en", "--scenario", "refusals")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 circulation rows" in proc.stdout
    assert [p.stem.split("-", 1)[1] for p in shots] == ["blocked-card", "not-for-loan",
                                                         "refusal-summary"]


def test_return_station_forgets_the_previous_readers_titles(tmp_path: Path) -> None:
    """After a new reader's card the return station's list is as empty as at the start:
    below the hint line, the last screen's pixels are the first one's."""
    from PIL import Image, ImageChops

    proc, shots = run_demo(tmp_path, "--lang", "vi", "--scenario", "return-station",
                           "--size", "800x480")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first, *returned, last = (Image.open(p).convert("RGB") for p in shots)
    below_hint = (0, 104, 800, 480)
    assert all(ImageChops.difference(first.crop(below_hint), shot.crop(below_hint)).getbbox()
               for shot in returned)  # the titles were shown
    assert ImageChops.difference(first.crop(below_hint), last.crop(below_hint)).getbbox() is None


# Each scenario at one of the supported screens, so that every size is played by touches
# (and below, every scenario at every size).
DESK = {
    "stack": ("vi", "800x480", ["stack", "count-4", "count-mismatch", "stack-summary"]),
    "multipart": ("en", "1024x600", ["part-missing", "set-complete", "multipart-summary"]),
    "security-pending": ("vi", "720x1280", ["write-failed", "idle-pending",
                                            "staff-exceptions", "staff-skipped"]),
    "return-station": ("en", "1920x1080", ["return-station", "rs-returned-1",
                                           "rs-returned-2", "rs-returned-3", "rs-no-card"]),
    "receipt": ("vi", "1080x1920", ["receipt-choice", "receipt-printed"]),
    "pin": ("vi", "800x480", ["pin-pad", "pin-typed", "pin-wrong", "pin-accepted",
                              "pin-borrowed"]),
    "account": ("en", "800x480", ["account-patron", "account", "account-renewed"]),
    "offline": ("vi", "1280x800", ["offline-idle", "offline-patron", "offline-borrowed",
                                   "offline-summary", "offline-returned", "offline-synced"]),
    "accessibility": ("vi", "720x1280", ["large-idle", "large-borrowed", "contrast-borrowed",
                                         "contrast-summary"]),
    "reader-care": ("en", "800x480", ["more-time", "help", "help-called", "refused-summary",
                                      "idle-after"]),
}


@pytest.mark.parametrize("scenario", list(DESK))
def test_self_service_desk_scenarios(tmp_path: Path, scenario: str) -> None:
    lang, size, expected = DESK[scenario]
    proc, shots = run_demo(tmp_path, "--lang", lang, "--scenario", scenario, "--size", size)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"demo: {scenario}: as expected" in proc.stdout
    assert [p.stem.split("-", 1)[1] for p in shots] == expected
    w, h = size.split("x")
    assert {png_size(p) for p in shots} == {(int(w), int(h))}  # the station, not the panel


SIZES = ("800x480", "1024x600", "1280x800", "1920x1080", "720x1280", "1080x1920")


# Every scenario at every size in both languages: one process a size and language (a demo
# renders on one core), which the suite's workers share out.
@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("lang", ("vi", "en"))
@pytest.mark.parametrize("size", SIZES)
def test_every_scenario_at_every_size(tmp_path: Path, size: str, lang: str) -> None:
    env = dict(os.environ, SDL_VIDEODRIVER="offscreen")
    proc = subprocess.run(
        [sys.executable, "-m", "selfcheck.cli", "demo", "--headless", "--scenario", "all",
         "--size", size, "--lang", lang, "--workdir", str(tmp_path / lang)], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1400)
    assert proc.returncode == 0, f"{size} {lang}: " + proc.stdout[-4000:]
