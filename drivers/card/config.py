"""Validation of card reader settings: one error type that names the bad field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class CardConfigError(ValueError):
    """Site configuration for a card reader is wrong; `field` names the offending setting."""

    def __init__(self, what: str, field: str, problem: str) -> None:
        super().__init__(f"{what}: setting {field!r}: {problem}")
        self.field = field
        self.problem = problem


def parse_options(model: type[M], what: str, data: Mapping[str, Any]) -> M:
    """Validate `data` against `model`; the first problem becomes a CardConfigError."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(settings)"
        problem = err["msg"]
        if err["type"] != "missing":
            problem += f" (got {err['input']!r})"
        raise CardConfigError(what, field, problem) from None
