"""The package's structure: one import root, layers that import only downwards, no cycles."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import layers


def test_no_module_imports_a_layer_above_its_own() -> None:
    assert layers.upward(layers.graph()) == []


def test_no_import_cycles() -> None:
    assert layers.cycles(layers.graph()) == []


def test_every_module_has_a_layer() -> None:
    g = layers.graph()
    assert len(g) > 100  # the wings were found through their links
    for module in g:
        layers.layer_of(module)


def test_the_checks_catch_an_upward_import_and_a_cycle() -> None:
    g = {
        "selfcheck.drivers.pad.base": {"selfcheck.kiosk.core": 3},
        "selfcheck.kiosk.core": {"selfcheck.kiosk.core_model": 1},
        "selfcheck.kiosk.core_model": {"selfcheck.kiosk.core": 2},
        "selfcheck.central.bridge": {"selfcheck.kiosk.runtime.journal": 7},
        "selfcheck.cli.station": {"selfcheck.lab.demo": 1, "selfcheck.kiosk.ui.app": 2},
    }
    assert layers.upward(g) == [
        "selfcheck.drivers.pad.base:3 imports selfcheck.kiosk.core (drivers -> kiosk.core)",
        "selfcheck.central.bridge:7 imports selfcheck.kiosk.runtime.journal "
        "(central -> kiosk.runtime)",
    ]
    assert layers.cycles(g) == [["selfcheck.kiosk.core", "selfcheck.kiosk.core_model"]]


def test_type_checking_imports_and_lazy_imports(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("from typing import TYPE_CHECKING\n"
                   "if TYPE_CHECKING:\n    from selfcheck.cli import main\n"
                   "def f():\n    from selfcheck.lab import demo\n")
    known = {"selfcheck.lab.demo": src, "selfcheck.cli": src}
    assert list(layers.imports("selfcheck.kiosk.x", src, known)) == [("selfcheck.lab.demo", 5)]


def test_only_selfcheck_is_importable_from_the_install(tmp_path: Path) -> None:
    # Away from the checkout, the wings exist only under the one root.
    probe = ("import importlib.util as u, sys\n"
             "names = ['kiosk', 'drivers', 'mqtt', 'central']\n"
             "assert u.find_spec('selfcheck.kiosk.core') is not None\n"
             "sys.exit(sum(u.find_spec(n) is not None for n in names))\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path)
    assert proc.returncode == 0


def test_kv_files_import_under_the_one_root() -> None:
    # A `#:import` of `kiosk.…` would load a second copy of a module (its own theme object)
    # wherever the checkout is on the path, and fail to import anywhere else.
    kvs = [Path(d) / f for d, _, files in os.walk(layers.SRC / "selfcheck", followlinks=True)
           for f in files if f.endswith(".kv")]
    assert kvs
    for kv in kvs:
        for line in kv.read_text().splitlines():
            if line.startswith("#:import"):
                module = line.split()[2]
                assert module.split(".")[0] in {"selfcheck", "kivy"}, f"{kv.name}: {line}"


def test_production_never_loads_the_lab_and_nothing_loads_the_tests() -> None:
    """The lab (demo, stand-ins, benchmarks) is imported only by itself and by the commands
    that run it; no module of the package imports from tests/."""
    from selfcheck.cli import TABLE

    lab_commands = {module for module, _help in TABLE.values()
                    if module.startswith("selfcheck.lab")}
    g = layers.graph()
    outside = sorted(f"{module} imports {target}" for module, targets in g.items()
                     for target in targets if target.startswith("selfcheck.lab")
                     and not module.startswith("selfcheck.lab"))
    assert outside == []
    assert lab_commands >= {"selfcheck.lab.demo", "selfcheck.lab.bench.cmd"}
    for path in layers.modules().values():
        text = path.read_text(encoding="utf-8")
        assert "from tests" not in text and "import tests" not in text, path


def test_each_module_has_one_name() -> None:
    """The wings are folders at the checkout's root, which the tests put on the path (to
    import `tests.*`): imported as `kiosk`, a module would load twice, with classes that are
    not the same classes. The wing refuses every name but its own."""
    import importlib

    from selfcheck.kiosk import core_model

    for wing in ("kiosk", "central", "drivers", "mqtt"):
        with pytest.raises(ImportError, match=f"import selfcheck.{wing}, not {wing}"):
            importlib.import_module(wing)
        assert wing not in sys.modules
    assert sys.modules["selfcheck.kiosk.core_model"] is core_model
