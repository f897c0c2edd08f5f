"""`tkonto bench --quick`: every row of the table is measured and written; the kill -9
scenario loses and doubles nothing. No timing thresholds: figures depend on the machine."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.broker

NUMERIC = ("events", "seconds", "events_per_s", "cpu_per_1k_workers", "cpu_per_1k_broker", "peak_rss_mb")


def test_quick_bench_writes_a_complete_table_and_the_fault_scenario_is_exact(tmp_path):
    out = tmp_path / "results"
    result = subprocess.run([sys.executable, "-m", "streams.cli", "bench", "--quick", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (out / "bench.md").is_file() and (out / "bench.json").is_file()
    report = json.loads((out / "bench.json").read_text())

    names = [row["name"][:2] for row in report["rows"]]
    assert names.count("1a") == names.count("1b") == names.count("2.") == 1
    assert names.count("3.") == names.count("4.") == 2  # saturated and offered load
    for row in report["rows"]:
        for key in NUMERIC:
            assert isinstance(row[key], (int, float)) and row[key] > 0, (row["name"], row["mode"], key, row[key])
        if row["name"].startswith(("2.", "3.", "4.")):
            assert set(row["latency_ms"]) >= {"p50", "p99", "max"}, row
            assert all(row["latency_ms"][k] > 0 for k in ("p50", "p99", "max")), row
        if row["name"].startswith(("3.", "4.")):
            assert row["ledger_exact"] is True, row
    assert set(report["ratios"]) >= {"row 3 / row 1a (default batching)", "row 3 / row 1b (single-record)"}
    assert all(v > 0 for v in report["ratios"].values())

    fault = report["fault"]
    assert fault["lost"] == 0 and fault["doubled"] == 0 and fault["extra"] == 0
    assert fault["payee_totals_mismatched"] == 0 and fault["exact"] is True
    assert fault["distinct_entries"] == fault["expected_entries"] > 0
    assert fault["recovery_s"] > 0

    markdown = (out / "bench.md").read_text()
    assert "| 3. tkonto pipeline, 1 worker | saturated |" in markdown
    assert "Fault scenario" in markdown
