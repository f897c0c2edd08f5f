"""One function of the pipeline's stages timed on the very calls an engine_stages run makes
to it, and the parts of it before given lines: where its time goes, as compiled.

    .venv/bin/python benchmarks/replay.py MODULE FUNCTION ['LINE TEXT' ...]
                     [--events 6000] [--payees 2000] [--copy]

Runs ``benchmarks/engine_stages.py`` with ``streams.MODULE.FUNCTION`` wrapped (in every
module that imported it) to keep each call's arguments, then calls the function again on
all of them, best of 9 passes, and prints ns per call. With LINE TEXTs, a copy of the
function is compiled by Cython as ``setup.py`` compiles the module (its names imported from
it), once whole and once cut short before the first line containing each text (it
returns None there), and each is timed the same way: what comes before each line.

The arguments are kept as passed: for a function that changes them (``account.register``
changes its account) give ``--copy``, and each pass works on deep copies of the first
argument, made before the pass is timed.

Why: callgrind's costs per function (``instructions.py``) are exact in total but not
per function in compiled code: it gave ``citizen_view._iso_date`` ~4,600 instructions a
call, where the call takes ~220 ns. This replays the real calls on the real data.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import importlib
import io
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SETUP = """
from setuptools import Extension, setup
from Cython.Build import cythonize
setup(ext_modules=cythonize([Extension("{name}", ["{name}.py"], extra_compile_args=["-O2"])], quiet=True,
                            compiler_directives={{"language_level": 3, "annotation_typing": False}}))
"""


class ReplayError(Exception):
    """A module, function or line that is not there, or a copy that does not compile."""


def function_source(module: str, function: str) -> tuple[str, list[str]]:
    """The source of a module-level function, and the module's top-level names."""
    path = ROOT / "streams" / f"{module}.py"
    if not path.exists():
        raise ReplayError(f"no module streams/{module}.py")
    source = path.read_text()
    tree = ast.parse(source)
    names: set[str] = set()
    found = None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            if node.name == function and isinstance(node, ast.FunctionDef):
                found = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names if alias.name != "*")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    if found is None:
        raise ReplayError(f"no function {function} at the top level of streams/{module}.py")
    first = found.decorator_list[0].lineno if found.decorator_list else found.lineno
    text = "\n".join(source.splitlines()[first - 1: found.end_lineno]) + "\n"
    return text, sorted(names - {function, "annotations"})


def cut_before(text: str, function: str, line: str, name: str) -> str:
    """The function renamed ``name``, returning None before its first line containing ``line``."""
    lines = text.splitlines()
    at = next((i for i, current in enumerate(lines) if i and line in current), None)
    if at is None:
        raise ReplayError(f"no line of {function} contains {line!r}")
    indent = re.match(r"\s*", lines[at]).group(0)
    head = lines[:at] + [f"{indent}return None"]
    head[0] = head[0].replace(f"def {function}(", f"def {name}(", 1)
    return "\n".join(head) + "\n"


def compiled_copies(module: str, function: str, lines: list[str], workdir: Path):
    """Import a module compiled from the function whole and cut before each of ``lines``."""
    text, names = function_source(module, function)
    parts = [f"from streams.{module} import *  # noqa\n",
             f"from streams.{module} import {', '.join(names)}  # noqa\n" if names else "", "\n\n", text]
    parts += ["\n\n" + cut_before(text, function, line, f"_before_{i}") for i, line in enumerate(lines)]
    name = f"replay_{module}_{os.getpid()}"
    (workdir / f"{name}.py").write_text("".join(parts))
    (workdir / "setup.py").write_text(SETUP.format(name=name))
    built = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-q"], cwd=workdir,
                           capture_output=True, text=True)
    if built.returncode != 0:
        tail = (built.stderr.strip().splitlines() or ["no output"])[-1]
        raise ReplayError(f"the copy of {function} did not compile: {tail}")
    sys.path.insert(0, str(workdir))
    return importlib.import_module(name)


def capture(module: str, function: str, events: int, payees: int) -> tuple[object, list]:
    """The function, and the (args, kwargs) of every call an engine_stages run makes to it."""
    import engine_stages
    import micro_hotpath
    from streams.payers import write_payers

    # the payers engine_stages will write, set before the stage modules are imported (they read them)
    payers, _, _ = micro_hotpath.build(events, payees, 7)
    payers_file = Path(tempfile.gettempdir()) / f"replay-payers-{os.getpid()}.csv"
    write_payers(payers_file, list(payers.values()))
    os.environ["TKONTO_PAYERS_FILE"] = str(payers_file)
    target = importlib.import_module(f"streams.{module}")
    original = getattr(target, function, None)
    if original is None or not callable(original):
        raise ReplayError(f"streams.{module} has no function {function}")
    for stage in ("ingest", "ledger", "analysis", "citizen"):
        importlib.import_module(f"streams.{stage}")
    calls: list[tuple[tuple, dict]] = []

    def keeping(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    holders = [m for name, m in list(sys.modules.items())
               if name.startswith("streams") and getattr(m, function, None) is original]
    for holder in holders:
        setattr(holder, function, keeping)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            engine_stages.main(["--events", str(events), "--payees", str(payees)])
    finally:
        for holder in holders:
            setattr(holder, function, original)
        payers_file.unlink(missing_ok=True)
    return original, calls


def best_pass(function, calls: list, copy_first: bool, passes: int = 9) -> float:
    """ns per call, the best of ``passes`` passes over every call."""
    best = float("inf")
    for _ in range(passes):
        work = [((copy.deepcopy(a[0]),) + a[1:], k) for a, k in calls] if copy_first else calls
        started = time.perf_counter()
        for args, kwargs in work:
            function(*args, **kwargs)
        best = min(best, time.perf_counter() - started)
    return best / len(calls) * 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", help="a module of streams/, e.g. rules")
    parser.add_argument("function", help="a function at its top level, e.g. _track")
    parser.add_argument("lines", nargs="*", help="texts of lines to time the function up to")
    parser.add_argument("--events", type=int, default=6000)
    parser.add_argument("--payees", type=int, default=2000)
    parser.add_argument("--copy", action="store_true", help="deep-copy the first argument for each pass")
    args = parser.parse_args(argv)
    if args.events < 1 or args.payees < 1:
        parser.error("--events and --payees must be at least 1")
    try:
        function_source(args.module, args.function)  # a wrong name fails before the run
        original, calls = capture(args.module, args.function, args.events, args.payees)
        if not calls:
            raise ReplayError(f"engine_stages made no call to {args.module}.{args.function}")
        print(f"{args.module}.{args.function}: {len(calls):,} calls in {args.events:,} events "
              f"({len(calls) / args.events:.2f} per event)")
        print(f"  as built: {best_pass(original, calls, args.copy):,.0f} ns per call")
        if args.lines:
            with tempfile.TemporaryDirectory(prefix="tkonto-replay-") as tmp:
                copies = compiled_copies(args.module, args.function, args.lines, Path(tmp))
                print(f"  compiled copy, whole: {best_pass(getattr(copies, args.function), calls, args.copy):,.0f}")
                for i, line in enumerate(args.lines):
                    spent = best_pass(getattr(copies, f"_before_{i}"), calls, args.copy)
                    print(f"  up to {line[:60]!r}: {spent:,.0f}")
    except ReplayError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
