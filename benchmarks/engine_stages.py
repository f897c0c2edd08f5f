"""The pipeline's stages in one process, without Kafka: µs per payment event, and a profile.

    .venv/bin/python benchmarks/engine_stages.py [--events 30000] [--payees 10000] [--profile out.prof]

Runs the engine's stage functions (``ingest.ingest``, ``ledger.ledger``,
``analysis.analyse_account``, ``citizen.citizen``) exactly as the engine calls them, on
realistic events (``micro_hotpath.build``): each record a stage writes to a topic the
pipeline reads is queued and handed to that topic's stage, one partition owning
everything, state flushed every 1,000 input events as the engine does at a commit.
Writes to other topics are counted, not sent. What remains for a worker on top of this is
librdkafka's consume and produce, and the broker.
"""
from __future__ import annotations

import argparse
import cProfile
import collections
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


class Msg:
    """Just what a stage reads of a confluent-kafka Message."""
    __slots__ = ("_topic", "_partition", "_offset", "_key", "_value", "_headers")

    def __init__(self, topic, partition, offset, key, value, headers=None):
        self._topic, self._partition, self._offset = topic, partition, offset
        self._key, self._value, self._headers = key, value, headers

    def topic(self): return self._topic
    def partition(self): return self._partition
    def offset(self): return self._offset
    def key(self): return self._key
    def value(self): return self._value
    def headers(self): return self._headers


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--payees", type=int, default=10_000)
    parser.add_argument("--profile", default="")
    args = parser.parse_args(argv)

    import micro_hotpath
    payers, registers, events = micro_hotpath.build(args.events, args.payees, 7)
    payers_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"engine-stages-{os.getpid()}.csv"
    from streams.payers import write_payers
    write_payers(payers_file, list(payers.values()))
    os.environ["TKONTO_PAYERS_FILE"] = str(payers_file)

    from streams import analysis, citizen, ingest, ledger
    from streams.app import catalogue
    from streams.engine import Output
    from streams.reference import registers as held

    held.data["accounts"].update(registers["accounts"])
    held.data["population"].update(registers["population"])

    queue: collections.deque = collections.deque()
    written: collections.Counter = collections.Counter()
    stages = {t: s.handle for s in (ingest.stage, ledger.stage, analysis.stage, citizen.stage) for t in s.topics}

    class LocalOutput(Output):
        def __init__(self):  # no producer: records to pipeline topics are queued, the rest counted
            self._handed, self.handed = collections.OrderedDict(), collections.Counter()
            self.assigned = {t: {0} for t in stages}
            self.partition_counts = {t: 1 for t in stages}
            self.errors = []

        def write(self, topic, key, value, partition=None, headers=None):
            written[topic] += 1
            if topic in stages:
                queue.append(Msg(topic, 0, 0, key, value, headers))

    out = LocalOutput()
    stores = ledger.stores + analysis.stores + citizen.stores
    for store in stores:
        store.partitions[0] = store._new_partition(0)
    inputs = [Msg(catalogue.payer_input(payer.payer_id).name, 0, i, None, value)
              for i, (payer, value) in enumerate(events)]

    def run():
        for n, msg in enumerate(inputs, 1):
            stages[msg.topic()](msg, out)
            while queue:
                m = queue.popleft()
                stages[m.topic()](m, out)
            if n % 1000 == 0:
                for store in stores:
                    store.flush(out.write)

    profiler = cProfile.Profile() if args.profile else None
    t0 = time.perf_counter()
    if profiler:
        profiler.runcall(run)
        profiler.dump_stats(args.profile)
    else:
        run()
    seconds = time.perf_counter() - t0
    payers_file.unlink(missing_ok=True)
    print(f"{len(inputs)} events over {args.payees} payees: {seconds:.2f} s, "
          f"{seconds / len(inputs) * 1e6:.0f} µs/event (= {len(inputs) / seconds:,.0f} events/s on one core)")
    print("records written per topic:", dict(sorted(written.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
