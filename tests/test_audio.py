"""Spoken prompts: rendered once by espeak-ng into the cache, in both languages."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from selfcheck.kiosk.i18n import t
from selfcheck.kiosk.ui import audio


@pytest.mark.skipif(audio.espeak() is None, reason="espeak-ng is not installed "
                    "(scripts/bootstrap installs it when the distribution has it)")
@pytest.mark.parametrize("lang", ["vi", "en"])
def test_prompts_render_once_into_the_cache(tmp_path: Path, lang: str) -> None:
    first = audio.render(t("audio.idle", lang), lang, tmp_path)
    with wave.open(str(first)) as w:
        assert w.getnframes() / w.getframerate() > 1.0  # a real sentence, not silence
    stamp = first.stat().st_mtime_ns
    assert audio.render(t("audio.idle", lang), lang, tmp_path) == first
    assert first.stat().st_mtime_ns == stamp  # served from the cache
    other = audio.render(t("audio.help", lang), lang, tmp_path)
    assert other != first and not list(tmp_path.glob("*.part"))


def test_prompter_plays_the_rendered_prompt_or_stays_silent(tmp_path: Path) -> None:
    played: list[Path] = []
    off = audio.Prompter(False, tmp_path, play=played.append)
    off.say("idle", "vi")
    assert not off.enabled and played == []
    if audio.espeak() is None:
        pytest.skip("espeak-ng is not installed")
    on = audio.Prompter(True, tmp_path, play=played.append)
    on.say("borrow", "vi")
    on._render_and_play("borrow", "vi")  # the thread's work, here to wait for it
    assert played and played[-1].suffix == ".wav"
