"""Pydantic models of every v1 message: the single source of the wire format.

Every payload is JSON with a `schema` field (`tx.loan/1`, ...). `decode()` turns bytes into a
model or raises MessageError naming the field and the reason; nothing else escapes it.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_PAYLOAD = 16 * 1024  # bytes; larger messages are refused before parsing

ItemId = Annotated[str, Field(min_length=1, max_length=64)]
UUID7 = r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
MsgId = Annotated[str, Field(pattern=UUID7)]
PatronRef = Annotated[str, Field(min_length=1, max_length=64)]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TxBase(Message):
    msg_id: MsgId = Field(description="UUIDv7 chosen by the station; the dedupe key")
    seq: int = Field(ge=1, description="station sequence number, raised by one per transaction")
    site: str
    station: str
    at: dt.datetime = Field(description="when the reader did it, station clock, UTC")
    item_id: ItemId


class TxLoan(TxBase):
    schema_: Literal["tx.loan/1"] = Field("tx.loan/1", alias="schema")
    patron_ref: PatronRef = Field(description="pseudonymous patron reference from the patron check")
    deadline: dt.datetime = Field(description="a loan reaching the central after this is refused "
                                  "as late: the station has already told the reader it failed")


class TxReturn(TxBase):
    schema_: Literal["tx.return/1"] = Field("tx.return/1", alias="schema")


class TxRenew(TxBase):
    schema_: Literal["tx.renew/1"] = Field("tx.renew/1", alias="schema")
    patron_ref: PatronRef


Transaction = Annotated[TxLoan | TxReturn | TxRenew, Field(discriminator="schema_")]

Reason = Literal[
    "unknown_patron", "patron_blocked", "card_expired", "too_many_loans", "unknown_item",
    "not_for_loan", "on_loan_to_other", "not_on_loan", "late", "invalid",
    "refused",  # the library system said no without a reason we can name: see screen_message
]


class AckTx(Message):
    schema_: Literal["ack.tx/1"] = Field("ack.tx/1", alias="schema")
    msg_id: MsgId
    ok: bool
    reason: Reason | None = None
    item_id: ItemId
    title: str | None = None
    due: dt.date | None = None
    sort_bin: str | None = None
    hold: bool = False
    repeat: bool = Field(False, description="answered from the dedupe row, not applied again")
    # From a library system over SIP2 (absent with the embedded store):
    screen_message: list[str] | None = Field(None, description="SIP2 AF: show to the reader")
    print_lines: list[str] | None = Field(None, description="SIP2 AG: print on the receipt")
    alert_type: str | None = Field(None, description="SIP2 CV on a return: 01 local hold, "
                                   "02 remote hold, 03 ILL transit, 04 transfer, 99 other")
    desensitize: bool | None = Field(None, description="SIP2 12/30: the tag may be set to "
                                     "'on loan'; None when the library system did not say")
    resensitize: bool | None = Field(None, description="SIP2 10: the tag goes back to "
                                     "'in library'; None when the library system did not say")


class Status(Message):
    schema_: Literal["status/1"] = Field("status/1", alias="schema")
    online: bool
    session: int = Field(ge=0)
    version: str
    mode: str


class PatronCheckReq(Message):
    schema_: Literal["req.patron/1"] = Field("req.patron/1", alias="schema")
    card_id: Annotated[str, Field(min_length=1, max_length=64)]


class PatronCheckRes(Message):
    schema_: Literal["res.patron/1"] = Field("res.patron/1", alias="schema")
    ok: bool
    reason: Reason | None = None
    patron_ref: PatronRef | None = None
    display_name: str | None = None
    loans: int = 0
    max_loans: int = 0
    screen_message: list[str] | None = Field(None, description="SIP2 AF: show to the reader")


class MessageError(ValueError):
    """A payload that is not a valid v1 message. `field` names where, `reason` why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


MODELS: dict[str, type[Message]] = {
    "tx.loan/1": TxLoan, "tx.return/1": TxReturn, "tx.renew/1": TxRenew, "ack.tx/1": AckTx,
    "status/1": Status, "req.patron/1": PatronCheckReq, "res.patron/1": PatronCheckRes,
}


def encode(msg: Message) -> bytes:
    return msg.model_dump_json(by_alias=True, exclude_none=True).encode()


def decode(payload: bytes | bytearray, *expected: type[Message]) -> Message:
    """Parse a payload into one of `expected` (all models when none is named)."""
    if len(payload) > MAX_PAYLOAD:
        raise MessageError("payload", f"{len(payload)} bytes is over the {MAX_PAYLOAD} limit")
    try:
        raw = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MessageError("payload", f"not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise MessageError("payload", "not a JSON object")
    schema = raw.get("schema")
    model = MODELS.get(schema) if isinstance(schema, str) else None
    if model is None or (expected and model not in expected):
        wanted = ", ".join(m.model_fields["schema_"].default for m in expected) or "a v1 schema"
        raise MessageError("schema", f"{schema!r} is not {wanted}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        raise MessageError(where, err["msg"]) from None


def decode_tx(payload: bytes | bytearray) -> TxLoan | TxReturn | TxRenew:
    msg = decode(payload, TxLoan, TxReturn, TxRenew)
    assert isinstance(msg, TxLoan | TxReturn | TxRenew)
    return msg


def json_schemas() -> dict[str, dict[str, object]]:
    """JSON Schema of every message, by schema name: exported into mqtt/schema/."""
    return {name: model.model_json_schema(by_alias=True) for name, model in MODELS.items()}


# Telemetry and command models live in their own modules and register into MODELS on import;
# importing them here makes decode() and the schema export see them whatever is imported first.
import mqtt.commands  # noqa: E402
import mqtt.telemetry  # noqa: E402, F401
