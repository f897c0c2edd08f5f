"""The modules Cython compiles at install (setup.py, ``COMPILED``): where they were built, the
suite runs them, and a build is never used for a source that changed since
(``streams/__init__.py``)."""
from __future__ import annotations

import ast
import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import streams

PACKAGE = Path(streams.__file__).resolve().parent
SETUP = PACKAGE.parent / "setup.py"


def compiled_in_setup() -> tuple[str, ...]:
    tree = ast.parse(SETUP.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "COMPILED" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise AssertionError("setup.py has no COMPILED")


built = streams._built_modules


def test_every_module_of_the_per_event_path_runs_compiled_where_the_install_built_them():
    if not built():
        pytest.skip("no module compiled at install (no Cython or no C compiler): the Python source runs")
    modules = streams.compiled_modules()
    assert sorted(modules) == sorted(compiled_in_setup())
    stale = {name: how for name, how in modules.items() if how != "compiled"}
    assert not stale, f"{stale}: run `make install` (or .venv/bin/pip install -e . --no-deps) to rebuild them"
    for name in compiled_in_setup():  # what the suite imports is the build
        assert importlib.import_module(f"streams.{name}").__file__.endswith(".so"), name


def _imported(root: Path, env: dict | None = None) -> dict:
    """In a fresh interpreter on the copy at ``root``: each module's state and file."""
    code = ("import json, streams, streams.account, streams.sealed; "
            "print(json.dumps({'state': streams.compiled_modules(), "
            "'account': streams.account.__file__, 'sealed': streams.sealed.__file__}))")
    run = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(root), **(env or {})})
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture
def copy(tmp_path):
    if not {"account", "sealed"} <= set(built()):
        pytest.skip("the modules are not compiled here")
    shutil.copytree(PACKAGE, tmp_path / "streams", ignore=shutil.ignore_patterns("__pycache__", "*.c"))
    return tmp_path


def test_a_copy_as_built_imports_the_builds(copy):
    seen = _imported(copy)
    assert seen["account"].endswith(".so") and seen["sealed"].endswith(".so")
    assert set(seen["state"].values()) == {"compiled"}


def test_a_changed_source_is_imported_instead_of_its_build(copy):
    source = copy / "streams" / "account.py"
    source.write_text(source.read_text() + "\nCHANGED_SINCE_THE_BUILD = True\n")
    seen = _imported(copy)
    assert seen["account"] == str(source)
    assert seen["state"]["account"].startswith("source (changed since the build")
    assert seen["sealed"].endswith(".so") and seen["state"]["sealed"] == "compiled"  # the others as built


def test_without_the_record_of_the_build_every_source_is_imported(copy):
    (copy / "streams" / streams.MANIFEST).unlink()
    seen = _imported(copy)
    assert seen["account"].endswith("account.py") and seen["sealed"].endswith("sealed.py")
    assert all(how.startswith("source (changed") for how in seen["state"].values())


def test_tkonto_compiled_false_imports_every_source(copy):
    seen = _imported(copy, {"TKONTO_COMPILED": "false"})
    assert seen["account"].endswith("account.py") and seen["sealed"].endswith("sealed.py")
    assert set(seen["state"].values()) == {"source (TKONTO_COMPILED=false)"}
