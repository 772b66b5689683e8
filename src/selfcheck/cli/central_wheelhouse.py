"""`selfcheck central wheelhouse build --out DIR`: one release of the station software as the
stations install it from the central, without the internet.

DIR gets the project's wheel, a wheel of every dependency, pinned to the versions in the venv
this runs from (the versions the release was tested with), and `requirements.lock`: each
wheel by name, version and sha256, for pip --require-hashes. `release.json` says which
release it is and the lock's sha256, which the `update` command carries.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

LOCK = "requirements.lock"
# name-version(-build)?-python-abi-platform.whl (PEP 427); the name with _ for -.
WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")


def register(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "wheelhouse", help="build a release for the stations to install from the central",
        description="Wheels of the project and of its dependencies, pinned to this venv's "
        "versions, and a requirements.lock with their sha256 (pip --require-hashes). Serve the "
        "parent folder with `selfcheck fleet serve --updates PARENT` and send the `update` "
        "command this prints, to one station first (docs/deployment.md).")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="{build}")
    b = verbs.add_parser("build", help="build the release's wheelhouse into --out")
    b.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="the release's folder (made; must be empty if it exists), e.g. "
                   "/srv/selfcheck/updates/0.2.0")
    b.add_argument("--project", type=Path, default=Path("."),
                   help="the project's source folder, with pyproject.toml (default: here)")
    b.add_argument("--platform", action="append", default=[], metavar="TAG",
                   help="the stations' platform when it is not this machine's, e.g. "
                   "manylinux2014_aarch64 for a Raspberry Pi 4/5 (repeat for more tags)")
    b.add_argument("--python-version", metavar="X.Y",
                   help="the stations' Python, with --platform (default: this one's)")
    b.add_argument("--find-links", action="append", default=[], metavar="DIR|URL",
                   help="also look for dependencies' wheels here (a local wheel cache)")
    b.add_argument("--no-index", action="store_true",
                   help="dependencies only from --find-links, never from the package index")
    b.add_argument("--url", default="http://CENTRAL:9108/updates",
                   help="where the stations reach the served parent folder, for the "
                   "command printed at the end")
    b.set_defaults(func=build)


def _pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"wheelhouse not built: pip {args[0]} failed "
                         f"(exit {done.returncode}):\n{done.stderr.strip()[-2000:]}")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_text(folder: Path) -> str:
    """requirements.lock for every wheel in `folder`: name==version and the hash of each
    wheel of it (several platforms' wheels of one version give several hashes)."""
    hashes: dict[tuple[str, str], list[str]] = defaultdict(list)
    for whl in sorted(folder.glob("*.whl")):
        m = WHEEL.match(whl.name)
        if m is None:
            raise SystemExit(f"wheelhouse not built: {whl.name} is not a wheel's name")
        digest = hashlib.sha256(whl.read_bytes()).hexdigest()
        hashes[(_norm(m["name"]), m["version"])].append(digest)
    names = [n for n, _v in hashes]
    if len(names) != len(set(names)):
        raise SystemExit("wheelhouse not built: two versions of one package: "
                         + ", ".join(sorted({n for n in names if names.count(n) > 1})))
    lines = ["# selfcheck central wheelhouse build: install with pip --require-hashes "
             "--no-index --find-links"]
    for (name, version), digests in sorted(hashes.items()):
        lines.append(f"{name}=={version} \\")
        lines += [f"    --hash=sha256:{d}" + (" \\" if i < len(digests) - 1 else "")
                  for i, d in enumerate(digests)]
    return "\n".join(lines) + "\n"


def build(args: argparse.Namespace) -> int:
    out: Path = args.out
    if out.exists() and any(out.iterdir()):
        print(f"wheelhouse not built: {out} is not empty (one folder per release)",
              file=sys.stderr)
        return 2
    if not (args.project / "pyproject.toml").is_file():
        print(f"wheelhouse not built: no pyproject.toml in {args.project} (give --project)",
              file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    sources = [a for f in args.find_links for a in ("--find-links", str(f))]
    if args.no_index:
        sources.append("--no-index")
    with tempfile.TemporaryDirectory() as tmp:
        built, host, pure = Path(tmp) / "built", Path(tmp) / "host", Path(tmp) / "pure"
        # The project itself, its build tools (pyproject's build-system) from the same
        # sources as the dependencies.
        # Built from a copy: pip builds in the tree, and a build/ folder left in the project
        # would go into the next release.
        tree = Path(tmp) / "project"
        shutil.copytree(args.project, tree, symlinks=True, ignore=shutil.ignore_patterns(
            ".git", ".venv", "venv", "var", "build", "dist", "*.egg-info", "__pycache__",
            ".mypy_cache", ".ruff_cache", ".pytest_cache"))
        _pip("wheel", "--no-deps", *sources, "--wheel-dir", str(built), str(tree))
        (own,) = built.glob("*.whl")
        m = WHEEL.match(own.name)
        assert m is not None
        # Its dependencies at this venv's versions: what was tested is what the stations get.
        constraints = Path(tmp) / "constraints.txt"
        frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
                                capture_output=True, text=True, check=True).stdout
        constraints.write_text("\n".join(
            line for line in frozen.splitlines()
            if "==" in line and _norm(line.split("==")[0]) != _norm(m["name"])) + "\n")
        # Every one as a wheel: the published wheels, and a wheel built here of those
        # published only as source (pyDes, for nfcpy), so that the stations build nothing.
        _pip("wheel", *sources, "--find-links", str(built), "--wheel-dir", str(host),
             "-c", str(constraints), str(own))
        if not args.platform:
            for whl in host.glob("*.whl"):
                shutil.copy2(whl, out / whl.name)
        else:
            # Another platform's binary wheels from the index; the pure-Python ones built
            # above serve every platform.
            pure.mkdir()
            for whl in host.glob("*-none-any.whl"):
                shutil.copy2(whl, pure / whl.name)
            tags = [a for tag in args.platform for a in ("--platform", tag)]
            _pip("download", "--only-binary", ":all:", *tags, "--python-version",
                 args.python_version or f"{sys.version_info[0]}.{sys.version_info[1]}",
                 *sources, "--find-links", str(pure), "--dest", str(out),
                 "-c", str(constraints), str(own))
    lock = lock_text(out)
    (out / LOCK).write_text(lock)
    sha = hashlib.sha256(lock.encode()).hexdigest()
    version = m["version"]
    release = out.name
    (out / "release.json").write_text(json.dumps(
        {"package": _norm(m["name"]), "version": version, "lock_sha256": sha}, indent=2) + "\n")
    wheels = len(list(out.glob("*.whl")))
    print(f"release {release}: {m['name']} {version}, {wheels} wheels, "
          f"{LOCK} sha256 {sha}")
    print(f"send it to one station first:\n  selfcheck fleet send SITE/STATION update "
          f"version={release} url={args.url.rstrip('/')}/{release}/ sha256={sha}")
    return 0
