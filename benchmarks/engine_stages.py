"""The pipeline's stages in one process, without Kafka: µs per payment event, and a profile.

    .venv/bin/python benchmarks/engine_stages.py [--events 30000] [--payees 10000] [--profile out.prof] [--codec]
                                                 [--collector]

Runs the engine's stage functions (``ingest.ingest``, ``ledger.ledger``,
``analysis.analyse_account``, ``citizen.citizen``) exactly as the engine calls them, on
realistic events (``micro_hotpath.build``): each record a stage writes to a topic the
pipeline reads is queued and handed to that topic's stage, one partition owning
everything, state flushed every 1,000 input events as the engine does at a commit.
Writes to other topics are counted, not sent. What remains for a worker on top of this is
librdkafka's consume and produce, and the broker.

``--codec`` checks every record the stages encode against fastavro's bytes as it is
written (state items written from their ``Sealed`` memos included), and that no compiled
writer refused one (the codec then leaves it to fastavro, ~2-10 times slower), keeps a copy of each,
and then, per schema, times fastavro's writer against the codec's compiled writer
(``streams/avro_writer.py``) on those copies, best of 3, and checks that both give the
same bytes for every one.

The cyclic collector runs as in a worker (``engine.tune_collector``). ``--collector`` also
times its collections during the pass (``gc.callbacks``), and after the pass one full
collection, with the count of objects it still tracks (the stores' values are untracked
when written: ``avro_native.untrack``).
"""
from __future__ import annotations

import argparse
import cProfile
import collections
import copy
import gc
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
    parser.add_argument("--codec", action="store_true", help="compare fastavro's writer with the compiled writers")
    parser.add_argument("--collector", action="store_true", help="time the cyclic collector's work")
    args = parser.parse_args(argv)

    import micro_hotpath
    payers, registers, events = micro_hotpath.build(args.events, args.payees, 7)
    payers_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"engine-stages-{os.getpid()}.csv"
    from streams.payers import write_payers
    write_payers(payers_file, list(payers.values()))
    os.environ["TKONTO_PAYERS_FILE"] = str(payers_file)

    from streams import analysis, citizen, ingest, ledger
    from streams.app import catalogue
    from streams.engine import Output, tune_collector
    from streams.reference import registers as held

    held.data["accounts"].update(registers["accounts"])
    held.data["population"].update(registers["population"])

    queue: collections.deque = collections.deque()
    written: collections.Counter = collections.Counter()
    stages = {t: s.handle for s in (ingest.stage, ledger.stage, analysis.stage, citizen.stage) for t in s.topics}

    class LocalOutput(Output):
        def __init__(self):
            super().__init__({})
            self.assigned = {t: {0} for t in stages}
            self.partition_counts = {t: 1 for t in stages}
            self.fused = {t: s.handle for s in (ledger.stage, analysis.stage) if s.fuse for t in s.topics}
            self.fusing = {(t, 0) for t in self.fused}  # as in a worker past its barriers

        def _new_producer(self, config):  # no producer: records to pipeline topics are queued, the rest counted
            return None

        def write(self, topic, key, value, partition=None, headers=None):
            written[topic] += 1
            if topic in stages:
                queue.append(Msg(topic, 0, 0, key, value, headers))

    out = LocalOutput()
    encoded: list[tuple[str, dict]] = []
    differ_when_written: list[str] = []
    refused: list[str] = []  # records a compiled writer refused in the run (fastavro wrote them)
    if args.codec:  # keep a copy of every record encoded (copied: stages may build on them later)
        from streams.app import codec as the_codec
        encode, with_fastavro = the_codec.encode, the_codec._encode_with_fastavro

        def keeping(name, record):
            encoded.append((name, copy.deepcopy(record)))  # the copies have no Sealed memos
            data = encode(name, record)
            # as written, memos included: what fastavro writes for the record as it is now
            if data != with_fastavro(name, record):
                differ_when_written.append(name)
            return data

        def left_to_fastavro(name, record):  # the codec's way when a compiled writer refuses a record
            refused.append(name)
            return with_fastavro(name, record)

        the_codec.encode, the_codec._encode_with_fastavro = keeping, left_to_fastavro
    stores = ledger.stores + analysis.stores + citizen.stores
    for store in stores:
        store.partitions[0] = store._new_partition(0)
    inputs = [Msg(catalogue.payer_input(payer.payer_id).name, 0, i, None, value)
              for i, (payer, value) in enumerate(events)]
    tune_collector()  # as the worker's engine thread does once it is ready

    def run():
        for n, msg in enumerate(inputs, 1):
            stages[msg.topic()](msg, out)
            while queue:
                m = queue.popleft()
                if m.topic() not in out.fused or not out.arrived(m.value()):  # the engine's skip
                    stages[m.topic()](m, out)
            if n % 1000 == 0 or n == len(inputs):
                for store in stores:
                    store.flush(out.write)

    collected = [0, 0.0, 0.0]  # collections, their seconds, the current one's start

    def timed(phase: str, info: dict) -> None:
        if phase == "start":
            collected[2] = time.perf_counter()
        else:
            collected[0] += 1
            collected[1] += time.perf_counter() - collected[2]

    if args.collector:
        gc.callbacks.append(timed)
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
          f"{seconds / len(inputs) * 1e6:.0f} µs/event (= {len(inputs) / seconds:,.0f} events/s on one core)"
          + (" (slowed by --codec's copies)" if args.codec else ""))
    print("records written per topic:", dict(sorted(written.items())))
    if args.collector:
        gc.callbacks.remove(timed)
        t0 = time.perf_counter()
        gc.collect()
        full = time.perf_counter() - t0
        print(f"cyclic collector: {collected[0]} collections in the pass, {collected[1]:.2f} s "
              f"({collected[1] / seconds:.1%} of it); then a full collection {full * 1000:.0f} ms, "
              f"{len(gc.get_objects()):,} objects tracked after it")
    if args.codec:
        the_codec.encode, the_codec._encode_with_fastavro = encode, with_fastavro
        print(f"records whose bytes, as written in the run, differ from fastavro's: {len(differ_when_written)}"
              + (f" ({sorted(set(differ_when_written))})" if differ_when_written else ""))
        print(f"records a compiled writer refused in the run (written by fastavro): {len(refused)}"
              + (f" ({sorted(set(refused))})" if refused else ""))
        return compare_writers(the_codec, encoded) or (1 if differ_when_written or refused else 0)
    return 0


def compare_writers(codec, encoded: list[tuple[str, dict]]) -> int:
    """Per schema: µs per record with fastavro's writer and with the compiled one; 1 if any bytes differ."""
    by_schema: dict[str, list[dict]] = collections.defaultdict(list)
    for name, record in encoded:
        by_schema[name].append(record)

    def best(write, records) -> float:
        times = []
        for _ in range(3):
            fresh = copy.deepcopy(records)  # Sealed items without memos: every round writes them anew
            t0 = time.perf_counter()
            for record in fresh:
                write(record)
            times.append(time.perf_counter() - t0)
        return min(times) / len(records) * 1e6

    print(f"\n{'schema':34} {'records':>8} {'fastavro µs':>12} {'compiled µs':>12} {'same bytes':>11}")
    differ = 0
    for name, records in sorted(by_schema.items(), key=lambda kv: -len(kv[1])):
        slow = [codec._encode_with_fastavro(name, r) for r in records]
        fast = [codec.encode(name, r) for r in records]
        same = sum(a == b for a, b in zip(slow, fast))
        differ += len(records) - same
        print(f"{name:34} {len(records):8d} {best(lambda r: codec._encode_with_fastavro(name, r), records):12.1f} "
              f"{best(lambda r: codec.encode(name, r), records):12.1f} {same:>5d}/{len(records)}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
