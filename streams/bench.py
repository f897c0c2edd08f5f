"""``tkonto bench``: the measurement harness (issue 7).

Runs on the embedded broker (a fresh Tansu per row, so rows share no state and no broker
memory) and prints one table, every row measured in the same run on the same machine:

1. raw broker limit: plain confluent-kafka consume -> fastavro decode -> encode -> produce,
   over the very events pre-published for row 3, once with librdkafka's default batching
   and once with one record per batch (``TKONTO_SINGLE_RECORD_BATCHES``: the embedded
   broker's high-watermark workaround; the pipeline rows use whatever the settings say);
2. a naive single Faust hop (JSON values, one table update and one forward per event,
   stock ``kafka://`` transport), on its own topics;
   rows 1 and 2 live in ``bench_reference``, each also at the offered load;
3. the full tkonto pipeline (ingest, ledger, enrichment, fan-out) with 1 worker;
4. the same with 2 worker processes.

Saturated rows pre-publish the events, then start the worker(s) and time the drain:
sustained events/s = events / (first worker ready -> consumer-group lag on the payer topics
and the payments topic is 0). The tkonto rows then run a fixed offered load (``--rate``)
on the same worker(s) and report its latency, two ways: the payer's ``event_time`` ->
*registered in the ledger* (``registered_at`` of each ledger entry read back from the
ledger topic, exact), and ``event_time`` -> *visible in the citizen view* (the workers'
``tkonto_citizen_visibility_latency_seconds`` histogram, observed when an entry is folded
into a view, scraped before and after the phase: p50/p99 interpolated inside the buckets,
max as the upper bound of the highest bucket used). Under a pre-published backlog both are
mostly queueing time and are labelled so.

CPU seconds per 1,000 events: utime+stime of the worker processes (and, separately, the
broker) from /proc/<pid>/stat over the measured window; for the saturated pipeline rows
also by worker thread (``streams.threads.cpu_by_thread``: the engine thread
``tkonto-pipeline``, the asyncio loop ``main``, librdkafka's ``rdk:...``). Peak RSS: VmHWM
of the worker.

The fault scenario (2 workers, SIGKILL one mid-run, the survivor takes over, the killed one
is restarted) compares the ledger with the expectation computed by applying
``streams.account.register`` to the published events in publish order (after the same
validation ingest applies); see ``expected_ledger``.

Memory mode (``python -m streams.bench memory [--events 1000000] [--payees 100000] [--out DIR]``,
``run_memory``): one worker with ``TKONTO_STORE=rocksdb://`` drains a pre-published backlog;
its VmRSS (/proc/<pid>/status) is sampled every second from /ready until the group's lag is
0, and reported at /ready (baseline), at 25/50/75/100 % processed (both ingest's and the
ledger's counters past the fraction), after an idle ``--settle``, and at its peak (VmHWM),
with the RocksDB WAL size (what is still in the memtables) and the ledger check.
Written to ``<out>/memory.md`` and ``<out>/memory.json``.

Helpers run as subprocesses: ``python -m streams.bench raw-loop|naive-worker|profile|memory``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .account import new_account, register
from .broker import EmbeddedBroker, spawn_child
from .client import PayerClient
from .codec import default_codec
from .demo import load_registers, percentile
from .observe import decode_topic, group_lag, histogram_buckets, histogram_max_bound, histogram_quantile
from .payers import write_payers
from .process import WorkerProcess
from .settings import Settings
from .simulate import Simulation
from .threads import cpu_by_thread
from .topics import Catalogue, ensure_topics
from .validation import Rejected, check_payment

CLK_TCK = os.sysconf("SC_CLK_TCK")
N_PAYERS = 12
PUBLISH_LINGER_MS = 50
SEED = 7


# -- /proc ---------------------------------------------------------------------------------
def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a live process in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, TypeError):
        return 0.0


def peak_rss_mb(pid: int | None) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, TypeError):
        pass
    return 0.0


def machine() -> dict:
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {"nproc": os.cpu_count(), "ram_gb": round(mem_kb / 1024 / 1024, 1),
            "cpu": _cpu_model(), "python": platform.python_version(), "kernel": platform.release()}


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- results -------------------------------------------------------------------------------
@dataclass
class Row:
    name: str
    mode: str  # "saturated" | "offered <rate>/s"
    events: int
    seconds: float
    events_per_s: float
    cpu_per_1k_workers: float
    cpu_per_1k_broker: float
    peak_rss_mb: float
    latency_ms: dict = field(default_factory=dict)  # p50, p99, max; empty when not measured
    latency_kind: str = ""
    visibility_ms: dict = field(default_factory=dict)  # citizen view: p50, p99 (histogram), max (bucket bound)
    ledger_exact: bool | None = None
    note: str = ""
    ready_spread_s: float | None = None  # saturated pipeline rows: the first worker ready to the last
    cpu_per_1k_by_thread: dict = field(default_factory=dict)  # saturated pipeline rows: thread name -> CPU s / 1k
    #: saturated pipeline rows: events/s while the middle of the backlog was read (``steady_rate``)
    steady_events_per_s: float | None = None


#: the part of a saturated row's backlog whose reading gives its steady rate
STEADY_FROM, STEADY_TO = 0.1, 0.9


def steady_rate(samples: list[tuple[float, float]], total: float,
                low: float = STEADY_FROM, high: float = STEADY_TO) -> float | None:
    """Events per second while the workers read from ``low`` to ``high`` of the ``total``
    events of a backlog, from (time, events read so far) samples, the crossing times
    interpolated between samples: the rate without the drain's start (the first fetches,
    cold caches) and tail (the last records, the last commit, the drain check). None
    without a sample on both sides of each crossing."""
    def crossing(level: float) -> float | None:
        for (t0, n0), (t1, n1) in zip(samples, samples[1:]):
            if n0 < level <= n1:
                return t0 + (t1 - t0) * (level - n0) / (n1 - n0)
        return None
    start, end = crossing(low * total), crossing(high * total)
    if start is None or end is None or end <= start:
        return None
    return (high - low) * total / (end - start)


VISIBILITY = "tkonto_citizen_visibility_latency_seconds"
LAST_COMMIT = "tkonto_pipeline_last_commit_timestamp_seconds"


def visibility_summary(before: dict[float, float], after: dict[float, float]) -> dict:
    p50, p99 = histogram_quantile(0.50, before, after), histogram_quantile(0.99, before, after)
    if p50 is None:
        return {}
    top = histogram_max_bound(before, after)
    return {"p50": round(p50 * 1000, 1), "p99": round(p99 * 1000, 1),
            "max": round(top * 1000, 1) if top is not None and top != float("inf") else float("inf"),
            "n": int(after.get(float("inf"), 0) - before.get(float("inf"), 0))}


def latency_summary(seconds: list[float]) -> dict:
    if not seconds:
        return {}
    return {"p50": round(percentile(seconds, 0.50) * 1000, 1), "p99": round(percentile(seconds, 0.99) * 1000, 1),
            "max": round(max(seconds) * 1000, 1), "n": len(seconds)}


_T0 = time.monotonic()


class Progress:
    """Progress lines for long runs: ``[+elapsed s] [row] text``, at most one per ``every`` s."""

    def __init__(self, label: str, every: float = 2.0):
        self.label, self.every, self.last = label, every, time.monotonic()

    def __call__(self, text: str, force: bool = False) -> None:
        if force or time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            print(f"  [+{self.last - _T0:6.1f} s] [{self.label}] {text}", flush=True)


# -- the events ----------------------------------------------------------------------------
def make_emissions(n_payees: int, n_events: int, n_offered: int):
    """The simulation, the saturated events (first ``n_events``) and the offered-load ones.
    The payees are those of generated registers (``sim.registers``), which every deployment
    loads as the demo does: enrichment then finds their bank accounts and population records,
    and verification and the rules give real outcomes (with empty registers every look-up
    missed, which made enrichment cheaper than in production)."""
    sim = Simulation.with_registers(N_PAYERS, n_payees, SEED)
    emissions = list(sim.emissions(n_events + n_offered))
    return sim, emissions[:n_events], emissions[n_events:]


def expected_ledger(sim: Simulation, emissions) -> tuple[dict[str, tuple], dict[str, list[int]]]:
    """What the ledger must hold: entry id -> (payee, paid, upcoming), and payee -> [paid, upcoming].

    Applies ``account.register`` to the published events in publish order, after the same
    checks ingest applies (``validation.check_payment`` against the payer whose topic the
    record was published on; raw faults are undecodable) and only for payers whose scope
    puts them in the ledger. Events of one payment share a key and a partition, so their
    order is the order the worker sees; the order between payments does not change
    entry ids or totals (sequence numbers may differ and are not compared)."""
    payers = {p.payer_id: p for p in sim.payers}
    accounts: dict[str, dict] = {}
    entries: dict[str, tuple] = {}
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    now = dt.datetime.now(dt.timezone.utc)
    for em in emissions:
        if em.event is None:
            continue
        event = dict(em.event, event_time=now)
        event.setdefault("representative_id", None)
        event.setdefault("decision", None)
        try:
            check_payment(event, payers.get(em.payer_id))
        except Rejected:
            continue
        if not payers[event["payer_id"]].in_ledger:
            continue
        account = accounts.setdefault(event["payee_id"], new_account(event["payee_id"]))
        outcome = register(account, event, now)
        if outcome.kind == "REGISTERED":
            e = outcome.entry
            entries[e["entry_id"]] = (e["payee_id"], e["paid_delta_ore"], e["upcoming_delta_ore"])
            totals[e["payee_id"]][0] += e["paid_delta_ore"]
            totals[e["payee_id"]][1] += e["upcoming_delta_ore"]
    return entries, dict(totals)


def compare_ledger(observed: list[dict], expected: tuple[dict, dict]) -> dict:
    """Lost, doubled and extra entries and payees whose totals differ."""
    exp_entries, exp_totals = expected
    versions: dict[str, set] = defaultdict(set)
    first: dict[str, dict] = {}
    for e in observed:
        versions[e["entry_id"]].add((e["payee_id"], e["sequence"], e["paid_delta_ore"], e["upcoming_delta_ore"]))
        first.setdefault(e["entry_id"], e)
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for e in first.values():
        totals[e["payee_id"]][0] += e["paid_delta_ore"]
        totals[e["payee_id"]][1] += e["upcoming_delta_ore"]
    payees = set(totals) | set(exp_totals)
    mismatched = sum(1 for p in payees if list(totals.get(p, [0, 0])) != list(exp_totals.get(p, [0, 0])))
    return {
        "expected_entries": len(exp_entries), "distinct_entries": len(first),
        "lost": len(set(exp_entries) - set(first)), "extra": len(set(first) - set(exp_entries)),
        "doubled": sum(1 for v in versions.values() if len(v) > 1),
        "payees": len(payees), "payee_totals_mismatched": mismatched,
        "lost_sample": sorted(set(exp_entries) - set(first))[:10],
        "exact": len(first) == len(exp_entries) and not (set(exp_entries) ^ set(first))
                 and all(len(v) == 1 for v in versions.values()) and mismatched == 0,
    }


# -- publishing ----------------------------------------------------------------------------
def pace(i: int, rate: float, start: float) -> None:
    """Sleep until the ``i``-th item of a stream at ``rate``/s begun at ``start`` is due."""
    ahead = i / rate - (time.monotonic() - start)
    if ahead > 0.002:
        time.sleep(ahead)


def publish(clients: dict[str, PayerClient], emissions, rate: float | None, progress: Progress) -> float:
    """Publish ``emissions`` (event_time = now) as fast as possible or at ``rate``/s; returns seconds."""
    start = time.monotonic()
    total = len(emissions)
    for i, em in enumerate(emissions, start=1):
        client = clients[em.payer_id]
        if em.event is None:
            client.publish_raw(em.raw, key=em.payment_key or None)
        else:
            event = dict(em.event, event_time=dt.datetime.now(dt.timezone.utc))
            client.publish_raw(client.encode(event), key=em.payment_key)
        if rate:
            pace(i, rate, start)
        progress(f"published {i}/{total}")
    for client in clients.values():
        client.flush(120)
    return time.monotonic() - start


# -- a tkonto deployment for one row -------------------------------------------------------
class Deployment:
    """One broker, one topic prefix and app id, its payers file and worker processes."""

    def __init__(self, name: str, workdir: Path, sim: Simulation, base: Settings, quick: bool,
                 log_level: str = "warning"):
        self.name = name
        self.quick = quick
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.broker = EmbeddedBroker(log_file=self.workdir / "broker.log").start()
        payers_file = self.workdir / "payers.csv"
        write_payers(payers_file, sim.payers)
        tag = f"b{os.getpid()}{name.replace('-', '')}"
        self.settings = base.with_overrides(
            bootstrap_servers=self.broker.bootstrap, topic_prefix=tag, app_id=f"tkonto-{tag}",
            payers_file=str(payers_file),  # batching as configured (TKONTO_SINGLE_RECORD_BATCHES)
            session_timeout=2.0 if quick else 4.0, log_level=log_level,
            jwt_secret=base.jwt_secret or "bench-secret-not-for-production")
        self.catalogue = Catalogue(self.settings)
        self.payer_ids = [p.payer_id for p in sim.payers]
        ensure_topics(self.broker.bootstrap, self.catalogue.all(self.payer_ids), self.settings)
        if sim.registers is not None:  # before any worker starts: it waits until it has read them
            load_registers(sim.registers, self.workdir, self.settings)
        # The publishers batch like a payer's system sending a steady stream would (linger
        # 50 ms): at 5 ms, 12 of them sent the broker so many tiny requests that it burned ~1
        # of this machine's 2 cores at 2,000 events/s, next to the worker under test. Their
        # linger is part of the measured latency (event_time is set before publishing).
        self.clients = {pid: PayerClient(pid, self.broker.bootstrap, self.settings, **{"linger.ms": PUBLISH_LINGER_MS})
                        for pid in self.payer_ids}
        self.workers: list[WorkerProcess] = []
        self.read_samples: list[tuple[float, float]] = []  # (monotonic time, events read) by wait_drained
        self.drain_clock = ""  # what the last wait_drained's time is (drained_at)

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def input_topics(self) -> list[str]:
        return [self.catalogue.payer_input(pid).name for pid in self.payer_ids]

    def lag(self) -> int:
        """Records the workers have not processed: every topic the engine reads, in one look
        when it is 0. The review topics (signals, case commands) were read by Faust's group
        (the app id) before the cases moved onto the engine: otherwise their lag is the lesser
        of the two groups', so ``benchmarks/alternate.py`` waits for the same work in a
        revision from before."""
        cat, group = self.catalogue, self.settings.pipeline_group
        inputs = cat.pipeline_inputs(self.payer_ids)
        if group_lag(self.bootstrap, group, inputs) == 0:
            return 0
        review = [cat.signals.name, cat.case_commands.name]
        hot = group_lag(self.bootstrap, group, [t for t in inputs if t not in review])
        return hot + min(group_lag(self.bootstrap, group, review), group_lag(self.bootstrap, self.settings.app_id, review))

    def start_worker(self) -> WorkerProcess:
        n = len(self.workers) + 1
        worker = WorkerProcess(self.settings.with_overrides(data_dir=str(self.workdir / f"data-{n}")),
                               log_file=self.workdir / f"worker-{n}.log").start()
        self.workers.append(worker)
        return worker

    def live(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.alive()]

    def worker_cpu(self) -> float:
        return sum(cpu_seconds(w.pid) for w in self.live())

    def worker_threads_cpu(self) -> dict[str, float]:
        """CPU seconds of the live workers' threads, summed by thread name over the workers."""
        total: defaultdict[str, float] = defaultdict(float)
        for w in self.live():
            for name, seconds in cpu_by_thread(w.pid).items():
                total[name] += seconds
        return dict(total)

    def broker_cpu(self) -> float:
        return cpu_seconds(self.broker.proc.pid if self.broker.proc else None)

    def histogram(self, name: str) -> dict[float, float]:
        """A histogram's cumulative buckets summed over the live workers."""
        total: dict[float, float] = {}
        for w in self.live():
            try:
                status, body = w.get("/metrics", timeout=5.0)
            except OSError:
                continue
            for bound, count in histogram_buckets(body.decode(), name).items():
                total[bound] = total.get(bound, 0.0) + count
        return total

    def metric(self, name: str) -> float:
        return self.metrics([name])[name]

    def metrics(self, names: list[str]) -> dict[str, float]:
        """Each metric summed over the live workers, one scrape per worker."""
        totals = dict.fromkeys(names, 0.0)
        for w in self.live():
            try:
                for name, value in w.metric_sums(names).items():
                    totals[name] += value
            except RuntimeError:  # still starting (e.g. the restarted worker): it has counted nothing
                pass
        return totals

    def wait_all_ready(self, workers: list[WorkerProcess], timeout: float = 120.0) -> float:
        """Wait until every worker answers /ready; returns when the first one did."""
        first = None
        pending = list(workers)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: workers not ready after {timeout}s; logs in {self.workdir}")
            for w in list(pending):
                if not w.alive():
                    raise RuntimeError(f"{self.name}: worker exited ({w.proc.returncode}); see {w.log_file}")
                try:
                    if w.get("/ready", timeout=1.0)[0] == 200:
                        first = first or time.monotonic()
                        pending.remove(w)
                except OSError:
                    pass
            time.sleep(0.05)
        return first

    def wait_drained(self, expect_in: int | None, progress: Progress, timeout: float,
                     expect_registered: int = 0) -> float:
        """Poll until the group's lag is 0; returns when the work was done (monotonic time):
        the live workers' last offset commit (``drained_at``), which the lag check confirms.

        ``expect_in`` / ``expect_registered``: what the live workers' ingest and registration
        counters sum to when everything was processed; the lag query (a consumer, ~50
        watermark requests to the broker) is made only after both are reached, so polling
        costs the measured system little."""
        entered = time.monotonic()
        deadline = entered + timeout
        last_lag = None
        self.read_samples = []
        while time.monotonic() < deadline:
            counts = self.metrics(["tkonto_events_in_total", "tkonto_events_registered_total"])
            n_in, n_reg = counts["tkonto_events_in_total"], counts["tkonto_events_registered_total"]
            self.read_samples.append((time.monotonic(), n_in))
            if expect_in is None or (n_in >= expect_in and n_reg >= expect_registered):
                last_lag = self.lag()
                if last_lag == 0:
                    return self.drained_at(entered)
            progress(f"read {int(n_in)} / registered {int(n_reg)}"
                     + (f", lag {last_lag}" if last_lag is not None else ""))
            time.sleep(0.25)  # /metrics costs the worker a few ms per scrape: do not poll harder
        raise RuntimeError(f"{self.name}: not drained within {timeout:.0f}s (lag {last_lag}); logs in {self.workdir}")

    def drained_at(self, not_before: float) -> float:
        """Once the lag is 0: the monotonic time of the live workers' last offset commit
        (``tkonto_pipeline_last_commit_timestamp_seconds``), i.e. when the last record was
        done, not when a poll of the lag noticed it (a lag query takes ~0.5-1 s, and a row's
        drain ~10 s). ``not_before`` (the wait's start) when that is later, or when a worker
        does not report the time (a revision before it: ``drain_clock`` says which)."""
        now, wall = time.monotonic(), time.time()
        committed = []
        for w in self.live():
            try:
                committed.append(w.metric_sums([LAST_COMMIT])[LAST_COMMIT])
            except RuntimeError:
                committed.append(0.0)
        if not committed or max(committed) <= 0.0:  # a revision from before the gauge
            self.drain_clock = "lag poll"
            return now
        self.drain_clock = "last commit"
        return min(now, max(not_before, now - (wall - max(committed))))

    def ledger(self) -> list[dict]:
        return decode_topic(self.bootstrap, self.catalogue.ledger.name, timeout=300)

    def close(self) -> None:
        for w in self.workers:  # the row is measured: a smoke run does not wait for graceful shutdowns
            w.kill() if self.quick else w.stop()
        for pid in list(self.clients):
            self.clients.pop(pid).producer.flush(5)
        self.clients = {}  # librdkafka handles closed before the broker goes away (no disconnect noise)
        gc.collect()  # admin clients of ensure_topics too
        self.broker.stop()


# -- rows 3 and 4: the tkonto pipeline -----------------------------------------------------
def run_pipeline(name: str, n_workers: int, workdir: Path, sim: Simulation, saturated, offered, rate: float,
                 settings: Settings, quick: bool, raw_rows: list | None = None,
                 log_level: str = "warning") -> list[Row]:
    label = f"{n_workers} worker{'s' if n_workers > 1 else ''}"
    progress = Progress(name)
    dep = Deployment(name, workdir, sim, settings, quick, log_level)
    rows: list[Row] = []
    expect_a = expected_ledger(sim, saturated)
    expect_all = expected_ledger(sim, list(saturated) + list(offered))

    def start_workers() -> tuple[float, float]:
        """The first worker ready, and every one ready (monotonic times)."""
        first = dep.wait_all_ready([dep.start_worker() for _ in range(n_workers)])
        return first, time.monotonic()

    try:
        # Several workers are started before the backlog is published: started after it,
        # the one ready first drained it alone until the group rebalanced (with the registers
        # loaded they joined ~3 s apart, and half of a 60,000-event backlog was gone by then).
        workers_first = n_workers > 1 and raw_rows is None
        if workers_first:
            first, all_ready = start_workers()
        progress(f"publishing {len(saturated)} events ({'backlog' if workers_first else 'pre-published backlog'})",
                 force=True)
        publish(dep.clients, saturated, None, progress)
        if raw_rows is not None:  # row 1 reads these very records before the workers start
            from .bench_reference import run_raw

            expect = sum(c.sent for c in dep.clients.values())
            raw_rows.append(run_raw(dep, expect, single=False, progress=progress))
            raw_rows.append(run_raw(dep, expect, single=True, progress=progress))
        if not workers_first:
            first, all_ready = start_workers()
        # The clock, the CPU counters and the count of events start once every worker is
        # ready and the backlog is published: what was read before is not counted (until
        # 2026-12-04 the clock started at the first worker ready, and every event counted).
        t0 = time.monotonic()
        read_before = int(dep.metric("tkonto_events_in_total"))
        c0, b0, th0 = dep.worker_cpu(), dep.broker_cpu(), dep.worker_threads_cpu()
        h0 = dep.histogram(VISIBILITY)
        progress(f"{label} ready ({all_ready - first:.1f} s from the first to the last, {read_before} events read "
                 f"by the start); draining {len(saturated)} events", force=True)
        t1 = dep.wait_drained(len(saturated), progress, 300 if quick else 3600, len(expect_a[0]))
        c1, b1, th1 = dep.worker_cpu(), dep.broker_cpu(), dep.worker_threads_cpu()
        h1 = dep.histogram(VISIBILITY)
        n, start, note = len(saturated) - read_before, t0, (
            f"every worker ready{' then the backlog published' if workers_first else ''} -> group lag 0; "
            f"the {read_before} events read before not counted")
        if n < len(saturated) / 2:  # a small backlog (--quick) mostly drained by the first worker ready
            n, start, note = len(saturated), first, "first worker ready -> group lag 0 (most of the backlog was " \
                f"read before every worker was ready: {read_before})"
        in_window = max(1, len(saturated) - read_before)  # the events of the CPU counters' window
        sat = Row(f"{'3' if n_workers == 1 else '4'}. tkonto pipeline, {label}", "saturated", n, round(t1 - start, 2),
                  round(n / (t1 - start), 1), round((c1 - c0) / in_window * 1000, 3),
                  round((b1 - b0) / in_window * 1000, 3), 0.0,
                  note=note + f"; offsets committed every 0.5 s; drained = the {dep.drain_clock}",
                  ready_spread_s=round(all_ready - first, 2))
        sat.visibility_ms = visibility_summary(h0, h1)
        steady = steady_rate([(t, n - read_before) for t, n in dep.read_samples], in_window)
        sat.steady_events_per_s = round(steady, 1) if steady is not None else None
        by_thread = {name: (th1[name] - th0.get(name, 0.0)) / in_window * 1000 for name in th1}
        sat.cpu_per_1k_by_thread = {name: round(v, 4) for name, v in sorted(by_thread.items(), key=lambda kv: -kv[1])
                                    if v >= 0.0005}
        rows.append(sat)
        offered_row = None
        if offered:
            progress(f"offered load: {len(offered)} events at {rate:.0f}/s", force=True)
            wall_start = dt.datetime.now(dt.timezone.utc)
            c2, b2, t2 = dep.worker_cpu(), dep.broker_cpu(), time.monotonic()
            publish(dep.clients, offered, rate, progress)
            t3 = dep.wait_drained(len(saturated) + len(offered), progress, 300 if quick else 1800, len(expect_all[0]))
            c3, b3 = dep.worker_cpu(), dep.broker_cpu()
            h3 = dep.histogram(VISIBILITY)
            m = len(offered)
            offered_row = Row(f"{'3' if n_workers == 1 else '4'}. tkonto pipeline, {label}", f"offered {rate:.0f}/s",
                              m, round(t3 - t2, 2), round(m / (t3 - t2), 1), round((c3 - c2) / m * 1000, 3),
                              round((b3 - b2) / m * 1000, 3), 0.0,
                              note=f"publish start -> group lag 0 (drained = the {dep.drain_clock}); "
                                   "rate = achieved, incl. the drain tail")
            offered_row.visibility_ms = visibility_summary(h1, h3)
            rows.append(offered_row)
        rss = max(peak_rss_mb(w.pid) for w in dep.live())
        for row in rows:
            row.peak_rss_mb = round(rss, 1)
        progress("reading the ledger back", force=True)
        ledger = dep.ledger()
        check = compare_ledger(ledger, expect_all)
        entries = {}
        for e in ledger:  # first occurrence: a redelivery re-emits the entry with the original registered_at
            entries.setdefault(e["entry_id"], e)
        for row in rows:
            row.ledger_exact = check["exact"]
        sat_lat = [(e["registered_at"] - e["event_time"]).total_seconds() for e in entries.values()
                   if not offered or e["event_time"] < wall_start]
        sat.latency_ms = latency_summary(sat_lat)
        sat.latency_kind = "event_time -> registered in ledger (pre-published backlog: mostly queueing)"
        if offered_row:
            lat = [(e["registered_at"] - e["event_time"]).total_seconds() for e in entries.values()
                   if e["event_time"] >= wall_start]
            offered_row.latency_ms = latency_summary(lat)
            offered_row.latency_kind = "event_time -> registered in ledger"
        progress(f"ledger: {check}", force=True)
        return rows
    finally:
        dep.close()


# -- the fault scenario --------------------------------------------------------------------
def assigned(worker: WorkerProcess) -> int:
    try:
        status, body = worker.get("/ready", timeout=1.0)
        return int(json.loads(body).get("assigned_partitions", 0))
    except (OSError, ValueError):
        return 0


def run_fault(workdir: Path, sim: Simulation, emissions, settings: Settings, quick: bool) -> dict:
    progress = Progress("fault")
    dep = Deployment("fault", workdir, sim, settings, quick)
    try:
        progress(f"publishing {len(emissions)} events", force=True)
        publish(dep.clients, emissions, None, progress)
        expected = expected_ledger(sim, emissions)
        victim, survivor = dep.start_worker(), dep.start_worker()
        t0 = dep.wait_all_ready([victim, survivor])
        # both must hold partitions, so the kill takes work away from a running worker
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (assigned(victim) and assigned(survivor)):
            time.sleep(0.05)
        before = assigned(survivor)
        threshold = 0.3 * len(expected[0])
        progress(f"2 workers running; SIGKILL one after {int(threshold)} registrations", force=True)
        while dep.metric("tkonto_events_registered_total") < threshold and time.monotonic() - t0 < 600:
            time.sleep(0.02)
        registered_at_kill = int(dep.metric("tkonto_events_registered_total"))
        victim_rss = peak_rss_mb(victim.pid)
        lag_at_kill = dep.lag()
        t_kill = time.monotonic()
        victim.kill()
        progress(f"killed pid {victim.pid} at {registered_at_kill} registered (lag {lag_at_kill})", force=True)
        t_takeover = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:  # the survivor finished a rebalance that gave it the victim's partitions
                status, body = survivor.get("/ready", timeout=1.0)
                if status == 200 and json.loads(body)["assigned_partitions"] > before:
                    t_takeover = time.monotonic()
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        progress(f"survivor holds {assigned(survivor)} partitions (had {before})", force=True)
        restarted = dep.start_worker()
        t_restarted = None
        if not quick:  # a smoke run does not wait: the drain below needs no second worker
            restarted.wait_ready(120)
            t_restarted = time.monotonic()
        t_drained = dep.wait_drained(None, progress, timeout=300 if quick else 3600)
        rss = max([victim_rss] + [peak_rss_mb(w.pid) for w in dep.live()])
        progress("reading the ledger back", force=True)
        check = compare_ledger(dep.ledger(), expected)
        if check["lost"]:  # late or lost? look again once the group is quiet
            check["lost_at_first_read"] = check["lost"]
            time.sleep(5)
            dep.wait_drained(None, progress, timeout=120)
            check = {**compare_ledger(dep.ledger(), expected), "lost_at_first_read": check["lost"]}
        if check["lost"]:  # where did they go? dead letters of the lost entries, by reason
            lost = set(check["lost_sample"]) | (set(expected[0]) - {e["entry_id"] for e in dep.ledger()})
            reasons: dict[str, int] = defaultdict(int)
            for d in decode_topic(dep.bootstrap, dep.catalogue.deadletter.name, timeout=300):
                if d.get("event_id") and d["stage"] == "ledger":
                    event = default_codec().decode(d["original_value"]) if d.get("original_value") else None
                    if event and f"{event['payer_id']}:{event['payment_id']}:{event['event_type']}" in lost:
                        reasons[d["reason"]] += 1
            check["lost_dead_lettered"] = dict(reasons)
        result = {
            "events": len(emissions), "workers": 2, "registered_at_kill": registered_at_kill,
            "lag_at_kill": lag_at_kill, "killed_mid_run": lag_at_kill > 0,
            "takeover_s": round(t_takeover - t_kill, 2) if t_takeover else None,
            "restart_ready_s": round(t_restarted - t_kill, 2) if t_restarted else None,
            "recovery_s": round(t_drained - t_kill, 2), "run_s": round(t_drained - t0, 2),
            "session_timeout_s": dep.settings.session_timeout, "peak_rss_mb": round(rss, 1),
            "expectation": "account.register applied to the published events in publish order (after ingest's checks)",
            **check,
        }
        progress(f"result: {result}", force=True)
        return result
    finally:
        dep.close()


# -- the table -----------------------------------------------------------------------------
def fmt_lat(lat: dict) -> str:
    return f"{lat['p50']:.0f} / {lat['p99']:.0f} / {lat['max']:.0f}" if lat else "—"


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"# tkonto bench — {report['started']}",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu']}), {m['ram_gb']} GB RAM, Python {m['python']}, "
        f"load average before {report['load_before']}, after {report['load_after']}. "
        f"Embedded broker (Tansu), one fresh broker per row. Arguments: {report['args']}.",
        "",
        "| row | mode | events | s | events/s | CPU s / 1k events (workers) | CPU s / 1k events (broker) "
        "| peak RSS MB | registered: latency p50 / p99 / max ms | citizen view visible: p50 / p99 / max ≤ ms "
        "| ledger exact |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for r in report["rows"]:
        exact = "—" if r["ledger_exact"] is None else ("yes" if r["ledger_exact"] else "**NO**")
        lines.append(f"| {r['name']} | {r['mode']} | {r['events']} | {r['seconds']} | {r['events_per_s']:.0f} | "
                     f"{r['cpu_per_1k_workers']} | {r['cpu_per_1k_broker']} | {r['peak_rss_mb']} | "
                     f"{fmt_lat(r['latency_ms'])} | {fmt_lat(r.get('visibility_ms') or {})} | {exact} |")
    lines += ["", "Ratios: " + ", ".join(f"{k} = {v}" for k, v in report["ratios"].items()), ""]
    lines += [f"{r['name'][:2]} saturated: {r['note']}; the first worker ready to the last {r['ready_spread_s']} s."
              for r in report["rows"] if r.get("ready_spread_s") is not None] + [""]
    lines += [f"{r['name'][:2]} saturated, worker CPU s / 1k events by thread: "
              + ", ".join(f"{name} {v}" for name, v in r["cpu_per_1k_by_thread"].items()) + "."
              for r in report["rows"] if r.get("cpu_per_1k_by_thread")] + [""]
    lines += [f"{r['name'][:2]} saturated, steady rate (from {STEADY_FROM:.0%} to {STEADY_TO:.0%} of the backlog "
              f"read, without the drain's start and tail): {r['steady_events_per_s']:.0f} events/s."
              for r in report["rows"] if r.get("steady_events_per_s")] + [""]
    lines += ["Latency kinds:"] + sorted({f"* {r['name'][:2]} {r['mode']}: {r['latency_kind']}"
                                          for r in report["rows"] if r["latency_kind"]})
    f = report.get("fault")
    if f:
        lines += ["", "Fault scenario (2 workers, SIGKILL one mid-run, survivor takes over, killed one restarted):", "",
                  "| events | killed at (registered) | lag at kill | takeover s | restarted ready s | recovery s "
                  "(kill -> drained) | lost | doubled | extra | payees with wrong totals | exact |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
                  f"| {f['events']} | {f['registered_at_kill']} | {f['lag_at_kill']} | {f['takeover_s']} | "
                  f"{f['restart_ready_s']} | {f['recovery_s']} | {f['lost']} | {f['doubled']} | {f['extra']} | "
                  f"{f['payee_totals_mismatched']} of {f['payees']} | {'yes' if f['exact'] else '**NO**'} |",
                  "", f"Expectation: {f['expectation']}; {f['expected_entries']} ledger entries."]
        if f.get("lost_sample"):
            lines += ["", f"Lost entry ids (sample): {', '.join(f['lost_sample'])}; lost at the first read "
                          f"{f.get('lost_at_first_read')}; dead letters of lost entries: {f.get('lost_dead_lettered')}."]
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, stem: str, report: dict, markdown_text: str, table: str) -> None:
    """``<stem>.json`` and ``<stem>.md`` under ``out_dir``, and the table on the console."""
    (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out_dir / f"{stem}.md").write_text(markdown_text)
    print()
    print(table)
    print(f"\nwritten {out_dir / (stem + '.md')} and {out_dir / (stem + '.json')} in {report['elapsed_s']} s; "
          f"load {report['load_after']}")


def console_table(report: dict) -> str:
    head = f"{'row':62} {'mode':14} {'events':>8} {'ev/s':>8} {'cpu/1k w':>9} {'cpu/1k b':>9} {'rss MB':>7} " \
           f"{'lat p50/p99/max ms':>22} {'visible p50/p99/max':>22} exact"
    out = [head, "-" * len(head)]
    for r in report["rows"]:
        exact = "-" if r["ledger_exact"] is None else ("yes" if r["ledger_exact"] else "NO")
        out.append(f"{r['name'][:62]:62} {r['mode']:14} {r['events']:>8} {r['events_per_s']:>8.0f} "
                   f"{r['cpu_per_1k_workers']:>9.3f} {r['cpu_per_1k_broker']:>9.3f} {r['peak_rss_mb']:>7.0f} "
                   f"{fmt_lat(r['latency_ms']):>22} {fmt_lat(r.get('visibility_ms') or {}):>22} {exact}")
    out.append("ratios: " + ", ".join(f"{k} = {v}" for k, v in report["ratios"].items()))
    f = report.get("fault")
    if f:
        out.append(f"fault: {f['events']} events, kill at {f['registered_at_kill']} registered, takeover "
                   f"{f['takeover_s']} s, recovery (kill -> drained) {f['recovery_s']} s, lost {f['lost']}, "
                   f"doubled {f['doubled']}, extra {f['extra']}, payees with wrong totals "
                   f"{f['payee_totals_mismatched']}/{f['payees']}")
    return "\n".join(out)


def run_bench(args) -> int:
    quick = bool(getattr(args, "quick", False))
    keep_logs = bool(getattr(args, "keep_logs", False))
    n_events = 1500 if quick else args.events
    n_payees = 300 if quick else args.payees
    rate = 500.0 if quick else float(args.rate)
    offered_seconds = 1.0 if quick else 30.0
    n_offered = int(rate * offered_seconds)
    workers_max = max(1, min(2, int(getattr(args, "workers_max", 2) or 2)))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_env()
    if settings.bootstrap_servers:
        print("tkonto bench: note: the benchmark always uses the embedded broker (KAFKA_BOOTSTRAP_SERVERS ignored)")
    settings = settings.with_overrides(bootstrap_servers="")
    workdir = Path(tempfile.mkdtemp(prefix="tkonto-bench-"))
    report = {"started": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
              "load_before": loadavg(),
              "args": {"events": n_events, "payees": n_payees, "rate": rate, "offered_events": n_offered,
                       "workers_max": workers_max, "quick": quick, "skip_faults": bool(args.skip_faults),
                       "payers": N_PAYERS, "seed": SEED, "partitions": settings.partitions,
                       "pipeline_batch": settings.pipeline_batch, "store": settings.store,
                       "single_record_batches": settings.single_record_batches}}
    print(f"tkonto bench: {n_events} events over {n_payees} payees, offered load {rate:.0f}/s "
          f"({n_offered} events); logs in {workdir} (deleted at the end unless --keep-logs); "
          f"load {report['load_before']}", flush=True)
    t_start = time.monotonic()
    sim, saturated, offered = make_emissions(n_payees, n_events, n_offered)
    raw_rows: list[Row] = []
    rows: list[Row] = []
    from .bench_reference import run_naive, run_raw_offered

    try:
        # workers log at info with --keep-logs: their engine's line every 5 s says where the time went
        log_level = "info" if keep_logs else "warning"
        pipe1 = run_pipeline("tkonto-1w", 1, workdir, sim, saturated, offered, rate, settings, quick, raw_rows,
                             log_level=log_level)
        # each raw loop (default, then single-record batches, as run_pipeline ran them) saturated,
        # then at the offered rate on a broker of its own
        for raw, single in zip(raw_rows, (False, True)):
            rows += [raw, run_raw_offered(workdir, sim, offered, rate, settings, quick, single)]
        rows += run_naive(workdir, saturated, offered, rate, settings, quick, Progress("naive"))
        rows += pipe1
        if workers_max >= 2:
            rows += run_pipeline("tkonto-2w", 2, workdir, sim, saturated, offered, rate, settings, quick,
                                 log_level=log_level)
        if not args.skip_faults:
            report["fault"] = run_fault(workdir, sim, saturated, settings, quick)
    finally:
        report["rows"] = [asdict(r) for r in rows]
    by = {(r.name[:2], r.mode): r for r in rows}
    ratios = {}
    p1 = by.get(("3.", "saturated"))
    for key, label in (("1a", "row 3 / row 1a (default batching)"), ("1b", "row 3 / row 1b (single-record)")):
        raw = by.get((key, "saturated"))
        if p1 and raw and raw.events_per_s:
            ratios[label] = round(p1.events_per_s / raw.events_per_s, 3)
    p2 = by.get(("4.", "saturated"))
    if p1 and p2 and p1.events_per_s:
        ratios["row 4 / row 3 (2 workers vs 1)"] = round(p2.events_per_s / p1.events_per_s, 3)
    report["ratios"] = ratios
    report["load_after"] = loadavg()
    report["elapsed_s"] = round(time.monotonic() - t_start, 1)
    write_report(out_dir, "bench", report, markdown(report), console_table(report))
    if keep_logs:
        print(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    fault = report.get("fault")
    ok = all(r.ledger_exact is not False for r in rows) and (not fault or fault["exact"])
    return 0 if ok else 1


# -- memory: RSS of one rocksdb worker over a large backlog ----------------------------------
MEMORY_TARGET_MB = 200.0


def proc_status_mb(pid: int | None, *fields: str) -> dict[str, float]:
    """``VmRSS``, ``VmHWM``, ``RssAnon`` ... of a live process in MB (0 when it is gone)."""
    out = dict.fromkeys(fields, 0.0)
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in out:
                out[name] = int(rest.split()[0]) / 1024
    except (OSError, TypeError, ValueError):
        pass
    return out


def rocksdb_files_mb(data_dir: Path) -> dict[str, float]:
    """On-disk size of the worker's RocksDB state: SST files and write-ahead logs (a WAL
    holds what is still in the memtables, so its size shows memtable memory from outside;
    always 0 since the store writes without a WAL, 547e699)."""
    sst = wal = 0
    dbs = 0
    for root, _, files in os.walk(data_dir / "state"):
        if "CURRENT" in files:
            dbs += 1
        for name in files:
            try:
                size = os.stat(os.path.join(root, name)).st_size
            except OSError:
                continue
            if name.endswith(".sst"):
                sst += size
            elif name.endswith(".log") and name[:-4].isdigit():
                wal += size
    return {"dbs": dbs, "sst_mb": round(sst / 2**20, 1), "wal_mb": round(wal / 2**20, 1)}


def read_ledger_light(bootstrap: str, topic: str, timeout: float) -> list[dict]:
    """The ledger topic, each entry reduced to what ``compare_ledger`` compares (a million
    full decoded entries would cost the bench process gigabytes)."""
    from .observe import read_topic

    codec = default_codec()
    keep = ("entry_id", "payee_id", "sequence", "paid_delta_ore", "upcoming_delta_ore")
    out = []
    for msg in read_topic(bootstrap, topic, timeout):
        e = codec.decode(msg.value())
        out.append({k: e[k] for k in keep})
    return out


def run_memory(n_events: int, n_payees: int, out_dir: Path, settle: float = 10.0) -> int:
    """One worker with ``TKONTO_STORE=rocksdb://`` drains a pre-published backlog; its VmRSS
    is sampled every second from /ready until the group's lag is 0 (and ``settle`` s after)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_env()
    if settings.bootstrap_servers:
        print("tkonto bench memory: note: the benchmark always uses the embedded broker "
              "(KAFKA_BOOTSTRAP_SERVERS ignored)")
    settings = settings.with_overrides(bootstrap_servers="", store="rocksdb://")
    workdir = Path(tempfile.mkdtemp(prefix="tkonto-memory-"))
    progress = Progress("memory", every=5.0)
    report: dict = {"started": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                    "machine": machine(), "load_before": loadavg(),
                    "args": {"events": n_events, "payees": n_payees, "payers": N_PAYERS, "seed": SEED,
                             "store": settings.store, "state_cache": settings.state_cache,
                             "partitions": settings.partitions, "pipeline_batch": settings.pipeline_batch,
                             "settle_s": settle},
                    "target": f"RSS growth (final - at /ready) < {MEMORY_TARGET_MB:.0f} MB"}
    print(f"tkonto bench memory: {n_events} events over {n_payees} payees, 1 worker, rocksdb store "
          f"(state cache {settings.state_cache} per partition); logs in {workdir}; load {report['load_before']}",
          flush=True)
    t_start = time.monotonic()
    progress("simulating the events", force=True)
    sim, emissions, _ = make_emissions(n_payees, n_events, 0)
    dep = Deployment("memory", workdir, sim, settings, False)
    samples: list[dict] = []
    try:
        progress(f"publishing {len(emissions)} events (pre-published backlog)", force=True)
        broker_pid = dep.broker.proc.pid if dep.broker.proc else None
        publish_s = publish(dep.clients, emissions, None, progress)
        broker_after_publish = proc_status_mb(broker_pid, "VmRSS")["VmRSS"]
        progress(f"published in {publish_s:.1f} s ({len(emissions) / publish_s:.0f}/s); broker RSS "
                 f"{broker_after_publish:.0f} MB; computing the expected ledger", force=True)
        t_exp = time.monotonic()
        expected = expected_ledger(sim, emissions)
        expect_reg = len(expected[0])
        expected_s = time.monotonic() - t_exp
        del emissions
        gc.collect()
        progress(f"expectation: {expect_reg} ledger entries over {len(expected[1])} payees "
                 f"({expected_s:.1f} s); starting the worker", force=True)

        worker = dep.start_worker()
        data_dir = Path(worker.settings.data_dir)
        t0 = dep.wait_all_ready([worker], timeout=300)
        c0, b0 = cpu_seconds(worker.pid), dep.broker_cpu()

        def sample(phase: str) -> dict:
            mem = proc_status_mb(worker.pid, "VmRSS", "VmHWM", "RssAnon", "RssFile")
            try:
                counts = worker.metric_sums(["tkonto_events_in_total", "tkonto_events_registered_total"])
                n_in, n_reg = counts["tkonto_events_in_total"], counts["tkonto_events_registered_total"]
            except RuntimeError:
                n_in = n_reg = -1
            s = {"t": round(time.monotonic() - t0, 1), "phase": phase, "rss_mb": round(mem["VmRSS"], 1),
                 "hwm_mb": round(mem["VmHWM"], 1), "anon_mb": round(mem["RssAnon"], 1),
                 "file_mb": round(mem["RssFile"], 1), "events_in": int(n_in), "registered": int(n_reg),
                 "cpu_s": round(cpu_seconds(worker.pid) - c0, 1),
                 "broker_rss_mb": round(proc_status_mb(broker_pid, "VmRSS")["VmRSS"], 1),
                 **rocksdb_files_mb(data_dir)}
            samples.append(s)
            return s

        base = sample("ready")
        progress(f"worker ready: RSS {base['rss_mb']:.0f} MB (baseline), {base['events_in']} read, "
                 f"{base['registered']} registered", force=True)
        milestones: dict[int, dict] = {}
        t_drained = None
        deadline = time.monotonic() + 3600
        next_at = time.monotonic() + 1.0
        while t_drained is None:
            if not worker.alive():
                raise RuntimeError(f"worker exited ({worker.proc.returncode}); see {worker.log_file}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"not drained within 3600 s; logs in {dep.workdir}")
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += 1.0
            s = sample("drain")
            done = min(s["events_in"] / n_events, s["registered"] / expect_reg if expect_reg else 1.0)
            for pct in (25, 50, 75):
                if pct not in milestones and done >= pct / 100:
                    milestones[pct] = s
                    progress(f"{pct}% processed: RSS {s['rss_mb']:.0f} MB", force=True)
            if s["events_in"] >= n_events and s["registered"] >= expect_reg:
                lag = dep.lag()
                if lag == 0:
                    t_drained = time.monotonic()
                    s["phase"] = "drained"
                    milestones[100] = s
            progress(f"read {s['events_in']} / registered {s['registered']} of {expect_reg}; RSS "
                     f"{s['rss_mb']:.0f} MB (peak {s['hwm_mb']:.0f}); rocksdb WAL {s['wal_mb']:.0f} MB, "
                     f"SST {s['sst_mb']:.0f} MB; broker RSS {s['broker_rss_mb']:.0f} MB")
        c1, b1 = cpu_seconds(worker.pid), dep.broker_cpu()
        final = milestones[100]
        settle_until = time.monotonic() + settle
        while time.monotonic() < settle_until:
            time.sleep(1.0)
            sample("idle")
        after = samples[-1]
        progress("reading the ledger back", force=True)
        t_led = time.monotonic()
        check = compare_ledger(read_ledger_light(dep.bootstrap, dep.catalogue.ledger.name, 900), expected)
        ledger_s = time.monotonic() - t_led
        seconds = t_drained - t0
        growth = final["rss_mb"] - base["rss_mb"]
        report.update({
            "publish_s": round(publish_s, 1), "publish_events_per_s": round(n_events / publish_s, 1),
            "expectation_s": round(expected_s, 1), "ledger_read_s": round(ledger_s, 1),
            "broker_rss_after_publish_mb": round(broker_after_publish, 1),
            "drain_s": round(seconds, 1), "events_per_s": round(n_events / seconds, 1),
            "cpu_per_1k_worker": round((c1 - c0) / n_events * 1000, 3),
            "cpu_per_1k_broker": round((b1 - b0) / n_events * 1000, 3),
            "rss_mb": {"ready": base["rss_mb"], **{f"{p}%": milestones[p]["rss_mb"] for p in (25, 50, 75, 100)
                                                    if p in milestones},
                       f"idle +{settle:.0f} s": after["rss_mb"], "peak (VmHWM)": max(s["hwm_mb"] for s in samples)},
            "milestones": {f"{p}%": milestones[p] for p in sorted(milestones)},
            "growth_mb": round(growth, 1), "within_target": growth < MEMORY_TARGET_MB,
            "ledger": check, "ledger_exact": check["exact"], "samples": samples,
            "rocksdb_at_drain": {k: final[k] for k in ("dbs", "sst_mb", "wal_mb")},
        })
    finally:
        dep.close()
        report["load_after"] = loadavg()
        report["elapsed_s"] = round(time.monotonic() - t_start, 1)
    write_report(out_dir, "memory", report, memory_markdown(report), memory_table(report))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0 if report["ledger_exact"] else 1


def _memory_rows(report: dict) -> list[tuple[str, str]]:
    ms = report["milestones"]
    rows = [("RSS at /ready (baseline)", f"{report['rss_mb']['ready']:.0f} MB")]
    for p in ("25%", "50%", "75%", "100%"):
        if p in ms:
            s = ms[p]
            rows.append((f"RSS at {p} processed", f"{s['rss_mb']:.0f} MB (t {s['t']:.0f} s, {s['events_in']} read, "
                                                   f"{s['registered']} registered)"))
    idle = [k for k in report["rss_mb"] if k.startswith("idle")]
    if idle:
        rows.append((f"RSS {idle[0][5:]} after drain (idle)", f"{report['rss_mb'][idle[0]]:.0f} MB"))
    growth = report["growth_mb"]
    rows += [
        ("peak RSS (VmHWM)", f"{report['rss_mb']['peak (VmHWM)']:.0f} MB"),
        ("growth (final - baseline)", f"{growth:.0f} MB ({'within' if report['within_target'] else 'OVER'} "
                                      f"the {MEMORY_TARGET_MB:.0f} MB target)"),
        ("drain (ready -> lag 0)", f"{report['drain_s']:.1f} s"),
        ("events/s", f"{report['events_per_s']:.0f}"),
        ("CPU s / 1k events (worker)", f"{report['cpu_per_1k_worker']:.3f}"),
        ("CPU s / 1k events (broker)", f"{report['cpu_per_1k_broker']:.3f}"),
        ("rocksdb at drain (dbs, SST, WAL)", "{dbs} dbs, SST {sst_mb} MB, WAL {wal_mb} MB".format(
            **report["rocksdb_at_drain"])),
        ("publish", f"{report['publish_s']:.0f} s ({report['publish_events_per_s']:.0f}/s), broker RSS after "
                    f"{report['broker_rss_after_publish_mb']:.0f} MB"),
    ]
    c = report["ledger"]
    rows.append(("ledger exact", f"{'yes' if c['exact'] else 'NO'}: {c['distinct_entries']} of "
                                 f"{c['expected_entries']} entries, lost {c['lost']}, doubled {c['doubled']}, extra "
                                 f"{c['extra']}, payees with wrong totals {c['payee_totals_mismatched']} of "
                                 f"{c['payees']} (read back in {report['ledger_read_s']:.0f} s)"))
    return rows


def memory_table(report: dict) -> str:
    rows = _memory_rows(report)
    width = max(len(k) for k, _ in rows)
    return "\n".join([f"{'measure':{width}}  value", "-" * (width + 40)] + [f"{k:{width}}  {v}" for k, v in rows])


def memory_markdown(report: dict) -> str:
    m, a = report["machine"], report["args"]
    lines = [f"# tkonto bench memory — {report['started']}", "",
             f"Machine: {m['nproc']} cores ({m['cpu']}), {m['ram_gb']} GB RAM, Python {m['python']}, load average "
             f"before {report['load_before']}, after {report['load_after']}. Embedded broker (Tansu).", "",
             f"{a['events']} events over {a['payees']} payees, pre-published; one worker, TKONTO_STORE={a['store']}, "
             f"TKONTO_STATE_CACHE={a['state_cache']} per partition, {a['partitions']} partitions. VmRSS of the worker "
             f"from /proc/<pid>/status every second from /ready until the consumer group's lag is 0. "
             f"Target: {report['target']}.", "",
             "| measure | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in _memory_rows(report)]
    lines += ["", "Samples (every 10th, and the milestones):", "",
              "| t s | phase | RSS MB | anon MB | file MB | read | registered | worker CPU s | rocksdb SST / WAL MB "
              "| broker RSS MB |", "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    marks = {id(s) for s in report["milestones"].values()}
    for i, s in enumerate(report["samples"]):
        if i % 10 == 0 or s["phase"] != "drain" or id(s) in marks or s is report["samples"][-1]:
            lines.append(f"| {s['t']} | {s['phase']} | {s['rss_mb']} | {s['anon_mb']} | {s['file_mb']} | "
                         f"{s['events_in']} | {s['registered']} | {s['cpu_s']} | {s['sst_mb']} / {s['wal_mb']} | "
                         f"{s['broker_rss_mb']} |")
    return "\n".join(lines) + "\n"


def memory_main(argv: list[str]) -> int:
    """``python -m streams.bench memory ...``: the same command as ``tkonto bench memory``."""
    from .cli import main

    return main(["bench", "memory", *argv])


# -- profiling -----------------------------------------------------------------------------
def hot_spots(raw_file: Path, top: int = 25) -> tuple[list, list, int]:
    """From py-spy's raw (collapsed) output, idle samples excluded: [(function, self %, total %)]
    ranked by self time, [(function, total %)] ranked by inclusive time, and the sample count."""
    self_count: dict[str, int] = defaultdict(int)
    total_count: dict[str, int] = defaultdict(int)
    samples = 0
    for line in raw_file.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        self_count[frames[-1]] += n
        for f in set(frames):
            total_count[f] += n
    ranked = sorted(self_count, key=lambda f: -self_count[f])[:top]
    return [(f, 100 * self_count[f] / samples, 100 * total_count[f] / samples) for f in ranked], \
        sorted(((f, 100 * c / samples) for f, c in total_count.items()), key=lambda x: -x[1])[:top], samples


def profile(n_events: int, n_payees: int, out: Path) -> int:
    """Profile one worker draining a pre-published backlog with py-spy (worker runs under py-spy)."""
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(pyspy).exists():
        print("py-spy not found: `.venv/bin/pip install py-spy` (local investigation only)", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="tkonto-profile-"))
    sim, saturated, _ = make_emissions(n_payees, n_events, 0)
    dep = Deployment("profile", workdir, sim, Settings.from_env().with_overrides(bootstrap_servers=""), False)
    raw = out / "profile-1worker.txt"
    proc = None
    try:
        publish(dep.clients, saturated, None, Progress("profile"))
        worker = WorkerProcess(dep.settings.with_overrides(data_dir=str(dep.workdir / "data")),
                               log_file=dep.workdir / "worker.log")
        # the Python source: py-spy sees no frames inside the modules Cython compiled
        env = {**os.environ, **worker.settings.as_env(), "TKONTO_COMPILED": "false"}
        proc = spawn_child([pyspy, "record", "-r", "100", "-f", "raw", "-o", str(raw), "--",
                            sys.executable, "-m", "streams.cli", "worker"], env=env,
                           stdout=(dep.workdir / "worker.log").open("ab"), stderr=subprocess.STDOUT)
        worker.proc = proc  # /ready and /metrics are the worker's; the pid is py-spy's
        dep.workers.append(worker)
        t0 = dep.wait_all_ready([worker])
        t1 = dep.wait_drained(len(saturated), Progress("profile"), 3600)
        print(f"drained {len(saturated)} events in {t1 - t0:.1f} s under py-spy (sampling slows it down)")
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # py-spy writes its file and ends the worker
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        dep.workers = []
        dep.close()
    ranked, inclusive, samples = hot_spots(raw)
    lines = [f"py-spy, 1 worker (Python source, TKONTO_COMPILED=false), {len(saturated)} events, {samples} samples "
             "(idle excluded)", "",
             "self % | total % | function", "---: | ---: | ---"]
    lines += [f"{s:.1f} | {t:.1f} | `{f}`" for f, s, t in ranked]
    lines += ["", "inclusive (total %) | function", "---: | ---"]
    lines += [f"{t:.1f} | `{f}`" for f, t in inclusive]
    (out / "profile-1worker.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "raw-loop":
        from .bench_reference import raw_loop

        bootstrap, topics, out, expect, single, fetch_wait = argv[1:7]
        print(json.dumps(raw_loop(bootstrap, topics.split(","), out, int(expect), single == "1", int(fetch_wait))))
        return 0
    if argv and argv[0] == "naive-worker":
        from .bench_reference import naive_worker

        bootstrap, topic_in, topic_out, app_id, expect, result_path, partitions = argv[1:8]
        offered = int(argv[8]) if len(argv) > 8 else 0
        sys.argv = [sys.argv[0], "worker"]
        naive_worker(bootstrap, topic_in, topic_out, app_id, int(expect), result_path, int(partitions), offered)
        return 0
    if argv and argv[0] == "profile":
        parser = argparse.ArgumentParser(prog="python -m streams.bench profile")
        parser.add_argument("--events", type=int, default=100_000)
        parser.add_argument("--payees", type=int, default=100_000)
        parser.add_argument("--out", default="results")
        a = parser.parse_args(argv[1:])
        return profile(a.events, a.payees, Path(a.out))
    if argv and argv[0] == "memory":
        return memory_main(argv[1:])
    print("usage: python -m streams.bench raw-loop|naive-worker|profile|memory ... (tkonto bench runs the table)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
