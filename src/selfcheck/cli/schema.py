"""`selfcheck schema`: export the JSON Schema of every v1 message into mqtt/schema/."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from selfcheck.mqtt.registry import json_schemas

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "mqtt" / "schema"


def rendered() -> dict[str, str]:
    """File name -> content, one file per message schema."""
    return {f"{name.replace('/', '.v')}.json":
            json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
            for name, schema in json_schemas().items()}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schema", help="export the MQTT message JSON Schemas")
    p.add_argument("--out", type=Path, default=SCHEMA_DIR)
    p.add_argument("--check", action="store_true", help="exit 1 if the exported files are stale")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    stale = []
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in rendered().items():
        path = args.out / name
        if path.exists() and path.read_text() == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text)
    if args.check and stale:
        print("stale schema files (run `selfcheck schema`): " + ", ".join(stale))
        return 1
    return 0
