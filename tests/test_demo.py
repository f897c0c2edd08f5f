"""`tkonto demo` as a user runs it: summary, and a clean stop on Ctrl-C leaving no process."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.broker


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split()[2] != "Z"


def ctrl_c_as_in_a_terminal() -> None:
    """In the child: SIGINT at its default, as a terminal's foreground process has it. A
    command started in the background of a non-interactive shell inherits SIGINT ignored,
    and Python then installs no KeyboardInterrupt handler: a test suite run that way would
    see the demo ignore Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_demo(*args):
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    return subprocess.Popen([sys.executable, "-m", "streams.cli", "demo", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, preexec_fn=ctrl_c_as_in_a_terminal)


def test_demo_runs_and_prints_the_summary():
    proc = run_demo("--events", "600", "--payees", "80", "--payers", "6", "--rate", "3000")
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    published = int(re.search(r"events published\s+(\d+)", out).group(1))
    entries = int(re.search(r"ledger entries\s+(\d+)", out).group(1))
    letters = int(re.search(r"dead letters\s+(\d+)", out).group(1))
    assert published == 600 and entries > 0 and letters >= 0
    assert "registration latency  p50" in out and "ledger totals per payer" in out
    assert "/mina-utbetalningar?token=" in out
    assert out.rstrip().endswith("stopped worker and broker")


def test_ctrl_c_stops_everything_it_started():
    proc = run_demo("--events", "200000", "--payees", "2000", "--rate", "500")
    deadline = time.monotonic() + 90
    line = ""
    while time.monotonic() < deadline and "published" not in line:
        line = proc.stdout.readline()
    assert "published" in line, "the demo never started publishing"
    kids = children_of(proc.pid)
    assert len(kids) >= 2  # broker and worker
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, out
    assert "interrupted" in out and "stopped worker and broker" in out
    time.sleep(0.5)
    assert [k for k in kids if alive(k)] == []
