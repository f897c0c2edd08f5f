"""``tkonto demo``: the whole system on one machine, with simulated payers.

Starts the embedded broker (unless KAFKA_BOOTSTRAP_SERVERS is set), creates the topics,
starts a worker process, publishes simulated payment events at the requested rate with
progress, waits until the worker has processed everything, and prints a summary read
back from the ledger and dead-letter topics. Ctrl-C stops everything it started.
"""
from __future__ import annotations

import datetime as dt
import secrets
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from .broker import EmbeddedBroker
from .register_loader import load_register
from .registers import GeneratedRegisters, RegisterFileError, write_csv
from .scenario import format_scores, fraud_scenario, score
from .client import PayerClient
from .observe import decode_topic, group_lag, wait_until
from .payers import write_payers
from .process import WorkerProcess
from .settings import Settings
from .simulate import Simulation
from .topics import Catalogue, ensure_topics


def sek(ore: int) -> str:
    kronor, rest = divmod(abs(ore), 100)
    return f"{'-' if ore < 0 else ''}{kronor:,}".replace(",", " ") + f",{rest:02d} kr"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def paced(items, rate: float, on_progress=None):
    """Yield ``items`` at ``rate`` per second, calling ``on_progress(count)`` about once a second."""
    start = last_report = time.monotonic()
    for i, item in enumerate(items, start=1):
        yield item
        ahead = i / rate - (time.monotonic() - start)
        if ahead > 0.002:
            time.sleep(ahead)
        if on_progress and time.monotonic() - last_report >= 1.0:
            last_report = time.monotonic()
            on_progress(i)


def _clients(payers, bootstrap: str, settings: Settings) -> dict[str, PayerClient]:
    return {p.payer_id: PayerClient(p.payer_id, bootstrap, settings) for p in payers}


def publish(sim: Simulation, n_events: int, rate: float, bootstrap: str, settings: Settings,
            on_progress=None) -> Counter:
    """Publish the simulation's events at ``rate`` per second; returns counts by kind."""
    clients = _clients(sim.payers, bootstrap, settings)
    kinds: Counter = Counter()
    for emission in paced(sim.emissions(n_events), rate, on_progress):
        client = clients[emission.payer_id]
        if emission.event is None:
            client.publish_raw(emission.raw, key=emission.key or None)
        else:
            emission.event.setdefault("event_time", dt.datetime.now(dt.timezone.utc))
            client.publish_raw(client.encode(emission.event), key=emission.key)
        kinds[emission.kind] += 1
    for client in clients.values():
        client.flush()
    return kinds


def publish_events(events: list[dict], payers, rate: float, bootstrap: str, settings: Settings,
                   on_progress=None) -> Counter:
    """Publish ready PaymentEvents (the fraud scenario's) at ``rate`` per second."""
    clients = _clients(payers, bootstrap, settings)
    for event in paced(events, rate, on_progress):
        clients[event["payer_id"]].publish(event)
    for client in clients.values():
        client.flush()
    return Counter({"normal": len(events)})


def load_registers(registers: GeneratedRegisters, workdir: Path, settings: Settings) -> str:
    """Publish generated registers to their compacted topics; returns a one-line report."""
    loaded = []
    for kind, items in (("payers", registers.payers), ("accounts", registers.accounts),
                        ("population", registers.people)):
        path = workdir / f"{kind}.csv"
        write_csv(kind, path, items)
        try:
            loaded.append(f"{load_register(kind, str(path), settings)} {kind}")
        except RegisterFileError as exc:  # e.g. more simulated payers than real municipality codes
            loaded.append(f"{kind} not loaded ({len(exc.errors)} invalid rows; the payer file seeds them)")
    return "registers: " + ", ".join(loaded)


def verification_line(bootstrap: str, catalogue: Catalogue) -> str:
    outcomes = Counter()
    seen = set()
    for e in decode_topic(bootstrap, catalogue.enriched.name):
        key = (e["payment"]["payer_id"], e["payment"]["payment_id"], e["payment"]["event_type"])
        if key not in seen:
            seen.add(key)
            outcomes[e["verification"]["result"]] += 1
    return "bank account verification  " + "   ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))


def fraud_report(bootstrap: str, catalogue: Catalogue, scenario) -> str:
    hits = list({h["hit_id"]: h for h in decode_topic(bootstrap, catalogue.signals.name)}.values())
    return (f"\nselection rules against the scenario's ground truth ({len(hits)} distinct hits; "
            f"analysis selects, people decide: see `tkonto case list`)\n" + format_scores(score(hits, scenario)))


def summarise(bootstrap: str, catalogue: Catalogue, payers, kinds: Counter, elapsed: float,
              live_event_times: bool = True) -> str:
    entries = {e["entry_id"]: e for e in decode_topic(bootstrap, catalogue.ledger.name)}.values()
    letters = {(d["source_topic"], d["source_partition"], d["source_offset"]): d
               for d in decode_topic(bootstrap, catalogue.deadletter.name)}.values()
    names = {p.payer_id: p for p in payers}
    by_payer: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_category: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for e in entries:
        for bucket in (by_payer[e["payer_id"]], by_category[e["category"]]):
            bucket[0] += e["paid_delta_ore"]
            bucket[1] += e["upcoming_delta_ore"]
    latency = [(e["registered_at"] - e["event_time"]).total_seconds() for e in entries]
    reasons = Counter(d["reason"] for d in letters)
    published = sum(kinds.values())
    lines = [
        "",
        "tkonto demo summary",
        "===================",
        f"events published      {published:>9}  ({kinds['duplicate']} exact redeliveries, "
        f"{sum(v for k, v in kinds.items() if k.startswith('fault:'))} faulty) in {elapsed:.1f} s",
        f"ledger entries        {len(entries):>9}  (distinct; over {len({e['payee_id'] for e in entries})} accounts)",
        f"dead letters          {len(letters):>9}",
    ]
    for reason, count in reasons.most_common():
        lines.append(f"  {reason:26}{count:>6}")
    skipped = sum(1 for p in payers if not p.in_ledger)
    if skipped:
        lines.append(f"({skipped} payer(s) connected under PROPOSAL_2: analysis only, not in the ledger)")
    lines += ["", f"{'ledger totals per payer':44}{'paid':>18}{'upcoming':>18}"]
    for payer_id, (paid, upcoming) in sorted(by_payer.items(), key=lambda kv: -kv[1][0]):
        payer = names.get(payer_id)
        lines.append(f"  {(payer.name if payer else payer_id)[:30]:30} {payer_id:11}{sek(paid):>18}{sek(upcoming):>18}")
    lines += ["", f"{'ledger totals per category':44}{'paid':>18}{'upcoming':>18}"]
    for category, (paid, upcoming) in sorted(by_category.items()):
        lines.append(f"  {category:42}{sek(paid):>18}{sek(upcoming):>18}")
    if live_event_times:
        lines += ["", f"registration latency  p50 {percentile(latency, 0.5) * 1000:.0f} ms   "
                      f"p99 {percentile(latency, 0.99) * 1000:.0f} ms   max {max(latency, default=0) * 1000:.0f} ms"]
    else:
        lines += ["", "registration latency  not measured: the scenario's events carry historical event times"]
    return "\n".join(lines)


def citizen_link(worker, catalogue: Catalogue, bootstrap: str, keep_running: bool) -> str:
    """A page link and bearer token for the demo person with the most payments."""
    from .auth import issue_token

    counts = Counter(e["payee_id"] for e in decode_topic(bootstrap, catalogue.citizen.name))
    if not counts:
        return "no payment reached the citizen view"
    person, n = counts.most_common(1)[0]
    token = issue_token(worker.settings.jwt_secret, person, "citizen", 3600)
    return (f"\ncitizen view of a demo person ({n} ledger entries), token valid one hour"
            f"{'' if worker.alive() and keep_running else ' (add --keep-running to open it while the worker runs)'}:\n"
            f"  page:  {worker.url}/mina-utbetalningar?token={token}\n"
            f"  API:   curl -H 'Authorization: Bearer {token}' {worker.url}/api/v1/me/payments")


def run_demo(args) -> int:
    settings = Settings.from_env()
    broker = None
    worker = None
    workdir = Path(tempfile.mkdtemp(prefix="tkonto-demo-"))
    try:
        if settings.bootstrap_servers:
            bootstrap = settings.bootstrap_servers
            print(f"using Kafka at {bootstrap}")
        else:
            broker = EmbeddedBroker(log_file=workdir / "broker.log").start()
            bootstrap = broker.bootstrap
            print(f"embedded broker (Tansu) on {bootstrap}")
        scenario = sim = None
        if args.scenario == "fraud":
            scenario = fraud_scenario(args.seed, args.payees)
            registers, payers = scenario.registers, list(scenario.registers.payers)
            total = len(scenario.events)
            print(f"fraud scenario: {total} events, patterns injected for {len(scenario.labels)} rules "
                  "(--events and --payers do not apply)")
        else:
            sim = Simulation.with_registers(args.payers, args.payees, args.seed)
            registers, payers = sim.registers, sim.payers
            total = args.events
        payers_file = workdir / "payers.csv"
        write_payers(payers_file, payers)
        settings = settings.with_overrides(
            bootstrap_servers=bootstrap, payers_file=str(payers_file), data_dir=str(workdir / "data"),
            jwt_secret=settings.jwt_secret or secrets.token_urlsafe(32),
            session_timeout=min(settings.session_timeout, 4.0))
        catalogue = Catalogue(settings)
        created = ensure_topics(bootstrap, catalogue.all(p.payer_id for p in payers), settings)
        print(f"{len(payers)} payers, {len(registers.payees)} payees; {created} topics created")
        print(load_registers(registers, workdir, settings))
        worker = WorkerProcess(settings, log_file=workdir / "worker.log").start()
        print(f"worker started (pid {worker.pid}, {worker.url}/metrics); logs in {workdir}")
        worker.wait_ready()

        def progress(i: int) -> None:
            try:
                registered = str(worker.registered())
            except RuntimeError:
                registered = "?"
            print(f"  published {i:>8}/{total}   registered {registered:>8}", flush=True)

        started = time.monotonic()
        if scenario is not None:
            kinds = publish_events(scenario.events, payers, args.rate, bootstrap, settings, progress)
        else:
            kinds = publish(sim, args.events, args.rate, bootstrap, settings, progress)
        print(f"  published {sum(kinds.values()):>8}/{total}; waiting for the worker to catch up ...")
        topics = catalogue.pipeline_inputs(p.payer_id for p in payers)
        drained = wait_until(lambda: group_lag(bootstrap, settings.pipeline_group, topics) == 0,
                             args.timeout, interval=0.5)
        elapsed = time.monotonic() - started
        if not drained:
            print(f"tkonto: warning: the worker did not catch up within {args.timeout:.0f} s; "
                  f"see {workdir / 'worker.log'}", file=sys.stderr)
        print(summarise(bootstrap, catalogue, payers, kinds, elapsed, live_event_times=scenario is None))
        print(verification_line(bootstrap, catalogue))
        if scenario is not None:
            print(fraud_report(bootstrap, catalogue, scenario))
        print(citizen_link(worker, catalogue, bootstrap, args.keep_running))
        if args.keep_running and drained:
            print("the worker keeps running for the page above; Ctrl-C stops everything")
            while worker.alive():
                time.sleep(1)
        return 0 if drained else 1
    finally:
        if worker:
            worker.stop()
        if broker:
            broker.stop()
        print("stopped worker and broker" if broker else "stopped worker")
