"""`selfcheck tag decode|encode`: read and write tag data models from the command line.

Other `tag` subcommands (such as `tag program`, which writes through a pad) plug in by
adding their module to TAG_COMMANDS: each has `register_tag(tag_subparsers)` that adds its
parser and sets `func` (parsed args -> exit code), as the top-level COMMANDS do.
"""

from __future__ import annotations

import argparse
import binascii
import importlib
import json
import sys

from selfcheck.drivers.tags import MODELS, decode_tag, iso28560_2, iso28560_3
from selfcheck.drivers.tags.model import TagDecodeError

TAG_COMMANDS: list[str] = ["selfcheck.cli.reader"]


def _hex(text: str) -> bytes:
    cleaned = "".join(text.split()).replace(":", "").replace("-", "")
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    try:
        return binascii.unhexlify(cleaned)
    except (binascii.Error, ValueError):
        raise argparse.ArgumentTypeError(f"not hex bytes: {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    tag = sub.add_parser("tag", help="decode and encode library tag data (ISO 28560)")
    tag_sub = tag.add_subparsers(dest="tag_command", required=True)
    _register_decode(tag_sub)
    _register_encode(tag_sub)
    for name in TAG_COMMANDS:
        importlib.import_module(name).register_tag(tag_sub)


def _register_decode(tag_sub: argparse._SubParsersAction) -> None:
    p = tag_sub.add_parser("decode", help="print a tag's data as JSON")
    p.add_argument("data", type=_hex, help="tag user memory as hex")
    p.add_argument("--model", default="auto", choices=MODELS)
    p.add_argument("--uid", type=_hex, help="tag UID as hex (fallback item id)")
    p.set_defaults(func=decode_cmd)


def _register_encode(tag_sub: argparse._SubParsersAction) -> None:
    p = tag_sub.add_parser("encode", help="print the tag memory for an item as hex")
    p.add_argument("--model", required=True, choices=[iso28560_3.MODEL, iso28560_2.MODEL])
    p.add_argument("--item-id", required=True)
    p.add_argument("--owner-isil", help="e.g. VN-HN0001")
    p.add_argument("--type-of-usage", type=int, help="1 circulating, 2 not for loan, ...")
    p.add_argument("--parts", type=int, help="parts in item")
    p.add_argument("--part", type=int, help="this part's number")
    p.add_argument("--title")
    p.add_argument("--shelf-location", help="28560-2 only")
    p.set_defaults(func=encode_cmd)


def decode_cmd(args: argparse.Namespace) -> int:
    try:
        info = decode_tag(args.data, model=args.model, uid=args.uid)
    except TagDecodeError as exc:
        print(f"selfcheck tag decode: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info.model_dump(exclude_none=True), ensure_ascii=False))
    return 0


def encode_cmd(args: argparse.Namespace) -> int:
    try:
        if args.model == iso28560_3.MODEL:
            if args.shelf_location:
                raise ValueError("28560-3 has no shelf location")
            data = iso28560_3.encode(
                args.item_id, owner_isil=args.owner_isil, title=args.title,
                type_of_usage=1 if args.type_of_usage is None else args.type_of_usage,
                parts_in_item=1 if args.parts is None else args.parts,
                part_number=1 if args.part is None else args.part,
            )
        else:
            data = iso28560_2.encode(
                args.item_id, owner_isil=args.owner_isil, type_of_usage=args.type_of_usage,
                shelf_location=args.shelf_location, title=args.title,
                parts_in_item=args.parts, part_number=args.part,
            )
    except (ValueError, UnicodeEncodeError) as exc:
        print(f"selfcheck tag encode: {exc}", file=sys.stderr)
        return 2
    print(data.hex().upper())
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m selfcheck.cli.tag tag ...`: the same commands without the other modules."""
    parser = argparse.ArgumentParser(prog="selfcheck")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
