"""Bounds on what a decoder takes, checked before (depth) and after (numbers, time zones)
parsing, so that hostile input ends in the decoder's own error type and never in a
RecursionError, an OverflowError from a database or a naive/aware comparison."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

Error = Callable[[str, str], Exception]  # (field, reason) -> the decoder's error

INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # what a signed 64-bit column (SQLite INTEGER) holds

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text, brackets inside strings
    skipped; a linear scan that does not parse."""
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKET)
    depth = deepest = 0
    for b in brackets:
        if b in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def check_depth(data: bytes, limit: int, error: Error) -> None:
    if data.count(b"[") + data.count(b"{") <= limit:
        return  # cannot be deeper than the brackets it has: the common case, no scan
    deepest = json_depth(data)
    if deepest > limit:
        raise error("payload", f"nested {deepest} deep, over the limit of {limit}")


# Values with nothing inside to check, skipped before a call and a path are made for them:
# most of a message's fields, on the path of every message.
_NO_NUMBERS = (str, type(None))
_NO_DATETIMES = (str, int, float, type(None))  # bool is an int


def check_numbers(value: Any, error: Error, path: str = "") -> None:
    """Every integer fits a signed 64-bit column and every float is finite."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise error(path or "payload", "integer out of the signed 64-bit range")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise error(path or "payload", "number is not finite")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(item, _NO_NUMBERS):
                check_numbers(item, error, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, _NO_NUMBERS):
                check_numbers(item, error, f"{path}.{i}" if path else str(i))


def check_aware(value: Any, error: Error, path: str = "") -> None:
    """Every datetime in a validated model carries a time zone: a naive one cannot be
    compared with the central's clock."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise error(path or "payload", "datetime has no time zone (add Z or +07:00)")
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            item = getattr(value, name)
            if not isinstance(item, _NO_DATETIMES):
                check_aware(item, error, f"{path}.{name}" if path else name)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(item, _NO_DATETIMES):
                check_aware(item, error, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if not isinstance(item, _NO_DATETIMES):
                check_aware(item, error, f"{path}.{i}" if path else str(i))
