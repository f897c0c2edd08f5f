"""The worker's OS threads: named, so ``top -H``, ``ps -L`` and /proc show which is which,
and their CPU time read by name from outside (``tkonto bench``, ``benchmarks/threads.py``).

Python names a ``threading.Thread`` for itself only; the kernel sees every thread of the
process as ``python``. ``name_os_thread`` gives the calling thread its Python name at the
kernel too (Linux keeps 15 bytes of it; elsewhere it does nothing).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from collections import defaultdict
from pathlib import Path

_PR_SET_NAME = 15
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_set_name = _prctl()


def name_os_thread(name: str | None = None) -> None:
    """Name the calling thread at the kernel (default: its ``threading`` name)."""
    if _set_name is not None:
        _set_name(_PR_SET_NAME, (name or threading.current_thread().name).encode()[:15], 0, 0, 0)


def cpu_by_thread(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of a live process's threads, summed by kernel thread
    name (librdkafka names its own threads ``rdk:...``); {} when the process is gone."""
    out: defaultdict[str, float] = defaultdict(float)
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return {}
    for tid in tids:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out["main" if tid == str(pid) else name] += (int(fields[11]) + int(fields[12])) / _CLK_TCK
    return dict(out)
