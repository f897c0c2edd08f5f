"""The command line as a user meets it: one-line errors, non-zero exits, real publishing."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import STOCKHOLM


def tkonto(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("args, fragment", [
    (["demo", "--events", "0"], "'0' must be greater than 0"),
    (["demo", "--rate", "fast"], "'fast' is not a number"),
    (["nonsense"], "invalid choice"),
    (["publish"], "the following arguments are required: file"),
])
def test_bad_arguments_give_one_line_and_exit_2(args, fragment):
    result = tkonto(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert fragment in lines[-1] and lines[-1].startswith("tkonto: error:")
    assert "Traceback" not in result.stderr


def test_worker_without_kafka_names_the_fix():
    result = tkonto("worker", env={"KAFKA_BOOTSTRAP_SERVERS": ""})
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "tkonto: error: KAFKA_BOOTSTRAP_SERVERS is not set; point it at your Kafka cluster (or use `tkonto demo`)")


def test_bad_setting_names_the_variable():
    result = tkonto("config", env={"TKONTO_PARTITIONS": "many"})
    assert result.returncode == 1 and "TKONTO_PARTITIONS='many': must be a whole number" in result.stderr


def test_config_lists_every_setting_and_never_shows_the_secret():
    out = tkonto("config", env={"TKONTO_JWT_SECRET": "s3cr3t-value"}).stdout
    for var in ("KAFKA_BOOTSTRAP_SERVERS", "TKONTO_PAYERS_FILE", "PATIENT_SECRECY_IN_ANALYSIS"):
        assert var in out
    assert "s3cr3t-value" not in out and "TKONTO_JWT_SECRET              = '<set>'" in out


def test_publish_reports_a_bad_line_with_its_number(tmp_path, broker):
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps({"payer_id": STOCKHOLM.payer_id}) + "\n")
    result = tkonto("publish", str(events), env={"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap})
    assert result.returncode == 1
    assert result.stderr.strip() == f"tkonto: error: {events}:1: missing field period_start"


@pytest.mark.broker
def test_publish_a_json_lines_file_reaches_the_ledger(pipeline_factory, tmp_path):
    pipe = pipeline_factory([STOCKHOLM])
    pipe.start_worker()
    lines = [
        {"payer_id": STOCKHOLM.payer_id, "payment_id": "j1", "event_type": "EXECUTED", "payee_id": "198112189876",
         "bank_account": "8327-9123456789", "amount_ore": 250075, "category": "SOCIAL_ASSISTANCE",
         "period_start": "2026-11-01", "period_end": "2026-11-30", "payout_date": "2026-11-25",
         "event_time": "2026-11-24T08:00:00Z"},
    ]
    file = tmp_path / "events.jsonl"
    file.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    env = {k: v for k, v in pipe.settings.as_env().items()}
    result = tkonto("publish", str(file), "--payer", STOCKHOLM.payer_id, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"published 1 events to {pipe.catalogue.payer_input(STOCKHOLM.payer_id).name}"
    pipe.wait_drained()
    [entry] = pipe.ledger()
    assert (entry["amount_ore"], entry["paid_delta_ore"], entry["sequence"]) == (250075, 250075, 1)
