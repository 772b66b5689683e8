"""`selfcheck bench`: run the benchmark suites and print one JSON line per figure."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Iterator
from typing import Any

# Each module has `run(args) -> Iterator[dict]`; the key is the suite name for --only.
SUITES = {
    "mqtt": "selfcheck.lab.bench.transactions",
    "memory": "selfcheck.lab.bench.memory",
    "tags": "selfcheck.lab.bench.tags",
    "pad": "selfcheck.lab.bench.pad",
    "fleet": "selfcheck.lab.bench.fleet",
    "console": "selfcheck.lab.bench.console",
    "central": "selfcheck.lab.bench.central",
    "koha": "selfcheck.lab.bench.koha",
    "offline-list": "selfcheck.lab.bench.offline_list",
    "flood": "selfcheck.lab.bench.flood",
    "stocktake": "selfcheck.lab.bench.stocktake",
    "tagging": "selfcheck.lab.bench.tagging",
}

Figure = dict[str, Any]


def figure(name: str, value: float, unit: str, baseline: float | None = None,
           **extra: Any) -> Figure:
    out: Figure = {"name": name, "value": round(value, 3), "unit": unit}
    if baseline is not None:
        out["baseline"] = round(baseline, 3)
        out["ratio"] = round(value / baseline, 3) if baseline else None
    out.update(extra)
    return out


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure speed and memory (prints JSON lines)")
    p.add_argument("--only", action="append", choices=sorted(SUITES),
                   help="run only these suites (repeatable)")
    p.add_argument("--quick", action="store_true", help="fewer iterations")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for key in args.only or list(SUITES):
        module = importlib.import_module(SUITES[key])
        results: Iterator[Figure] = module.run(args)
        for fig in results:
            print(json.dumps(fig, ensure_ascii=False), flush=True)
    sys.stdout.flush()
    return 0
