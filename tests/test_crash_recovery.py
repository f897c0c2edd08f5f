"""SIGKILL a worker mid-stream, restart it: the ledger ends exactly right."""
from __future__ import annotations

import random
from collections import defaultdict

import pytest

from streams.identity import random_person
from streams.observe import wait_until
from tests.conftest import FK, STOCKHOLM, payment

pytestmark = pytest.mark.broker


def test_kill_minus_nine_mid_stream_loses_nothing_and_doubles_nothing(pipeline_factory):
    pipe = pipeline_factory([STOCKHOLM, FK])
    first = pipe.start_worker()
    rng = random.Random(11)
    payees = [random_person(rng) for _ in range(120)]
    expected_paid: dict[str, int] = defaultdict(int)
    events = []
    for i in range(800):
        payer = (STOCKHOLM, FK)[i % 2]
        payee = payees[rng.randrange(len(payees))]
        amount = rng.randint(100_00, 20000_00)
        category = "SOCIAL_ASSISTANCE" if payer is STOCKHOLM else "SICKNESS_BENEFIT"
        events += [payment(payer, payee, f"k{i}", "PLANNED", amount, category=category),
                   payment(payer, payee, f"k{i}", "EXECUTED", amount, category=category)]
        expected_paid[payee] += amount
    clients = {p.payer_id: pipe.client(p) for p in (STOCKHOLM, FK)}
    for event in events:
        clients[event["payer_id"]].publish(event)
    for client in clients.values():
        client.flush()

    assert wait_until(lambda: first.registered() >= 400, 60, interval=0.05), "worker never got going"
    first.kill()
    second = pipe.start_worker()
    pipe.wait_drained()

    entries = pipe.ledger()
    by_id = defaultdict(set)
    for e in entries:
        by_id[e["entry_id"]].add((e["payee_id"], e["sequence"], e["paid_delta_ore"], e["upcoming_delta_ore"]))
    assert len(by_id) == 1600, "every event registered exactly once"
    assert all(len(v) == 1 for v in by_id.values()), "a redelivered event was registered a second time"
    distinct = [next(iter(v)) for v in by_id.values()]
    paid, upcoming, seqs = defaultdict(int), defaultdict(int), defaultdict(list)
    for payee, seq, p, u in distinct:
        paid[payee] += p
        upcoming[payee] += u
        seqs[payee].append(seq)
    assert dict(paid) == dict(expected_paid)
    assert all(v == 0 for v in upcoming.values())
    assert all(sorted(s) == list(range(1, len(s) + 1)) for s in seqs.values()), "gap or repeat in an account"

    # The recovered accounts remember everything: publishing it all again registers nothing.
    before = second.registered()
    for event in events:
        clients[event["payer_id"]].publish(event)
    for client in clients.values():
        client.flush()
    pipe.wait_drained()
    assert second.registered() == before
    assert second.metric_sum("tkonto_events_duplicate_total") >= 1600
