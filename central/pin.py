"""PINs: a salted scrypt hash in the store, never the PIN; wrong PINs slow the card, then lock it.

Used by the embedded store (which verifies) and the SIP2 backend (where the library system
verifies, CQ, and this module only counts the failures).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

# scrypt cost: about 50 ms and 16 MiB a check on a small server; a stolen store then costs an
# attacker that much per guess and card (PINs are short: the lockout is the main defence).
_N, _R, _P = 2**14, 8, 1


def hash_pin(pin: str) -> str:
    """`scrypt$N$r$p$salt$hash`, hex, with a fresh 16-byte salt."""
    if not pin:
        raise ValueError("pin: empty")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_pin(pin: str, stored: str | None) -> bool:
    """False for a wrong PIN, and for a patron with no PIN on file (nothing to check it by)."""
    if not stored:
        return False
    try:
        alg, n, r, p, salt, digest = stored.split("$")
        if alg != "scrypt":
            return False
        got = hashlib.scrypt(pin.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                             p=int(p), dklen=len(digest) // 2)
    except ValueError:  # a damaged hash never matches
        return False
    return hmac.compare_digest(got.hex(), digest)


@dataclass(frozen=True)
class PinPolicy:
    """Slowing first, locking later: a reader who mistyped waits a minute, a guesser waits
    longer at each further try and the card locks only after `lock_after` wrong PINs in a row
    (about two hours of waiting with the defaults), so one burst of guesses cannot lock a
    reader out, and ten guesses in all per card are what a thief gets before staff must act.
    A right PIN, or staff (`selfcheck central unlock-pin`), starts the count again."""

    max_failures: int = 3  # wrong PINs in a row before the first wait
    wait: dt.timedelta = dt.timedelta(minutes=1)  # the first wait; doubled at each wrong PIN
    lock_after: int = 10  # wrong PINs in a row before the long lock
    lock: dt.timedelta = dt.timedelta(hours=24)


@dataclass(frozen=True)
class PinState:
    failures: int
    locked_until: dt.datetime | None


def locked(state: PinState, now: dt.datetime) -> bool:
    until = state.locked_until
    if until is not None and until.tzinfo is None:  # SQLite drops the zone
        until = until.replace(tzinfo=dt.UTC)
    return until is not None and until > now


def after_failure(state: PinState, now: dt.datetime, policy: PinPolicy) -> PinState:
    """One more wrong PIN: a wait that doubles from the limit on, then the long lock. The
    count is not reset when a wait runs out: the waits must grow for a guesser."""
    failures = state.failures + 1
    if failures >= policy.lock_after:
        return PinState(failures, now + policy.lock)
    if failures >= policy.max_failures:
        return PinState(failures, now + policy.wait * 2 ** (failures - policy.max_failures))
    return PinState(failures, None)


def stage(state: PinState, now: dt.datetime, policy: PinPolicy) -> str:
    """What staff see: `locked` (the long lock), `slowed` (waiting), or `failed` (wrong PINs
    counted, no wait now)."""
    if state.failures >= policy.lock_after and locked(state, now):
        return "locked"
    return "slowed" if locked(state, now) else "failed"


def tries_left(state: PinState, policy: PinPolicy) -> int:
    return max(policy.max_failures - state.failures, 0)
