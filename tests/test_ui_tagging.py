"""The staff's tagging screen offscreen, driven by touches (`selfcheck demo --scenario
tagging`): the staff card, the "Gắn thẻ RFID / Tag books" button, a barcode the library does
not know, books written blank, two tags at once refused, a tag holding data written only after
"Overwrite"; every screen audited (targets, text sizes, contrast, nothing outside) in each
language. The demo's own check reads what the central store recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_ui import png_size, run_demo

pytestmark = pytest.mark.ui
SHOTS = ["tagging-staff", "tagging-scan", "tagging-unknown", "tagging-done", "tagging-two-tags",
         "tagging-confirm", "tagging-recorded"]


@pytest.mark.parametrize(("lang", "size"), [("vi", "800x480"), ("en", "720x1280")])
def test_staff_tag_books_by_touch(tmp_path: Path, lang: str, size: str) -> None:
    proc, shots = run_demo(tmp_path, "--lang", lang, "--scenario", "tagging", "--size", size)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "demo: tagging: as expected" in proc.stdout
    assert [p.stem.split("-", 1)[1] for p in shots] == SHOTS
    w, h = size.split("x")
    assert {png_size(p) for p in shots} == {(int(w), int(h))}
