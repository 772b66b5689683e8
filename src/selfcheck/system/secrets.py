"""Secret files (passwords, ILS secrets): private to the service's user, read from a file so
they stay out of configs and out of argv."""

from __future__ import annotations

from pathlib import Path


def check_private(path: Path, key: str) -> None:
    """Refuse a secret file that its group or others may read or change: only the service's
    user (a 0600 file, or systemd's LoadCredential= copy) should hold a password."""
    try:
        mode = Path(path).stat().st_mode
    except OSError as exc:
        raise ValueError(f"{key}: cannot read {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise ValueError(f"{key}: {path} is open to group or others (mode {mode & 0o777:04o});"
                         f" make it private: chmod 600 {path}")


def read_secret(path: Path, key: str = "password_file") -> list[str]:
    """The lines of a secret file, the first not empty (kept apart from the config so the
    config can be read by more people than the secret, and out of argv, which `ps` shows to
    everyone)."""
    check_private(Path(path), key)
    try:
        text = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ValueError(f"{key}: cannot read {path}: {exc.strerror}") from exc
    if not text or not text[0]:
        raise ValueError(f"{key}: {path} is empty")
    return text


def read_password(path: Path | None, key: str = "password_file") -> str | None:
    """The first line of a password file; None without one."""
    return None if path is None else read_secret(path, key)[0]
