"""`selfcheck reader scan|simulate` and `selfcheck tag program`: the installer's pad tools.

- ``reader scan --type 3m810|feig|ascii --url URL [--once]``: one line per tag on the pad, its
  UID (16 upper-case hex digits, MSB first) and the decoded item or why it does not decode.
- ``reader simulate --type ... --listen HOST:PORT | --pty --tag UID:HEX[:AFI] --book ITEM``:
  run a simulator that speaks the pad's real frames at its real baud rate.
- ``tag program --type ... --url ... --item-id ID [--owner-isil ..] [--afi in|loan]``: write a
  new ISO 28560-3 tag on the one tag on the pad, verify it, and set its AFI.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

from selfcheck.drivers.pad import open_pad
from selfcheck.drivers.pad.base import AfiPolicy, BookPad, PadError
from selfcheck.drivers.tags import TagDecodeError, decode_tag, iso28560_3

PAD_TYPES = ("3m810", "feig", "ascii")
BLOCK_SIZE = 4
BLOCKS = 9  # 36 bytes: the 34-byte ISO 28560-3 basic block


def _pad_args(p: argparse.ArgumentParser, types: tuple[str, ...] = PAD_TYPES) -> None:
    p.add_argument("--type", required=True, choices=types, help="reader protocol")
    p.add_argument("--url", required=True,
                   help="pyserial URL: /dev/ttyUSB0, socket://host:port, loop://")
    p.add_argument("--timeout", type=float, default=0.5, help="seconds to wait for an answer")
    p.add_argument("--block-order", choices=("reversed", "tag"), default="reversed",
                   help="FEIG only: the reader's data block byte order setting")


def _open(args: argparse.Namespace) -> BookPad:
    opts: dict[str, object] = {}
    if args.type in ("3m810", "feig"):
        opts.update(timeout=args.timeout, reconnect_window=2.0)
    if args.type == "feig":
        opts["block_order"] = args.block_order
    return open_pad(args.type, args.url, **opts)


def register(sub: argparse._SubParsersAction) -> None:
    reader = sub.add_parser("reader", help="book pad tools: scan tags, run a pad simulator")
    rsub = reader.add_subparsers(dest="reader_command", required=True)

    scan = rsub.add_parser("scan", help="print the tags on the pad, one line each")
    _pad_args(scan)
    scan.add_argument("--once", action="store_true", help="one inventory, then exit")
    scan.add_argument("--blocks", type=int, default=BLOCKS,
                      help="blocks of memory to read first (more are read if the data runs on)")
    scan.set_defaults(func=scan_cmd)

    sim = rsub.add_parser("simulate", help="run a pad simulator on a TCP port or a pty")
    sim.add_argument("--type", required=True, choices=PAD_TYPES)
    where = sim.add_mutually_exclusive_group(required=True)
    where.add_argument("--listen", help="HOST:PORT; drivers use socket://HOST:PORT")
    where.add_argument("--pty", action="store_true", help="a pseudo-terminal; prints its path")
    sim.add_argument("--tag", action="append", default=[], metavar="UID:HEX[:AFI]",
                     help="a tag on the pad: UID, memory and AFI in hex (repeatable)")
    sim.add_argument("--book", action="append", default=[], metavar="ITEM_ID",
                     help="a book with an ISO 28560-3 tag for this item id (repeatable)")
    sim.add_argument("--seconds", type=float, default=0.0, help="stop after this long")
    sim.set_defaults(func=simulate_cmd)


def describe(pad: BookPad, uid: bytes, blocks: int = BLOCKS) -> str:
    """One scan line: UID and the decoded item, or the reason it does not decode."""
    from selfcheck.drivers.pad.watcher import read_tag_data

    try:  # more blocks when the data runs on (28560-2 titles, 28560-3 optional blocks)
        data = read_tag_data(pad, uid, blocks, max(blocks, 64))
    except PadError as exc:
        return f"{uid.hex().upper()}  (not read: {exc})"
    try:
        info = decode_tag(data)
    except TagDecodeError as exc:
        return f"{uid.hex().upper()}  (does not decode: {exc})"
    fields = [f"item={info.primary_item_id}", f"model={info.model}"]
    if info.owner_isil:
        fields.append(f"owner={info.owner_isil}")
    if info.type_of_usage is not None:
        fields.append(f"usage={info.type_of_usage}")
    if info.title:
        fields.append(f"title={json.dumps(info.title, ensure_ascii=False)}")
    return f"{uid.hex().upper()}  " + " ".join(fields)


def scan_cmd(args: argparse.Namespace) -> int:
    pad = _open(args)
    shown: set[bytes] = set()
    try:
        while True:
            try:
                uids = pad.inventory()
            except PadError as exc:
                print(f"selfcheck reader scan: {exc}", file=sys.stderr)
                if args.once:
                    return 1
                time.sleep(1.0)
                continue
            for uid in uids:
                if args.once or uid not in shown:
                    print(describe(pad, uid, args.blocks), flush=True)
            for uid in shown - set(uids):
                print(f"{uid.hex().upper()}  lifted", flush=True)
            shown = set(uids)
            if args.once:
                return 0
            time.sleep(0.2)
    except KeyboardInterrupt:
        return 0
    finally:
        pad.close()


def _parse_tag(text: str) -> tuple[bytes, bytes, int]:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"--tag {text!r}: expected UID:HEX[:AFI]")
    uid = bytes.fromhex(parts[0])
    if len(uid) != 8:
        raise ValueError(f"--tag {text!r}: the UID has 8 bytes (16 hex digits)")
    return uid, bytes.fromhex(parts[1]), int(parts[2], 16) if len(parts) == 3 else 0x07


def simulate_cmd(args: argparse.Namespace) -> int:
    from selfcheck.drivers.pad.simulators import SIMULATORS

    try:
        tags = [_parse_tag(t) for t in args.tag]
        for k, item in enumerate(args.book):
            uid = bytes.fromhex("E0040150") + (0x10000000 + k).to_bytes(4, "big")
            tags.append((uid, iso28560_3.encode(item), AfiPolicy().in_library))
    except ValueError as exc:
        print(f"selfcheck reader simulate: {exc}", file=sys.stderr)
        return 2
    sim = SIMULATORS[args.type](pty=True) if args.pty else SIMULATORS[args.type](
        listen=args.listen)
    for uid, memory, afi in tags:
        sim.place(uid, memory, afi)
    url = sim.start()
    print(f"{args.type} simulator on {url} with {len(tags)} tag(s); Ctrl-C stops it", flush=True)
    done = threading.Event()
    try:
        done.wait(args.seconds if args.seconds > 0 else None)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


# -- `selfcheck tag program`, hooked into cli/tag.py's TAG_COMMANDS

def register_tag_program(tag_sub: argparse._SubParsersAction) -> None:
    p = tag_sub.add_parser("program", help="write a new ISO 28560-3 tag on a connected pad")
    _pad_args(p, ("3m810", "feig"))
    p.add_argument("--item-id", required=True)
    p.add_argument("--owner-isil", help="e.g. VN-HN0001")
    p.add_argument("--afi", choices=("in", "loan"), default="in",
                   help="security state to leave the tag in (default: in library)")
    p.add_argument("--afi-in", type=lambda s: int(s, 16), default=AfiPolicy().in_library,
                   help="this site's 'in library' AFI in hex (default 07)")
    p.add_argument("--afi-loan", type=lambda s: int(s, 16), default=AfiPolicy().on_loan,
                   help="this site's 'on loan' AFI in hex (default C2)")
    p.add_argument("--uid", help="the tag to write, if more than one is on the pad")
    p.set_defaults(func=program_cmd)


register_tag = register_tag_program  # the name cli/tag.py's TAG_COMMANDS calls


def program_cmd(args: argparse.Namespace) -> int:
    def fail(message: str) -> int:
        print(f"selfcheck tag program: {message}", file=sys.stderr)
        return 1

    try:
        memory = iso28560_3.encode(args.item_id, owner_isil=args.owner_isil)
    except ValueError as exc:
        return fail(str(exc))
    memory += bytes(-len(memory) % BLOCK_SIZE)
    afi = args.afi_in if args.afi == "in" else args.afi_loan
    pad = _open(args)
    try:
        uids = pad.inventory()
        if args.uid:
            uid = bytes.fromhex(args.uid)
            if uid not in uids:
                return fail(f"tag {args.uid.upper()} is not on the pad")
        elif len(uids) != 1:
            return fail(f"put exactly one tag on the pad ({len(uids)} there); or give --uid")
        else:
            uid = uids[0]
        pad.write_blocks(uid, 0, memory)
        if pad.read_blocks(uid, 0, len(memory) // BLOCK_SIZE) != memory:
            return fail("the tag memory read back differs from what was written")
        pad.write_afi(uid, afi)
    except PadError as exc:
        return fail(str(exc))
    finally:
        pad.close()
    print(f"{uid.hex().upper()}  programmed item={args.item_id} afi={afi:02X}")
    return 0


if __name__ == "__main__":  # python -m selfcheck.cli.reader reader ...
    _parser = argparse.ArgumentParser(prog=os.path.basename(sys.argv[0]))
    _sub = _parser.add_subparsers(dest="command", required=True)
    register(_sub)
    _args = _parser.parse_args()
    sys.exit(_args.func(_args))
