"""A CPU budget for a process: a cgroup with a CPU quota (``tkonto bench scaling``).

Linux cgroups cap how much CPU time the processes in a group get per period: ``cores`` =
0.5 gives the group 50 ms in every 100 ms, whatever its thread count. Both layouts are
handled: cgroup v1 (``/sys/fs/cgroup/cpu/<name>/cpu.cfs_quota_us``) and v2
(``/sys/fs/cgroup/<name>/cpu.max``). Creating a group needs root, or a delegated subtree.
"""
from __future__ import annotations

import os
from pathlib import Path

PERIOD_US = 100_000
V1_ROOT = Path("/sys/fs/cgroup/cpu")
V2_ROOT = Path("/sys/fs/cgroup")


class CpuBudgetError(RuntimeError):
    """No CPU cgroup can be made here (the message names the fix)."""


def _layout(v1_root: Path, v2_root: Path) -> tuple[Path, str]:
    if (v1_root / "cpu.cfs_quota_us").exists():
        return v1_root, "v1"
    controllers = v2_root / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return v2_root, "v2"
    raise CpuBudgetError(f"no cgroup CPU controller at {v1_root} or {v2_root}: run on Linux with cgroups "
                         "(v1 'cpu' or v2 with the 'cpu' controller), or use the uncapped rows (tkonto bench)")


class CpuBudget:
    """A cgroup holding its processes to ``cores`` CPUs; ``close`` moves them out and removes it."""

    def __init__(self, name: str, cores: float, v1_root: Path = V1_ROOT, v2_root: Path = V2_ROOT):
        if not 0.01 <= cores <= (os.cpu_count() or 1):
            raise CpuBudgetError(f"a CPU budget of {cores} cores is outside 0.01..{os.cpu_count()} on this machine")
        self.cores = cores
        root, self.layout = _layout(v1_root, v2_root)
        self.root = root
        self.path = root / name
        quota = int(cores * PERIOD_US)
        try:
            if self.layout == "v2":
                subtree = root / "cgroup.subtree_control"
                if "cpu" not in subtree.read_text().split():
                    subtree.write_text("+cpu")
            self.path.mkdir(exist_ok=True)
            if self.layout == "v1":
                (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (self.path / "cpu.cfs_quota_us").write_text(str(quota))
            else:
                (self.path / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        except OSError as exc:
            raise CpuBudgetError(f"cannot create the cgroup {self.path} ({exc.strerror}): run the benchmark as root, "
                                 "or in a container with a writable cgroup tree") from exc

    def add(self, pid: int) -> None:
        """Put process ``pid`` (all its threads, and what it starts later) in the group."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def stats(self) -> dict[str, float]:
        """Periods run and throttled, and the seconds throttled, so far."""
        raw: dict[str, int] = {}
        for line in (self.path / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if value.strip().lstrip("-").isdigit():
                raw[key] = int(value)
        throttled_s = raw["throttled_time"] / 1e9 if "throttled_time" in raw else raw.get("throttled_usec", 0) / 1e6
        return {"periods": raw.get("nr_periods", 0), "throttled_periods": raw.get("nr_throttled", 0),
                "throttled_s": throttled_s}

    def close(self) -> None:
        for pid in self.pids():  # a group with processes in it cannot be removed
            try:
                (self.root / "cgroup.procs").write_text(str(pid))
            except OSError:
                pass
        try:
            self.path.rmdir()
        except OSError:
            pass

    def __enter__(self) -> "CpuBudget":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def probe(cores: float) -> None:
    """Raise ``CpuBudgetError`` (naming the fix) unless a budget of ``cores`` can be made here."""
    CpuBudget(f"tkonto-probe-{os.getpid()}", cores).close()


def available() -> bool:
    """Whether this machine lets us make CPU budgets (a writable cgroup CPU controller)."""
    try:
        probe(0.5)
        return True
    except CpuBudgetError:
        return False


def host_cpu_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total - idle, total
