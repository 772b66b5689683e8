"""Spoken prompts in Vietnamese and English: short WAVs rendered once by espeak-ng (from the
distribution) into a cache folder, played with Kivy's SoundLoader. Without espeak-ng, or when
the site switches audio off, the station is silent and says so once in the log.

The words are the screen's own (kiosk.po, key `audio.<prompt>`), so that what is heard is what
is read. Rendering runs in a thread: espeak-ng takes a few hundred milliseconds.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from selfcheck.kiosk.i18n import t

log = logging.getLogger(__name__)

VOICES = {"vi": "vi", "en": "en-gb"}


def espeak() -> str | None:
    return shutil.which("espeak-ng")


def render(text: str, lang: str, folder: Path, exe: str | None = None) -> Path:
    """The WAV for `text` in `lang`, rendered on first use. The file name is a hash of the
    voice and the words, so that changed words never play a stale recording."""
    exe = exe or espeak()
    if exe is None:
        raise FileNotFoundError("espeak-ng is not installed")
    voice = VOICES.get(lang, lang)
    key = hashlib.sha256(f"{voice}\n{text}".encode()).hexdigest()[:16]
    target = folder / f"{lang}-{key}.wav"
    if target.exists() and target.stat().st_size > 44:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    # its own partial file: two renders of one prompt at once (a prompt said again while the
    # first render runs) must not move each other's file away
    partial = target.with_name(f"{target.stem}.{secrets.token_hex(4)}.part")
    subprocess.run([exe, "-v", voice, "-s", "150", "-w", str(partial), text],
                   check=True, capture_output=True, timeout=30)
    partial.replace(target)  # a cut-off render never passes for a finished one
    return target


class Prompter:
    """`say(prompt, lang)` from the UI loop; the newest prompt wins."""

    def __init__(self, enabled: bool, folder: Path,
                 play: Callable[[Path], None] | None = None) -> None:
        self.folder = folder
        self.exe = espeak() if enabled else None
        if enabled and self.exe is None:
            log.warning("audio prompts off: espeak-ng is not installed "
                        "(apt-get install espeak-ng)")
        elif not enabled:
            log.info("audio prompts off by the site's settings")
        self._play = play or _kivy_play
        self._lock = threading.Lock()
        self._wanted: tuple[str, str] | None = None

    @property
    def enabled(self) -> bool:
        return self.exe is not None

    def say(self, prompt: str, lang: str) -> None:
        if self.exe is None:
            return
        with self._lock:
            self._wanted = (prompt, lang)
        threading.Thread(target=self._render_and_play, args=(prompt, lang), daemon=True,
                         name="prompt").start()

    def _render_and_play(self, prompt: str, lang: str) -> None:
        try:
            path = render(t(f"audio.{prompt}", lang), lang, self.folder, self.exe)
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("audio prompt %s/%s not rendered: %s", lang, prompt, exc)
            return
        with self._lock:
            if self._wanted != (prompt, lang):
                return  # the screen moved on while this one rendered
        self._play(path)


_current: list[object] = []


def _kivy_play(path: Path) -> None:
    from kivy.clock import Clock

    def play(_dt: float) -> None:  # SoundLoader belongs to the UI thread
        from kivy.core.audio import SoundLoader

        for old in _current:
            old.stop()  # type: ignore[attr-defined]
        _current.clear()
        sound = SoundLoader.load(str(path))
        if sound is None:
            log.info("no audio output for %s", path.name)
            return
        _current.append(sound)
        sound.play()

    Clock.schedule_once(play)
