"""Where one worker's CPU goes, by thread, while it drains a backlog on the embedded broker.

    .venv/bin/python benchmarks/threads.py [--events 60000] [--payees 30000]

Starts a fresh embedded broker and one worker (the bench's deployment), waits until it is
ready, publishes the backlog and waits until the group's lag is 0. Then prints the worker's
CPU seconds per 1,000 events for each kernel thread name (``streams/threads.py`` names the
worker's own threads; ``main`` is the asyncio loop: the web views and the timers;
``rdk:...`` are librdkafka's; ``python`` are the threads of Faust and asyncio, e.g. the
executor's), and the ledger check. The worker is not capped: the
publisher, the broker and the worker share the machine, so events/s here is not row 3's.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.bench import Deployment, Progress, compare_ledger, expected_ledger, make_emissions, publish  # noqa: E402
from streams.settings import Settings  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60000)
    parser.add_argument("--payees", type=int, default=30000)
    args = parser.parse_args()
    if args.events < 1 or args.payees < 1:
        parser.error("--events and --payees must be at least 1")
    settings = Settings.from_env().with_overrides(bootstrap_servers="")
    workdir = Path(tempfile.mkdtemp(prefix="tkonto-threads-"))
    sim, emissions, _ = make_emissions(args.payees, args.events, 0)
    expected = expected_ledger(sim, emissions)
    progress = Progress("threads")
    dep = Deployment("threads", workdir, sim, settings, False)
    try:
        worker = dep.start_worker()
        dep.wait_all_ready([worker], timeout=300)
        before, t0 = dep.worker_threads_cpu(), time.monotonic()
        publish(dep.clients, emissions, None, progress)
        t1 = dep.wait_drained(len(emissions), progress, 3600, len(expected[0]))
        after = dep.worker_threads_cpu()
        exact = compare_ledger(dep.ledger(), expected)["exact"]
    finally:
        dep.close()
    shutil.rmtree(workdir, ignore_errors=True)
    n = len(emissions)
    used = {name: after[name] - before.get(name, 0.0) for name in after}
    total = sum(used.values())
    print(f"\n{n} events over {args.payees} payees drained in {t1 - t0:.2f} s ({n / (t1 - t0):,.0f} events/s, "
          f"publishing included); worker CPU {total:.2f} s = {total / n * 1000:.3f} s per 1,000 events; "
          f"ledger {'exact' if exact else 'NOT exact'}")
    print(f"{'thread':<16} {'CPU s':>7} {'share':>6} {'s / 1k events':>13}")
    for name, seconds in sorted(used.items(), key=lambda kv: -kv[1]):
        if seconds >= 0.005:
            print(f"{name:<16} {seconds:7.2f} {seconds / total:6.1%} {seconds / n * 1000:13.4f}")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
