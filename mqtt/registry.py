"""Every v1 message by schema name: the contract's core messages, telemetry and commands.

Above the three model modules, so none of them imports another's users; `decode()` here takes
any v1 message and `json_schemas()` is what `selfcheck schema` exports.
"""

from __future__ import annotations

from selfcheck.mqtt import commands, messages, telemetry
from selfcheck.mqtt.messages import Message

MODELS: dict[str, type[Message]] = {**messages.MODELS, **telemetry.MODELS, **commands.MODELS}


def decode(payload: bytes | bytearray) -> Message:
    """Any v1 message (see messages.decode)."""
    return messages.decode(payload, known=MODELS)


def json_schemas() -> dict[str, dict[str, object]]:
    """JSON Schema of every message, by schema name: exported into mqtt/schema/."""
    return {name: model.model_json_schema(by_alias=True) for name, model in MODELS.items()}
