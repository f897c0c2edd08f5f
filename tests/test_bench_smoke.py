"""`tkonto bench --quick`: every row of the table is measured and written; the kill -9
scenario loses and doubles nothing. No timing thresholds: figures depend on the machine."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams import cpu_budget
from streams.bench import Deployment, steady_rate

pytestmark = pytest.mark.broker

NUMERIC = ("events", "seconds", "events_per_s", "cpu_per_1k_workers", "cpu_per_1k_broker", "peak_rss_mb")


def test_quick_bench_writes_a_complete_table_and_the_fault_scenario_is_exact(tmp_path):
    out = tmp_path / "results"
    result = subprocess.run([sys.executable, "-m", "streams.cli", "bench", "--quick", "--keep-logs", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # --keep-logs: the run's folder stays, with the workers' logs at info
    kept = Path(result.stdout.split("logs kept in ", 1)[1].split()[0])
    try:
        worker_log = (kept / "tkonto-1w" / "worker-1.log").read_text()
        assert "[INFO]" in worker_log and "pipeline assigned" in worker_log
    finally:
        shutil.rmtree(kept, ignore_errors=True)
    assert (out / "bench.md").is_file() and (out / "bench.json").is_file()
    report = json.loads((out / "bench.json").read_text())

    rows = [(row["name"][:2], row["mode"]) for row in report["rows"]]
    # every row at saturation and at the offered load (--quick: 500/s for 1 s)
    assert rows == [(name, mode) for name in ("1a", "1b", "2.", "3.", "4.") for mode in ("saturated", "offered 500/s")]
    for row in report["rows"]:
        for key in NUMERIC:
            assert isinstance(row[key], (int, float)) and row[key] > 0, (row["name"], row["mode"], key, row[key])
        if row["name"].startswith(("2.", "3.", "4.")) or row["mode"] != "saturated":
            assert set(row["latency_ms"]) >= {"p50", "p99", "max"}, row
            assert all(row["latency_ms"][k] > 0 for k in ("p50", "p99", "max")), row
            assert row["latency_kind"], row
        if row["mode"] != "saturated":  # the same offered records; the naive hop gets only the ones that are events
            assert row["events"] == 500 if row["name"].startswith(("1", "3", "4")) else 0 < row["events"] <= 500, row
        if row["name"].startswith(("1", "2.")) and row["mode"] != "saturated":
            assert 0 < row["latency_ms"]["n"] <= row["events"], row
        if row["name"].startswith(("3.", "4.")):
            assert row["ledger_exact"] is True, row
            assert "drained = the last commit" in row["note"], row  # the workers report when they were done
            if row["mode"] == "saturated":  # counted from the moment every worker is ready
                assert 0 <= row["ready_spread_s"] < 300, row
                # the workers' CPU by thread: named threads, and no more than the processes used
                by_thread = row["cpu_per_1k_by_thread"]
                assert by_thread and all(v > 0 for v in by_thread.values()), row
                assert sum(by_thread.values()) <= row["cpu_per_1k_workers"] * 1.05 + 0.002, row
    assert set(report["ratios"]) >= {"row 3 / row 1a (default batching)", "row 3 / row 1b (single-record)"}
    assert all(v > 0 for v in report["ratios"].values())

    fault = report["fault"]
    assert fault["lost"] == 0 and fault["doubled"] == 0 and fault["extra"] == 0
    assert fault["payee_totals_mismatched"] == 0 and fault["exact"] is True
    assert fault["distinct_entries"] == fault["expected_entries"] > 0
    assert fault["recovery_s"] > 0

    markdown = (out / "bench.md").read_text()
    assert "| 3. tkonto pipeline, 1 worker | saturated |" in markdown
    assert "3. saturated, worker CPU s / 1k events by thread: " in markdown
    assert "Fault scenario" in markdown


def test_the_steady_rate_is_taken_between_the_crossings_of_10_and_90_percent():
    # 1,000 events: slow start (100 in 2 s), then 200/s, then a slow tail; 10 % (100) is
    # crossed at t = 2.0 and 90 % (900) at t = 6.0
    samples = [(0.0, 0.0), (2.0, 100.0), (3.0, 300.0), (5.0, 700.0), (6.5, 1000.0), (9.0, 1000.0)]
    assert steady_rate(samples, 1000) == pytest.approx(800 / (6.0 - 2.0))
    assert steady_rate(samples[:3], 1000) is None  # never reached 90 %
    assert steady_rate([(0.0, 0.0), (1.0, 1000.0)], 1000) == pytest.approx(1000.0)  # both between two samples


class _Reporting:
    """A worker as ``Deployment.drained_at`` sees it: its last-commit gauge (0: never set)."""

    def __init__(self, committed: float | None):
        self.committed = committed

    def metric_sums(self, names):
        if self.committed is None:
            raise RuntimeError("did not serve /metrics")
        return {name: self.committed for name in names}


def _deployment(*committed):
    dep = Deployment.__new__(Deployment)  # no broker: only the workers' gauges matter here
    dep.workers, dep.drain_clock = [], ""
    dep.live = lambda: [_Reporting(c) for c in committed]
    return dep


def test_drained_is_the_workers_last_commit_not_when_the_lag_poll_noticed_it():
    now, wall = time.monotonic(), time.time()
    dep = _deployment(wall - 3.0, wall - 1.5, None)  # the latest commit of the live workers counts
    assert dep.drained_at(now - 10.0) == pytest.approx(now - 1.5, abs=0.5)
    assert dep.drain_clock == "last commit"
    assert dep.drained_at(now - 0.2) == pytest.approx(now - 0.2, abs=0.05)  # never before the wait began
    old = _deployment(0.0, 0.0)  # a revision without the gauge: when the poll saw lag 0
    before = time.monotonic()
    assert before <= old.drained_at(now - 10.0) <= time.monotonic()
    assert old.drain_clock == "lag poll"


def test_memory_mode_samples_rss_and_the_ledger_is_exact(tmp_path):
    """`python -m streams.bench memory` (tkonto bench memory): one rocksdb worker, RSS sampled
    from /ready to lag 0, milestones, growth and the ledger check. No memory thresholds here."""
    out = tmp_path / "results"
    result = subprocess.run([sys.executable, "-m", "streams.bench", "memory", "--events", "3000", "--payees", "500",
                             "--settle", "1", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "memory.json").read_text())
    assert report["args"]["store"] == "rocksdb://"
    assert set(report["rss_mb"]) >= {"ready", "100%", "peak (VmHWM)"}
    assert all(v > 0 for v in report["rss_mb"].values())
    assert report["growth_mb"] == round(report["milestones"]["100%"]["rss_mb"] - report["rss_mb"]["ready"], 1)
    assert report["events_per_s"] > 0 and report["cpu_per_1k_worker"] > 0
    assert report["ledger_exact"] is True and report["ledger"]["distinct_entries"] > 0
    assert "| growth (final - baseline) |" in (out / "memory.md").read_text()


def test_memory_mode_rejects_bad_arguments_in_one_line():
    result = subprocess.run([sys.executable, "-m", "streams.bench", "memory", "--events", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "must be greater than 0" in result.stderr


@pytest.mark.skipif(not cpu_budget.available(), reason="no writable cgroup CPU controller on this machine")
def test_scaling_mode_runs_1_and_2_capped_workers_and_both_ledgers_are_exact(tmp_path):
    """`tkonto bench scaling --quick`: each worker in its own CPU budget; no speed thresholds."""
    out = tmp_path / "results"
    result = subprocess.run([sys.executable, "-m", "streams.cli", "bench", "scaling", "--quick",
                             "--cores-per-worker", "0.7", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "scaling.json").read_text())
    assert [r["workers"] for r in report["rows"]] == [1, 2]
    for row in report["rows"]:
        assert row["cores_per_worker"] == 0.7 and row["events"] == 1500
        assert row["ledger_exact"] is True and row["ledger"]["lost"] == row["ledger"]["doubled"] == 0, row
        assert row["events_per_s"] > 0 and row["cpu_per_1k_workers"] > 0 and 0 < row["host_busy_cores"] <= 2 * 4
        assert 0 <= row["ready_spread_s"] < 300  # the backlog is published once every worker is ready
    assert report["ratio"] == round(report["rows"][1]["events_per_s"] / report["rows"][0]["events_per_s"], 2)
    assert "2 workers / 1 worker = **" in (out / "scaling.md").read_text()


def test_scaling_mode_rejects_a_budget_this_machine_cannot_give_in_one_line():
    result = subprocess.run([sys.executable, "-m", "streams.cli", "bench", "scaling", "--cores-per-worker", "4096"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and "a CPU budget of 4096.0 cores is outside 0.01.." in result.stderr
    bad = subprocess.run([sys.executable, "-m", "streams.cli", "bench", "scaling", "--cores-per-worker", "0"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--cores-per-worker: '0' must be greater than 0" in bad.stderr


ALTERNATE = [sys.executable, "benchmarks/alternate.py"]


def test_alternate_runs_two_versions_in_turn_each_from_its_own_checkout():
    """benchmarks/alternate.py HEAD (the working tree against the last commit), tiny sizes:
    every run's ledger exact, the worktree removed afterwards."""
    from streams.settings import REPO_ROOT

    before = subprocess.run(["git", "worktree", "list"], cwd=REPO_ROOT, capture_output=True, text=True).stdout
    result = subprocess.run(ALTERNATE + ["HEAD", "--rounds", "1", "--events", "300", "--offered", "200",
                                         "--payees", "200"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = [line for line in result.stdout.splitlines() if line.startswith("round 1:")]
    assert [line.split()[2] for line in runs] == ["HEAD", "working"], result.stdout
    assert all(line.endswith("exact yes") for line in runs), result.stdout
    assert all("(end: last commit)" in line for line in runs), result.stdout  # both report their last commit
    assert "rows end differently" not in result.stdout
    assert "means over 1 round(s), 1 worker(s), 300 events saturated, 200 offered" in result.stdout
    after = subprocess.run(["git", "worktree", "list"], cwd=REPO_ROOT, capture_output=True, text=True).stdout
    assert after == before


@pytest.mark.parametrize("args, message", [
    (["no-such-revision"], "cannot check out 'no-such-revision'"),
    (["HEAD", "--rounds", "0"], "--rounds, --events, --payees and --rate must be positive"),
])
def test_alternate_refuses_bad_arguments_in_one_line(args, message):
    from streams.settings import REPO_ROOT

    result = subprocess.run(ALTERNATE + args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr, result.stderr


REPLAY = [sys.executable, "benchmarks/replay.py"]


def test_replay_times_a_function_on_the_calls_of_a_run_and_its_parts():
    """benchmarks/replay.py: every event of a small engine_stages run calls check_payment
    once; the function and its compiled copy cut before a line are timed."""
    from streams.settings import REPO_ROOT

    result = subprocess.run(REPLAY + ["validation", "check_payment", "category = CATEGORIES[", "--events", "300",
                                      "--payees", "100"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "validation.check_payment: 300 calls in 300 events (1.00 per event)", result.stdout
    assert lines[1].startswith("  as built: ") and lines[1].endswith(" ns per call")
    assert lines[2].startswith("  compiled copy, whole: ")
    assert lines[3].startswith("  up to 'category = CATEGORIES[': ")
    copied = subprocess.run(REPLAY + ["account", "register", "--copy", "--events", "300", "--payees", "100"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert copied.returncode == 0, copied.stderr[-2000:]
    assert copied.stdout.startswith("account.register: ") and " calls in 300 events" in copied.stdout


@pytest.mark.parametrize("args, message", [
    (["nosuch", "f"], "no module streams/nosuch.py"),
    (["rules", "no_such_function"], "no function no_such_function at the top level of streams/rules.py"),
    (["rules", "_track", "no such line", "--events", "50", "--payees", "20"], "no line of _track contains 'no such line'"),
])
def test_replay_refuses_what_is_not_there_in_one_line(args, message):
    from streams.settings import REPO_ROOT

    result = subprocess.run(REPLAY + args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr, result.stderr


def test_engine_stages_counts_the_collector_and_leaves_it_little_of_the_stores():
    """benchmarks/engine_stages.py --collector: the pass's collections timed, then a full
    collection; the stores' values were untracked when written, so what the collector
    still tracks is a few hundred objects, not the ~3,000 containers of 150 payees' state."""
    import re

    from streams.settings import REPO_ROOT

    result = subprocess.run([sys.executable, "benchmarks/engine_stages.py", "--events", "600", "--payees", "150",
                             "--collector"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    found = re.search(r"cyclic collector: (\d+) collections in the pass, ([\d.]+) s \(.*\); "
                      r"then a full collection (\d+) ms, ([\d,]+) objects tracked after it", result.stdout)
    assert found, result.stdout
    assert int(found[4].replace(",", "")) < 1_500
