"""Reference registers, enrichment and scope routing end to end on the real broker."""
from __future__ import annotations

import csv
import datetime as dt
import os
import random
import subprocess
import sys
import time

import pytest

from streams.codec import default_codec
from streams.identity import make_person
from streams.observe import read_topic
from streams.swedish import make_bank_account
from tests.conftest import MALMO_P3, STOCKHOLM, UPPSALA_P2, payment

pytestmark = pytest.mark.broker

rng = random.Random(5)
A = make_person(dt.date(1980, 4, 1), 101)
B = make_person(dt.date(1972, 8, 9), 202)  # protected identity
C = make_person(dt.date(1991, 2, 3), 303)
X = make_person(dt.date(1966, 6, 6), 404)  # holds an account under a name close to C's
Z = make_person(dt.date(1950, 1, 1), 505)
ACC_A, ACC_B, ACC_X, ACC_Z = (make_bank_account(rng, bank="Handelsbanken") for _ in range(4))
UNKNOWN_ACCOUNT = make_bank_account(rng, bank="Handelsbanken")
SECRET = {"decision_id": "d-1", "decision_date": dt.date(2026, 11, 2), "legal_basis": "SoL 4 kap. 1 §",
          "patient_secrecy": False, "circumstances": [
              {"name": "household_size", "value": "3", "patient_secrecy": False},
              {"name": "diagnosis_code", "value": "F32.1", "patient_secrecy": True}]}


def write(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def ref_load(pipe, kind, path):
    result = subprocess.run([sys.executable, "-m", "streams.cli", "ref", "load", kind, str(path)],
                            capture_output=True, text=True, timeout=60, env={**os.environ, **pipe.settings.as_env()})
    assert result.returncode == 0, result.stderr
    return result.stdout


def accounts_csv(path, closed_a=""):
    return write(path, ["account", "bank_name", "opened", "closed", "holder_id", "holder_name", "role"], [
        [ACC_A, "Handelsbanken", "2015-01-01", closed_a, A, "Anna Berg", "HOLDER"],
        [ACC_B, "Handelsbanken", "2015-01-01", "", B, "Bo Ek", "HOLDER"],
        [ACC_X, "Handelsbanken", "2015-01-01", "", X, "Karin Johansson", "HOLDER"],
        [ACC_Z, "Handelsbanken", "2015-01-01", "", Z, "Zacharias Öst", "HOLDER"],
    ])


def population_csv(path, a_deceased=""):
    return write(path, ["person_id", "name", "municipality_code", "deceased_date", "emigration_date",
                        "protected_identity", "address"], [
        [A, "Anna Berg", "0180", a_deceased, "", "false", "Storgatan 1, Stockholm"],
        [B, "Bo Ek", "", "", "", "true", ""],
        [C, "Karin Johanson", "1280", "", "", "false", "Lilla torg 2, Malmö"],
    ])


def test_scopes_route_exactly_and_registers_drive_verification(pipeline_factory, tmp_path):
    pipe = pipeline_factory([STOCKHOLM, UPPSALA_P2, MALMO_P3])
    write(tmp_path / "payers.csv", ["payer_id", "name", "kind", "region_code", "scope"],
          [[p.payer_id, p.name, p.kind, p.region_code, p.scope] for p in (STOCKHOLM, UPPSALA_P2, MALMO_P3)])
    assert ref_load(pipe, "payers", tmp_path / "payers.csv").startswith("loaded 3 payers records")
    assert ref_load(pipe, "accounts", accounts_csv(tmp_path / "accounts.csv")).startswith("loaded 4 accounts")
    assert ref_load(pipe, "population", population_csv(tmp_path / "population.csv")).startswith("loaded 3 population")
    pipe.start_worker()
    sth, upp, mal = (pipe.client(p) for p in (STOCKHOLM, UPPSALA_P2, MALMO_P3))
    sth.publish(payment(STOCKHOLM, A, "s-a", "EXECUTED", 100_00, bank_account=ACC_A, decision=SECRET))
    sth.publish(payment(STOCKHOLM, B, "s-b", "EXECUTED", 200_00, bank_account=ACC_B))
    sth.publish(payment(STOCKHOLM, C, "s-c", "EXECUTED", 300_00, bank_account=ACC_X))
    upp.publish(payment(UPPSALA_P2, A, "u-a", "EXECUTED", 400_00, bank_account=ACC_Z, decision=SECRET))
    mal.publish(payment(MALMO_P3, A, "m-a", "EXECUTED", 500_00, bank_account=UNKNOWN_ACCOUNT, decision=SECRET))
    for c in (sth, upp, mal):
        c.flush()
    pipe.wait_drained()

    codec, cat, bs = default_codec(), pipe.catalogue, pipe.broker.bootstrap
    analysis_msgs = read_topic(bs, cat.analysis.name)
    analysis = [codec.decode(m.value()) for m in analysis_msgs]
    citizen = [codec.decode(m.value()) for m in read_topic(bs, cat.citizen.name)]
    enriched = {e["payment"]["payment_id"]: e for e in (codec.decode(m.value()) for m in read_topic(bs, cat.enriched.name))}
    assert sorted(e["payment"]["payment_id"] for e in analysis) == ["s-a", "s-b", "s-c", "u-a"]  # P1 + P2
    assert sorted(e["payment_id"] for e in citizen) == ["m-a", "s-a", "s-b", "s-c"]  # P1 + P3
    assert sorted(e["payment_id"] for e in pipe.ledger()) == ["m-a", "s-a", "s-b", "s-c"]  # never P2
    assert sorted(enriched) == ["m-a", "s-a", "s-b", "s-c", "u-a"]

    # Patient secrecy never reaches analysis, byte for byte; the rest of the decision does.
    for m in analysis_msgs:
        assert b"F32.1" not in m.value() and b"diagnosis_code" not in m.value()
    by_id = {e["payment"]["payment_id"]: e for e in analysis}
    assert [c["name"] for c in by_id["s-a"]["payment"]["decision"]["circumstances"]] == ["household_size"]

    assert {k: e["verification"]["result"] for k, e in enriched.items()} == {
        "s-a": "MATCH", "s-b": "MATCH", "s-c": "CLOSE_MATCH", "u-a": "NO_MATCH", "m-a": "NOT_POSSIBLE"}
    assert enriched["s-c"]["verification"]["holder_name"] == "Karin Johansson"
    assert enriched["s-a"]["municipality_code"] == "0180"
    assert enriched["s-b"]["protected_identity"] is True and enriched["s-b"]["municipality_code"] is None
    for topic in (cat.analysis.name, cat.enriched.name, cat.citizen.name):
        for m in read_topic(bs, topic):
            if B.encode() in (m.key() or b"") or B.encode() in m.value():
                assert b"0180" not in m.value() and b"Storgatan" not in m.value()

    # A register update changes the outcome of the next payment, without a restart.
    ref_load(pipe, "accounts", accounts_csv(tmp_path / "accounts2.csv", closed_a="2026-10-31"))
    ref_load(pipe, "population", population_csv(tmp_path / "population2.csv", a_deceased="2026-11-10"))
    worker = pipe.workers[0]
    time.sleep(1.5)  # the worker follows the register topics continuously
    sth.publish(payment(STOCKHOLM, A, "s-a2", "EXECUTED", 100_00, bank_account=ACC_A))
    sth.flush()
    pipe.wait_drained()
    later = {e["payment"]["payment_id"]: e for e in (codec.decode(m.value()) for m in read_topic(bs, cat.enriched.name))}
    assert later["s-a2"]["verification"]["result"] == "NOT_POSSIBLE"
    assert later["s-a2"]["payee_status"] == "DECEASED"

    # A payer's scope changes in the registry: it applies to its next payment, no restart.
    write(tmp_path / "payers2.csv", ["payer_id", "name", "kind", "region_code", "scope"],
          [[p.payer_id, p.name, p.kind, p.region_code, "PROPOSAL_1" if p is UPPSALA_P2 else p.scope]
           for p in (STOCKHOLM, UPPSALA_P2, MALMO_P3)])
    ref_load(pipe, "payers", tmp_path / "payers2.csv")
    time.sleep(1.5)
    upp.publish(payment(UPPSALA_P2, C, "u-c", "EXECUTED", 600_00, bank_account=ACC_X))
    upp.flush()
    pipe.wait_drained()
    assert "u-c" in {e["payment_id"] for e in pipe.ledger()}  # now in the ledger (PROPOSAL_1)
    assert "u-a" not in {e["payment_id"] for e in pipe.ledger()}  # the earlier PROPOSAL_2 payment stays out
    assert worker.metric_sum("tkonto_verification_outcomes_total") == 7
