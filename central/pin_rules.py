"""When the central demands a PIN: its own rule per site and per patron category, whatever
the station sends.

- `never`: no PIN is asked for (one the station sends anyway is still checked);
- `always`: every patron check needs the right PIN, so a card number alone (read off a card,
  guessed, or tried by a stolen station) gives nothing away;
- `after_failure`: a PIN is asked for once a wrong one was given for that card, until a right
  one: no keypad for the regular reader, but a guesser who tried once must go on guessing.

A locked card (too many wrong PINs, central/pin.py) is refused under every rule, with or
without a PIN. The most specific rule wins: the patron's category, then the site, then the
default. A card the library system does not know gets the site's rule, so that under `always`
the answer to a bare card number never says whether it exists. No I/O; the PIN state and the
clock are passed in.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from selfcheck.central import pin as pins
from selfcheck.mqtt.messages import PatronCheckRes


class PinRule(enum.StrEnum):
    NEVER = "never"
    ALWAYS = "always"
    AFTER_FAILURE = "after_failure"


class Demand(enum.Enum):
    NONE = "none"  # no PIN asked for, none given: go on without one
    CHECK = "check"  # a PIN was given: check it (under every rule)
    REQUIRED = "required"  # none given and one is wanted: pin_required
    LOCKED = "locked"  # refused, PIN or not: pin_locked


@dataclass(frozen=True)
class PinRules:
    """The settings: `default`, and rules by site and by patron category."""

    default: PinRule = PinRule.NEVER
    sites: Mapping[str, PinRule] = field(default_factory=dict)
    categories: Mapping[str, PinRule] = field(default_factory=dict)

    def rule(self, site: str | None, category: str | None) -> PinRule:
        if category is not None and category in self.categories:
            return self.categories[category]
        if site is not None and site in self.sites:
            return self.sites[site]
        return self.default


def demand(rule: PinRule, state: pins.PinState | None, now: dt.datetime, *,
           pin_given: bool) -> Demand:
    """What a patron check must do about the PIN; `state` None: no failures known."""
    state = state or pins.PinState(0, None)
    if pins.locked(state, now):
        return Demand.LOCKED
    if pin_given:
        return Demand.CHECK
    # A lock that ran out leaves locked_until set: that card still owes a right PIN.
    failed = state.failures > 0 or state.locked_until is not None
    if rule is PinRule.ALWAYS or (rule is PinRule.AFTER_FAILURE and failed):
        return Demand.REQUIRED
    return Demand.NONE


def refusal(wanted: Demand, state: pins.PinState | None) -> PatronCheckRes | None:
    """The answer for LOCKED and REQUIRED (no name and no reference in either), else None."""
    if wanted is Demand.LOCKED:
        return PatronCheckRes(ok=False, reason="pin_locked",
                              pin_locked_until=state.locked_until if state else None)
    if wanted is Demand.REQUIRED:
        return PatronCheckRes(ok=False, reason="pin_required", pin_required=True)
    return None


def parse_rule(text: str) -> PinRule:
    """`never`, `always` or `after_failure` (also `after-failure`); ValueError names them."""
    try:
        return PinRule(text.strip().lower().replace("-", "_"))
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not never, always or after_failure") from None


def parse_assignment(text: str) -> tuple[str, PinRule]:
    """`NAME=RULE` (a site code or a patron category) from the command line."""
    name, sep, rule = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"{text[:60]!r} is not NAME=RULE")
    return name.strip(), parse_rule(rule)
