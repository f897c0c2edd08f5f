"""CPU budgets (cgroups) for `tkonto bench scaling`: the files written for each layout, the
stats read back, the errors; and, where this machine lets us, a real group throttling a
busy process."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from streams.cpu_budget import V1_ROOT, V2_ROOT, CpuBudget, CpuBudgetError, available, host_cpu_ticks


def fake_v1(tmp_path):
    root = tmp_path / "v1"
    root.mkdir(exist_ok=True)
    (root / "cpu.cfs_quota_us").write_text("-1")
    return root


def fake_v2(tmp_path):
    root = tmp_path / "v2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("memory\n")
    return root


# layout, cores, files the group gets, cpu.stat as the kernel writes it, what stats() reads from it
LAYOUTS = [
    ("v1", 0.5, {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "50000"},
     "nr_periods 40\nnr_throttled 30\nthrottled_time 1500000000\n",
     {"periods": 40, "throttled_periods": 30, "throttled_s": 1.5}),
    ("v2", 1.25, {"cpu.max": "125000 100000"},
     "usage_usec 9\nnr_periods 10\nnr_throttled 4\nthrottled_usec 250000\n",
     {"periods": 10, "throttled_periods": 4, "throttled_s": 0.25}),
]


@pytest.mark.parametrize("layout, cores, files, stat, stats", LAYOUTS, ids=[row[0] for row in LAYOUTS])
def test_each_layout_gets_its_quota_files_and_reads_its_stats(tmp_path, layout, cores, files, stat, stats):
    roots = {"v1_root": fake_v1(tmp_path), "v2_root": tmp_path / "none"} if layout == "v1" else \
        {"v1_root": tmp_path / "none", "v2_root": fake_v2(tmp_path)}
    budget = CpuBudget("w1", cores, **roots)
    assert budget.layout == layout
    assert {name: (budget.path / name).read_text() for name in files} == files
    if layout == "v2":  # the controller is enabled for the root's children
        assert (roots["v2_root"] / "cgroup.subtree_control").read_text() == "+cpu"
    budget.add(4242)
    assert (budget.path / "cgroup.procs").read_text() == "4242"
    (budget.path / "cpu.stat").write_text(stat)
    assert budget.stats() == stats


def test_no_cpu_controller_names_the_fix(tmp_path):
    root = tmp_path / "v2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("memory pids\n")
    with pytest.raises(CpuBudgetError, match=r"no cgroup CPU controller .*uncapped rows \(tkonto bench\)"):
        CpuBudget("w1", 0.5, v1_root=tmp_path / "none", v2_root=root)


def test_a_budget_beyond_this_machine_is_refused(tmp_path):
    with pytest.raises(CpuBudgetError, match=r"a CPU budget of 500 cores is outside 0.01\.\."):
        CpuBudget("w1", 500, v1_root=fake_v1(tmp_path))
    with pytest.raises(CpuBudgetError, match="outside"):
        CpuBudget("w1", 0.0, v1_root=fake_v1(tmp_path))


def test_a_group_that_cannot_be_made_says_run_as_root(tmp_path):
    root = fake_v1(tmp_path)
    (root / "taken").write_text("a file where the group's directory would go")
    with pytest.raises(CpuBudgetError, match=r"cannot create the cgroup .*taken .*run the benchmark as root"):
        CpuBudget("taken", 0.5, v1_root=root)


def test_host_ticks_grow_and_busy_never_exceeds_total():
    busy0, total0 = host_cpu_ticks()
    sum(i * i for i in range(300_000))
    time.sleep(0.05)
    busy1, total1 = host_cpu_ticks()
    assert total1 > total0 and 0 <= busy1 - busy0 <= total1 - total0


@pytest.mark.skipif(not available(), reason=f"no writable cgroup CPU controller at {V1_ROOT} or {V2_ROOT}")
def test_a_real_budget_throttles_a_busy_process_and_is_removed():
    busy = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 30\nwhile time.time() < end: pass"])
    try:
        with CpuBudget(f"tkonto-test-{os.getpid()}", 0.1) as budget:
            budget.add(busy.pid)
            assert budget.pids() == [busy.pid]
            deadline = time.monotonic() + 10
            while budget.stats()["throttled_periods"] < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            stats = budget.stats()
            # a busy loop wants a whole core; 10 ms of every 100 ms leaves it throttled in nearly every period
            assert stats["throttled_periods"] >= 3 and stats["throttled_s"] > 0, stats
        assert not budget.path.exists()
        assert busy.poll() is None  # moved out of the group, not killed
    finally:
        busy.kill()
        busy.wait()
