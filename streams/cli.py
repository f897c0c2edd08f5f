"""The ``tkonto`` command line: demo, worker, publish, topics, config.

Bad arguments give a one-line error and exit 2; operational failures exit 1 with a line
that names the fix.
"""
from __future__ import annotations

import argparse
import sys


class CliError(Exception):
    """A failure the user can fix; printed as one line, exit 1."""


def _positive(kind: type, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
        return value
    return parse


_positive_int = _positive(int, "a whole number")
_positive_float = _positive(float, "a number")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, non-zero exit
        self.exit(2, f"tkonto: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tkonto", description="Transaction account system for public welfare payments.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = sub.add_parser("demo", help="run the whole system on the embedded broker with simulated payers")
    demo.add_argument("--payers", type=_positive_int, default=12, help="connected payers to simulate (default 12)")
    demo.add_argument("--payees", type=_positive_int, default=500, help="distinct payees (default 500)")
    demo.add_argument("--events", type=_positive_int, default=5000, help="payment events to publish (default 5000)")
    demo.add_argument("--rate", type=_positive_float, default=1000.0,
                      help="events per second offered (default 1000; one worker drains ~4000/s on a 2-core "
                           "machine: above that events queue and latency grows)")
    demo.add_argument("--seed", type=int, default=7, help="random seed of the simulation (default 7)")
    demo.add_argument("--timeout", type=_positive_float, default=120.0, help="seconds to wait for the pipeline")
    demo.add_argument("--scenario", choices=["normal", "fraud"], default="normal",
                      help="normal traffic, or the fraud scenario: injected patterns with ground truth, "
                           "scored per rule (precision/recall)")
    demo.add_argument("--keep-running", action="store_true",
                      help="after the summary, keep the worker up so the citizen page can be opened")

    sub.add_parser("worker", help="run a worker against KAFKA_BOOTSTRAP_SERVERS (settings from the environment)")

    publish = sub.add_parser("publish", help="publish payment events from a JSON-lines file as one payer")
    publish.add_argument("file", help="JSON-lines file, one PaymentEvent per line (see README)")
    publish.add_argument("--payer", help="publish as this payer (organisation number); default: each line's payer_id")

    ref = sub.add_parser("ref", help="reference registers")
    ref_sub = ref.add_subparsers(dest="ref_command", required=True, parser_class=_Parser)
    load = ref_sub.add_parser("load", help="load a register from CSV into its compacted topic (all or nothing)")
    load.add_argument("kind", choices=["payers", "accounts", "population"], help="which register")
    load.add_argument("file", help="CSV file (columns in docs/registers.md)")

    bench = sub.add_parser("bench", help="measure throughput, CPU, memory, latency and a crash on the embedded broker")
    bench.add_argument("--events", type=_positive_int, default=200_000, help="events per saturated run (default 200000)")
    bench.add_argument("--payees", type=_positive_int, default=100_000, help="distinct payees (default 100000)")
    bench.add_argument("--rate", type=_positive_float, default=2000.0, help="fixed offered load, events/s (default 2000)")
    bench.add_argument("--workers-max", type=int, choices=[1, 2], default=2, help="largest worker count (default 2)")
    bench.add_argument("--out", default="results", help="folder for bench.md and bench.json (default results/)")
    bench.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of every row")
    bench.add_argument("--skip-faults", action="store_true", help="skip the kill -9 fault scenario")
    bench.add_argument("--keep-logs", action="store_true",
                       help="keep the workers' logs (their engine lines say where the time went) instead of deleting them")
    bench_sub = bench.add_subparsers(dest="bench_mode", parser_class=_Parser)
    memory = bench_sub.add_parser("memory", help="RSS growth of one rocksdb worker over a large backlog")
    memory.add_argument("--events", type=_positive_int, default=1_000_000, help="events (default 1000000)")
    memory.add_argument("--payees", type=_positive_int, default=100_000, help="distinct payees (default 100000)")
    memory.add_argument("--out", default="results", help="folder for memory.md and memory.json (default results/)")
    memory.add_argument("--settle", type=_positive_float, default=10.0, help="seconds to sample after the drain")
    scaling = bench_sub.add_parser("scaling", help="1 worker against 2, each held to the same CPU budget (cgroups)")
    scaling.add_argument("--events", type=_positive_int, default=180_000,
                         help="events (default 180000: ~30 s per row, so the start and the tail weigh little)")
    scaling.add_argument("--payees", type=_positive_int, default=90_000, help="distinct payees (default 90000)")
    scaling.add_argument("--cores-per-worker", type=_positive_float, default=0.5,
                         help="CPU quota of each worker process, in cores (default 0.5)")
    scaling.add_argument("--out", default="results", help="folder for scaling.md and scaling.json (default results/)")
    scaling.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")

    def analyst_options(p):
        p.add_argument("--url", help="a worker's HTTP address (default: this host's TKONTO_WEB_HOST:TKONTO_WEB_PORT)")
        p.add_argument("--token", help="an analyst bearer token (or TKONTO_ANALYST_TOKEN)")
        p.add_argument("--analyst", help="mint a token for this analyst from TKONTO_JWT_SECRET")

    case = sub.add_parser("case", help="review cases: list, show, decide (analysts)")
    case_sub = case.add_subparsers(dest="case_command", required=True, parser_class=_Parser)
    listing = case_sub.add_parser("list", help="list cases")
    listing.add_argument("--status", choices=["OPEN", "CLOSED_NO_ACTION", "NOTIFY_PAYER", "IN_DEPTH_REVIEW"])
    show = case_sub.add_parser("show", help="show one case")
    show.add_argument("case_id")
    decide = case_sub.add_parser("decide", help="decide an open case (nothing is reclaimed or stopped automatically)")
    decide.add_argument("case_id")
    decide.add_argument("outcome", choices=["CLOSED_NO_ACTION", "NOTIFY_PAYER", "IN_DEPTH_REVIEW"])
    decide.add_argument("--reason", required=True, help="why (kept in the case and the audit log)")
    for p in (listing, show, decide):
        analyst_options(p)
    review = sub.add_parser("review", help="in-depth review of a named person (audited)")
    review_sub = review.add_subparsers(dest="review_command", required=True, parser_class=_Parser)
    export = review_sub.add_parser("export", help="export everything registered about a person, "
                                                  "without patient-secrecy data")
    export.add_argument("person_id")
    export.add_argument("--case", dest="case_id", required=True, help="the case decided IN_DEPTH_REVIEW")
    export.add_argument("--reason", required=True, help="why (kept in the audit log)")
    analyst_options(export)

    sub.add_parser("topics", help="list the topic catalogue")
    sub.add_parser("config", help="list every setting: environment variable, current value, default")
    return parser


def cmd_worker(args) -> int:
    from .settings import Settings

    settings = Settings.from_env()
    if not settings.bootstrap_servers:
        raise CliError("KAFKA_BOOTSTRAP_SERVERS is not set; point it at your Kafka cluster (or use `tkonto demo`)")
    if not settings.payers_file:
        raise CliError("TKONTO_PAYERS_FILE is not set; point it at the payer registry CSV (see README)")
    from .worker import run
    run()
    return 0


def cmd_publish(args) -> int:
    from .client import PayerClient, read_event_file
    from .settings import Settings

    settings = Settings.from_env()
    if not settings.bootstrap_servers:
        raise CliError("KAFKA_BOOTSTRAP_SERVERS is not set; point it at the cluster to publish to")
    clients: dict[str, PayerClient] = {}
    count = 0
    try:
        for _, event in read_event_file(args.file):
            payer = args.payer or event["payer_id"]
            client = clients.get(payer) or clients.setdefault(
                payer, PayerClient(payer, settings.bootstrap_servers, settings))
            client.publish(event)
            count += 1
    finally:
        for client in clients.values():
            client.flush()
    print(f"published {count} events to {', '.join(sorted(c.topic for c in clients.values())) or 'no topic'}")
    return 0


def cmd_ref(args) -> int:
    from .register_loader import load_register
    from .registers import RegisterFileError
    from .settings import Settings

    settings = Settings.from_env()
    if not settings.bootstrap_servers:
        raise CliError("KAFKA_BOOTSTRAP_SERVERS is not set; point it at the cluster to load the register into")
    try:
        count = load_register(args.kind, args.file, settings)
    except RegisterFileError as exc:
        for line in exc.errors[:20]:
            print(line, file=sys.stderr)
        raise CliError(f"{args.file}: {len(exc.errors)} bad line(s); nothing was loaded") from None
    print(f"loaded {count} {args.kind} records into {settings.topic_prefix}.ref.{args.kind}")
    return 0


def cmd_case(args) -> int:
    from . import analyst_cli

    action = {"list": analyst_cli.case_list, "show": analyst_cli.case_show, "decide": analyst_cli.case_decide}
    try:
        print(action[args.case_command](args))
    except analyst_cli.AnalystCliError as exc:
        raise CliError(str(exc)) from None
    return 0


def cmd_review(args) -> int:
    from . import analyst_cli

    try:
        print(analyst_cli.review_export(args))
    except analyst_cli.AnalystCliError as exc:
        raise CliError(str(exc)) from None
    return 0


def cmd_topics(args) -> int:
    from .settings import Settings
    from .topics import Catalogue

    settings = Settings.from_env()
    cat = Catalogue(settings)
    specs = cat.internal() + [cat.payer_input("<payer_id>")]
    for spec in specs:
        print(f"{spec.name:40} key={spec.key:28} value={spec.schema:14} {'compacted ' if spec.compacted else ''}{spec.doc}")
    return 0


SECRET_SETTINGS = frozenset({"TKONTO_JWT_SECRET", "TKONTO_CASE_ID_SECRET"})


def cmd_config(args) -> int:
    from .settings import Settings

    current = Settings.from_env().as_env()  # validates every variable that is set
    for var, default, doc in Settings.documentation():
        value = ("<set>" if current[var] else "<not set>") if var in SECRET_SETTINGS else current[var]
        print(f"{var:30} = {value!r:24} (default {default}) {doc}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args)


def cmd_bench(args) -> int:
    from pathlib import Path

    from .bench import run_bench, run_memory

    if getattr(args, "bench_mode", None) == "memory":
        return run_memory(args.events, args.payees, Path(args.out), args.settle)
    if getattr(args, "bench_mode", None) == "scaling":
        from .bench_scaling import run_scaling
        from .cpu_budget import CpuBudgetError

        try:
            return run_scaling(args.events, args.payees, args.cores_per_worker, Path(args.out), args.quick)
        except CpuBudgetError as exc:
            raise CliError(str(exc)) from exc
    return run_bench(args)


COMMANDS = {"case": cmd_case, "review": cmd_review, "ref": cmd_ref, "demo": cmd_demo, "bench": cmd_bench, "worker": cmd_worker, "publish": cmd_publish, "topics": cmd_topics, "config": cmd_config}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .settings import SettingsError

    try:
        return COMMANDS[args.command](args) or 0
    except KeyboardInterrupt:
        print("tkonto: interrupted", file=sys.stderr)
        return 130
    except (CliError, SettingsError) as exc:
        print(f"tkonto: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # operational errors from our own modules carry the fix in their text
        from .client import EventFileError
        from .codec import CodecError
        from .payers import PayerFileError

        if isinstance(exc, (EventFileError, CodecError, PayerFileError)):
            print(f"tkonto: error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
