"""Micro-benchmark of the per-event hot path: the pure functions the engine calls, no Kafka.

    .venv/bin/python benchmarks/micro_hotpath.py [--events 20000] [--payees 2000] [--repeat 3]
                                                 [--tables dicts|bytes] [--profile out.prof]

Generates realistic events (12 simulated payers, payees and reference registers from
``registers.generate_registers``, lifecycles and redeliveries from ``simulate.Simulation``;
faulty records are left out), encodes them as the payers publish them, then runs every
event through the steps of the pipeline exactly as streams/ingest.py, ledger.py,
analysis.py and citizen.py call them, and prints microseconds per input event for each step
(averaged over *all* events, so a step that only some events reach costs less than its own
per-call time) and the total. The best of ``--repeat`` fresh runs is reported per step.

``--tables dicts`` (default) keeps the states (accounts, analysis states, citizen views)
as dicts between events; ``--tables bytes`` decodes each state from the bytes encoded
for it the previous time, as the Faust tables do today, and reports that as its own row.

The ``digest`` line is a SHA-256 over every encoded output in order (account changelog,
ledger entries, enriched payments, analysis states, selection hits, citizen views): an
optimisation must leave it unchanged for the same arguments.
"""
from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams import citizen_view, rules  # noqa: E402
from streams.account import new_account, register  # noqa: E402
from streams.client import with_defaults  # noqa: E402
from streams.codec import default_codec  # noqa: E402
from streams.enrichment import enrich  # noqa: E402
from streams.routing import routes  # noqa: E402
from streams.simulate import Simulation  # noqa: E402
from streams.validation import check_payment  # noqa: E402

ACCOUNT_SCHEMA = "se.tkonto.state.Account"
STATE_SCHEMA = "se.tkonto.state.AnalysisState"
VIEW_SCHEMA = "se.tkonto.state.CitizenView"
START = dt.date(2026, 7, 1)
EVENT_TIME = dt.datetime(2026, 7, 1, 8, 0, tzinfo=dt.timezone.utc)
NOW = dt.datetime(2026, 7, 1, 8, 0, 1, 250000, tzinfo=dt.timezone.utc)

STEPS = [
    ("decode", "1. codec.decode PaymentEvent x2 (ingest + ledger)"),
    ("validate", "2. validation.check_payment"),
    ("register", "3. account.register + encode Account + LedgerEntry"),
    ("enrich", "4. enrich + routes + encode EnrichedPayment"),
    ("payee_rules", "5a. evaluate_payee + encode AnalysisState (+ hits)"),
    ("account_rules", "5b. decode Enriched + evaluate_account + encode state"),
    ("citizen", "6. decode LedgerEntry + citizen_item + fold + encode view"),
]


def build(n_events: int, n_payees: int, seed: int):
    """(payers by id, registers by kind, [(payer, encoded PaymentEvent)])."""
    codec = default_codec()
    sim = Simulation.with_registers(12, n_payees, seed, today=START, start=START)
    regs = sim.registers
    registers = {
        "accounts": {a.account: codec.decode(codec.encode("BankAccount", a.to_record())) for a in regs.accounts},
        "population": {p.person_id: codec.decode(codec.encode("Person", p.to_record())) for p in regs.people},
    }
    by_id = {p.payer_id: p for p in sim.payers}
    events = []
    for em in sim.emissions(n_events * 2):
        if em.event is None or em.kind.startswith("fault"):
            continue
        event = with_defaults(dict(em.event, event_time=EVENT_TIME))
        events.append((by_id[em.payer_id], codec.encode("PaymentEvent", event)))
        if len(events) == n_events:
            break
    return by_id, registers, events


def run(payers, registers, events, thresholds, state_bytes: bool, digest) -> dict[str, int]:
    codec = default_codec()
    decode, encode = codec.decode, codec.encode
    t = {name: 0 for name, _ in STEPS}
    t["state_decode"] = 0
    clock = time.perf_counter_ns
    accounts: dict[str, dict] = {}
    payee_states: dict[str, dict] = {}
    account_states: dict[str, dict] = {}
    views: dict[str, dict] = {}
    stored: dict[tuple, bytes] = {}  # --tables bytes: what the table holds
    out = digest.update

    def load(table: str, key: str, schema: str, held: dict):
        if not state_bytes:
            return held.get(key)
        raw = stored.get((table, key))
        if raw is None:
            return None
        t0 = clock()
        value = decode(raw, expect=schema)
        t["state_decode"] += clock() - t0
        return value

    for payer, value in events:
        # 1 + 2: ingest decodes and validates; the ledger decodes again.
        t0 = clock()
        record = decode(value, expect="PaymentEvent")
        t1 = clock()
        check_payment(record, payer)
        t2 = clock()
        record = decode(value, expect="PaymentEvent")
        t3 = clock()
        t["decode"] += (t1 - t0) + (t3 - t2)
        t["validate"] += t2 - t1

        # 3: the transaction account.
        entry = entry_bytes = None
        payee = record["payee_id"]
        if payer.in_ledger:
            account = load("accounts", payee, ACCOUNT_SCHEMA, accounts)
            t0 = clock()
            account = account if account is not None else new_account(payee)
            outcome = register(account, record, NOW)
            if outcome.kind == "REGISTERED":
                encoded = encode(ACCOUNT_SCHEMA, account)
                accounts[payee] = account
                stored[("accounts", payee)] = encoded
                out(encoded)
            if outcome.entry is not None:
                entry = outcome.entry
                entry_bytes = encode("LedgerEntry", entry)
                out(entry_bytes)
            t["register"] += clock() - t0
            if outcome.entry is None:
                continue

        # 4: enrichment and routing (ledger.fan_out).
        t0 = clock()
        account_record = registers["accounts"].get(record["bank_account"])
        person_record = registers["population"].get(payee) if len(payee) == 12 else None
        enriched = enrich(record, payer, account_record, person_record, NOW)
        if entry is not None:
            enriched["ledger_sequence"] = entry["sequence"]
        encoded_routes: dict[int, bytes] = {id(entry): entry_bytes} if entry_bytes is not None else {}
        sent = []
        for route in routes(payer.scope, enriched, entry, False):
            _, _, schema, routed = route
            data = encoded_routes.get(id(routed))
            if data is None:
                data = encoded_routes[id(routed)] = encode(schema, routed)
                out(data)
            sent.append((route, data))
        t["enrich"] += clock() - t0

        for (destination, key, _, routed), data in sent:
            if destination == "analysis":
                # 5a: payee rules on the enriched record; 5b: the account rule after the re-keying hop.
                state = load("payee", key, STATE_SCHEMA, payee_states)
                t0 = clock()
                state, hits = rules.evaluate_payee(state, routed, thresholds)
                encoded = encode(STATE_SCHEMA, state)
                payee_states[key] = state
                stored[("payee", key)] = encoded
                out(encoded)
                for hit in hits:
                    out(encode("SelectionHit", hit))
                t["payee_rules"] += clock() - t0
                bank_account = routed["payment"]["bank_account"]
                state = load("account", bank_account, STATE_SCHEMA, account_states)
                t0 = clock()
                shared = decode(data, expect="EnrichedPayment")
                state, hits = rules.evaluate_account(state, shared, thresholds)
                encoded = encode(STATE_SCHEMA, state)
                account_states[bank_account] = state
                stored[("account", bank_account)] = encoded
                out(encoded)
                for hit in hits:
                    out(encode("SelectionHit", hit))
                t["account_rules"] += clock() - t0
            elif destination == "citizen":
                # 6: the citizen view of each viewer.
                before = load("view", key, VIEW_SCHEMA, views)
                t0 = clock()
                led = decode(data, expect="LedgerEntry")
                item = citizen_view.citizen_item(led, payer.name, key)
                after = citizen_view.fold(before, item)
                if after is not before:
                    encoded = encode(VIEW_SCHEMA, after)
                    views[key] = after
                    stored[("view", key)] = encoded
                    out(encoded)
                t["citizen"] += clock() - t0
    return t


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--payees", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tables", choices=("dicts", "bytes"), default="dicts")
    parser.add_argument("--profile", help="write a cProfile of one run to this file and print the top functions")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    payers, registers, events = build(args.events, args.payees, args.seed)
    thresholds = rules.Thresholds()
    n = len(events)
    print(f"{n} events, {args.payees} payees, {len(payers)} payers, tables as {args.tables} "
          f"(built in {time.perf_counter() - t0:.1f} s)")
    gc.collect()
    gc.freeze()

    if args.profile:
        import pstats
        prof = cProfile.Profile()
        prof.enable()
        run(payers, registers, events, thresholds, args.tables == "bytes", hashlib.sha256())
        prof.disable()
        prof.dump_stats(args.profile)
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        return 0

    best: dict[str, int] = {}
    digests = set()
    for _ in range(args.repeat):
        digest = hashlib.sha256()
        times = run(payers, registers, events, thresholds, args.tables == "bytes", digest)
        digests.add(digest.hexdigest())
        for k, v in times.items():
            best[k] = min(best.get(k, v), v)
    assert len(digests) == 1, "runs are not deterministic"

    rows = list(STEPS)
    if args.tables == "bytes":
        rows.append(("state_decode", "   decode state from table bytes"))
    total = sum(best[k] for k, _ in rows)
    width = max(len(label) for _, label in rows)
    print(f"{'step':<{width}}  µs/event")
    for key, label in rows:
        print(f"{label:<{width}}  {best[key] / n / 1000:8.2f}")
    us = total / n / 1000
    print(f"{'total':<{width}}  {us:8.2f}  (= {1e6 / us:,.0f} events/s on one core)")
    print(f"digest {digests.pop()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
