"""The v1 wire contract: malformed input is a MessageError naming the field; schemas exported."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from selfcheck.cli.schema import SCHEMA_DIR, rendered
from selfcheck.mqtt import messages, topics
from selfcheck.mqtt.ids import uuid7


def loan_json(**kw: object) -> bytes:
    now = dt.datetime.now(dt.UTC)
    msg = messages.TxLoan(msg_id=uuid7(), seq=1, site="s", station="st", at=now, item_id="1",
                          patron_ref="p-1", deadline=now)
    raw = json.loads(messages.encode(msg))
    raw.update(kw)
    return json.dumps(raw).encode()


def test_round_trip() -> None:
    tx = messages.decode_tx(loan_json())
    assert isinstance(tx, messages.TxLoan)
    assert messages.decode_tx(messages.encode(tx)) == tx


@pytest.mark.parametrize(("payload", "field"), [
    (b"not json", "payload"),
    (b"[1, 2]", "payload"),
    (b'{"schema": "tx.loan/9"}', "schema"),
    (b'{"schema": "status/1", "online": true, "session": 1, "version": "x", "mode": "m"}',
     "schema"),
    (loan_json(seq=0), "seq"),
    (loan_json(msg_id="not-a-uuid"), "msg_id"),
    (loan_json(item_id=""), "item_id"),
    (loan_json(extra="x"), "extra"),
    (b"{" + b" " * messages.MAX_PAYLOAD + b"}", "payload"),
])
def test_bad_payloads_name_the_field(payload: bytes, field: str) -> None:
    with pytest.raises(messages.MessageError) as err:
        messages.decode_tx(payload)
    assert err.value.field == field


def test_uuid7_is_version_7_and_time_ordered() -> None:
    a, b = uuid7(1000), uuid7(2000)
    assert a[14] == "7" and a < b


def test_topics() -> None:
    assert topics.tx("thu-vien-hn", "st-1", "loan") == "lib/v1/thu-vien-hn/st-1/tx/loan"
    parsed = topics.parse("lib/v1/thu-vien-hn/st-1/req/patron")
    assert (parsed.site, parsed.station, parsed.channel, parsed.name) == (
        "thu-vien-hn", "st-1", "req", "patron")
    with pytest.raises(topics.TopicError):
        topics.root("Thư viện", "st-1")
    with pytest.raises(topics.TopicError):
        topics.parse("lib/v2/a/b/tx/loan")


def test_exported_json_schemas_are_current() -> None:
    files = rendered()
    assert set(files) == {p.name for p in SCHEMA_DIR.glob("*.json")}
    for name, text in files.items():
        assert (SCHEMA_DIR / name).read_text() == text, f"{name} is stale: run selfcheck schema"
    loan = json.loads(files["tx.loan.v1.json"])
    assert "patron_ref" in loan["required"] and "msg_id" in loan["required"]
