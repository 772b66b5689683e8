"""docs/security.md names a test for each claim it makes: each named test must exist, so
that a claim cannot outlive the test that showed it (renamed or deleted tests included)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "security.md"

# `tests/x.py::test_a`, and the `::test_b` that follow it in the same cell, name tests of x.py
_REF = re.compile(r"`(tests/[\w/]+\.py)?(::\w+)?(?:\[[^\]`]*\])?`")


def _named_tests(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        current = None
        for m in _REF.finditer(line):
            path, name = m.group(1), m.group(2)
            if path:
                current = path
            if name:
                assert current, f"{m.group(0)} names a test of no file: {line[:120]}"
                out.append((current, name[2:]))
            elif path:
                out.append((path, ""))
    return out


def _defined(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_every_test_the_threat_model_names_exists() -> None:
    named = _named_tests(DOC.read_text(encoding="utf-8"))
    assert len(named) >= 30, "the threat model names its tests"
    missing = []
    for rel, name in named:
        path = ROOT / rel
        if not path.is_file():
            missing.append(rel)
        elif name and name not in _defined(path):
            missing.append(f"{rel}::{name}")
    assert not missing, f"docs/security.md names tests that do not exist: {missing}"


def test_the_parser_sees_a_missing_test() -> None:
    # the check above could pass by reading nothing: a made-up name must be caught
    text = ("| x | y | `tests/test_security_doc.py::test_nope`, "
            "`::test_the_parser_sees_a_missing_test` |")
    named = _named_tests(text)
    assert named == [("tests/test_security_doc.py", "test_nope"),
                     ("tests/test_security_doc.py", "test_the_parser_sees_a_missing_test")]
    assert "test_nope" not in _defined(ROOT / named[0][0])
