"""The core pipeline end to end on the real embedded broker: exact ledger, exact dead letters."""
from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict

import pytest

from streams.codec import default_codec
from streams.identity import make_person
from streams.observe import decode_topic, wait_until
from streams.threads import cpu_by_thread
from tests.conftest import FK, GOTEBORG, STOCKHOLM, UPPSALA_P2, payment

pytestmark = pytest.mark.broker

A = "198112189876"
B = make_person(dt.date(1975, 3, 2), 417)
BULK = [make_person(dt.date(1960, 1, 1) + dt.timedelta(days=97 * i), i) for i in range(200)]


def test_payers_publish_and_the_ledger_registers_exactly(pipeline_factory):
    pipe = pipeline_factory([STOCKHOLM, GOTEBORG, FK, UPPSALA_P2])
    pipe.start_worker()
    codec = default_codec()
    sth, gbg, fk, upp = (pipe.client(p) for p in (STOCKHOLM, GOTEBORG, FK, UPPSALA_P2))

    sth.publish(payment(STOCKHOLM, A, "p1", "PLANNED", 5000_00))
    sth.publish(payment(STOCKHOLM, A, "p1", "EXECUTED", 5000_00))
    gbg.publish(payment(GOTEBORG, A, "g1", "EXECUTED", 1200_50, category="TRAVEL_EXPENSE"))
    gbg.publish(payment(GOTEBORG, A, "g1", "RETURNED", 1200_50, category="TRAVEL_EXPENSE"))
    fk.publish(payment(FK, B, "f1", "PLANNED", 12000_00, category="SICKNESS_BENEFIT", payout=dt.date(2026, 12, 20)))
    f2 = fk.publish(payment(FK, B, "f2", "EXECUTED", 9000_00, category="SICKNESS_BENEFIT"))
    fk.publish_raw(f2, key=B.encode())  # exact redelivery: changes nothing
    fk.publish(payment(FK, B, "f2", "PLANNED", 9000_00, category="SICKNESS_BENEFIT"))  # EXECUTED -> PLANNED
    sth.publish(payment(STOCKHOLM, B, "p9", "CANCELLED", 300_00))  # out of order: before its PLANNED
    sth.publish(payment(STOCKHOLM, B, "p9", "PLANNED", 300_00))
    upp.publish(payment(UPPSALA_P2, A, "u1", "EXECUTED", 4000_00))  # analysis only: never in the ledger
    # malformed and unauthorised input
    garbage = b"not avro at all"
    sth.publish_raw(garbage, key=b"x")
    bad_luhn = sth.publish(payment(STOCKHOLM, "198112189875", "p2", "EXECUTED", 100_00))
    foreign = sth.publish(payment(GOTEBORG, A, "g2", "EXECUTED", 100_00))  # Göteborg's payment on Stockholm's topic
    negative = sth.publish(payment(STOCKHOLM, A, "p3", "EXECUTED", -100_00))
    for i, payee in enumerate(BULK):
        sth.publish(payment(STOCKHOLM, payee, f"bulk-{i}", "EXECUTED", (i + 1) * 100))
    for client in (sth, gbg, fk, upp):
        client.flush()
    published = sum(c.sent for c in (sth, gbg, fk, upp))
    assert published == 215

    pipe.wait_drained()
    entries = pipe.ledger()
    distinct = {e["entry_id"]: e for e in entries}
    assert len(distinct) == 207  # 4 for A, 3 for B, 200 bulk

    # No entry registered twice under different sequence numbers; each account numbered 1..n.
    by_id = defaultdict(set)
    for e in entries:
        by_id[e["entry_id"]].add((e["payee_id"], e["sequence"]))
    assert all(len(v) == 1 for v in by_id.values())
    sequences = defaultdict(list)
    for e in distinct.values():
        sequences[e["payee_id"]].append(e["sequence"])
    assert sorted(sequences[A]) == [1, 2, 3, 4] and sorted(sequences[B]) == [1, 2, 3]
    assert all(sorted(s) == [1] for p, s in sequences.items() if p in BULK)

    def totals(key):
        out = defaultdict(lambda: [0, 0])
        for e in distinct.values():
            out[key(e)][0] += e["paid_delta_ore"]
            out[key(e)][1] += e["upcoming_delta_ore"]
        return {k: tuple(v) for k, v in out.items()}

    assert totals(lambda e: e["payee_id"])[A] == (5000_00, 0)
    assert totals(lambda e: e["payee_id"])[B] == (9000_00, 12300_00)
    assert totals(lambda e: e["payer_id"]) == {
        STOCKHOLM.payer_id: (5000_00 + 100 * 200 * 201 // 2, 300_00),
        GOTEBORG.payer_id: (0, 0),
        FK.payer_id: (9000_00, 12000_00),
    }
    assert UPPSALA_P2.payer_id not in {e["payer_id"] for e in entries}

    letters = pipe.dead_letters()
    assert Counter(d["reason"] for d in letters) == Counter({
        "UNDECODABLE": 1, "INVALID_PAYEE_ID": 1, "PAYER_MISMATCH": 1, "INVALID_AMOUNT": 1,
        "INVALID_TRANSITION": 1, "UNKNOWN_PAYMENT": 1})
    by_reason = {d["reason"]: d for d in letters}
    sth_topic = pipe.catalogue.payer_input(STOCKHOLM.payer_id).name
    assert by_reason["UNDECODABLE"]["original_value"] == garbage
    assert by_reason["INVALID_PAYEE_ID"]["original_value"] == bad_luhn
    assert by_reason["PAYER_MISMATCH"]["original_value"] == foreign
    assert by_reason["INVALID_AMOUNT"]["original_value"] == negative
    assert all(by_reason[r]["source_topic"] == sth_topic and by_reason[r]["stage"] == "ingest"
               for r in ("UNDECODABLE", "INVALID_PAYEE_ID", "PAYER_MISMATCH", "INVALID_AMOUNT"))
    # Ledger-stage rejections point back at the payer's original record, not the internal topic.
    assert by_reason["INVALID_TRANSITION"]["source_topic"] == pipe.catalogue.payer_input(FK.payer_id).name
    assert by_reason["UNKNOWN_PAYMENT"]["stage"] == "ledger"
    assert codec.decode(by_reason["UNKNOWN_PAYMENT"]["original_value"])["event_type"] == "CANCELLED"
    assert "198112189875" not in by_reason["INVALID_PAYEE_ID"]["detail"]

    # Nothing lost: every record published is accounted for.
    worker = pipe.workers[0]
    assert worker.metric_sum("tkonto_events_in_total") == published
    assert worker.metric_sum("tkonto_events_registered_total") == 207
    assert worker.metric_sum("tkonto_events_duplicate_total") == 1
    assert worker.metric_sum("tkonto_events_rejected_total") == 6
    assert worker.alive()
    # its threads are named at the kernel: top -H and per-thread CPU show which is which
    assert {"main", "tkonto-pipeline", "tkonto-producer", "tkonto-owners", "tkonto-register"} <= set(
        cpu_by_thread(worker.pid))


def test_two_workers_register_every_payment_where_its_event_was_read(pipeline_factory):
    """A payer's client partitions by payee with murmur2, as the pipeline does: a payee's
    event lands on the partition number of the payee's payments, which the range assignor
    gives to the same worker. So with two workers each payment is registered by the worker
    that read its event, and none is written to the payments topic for the other one."""
    pipe = pipeline_factory([STOCKHOLM, FK])
    first = pipe.start_worker()
    alone = json.loads(first.get("/ready")[1])["assigned_partitions"]
    second = pipe.start_worker()

    def split() -> bool:
        counts = [json.loads(w.get("/ready")[1]) for w in (first, second)]
        return all(c["ready"] for c in counts) and [c["assigned_partitions"] for c in counts] == [alone // 2] * 2
    assert wait_until(split, 60, interval=0.2), "the two workers did not split the partitions"

    sth, fk = pipe.client(STOCKHOLM), pipe.client(FK)
    for i, payee in enumerate(BULK):
        (sth if i % 2 else fk).publish(payment(STOCKHOLM if i % 2 else FK, payee, f"two-{i}", "EXECUTED", 100 + i))
    sth.flush()
    fk.flush()
    pipe.wait_drained()

    entries = {e["entry_id"]: e for e in pipe.ledger()}
    assert len(entries) == 200 and sum(e["paid_delta_ore"] for e in entries.values()) == sum(range(100, 300))
    registered = [w.registered() for w in (first, second)]
    assert sum(registered) == 200 and min(registered) > 50  # each worker registered its own payees' payments
    assert decode_topic(pipe.broker.bootstrap, pipe.catalogue.payments.name, timeout=3.0) == []
