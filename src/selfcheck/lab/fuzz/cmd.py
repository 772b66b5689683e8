"""`selfcheck fuzz`: generated and mutated inputs through every decoder; any exception but the
decoder's documented error, or an input that takes too long, is a finding."""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from selfcheck.lab.fuzz.mutate import Mutator
from selfcheck.lab.fuzz.targets import Target, all_targets

SLOW_S = 1.0  # one input taking more CPU than this is a finding (a hang in the making);
# CPU time, not wall time, so that a busy machine does not make findings


@dataclass
class Finding:
    target: str
    kind: str  # the exception type, or "slow"
    where: str
    data: bytes


@dataclass
class Result:
    target: str
    inputs: int = 0
    rejected: int = 0  # the documented error: the decoder did its job
    seconds: float = 0.0
    cpu_s: float = 0.0
    slowest_s: float = 0.0
    findings: dict[tuple[str, str], Finding] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0

    @property
    def cpu_rate(self) -> float:
        """Inputs per second of this process's CPU: what the decoder costs, load aside."""
        return self.inputs / self.cpu_s if self.cpu_s else 0.0


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    last = frames[-1] if frames else None
    return f"{Path(last.filename).name}:{last.lineno}" if last else "?"


def run_target(target: Target, inputs: int, seed: int,
               seconds: float | None = None) -> Result:
    """Feed `inputs` inputs (or as many as fit in `seconds`) to one decoder."""
    result = Result(target.name)
    mutator = Mutator(target.seeds, target.tokens, seed, target.max_len)
    started, cpu_started = time.perf_counter(), time.process_time()
    for data in mutator.inputs(inputs):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            target.run(data)
        except target.allowed:
            result.rejected += 1
        except Exception as exc:  # the finding itself: anything else
            key = (type(exc).__name__, _where(exc))
            result.findings.setdefault(key, Finding(target.name, key[0], key[1], data))
        took = time.process_time() - c0
        result.slowest_s = max(result.slowest_s, took)
        if took > SLOW_S:
            key = ("slow", f"{took:.1f} s")
            result.findings.setdefault(key, Finding(target.name, "slow", key[1], data))
        result.inputs += 1
        if seconds is not None and t0 - started > seconds:
            break
    result.seconds = time.perf_counter() - started
    result.cpu_s = time.process_time() - cpu_started
    return result


def save(finding: Finding, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(finding.data).hexdigest()[:12]
    path = folder / f"{finding.target}-{digest}.bin"
    path.write_bytes(finding.data)
    return path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fuzz", help="fuzz every decoder (tags, pad frames, SIP2, MQTT, "
                       "barcodes, station config) with generated and mutated inputs")
    p.add_argument("--decoder", action="append", metavar="NAME",
                   help="only this decoder (repeatable); --list names them")
    p.add_argument("--inputs", type=int, default=10_000, help="inputs per decoder")
    p.add_argument("--seconds", type=float, help="stop each decoder after this long")
    p.add_argument("--seed", type=int, default=1, help="same seed, same inputs")
    p.add_argument("--findings", type=Path, default=Path("var/fuzz-findings"),
                   help="folder for the inputs that failed")
    p.add_argument("--list", action="store_true", help="list the decoders and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    targets = all_targets()
    if args.list:
        for t in targets:
            print(t.name)
        return 0
    if args.decoder:
        known = {t.name for t in targets}
        unknown = [n for n in args.decoder if n not in known]
        if unknown:
            print(f"unknown decoder {', '.join(unknown)}; known: {', '.join(sorted(known))}",
                  file=sys.stderr)
            return 2
        targets = [t for t in targets if t.name in args.decoder]
    if args.inputs < 1:
        print("--inputs: give at least 1", file=sys.stderr)
        return 2
    print(f"{'decoder':<16} {'inputs':>9} {'inputs/s':>9} {'per CPU s':>9} {'rejected':>9} "
          f"{'slowest':>9} findings")
    total, total_s, total_cpu, found = 0, 0.0, 0.0, 0
    for i, target in enumerate(targets):
        r = run_target(target, args.inputs, args.seed + i, args.seconds)
        total, total_s, found = total + r.inputs, total_s + r.seconds, found + len(r.findings)
        total_cpu += r.cpu_s
        print(f"{r.target:<16} {r.inputs:>9} {r.rate:>9.0f} {r.cpu_rate:>9.0f} {r.rejected:>9} "
              f"{r.slowest_s * 1000:>7.1f}ms {len(r.findings)}", flush=True)
        for f in r.findings.values():
            print(f"  {f.kind} at {f.where}: {save(f, args.findings)}")
    print(f"{'total':<16} {total:>9} {total / total_s if total_s else 0:>9.0f} "
          f"{total / total_cpu if total_cpu else 0:>9.0f} {'':>9} {'':>9} {found}")
    return 1 if found else 0
