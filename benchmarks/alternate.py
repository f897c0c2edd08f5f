"""The pipeline rows of two versions of the code, run in turn: an A/B that this VM's noise
does not decide.

    .venv/bin/python benchmarks/alternate.py OLD [NEW] [--rounds 3] [--workers 1]
                     [--events 60000] [--offered 60000] [--rate 2000] [--payees 30000]

OLD and NEW are git revisions (NEW defaults to the working tree as it is). Each is checked
out in a temporary git worktree; then, round after round, each runs
``streams.bench.run_pipeline`` (the bench's rows 3 or 4: a fresh embedded broker, the
backlog drained at saturation, then the offered load) from its own checkout, so its
workers import its own ``streams``. OLD runs first in odd rounds, NEW first in even ones. Single runs on this machine vary by ±25 % with the
host; alternating minute by minute puts both versions under the same host. Prints every
run and the means, and exits non-zero if any ledger was not exact.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]

#: run in a checkout with this tree's harness first on sys.path: every version is measured
#: the same way (``bench.run_pipeline`` of this tree), and the worker processes it starts
#: inherit the checkout as their working directory, so they run the checkout's code
RUNNER = """
import dataclasses, json, sys, tempfile
from pathlib import Path
sys.path.insert(0, sys.argv[6])
from streams import bench
from streams.settings import Settings
workers, events, offered, rate, payees = sys.argv[1:6]
sim, saturated, offered_events = bench.make_emissions(int(payees), int(events), int(offered))
settings = Settings.from_env().with_overrides(bootstrap_servers="")
with tempfile.TemporaryDirectory(prefix="tkonto-alternate-") as workdir:
    rows = bench.run_pipeline("alternate", int(workers), Path(workdir),
                              sim, saturated, offered_events, float(rate), settings, False)
print("ROWS " + json.dumps([dataclasses.asdict(row) for row in rows]))
"""


class AlternateError(Exception):
    """A one-line reason the comparison cannot run."""


#: run in a checkout that has setup.py: its C extensions built in place, as the install builds
#: them, with its own build_ext where it has one (which records what Cython compiled); a
#: checkout without them would run the codec's Python writers and readers, and its source
BUILD = """
import runpy, setuptools
from setuptools import Distribution
from setuptools.command.build_ext import build_ext
found = {}
setuptools.setup = lambda **options: found.update(options)  # setup.py's arguments, nothing else
runpy.run_path("setup.py", run_name="__main__")
command = found.get("cmdclass", {}).get("build_ext", build_ext)(Distribution({"ext_modules": found["ext_modules"]}))
command.inplace = True
command.ensure_finalized()
command.run()
"""


def checkout(rev: str, into: Path) -> Path:
    """A detached worktree of ``rev`` under ``into``, its C extension built if it has one."""
    path = into / rev.replace("/", "_")
    run = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--force", str(path), rev],
                         capture_output=True, text=True)
    if run.returncode != 0:
        reason = (run.stderr.strip().splitlines() or ["git worktree failed"])[-1]
        raise AlternateError(f"cannot check out {rev!r} ({reason}); give a commit, branch or tag of this repository")
    if (path / "setup.py").exists():
        run = subprocess.run([sys.executable, "-c", BUILD], cwd=path, capture_output=True, text=True)
        if run.returncode != 0:
            reason = (run.stderr.strip().splitlines() or ["build_ext failed"])[-1]
            raise AlternateError(f"cannot build the C extension of {rev!r} ({reason})")
    return path


def remove(path: Path) -> None:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], capture_output=True)


@contextlib.contextmanager
def checked_out(revs: tuple[str, ...], prefix: str) -> Iterator[list[tuple[str, Path]]]:
    """(label, path) of each revision: a temporary git worktree, removed at the end; an
    empty revision is the working tree as it is."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        made: list[Path] = []
        try:
            versions = []
            for rev in revs:
                if rev:
                    made.append(checkout(rev, Path(tmp)))
                    versions.append((rev, made[-1]))
                else:
                    versions.append(("working tree", ROOT))
            yield versions
        finally:
            for path in made:
                remove(path)


def run_once(path: Path, args) -> list[dict]:
    run = subprocess.run([sys.executable, "-c", RUNNER, str(args.workers), str(args.events), str(args.offered),
                          str(args.rate), str(args.payees), str(ROOT)], cwd=path, capture_output=True, text=True)
    for line in run.stdout.splitlines():
        if line.startswith("ROWS "):
            return json.loads(line[5:])
    tail = (run.stderr.strip().splitlines() or ["no output"])[-1]
    raise AlternateError(f"the run in {path} failed (exit {run.returncode}): {tail}")


def drain_clock(row: dict) -> str:
    """How a row's end was taken: "last commit" (the workers' gauge, since 1e20677) or "lag
    poll" (a revision without it: its window runs on by up to ~1.5 s, docs/performance.md)."""
    return "last commit" if "drained = the last commit" in row.get("note", "") else "lag poll"


def summary(label: str, rows: list[dict]) -> str:
    by_mode = {row["mode"].split()[0]: row for row in rows}
    sat, off = by_mode.get("saturated", {}), by_mode.get("offered", {})
    lat = off.get("latency_ms", {})
    return (f"{label:>12}  {sat.get('events_per_s', 0):8,.0f}/s  steady {sat.get('steady_events_per_s') or 0:,.0f}/s"
            f" (end: {drain_clock(sat)})  cpu/1k w {sat.get('cpu_per_1k_workers', 0):.3f}"
            f" b {sat.get('cpu_per_1k_broker', 0):.3f}  offered p50/p99/max {lat.get('p50', 0):.0f} / "
            f"{lat.get('p99', 0):.0f} / {lat.get('max', 0):.0f} ms  exact "
            f"{'yes' if all(r.get('ledger_exact') for r in rows) else 'NO'}")


def mean(runs: list[list[dict]], mode: str, pick) -> float:
    values = [pick(row) for rows in runs for row in rows if row["mode"].startswith(mode)]
    return statistics.mean(values) if values else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new", nargs="?", default="", help="a revision (default: the working tree)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, choices=(1, 2), default=1)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--offered", type=int, default=60_000)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--payees", type=int, default=30_000)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.events < 1 or args.offered < 0 or args.rate <= 0 or args.payees < 1:
        print("alternate: --rounds, --events, --payees and --rate must be positive, --offered not negative",
              file=sys.stderr)
        return 2
    results: dict[str, list[list[dict]]] = {}
    try:
        with checked_out((args.old, args.new), "tkonto-alternate-") as versions:
            for n in range(1, args.rounds + 1):
                # the order swaps every round (ABBA): here the run second in a round used more
                # CPU per event in 7 of 9 rounds, whichever version it was
                for label, path in (versions if n % 2 else versions[::-1]):
                    rows = run_once(path, args)
                    results.setdefault(label, []).append(rows)
                    print(f"round {n}: {summary(label, rows)}", flush=True)
    except AlternateError as exc:
        print(f"alternate: {exc}", file=sys.stderr)
        return 2
    print(f"\nmeans over {args.rounds} round(s), {args.workers} worker(s), {args.events:,} events saturated, "
          f"{args.offered:,} offered at {args.rate:,.0f}/s:")
    for label, runs in results.items():
        print(f"{label:>12}  {mean(runs, 'saturated', lambda r: r['events_per_s']):8,.0f}/s  steady "
              f"{mean(runs, 'saturated', lambda r: r.get('steady_events_per_s') or 0):,.0f}/s  cpu/1k w "
              f"{mean(runs, 'saturated', lambda r: r['cpu_per_1k_workers']):.3f}  offered p99 "
              f"{mean(runs, 'offered', lambda r: r['latency_ms'].get('p99', 0)):.0f} ms")
    clocks = {drain_clock(row) for runs in results.values() for rows in runs for row in rows
              if row["mode"] == "saturated"}
    if len(clocks) > 1:
        print("note: the versions' rows end differently (the workers' last commit, or a lag poll up to ~1.5 s "
              "later): compare their steady rates and CPU per event, not their events/s")
    exact = all(row.get("ledger_exact") for runs in results.values() for rows in runs for row in rows)
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
