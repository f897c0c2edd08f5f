"""Instructions per payment event in the pipeline's stages, counted by callgrind: an A/B
that this VM's noise does not decide.

    .venv/bin/python benchmarks/instructions.py OLD [NEW] [--events 3000] [--payees 1000] [--warm]

Runs ``benchmarks/engine_stages.py`` of each version (OLD and NEW are git revisions,
checked out as in ``alternate.py``; NEW defaults to the working tree) under valgrind's
callgrind, and counts only the stage pass: not the imports, not building the events. The
pass is entered through ``functools.reduce`` (engine_stages' ``--profile`` hook, given a
profiler that does just that), and callgrind collects only inside that C function
(``--toggle-collect``). With ``PYTHONHASHSEED=0`` and every module compiled beforehand,
one version counted against itself differs by ~0.01 %, where wall-clock runs here vary by
5-25 %.

With ``--warm`` the codec's Avro readers and writers are compiled before the count: a
cold pass of 3,000 events counts ~6 % of one-off compilation (their first use compiles
them), which a long-running worker does once.

Instructions are not time (a cache miss costs more than an add), but within one
interpreter a change that runs fewer of them per event is faster. The run is ~50 times
slower than a normal one: 3,000 events take about a minute per version.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from alternate import AlternateError, checked_out

#: engine_stages of the checkout, its stage pass wrapped in functools.reduce
DRIVER = """
import functools, sys, types
sys.path.insert(0, "benchmarks")
import engine_stages

WARM = "--warm" in sys.argv
if WARM:
    sys.argv.remove("--warm")


def warm():  # compile every schema's reader and writer before the count (a first use compiles them)
    from streams.app import codec
    from streams.codec import MAGIC
    for name in codec.names():
        try:
            codec.encode(name, {})
        except Exception:
            pass
        try:
            codec.decode(MAGIC + codec.schema(name).fingerprint + b"\\x00")
        except Exception:
            pass


class Profile:
    def runcall(self, run):
        if WARM:
            warm()
        return functools.reduce(lambda _a, _b: run(), (0, 0))

    def dump_stats(self, path):
        pass

engine_stages.cProfile = types.SimpleNamespace(Profile=Profile)
sys.exit(engine_stages.main(sys.argv[1:] + ["--profile", "counted-by-callgrind"]))
"""


def count(path: Path, events: int, payees: int, warm: bool = False) -> int:
    """Instructions callgrind counted in the stage pass of ``path``'s engine_stages."""
    # compiled first: a fresh checkout would otherwise compile what the pass imports late
    subprocess.run([sys.executable, "-m", "compileall", "-q", "streams", "benchmarks"], cwd=path, capture_output=True)
    with tempfile.TemporaryDirectory(prefix="tkonto-instructions-") as tmp:
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=functools_reduce",
             f"--callgrind-out-file={tmp}/callgrind.out", sys.executable, "-c", DRIVER,
             "--events", str(events), "--payees", str(payees), *(["--warm"] if warm else [])],
            cwd=path, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    found = re.search(r"Collected : (\d+)", run.stderr)
    if run.returncode != 0 or not found:
        tail = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise AlternateError(f"the run in {path} failed (exit {run.returncode}): {tail}")
    if int(found.group(1)) == 0:
        raise AlternateError(f"callgrind counted nothing in {path}: its engine_stages has no --profile hook")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new", nargs="?", default="", help="a revision (default: the working tree)")
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--payees", type=int, default=1000)
    parser.add_argument("--warm", action="store_true",
                        help="compile the codec's Avro readers and writers before the count, not at their first use in it")
    args = parser.parse_args(argv)
    if args.events < 1 or args.payees < 1:
        print("instructions: --events and --payees must be positive", file=sys.stderr)
        return 2
    if shutil.which("valgrind") is None:
        print("instructions: valgrind not found; install it (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    counts: dict[str, int] = {}
    try:
        with checked_out((args.old, args.new), "tkonto-instructions-") as versions:
            for label, path in versions:
                counts[label] = count(path, args.events, args.payees, args.warm)
                print(f"{label:>12}  {counts[label] / args.events:12,.0f} instructions per event", flush=True)
    except AlternateError as exc:
        print(f"instructions: {exc}", file=sys.stderr)
        return 2
    old, new = counts.values()
    print(f"{args.events:,} events over {args.payees:,} payees: {(new - old) / args.events:+,.0f} per event "
          f"({(new - old) / old * 100:+.2f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
