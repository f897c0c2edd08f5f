"""streams/engine.py: the in-process hand-over of decoded records, and an Engine with two
small stages end to end on the real embedded broker (exactly once in a clean run, offsets
committed only after the state and outputs are flushed, failures to ``on_error``)."""
from __future__ import annotations

import datetime as dt
import gc
import importlib.util
import itertools
import threading
import time
from collections import Counter
from pathlib import Path

import confluent_kafka
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import streams.engine as engine_module
from streams import metrics
from streams.account import new_account, register
from streams.codec import default_codec
from streams.engine import PARTITIONER, Engine, Output, Stage, partition_of
from streams.enrichment import enrich
from streams.observe import end_offsets, read_topic, wait_until
from streams.routing import routes
from streams.state import Store
from tests.broker_topics import create_topics

SCHEMA = "se.tkonto.state.Account"
ROOT = Path(__file__).resolve().parents[1]
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def kafka(broker):
    """The module's broker. An Output and its producer form a reference cycle (the delivery
    callback): they are collected before the broker stops, which otherwise waits seconds
    for their connections."""
    yield broker
    gc.collect()


# -- the engine end to end ------------------------------------------------------------------
def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": PARTITIONER, "linger.ms": 5})
    for key, value in records:
        producer.produce(topic, value, key)
    assert producer.flush(30) == 0


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


class Trace:
    """What the stages and the engine's flushes and commits did, in order (engine thread)."""

    def __init__(self):
        self.events: list[tuple] = []


class CountingStore(Store):
    trace: Trace

    def flush(self, write) -> int:
        written = super().flush(write)
        self.trace.events.append(("store_flush", written))
        return written


class App:
    """Stage A reads X and copies each record to Y (handing it over); a value b"boom" makes
    it raise, and its on_error sends the record to D. Stage B reads Y and counts per key
    in a Store (an Account's sequence)."""

    def __init__(self, topics: dict, trace: Trace):
        self.t, self.trace = topics, trace
        self.a: list[tuple[int, int]] = []
        self.b: list[tuple[int, int]] = []
        self.taken = 0
        self.errors: list[tuple] = []
        self.assignments: list[dict] = []
        self.store = CountingStore("counts", SCHEMA, topics["Y"], topics["C"], default_codec())
        self.store.trace = trace

    def handle_a(self, msg, out) -> None:
        self.trace.events.append(("handle", msg.topic(), msg.partition(), msg.offset(), msg.value()))
        if msg.value() == b"boom":
            raise ValueError("boom on purpose")
        self.a.append((msg.partition(), msg.offset()))
        out.feed(self.t["Y"], msg.key(), msg.value(), {"value": msg.value()})

    def failed_a(self, msg, exc, out) -> None:
        self.errors.append((msg.topic(), msg.partition(), msg.offset(), msg.value(), exc))
        out.write(self.t["D"], msg.key(), msg.value())

    def handle_b(self, msg, out) -> None:
        self.trace.events.append(("handle", msg.topic(), msg.partition(), msg.offset(), msg.value()))
        self.b.append((msg.partition(), msg.offset()))
        handed = out.take(msg.value())
        if handed is not None:
            assert handed == {"value": msg.value()}
            self.taken += 1
        p, key = msg.partition(), msg.key()
        account = self.store.get(p, key) or new_account(key.decode())
        account["sequence"] += 1
        self.store.put(p, key, account)

    def failed_b(self, msg, exc, out) -> None:
        self.errors.append((msg.topic(), msg.partition(), msg.offset(), msg.value(), exc))

    def engine(self, bootstrap: str, group: str) -> Engine:
        stages = [Stage("A", [self.t["X"]], self.handle_a, self.failed_a, feeds=[self.t["Y"]]),
                  Stage("B", [self.t["Y"]], self.handle_b, self.failed_b)]
        return Engine(bootstrap, group, stages, [self.store],
                      consumer_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
                      producer_config={"linger.ms": 5}, commit_interval=0.3,
                      on_assigned=lambda engine, assigned: self.assignments.append(
                          {t: set(ps) for t, ps in assigned.items()}))


def start(engine: Engine) -> threading.Thread:
    thread = threading.Thread(target=engine.run, name="test-engine", daemon=True)
    thread.start()
    return thread


def stop(engine: Engine, thread: threading.Thread) -> None:
    engine.stop()
    thread.join(30)
    assert not thread.is_alive()
    assert engine.failed is None


@pytest.fixture
def traced(monkeypatch):
    """The engine's Output and Consumer, recording flushes and commits into one Trace."""
    trace = Trace()

    class TracedOutput(Output):
        def flush(self, timeout: float = 60.0) -> None:
            super().flush(timeout)
            trace.events.append(("out_flush",))

        def flush_state(self, timeout: float = 60.0) -> None:
            super().flush_state(timeout)
            trace.events.append(("state_delivered",))

        def state_delivered(self) -> bool:
            delivered = super().state_delivered()
            if delivered:
                trace.events.append(("state_delivered",))
            return delivered

        def _produce_all(self, held) -> None:
            super()._produce_all(held)
            trace.events.append(("release", [args[1] for args, _ in held]))

    class TracedConsumer(confluent_kafka.Consumer):
        def commit(self, *args, **kwargs):
            offsets = kwargs.get("offsets")
            trace.events.append(("commit", sorted((tp.topic, tp.partition, tp.offset) for tp in offsets)))
            return super().commit(*args, **kwargs)

    monkeypatch.setattr(engine_module, "Output", TracedOutput)
    monkeypatch.setattr(engine_module, "Consumer", TracedConsumer)
    return trace


def assert_commits_follow_flushes(trace: Trace) -> int:
    """Every commit comes after a store flush and a delivered output flush that both come
    after the last record handled. Every output record is produced after a store flush that
    follows the handling of the record that wrote it, and only once every changelog record
    written before is delivered. Returns how many commits there were."""
    events = trace.events
    commits = 0
    handled: dict[tuple[str, int], int] = {}
    handled_at: dict[bytes, int] = {}  # a record's value -> where it was handled (its outputs carry it)
    written_at: list[int] = []  # store flushes that wrote changelog records, not yet delivered
    for i, event in enumerate(events):
        if event[0] == "handle":
            handled[(event[1], event[2])] = max(handled.get((event[1], event[2]), -1), event[3])
            handled_at.setdefault(event[4], i)
        if event[0] == "store_flush" and event[1]:
            written_at.append(i)
        if event[0] == "state_delivered":
            written_at.clear()
        if event[0] == "release":
            assert not written_at, (i, "outputs produced before the state written at", written_at)
            for value in event[1]:
                if value in handled_at:
                    flushes = [e for e in events[handled_at[value] + 1:i] if e[0] == "store_flush"]
                    assert flushes, (i, value, "produced with no store flush since it was handled")
        if event[0] != "commit":
            continue
        commits += 1
        last_handle = max(j for j in range(i) if events[j][0] == "handle")
        between = [e[0] for e in events[last_handle + 1:i] if e[0] not in ("state_delivered", "release")]
        assert between[-1] == "out_flush" and set(between[:-1]) == {"store_flush"}, (i, between)
        for topic, partition, offset in event[1]:
            assert offset == handled[(topic, partition)] + 1  # exactly what was processed
    return commits


@pytest.mark.broker
def test_engine_processes_once_commits_after_flush_and_survives_a_failing_record(kafka, traced):
    n = next(_ids)
    t = {"X": f"eng{n}.x", "Y": f"eng{n}.y", "C": f"eng{n}.counts-changelog", "D": f"eng{n}.dead"}
    create_topics(kafka.bootstrap, (t["X"], 2, False), (t["Y"], 2, False), (t["C"], 2, True), (t["D"], 1, False))
    keys = [f"k{i}".encode() for i in range(10)]
    records = [(keys[i % 10], b"v%d" % i) for i in range(25)] + [(b"k3", b"boom")] + \
              [(keys[i % 10], b"v%d" % i) for i in range(25, 50)]
    produce(kafka.bootstrap, t["X"], records)
    group = f"eng{n}-group"

    first = App(t, traced)
    engine = first.engine(kafka.bootstrap, group)
    started = time.time()
    thread = start(engine)
    try:
        assert wait_until(lambda: len(first.b) >= 50 and len(first.a) + len(first.errors) >= 51, 40, 0.05), (
            f"processed {len(first.a)} / {len(first.b)}")
        time.sleep(0.5)  # anything processed twice would show now
    finally:
        stop(engine, thread)
    # the last commit of processed records is on /metrics (the bench's drain clock, the stall alert)
    assert started < metrics.LAST_COMMIT._value.get() <= time.time()

    # every record processed exactly once; the failing one went to on_error, and on it went
    assert len(first.a) == 50 and len(set(first.a)) == 50
    assert len(first.b) == 50 and len(set(first.b)) == 50
    assert first.taken == 50  # every Y record was handed over in-process
    assert len(first.errors) == 1
    topic, partition, offset, value, exc = first.errors[0]
    assert (topic, value) == (t["X"], b"boom") and isinstance(exc, ValueError) and str(exc) == "boom on purpose"
    assert (partition, offset) not in first.a
    assert [m.value() for m in read_topic(kafka.bootstrap, t["D"])] == [b"boom"]
    assert sorted(m.value() for m in read_topic(kafka.bootstrap, t["Y"])) == sorted(v for _, v in records if v != b"boom")
    assert first.assignments[0] == {t["X"]: {0, 1}, t["Y"]: {0, 1}}
    assert first.assignments[-1] == {}
    assert first.store.partitions == {}  # forgotten on stop

    # the changelog holds the final count of every key in the key's Y partition
    latest = {}
    for msg in read_topic(kafka.bootstrap, t["C"]):
        latest[(msg.partition(), msg.key())] = default_codec().decode(msg.value(), expect=SCHEMA)["sequence"]
    y_partition = {k: p for p, k in ((m.partition(), m.key()) for m in read_topic(kafka.bootstrap, t["Y"]))}
    assert y_partition == {k: partition_of(k, 2) for k in keys}  # fed where the producer's partitioner puts them
    assert latest == {(y_partition[k], k): 5 for k in keys}

    # offsets: committed up to the end of X and Y, and only after the flushes
    assert committed(kafka.bootstrap, group, t["X"], 2) == end_offsets(kafka.bootstrap, t["X"])
    assert committed(kafka.bootstrap, group, t["Y"], 2) == end_offsets(kafka.bootstrap, t["Y"])
    assert sum(end_offsets(kafka.bootstrap, t["X"]).values()) == 51
    assert assert_commits_follow_flushes(traced) >= 1

    # a second engine in the same group: nothing again, the counts restored, new records only
    traced.events.clear()
    second = App(t, traced)
    engine = second.engine(kafka.bootstrap, group)
    thread = start(engine)
    try:
        assert wait_until(lambda: bool(second.assignments) and engine.partitions() == 4, 30, 0.05)
        time.sleep(1.0)
        assert second.a == [] and second.b == [] and second.errors == []
        counts = {(p, k): second.store.get(p, k)["sequence"] for p, part in second.store.partitions.items()
                  for k in keys if part.get(k) is not None}
        assert counts == {(y_partition[k], k): 5 for k in keys}

        produce(kafka.bootstrap, t["X"], [(k, b"w" + k) for k in keys])
        assert wait_until(lambda: len(second.b) >= 10, 30, 0.05)
        time.sleep(0.5)
        assert len(second.a) == 10 and len(second.b) == 10 and second.errors == []
        assert {k: second.store.get(y_partition[k], k)["sequence"] for k in keys} == {k: 6 for k in keys}
    finally:
        stop(engine, thread)
    assert_commits_follow_flushes(traced)
    assert committed(kafka.bootstrap, group, t["X"], 2) == end_offsets(kafka.bootstrap, t["X"])
    assert sum(committed(kafka.bootstrap, group, t["Y"], 2).values()) == 60


class _Delivered:
    def __init__(self, topic: str):
        self._topic = topic

    def topic(self) -> str:
        return self._topic


def report_lost(out: Output, topic: str) -> None:
    """The delivery report librdkafka gives for a record of ``topic`` the broker never took."""
    out._delivered(confluent_kafka.KafkaError(confluent_kafka.KafkaError._MSG_TIMED_OUT), _Delivered(topic))


def start_catching(engine: Engine) -> tuple[threading.Thread, list[BaseException]]:
    """Run ``engine`` on a thread of its own; what it raises when it stops is kept in the list."""
    raised: list[BaseException] = []

    def run():
        try:
            engine.run()
        except BaseException as exc:  # noqa: BLE001 - the engine must stop on it
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, raised


@pytest.mark.broker
def test_an_undelivered_output_record_is_never_committed_past(kafka, monkeypatch):
    n = next(_ids)
    x, y, group = f"fail{n}.x", f"fail{n}.y", f"fail{n}-group"
    create_topics(kafka.bootstrap, (x, 1, False), (y, 1, False))
    produce(kafka.bootstrap, x, [(b"k", b"v%d" % i) for i in range(5)] + [(b"k", b"lost")] +
            [(b"k", b"w%d" % i) for i in range(3)])

    class LosingOutput(Output):
        """The delivery report librdkafka gives for a record the broker never took (here: "lost")."""

        def write(self, topic, key, value, partition=None, headers=None):
            super().write(topic, key, value, partition, headers)
            if value == b"lost":
                report_lost(self, topic)

    monkeypatch.setattr(engine_module, "Output", LosingOutput)
    handled = []

    def copy(msg, out):
        handled.append(msg.offset())
        out.write(y, msg.key(), msg.value())

    engine = Engine(kafka.bootstrap, group, [Stage("copy", [x], copy, lambda msg, exc, out: None)], [],
                    consumer_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}, commit_interval=0.3)
    thread, raised = start_catching(engine)
    thread.join(30)
    if thread.is_alive():
        engine.stop()
        thread.join(10)
    assert 5 in handled
    assert len(raised) == 1 and isinstance(raised[0], confluent_kafka.KafkaException) and engine.failed is raised[0]
    assert "1 not delivered" in str(raised[0])
    raised.clear()
    # the record whose output was lost (offset 5) must be read again by the next owner
    assert committed(kafka.bootstrap, group, x, 1)[0] <= 5


@pytest.mark.broker
def test_no_output_is_delivered_before_the_state_change_that_caused_it(kafka, monkeypatch):
    """A stage counts per key in a store and writes each count out. When the changelog
    record of a batch's counts is not delivered, none of that batch's outputs is: a replay
    would count again, and an output already out could disagree with the recount."""
    n = next(_ids)
    x, y, c, group = f"held{n}.x", f"held{n}.y", f"held{n}.counts-changelog", f"held{n}-group"
    create_topics(kafka.bootstrap, (x, 1, False), (y, 1, False), (c, 1, True))
    failing: list[bool] = []

    class LosingStateOutput(Output):
        """A changelog record the broker never took, once ``failing`` is set."""

        def write_state(self, topic, key, value, partition):
            super().write_state(topic, key, value, partition)
            if failing:
                report_lost(self, topic)

    monkeypatch.setattr(engine_module, "Output", LosingStateOutput)
    store = Store("counts", SCHEMA, x, c, default_codec())

    def count(msg, out):
        p, key = msg.partition(), msg.key()
        account = store.get(p, key) or new_account(key.decode())
        account["sequence"] += 1
        store.put(p, key, account)
        if msg.value() == b"lost":
            failing.append(True)
        out.write(y, key, b"%d" % account["sequence"])

    engine = Engine(kafka.bootstrap, group, [Stage("count", [x], count, lambda msg, exc, out: None)], [store],
                    consumer_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
                    producer_config={"linger.ms": 5}, commit_interval=60)
    thread, raised = start_catching(engine)
    try:
        produce(kafka.bootstrap, x, [(b"k", b"v%d" % i) for i in range(5)])
        assert wait_until(lambda: len(read_topic(kafka.bootstrap, y)) >= 5, 30, 0.1), "the first outputs never came"
        produce(kafka.bootstrap, x, [(b"k", b"lost")] + [(b"k", b"w%d" % i) for i in range(3)])
        thread.join(30)
    finally:
        if thread.is_alive():
            engine.stop()
            thread.join(10)
    assert len(raised) == 1 and isinstance(raised[0], confluent_kafka.KafkaException) and engine.failed is raised[0]
    assert "not delivered" in str(raised[0])
    # the first five counts are out; the batch whose state failed released nothing
    assert [m.value() for m in read_topic(kafka.bootstrap, y)] == [b"1", b"2", b"3", b"4", b"5"]
    assert committed(kafka.bootstrap, group, x, 1)[0] <= 5


@pytest.mark.broker
def test_what_was_done_is_committed_as_soon_as_the_input_is_idle(kafka):
    """With nothing more to read (a poll that waited found nothing), the engine commits
    what it processed at once, not a commit interval later: the end of a backlog is
    durable when its work is done, and a restart redoes less."""
    n = next(_ids)
    x, y, group = f"idle{n}.x", f"idle{n}.y", f"idle{n}-group"
    create_topics(kafka.bootstrap, (x, 2, False), (y, 1, False))
    seen: list[bytes] = []

    def copy_out(msg, out):
        seen.append(msg.value())
        out.write(y, msg.key(), msg.value())

    engine = Engine(kafka.bootstrap, group, [Stage("copy", [x], copy_out, lambda msg, exc, out: None)], [],
                    consumer_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
                    producer_config={"linger.ms": 5}, commit_interval=600)
    thread = start(engine)
    try:
        produce(kafka.bootstrap, x, [(b"k%d" % i, b"v%d" % i) for i in range(6)])

        def done() -> int:
            return sum(max(offset, 0) for offset in committed(kafka.bootstrap, group, x, 2).values())

        assert wait_until(lambda: done() == 6, 30, 0.2), f"not committed while idle (processed {len(seen)})"
        assert sorted(seen) == [b"v%d" % i for i in range(6)]
        assert sorted(m.value() for m in read_topic(kafka.bootstrap, y)) == sorted(seen)  # flushed before
    finally:
        stop(engine, thread)


@pytest.mark.broker
def test_back_pressure_keeps_a_fast_stage_within_the_backlog_of_a_slow_one(kafka):
    """A reads X and feeds Y at full speed; B takes 1 ms a record. Without back-pressure A
    would run 1,500 records ahead (and the hand-over memo would overflow)."""
    n = next(_ids)
    x, y = f"bp{n}.x", f"bp{n}.y"
    create_topics(kafka.bootstrap, (x, 2, False), (y, 2, False))
    produce(kafka.bootstrap, x, [(b"k%d" % (i % 50), b"v%d" % i) for i in range(1500)])
    ahead: list[int] = []
    taken = []

    def handle_a(msg, out):
        out.feed(y, msg.key(), msg.value(), {"v": msg.value()})
        ahead.append(out.handed[y])

    def handle_b(msg, out):
        taken.append(out.take(msg.value()) is not None)
        time.sleep(0.001)

    engine = Engine(kafka.bootstrap, f"bp{n}-group",
                    [Stage("A", [x], handle_a, lambda *a: None, feeds=[y]), Stage("B", [y], handle_b, lambda *a: None)],
                    [], consumer_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
                    producer_config={"linger.ms": 5}, batch_size=50, max_backlog=100)
    thread = start(engine)
    try:
        assert wait_until(lambda: len(taken) >= 1500, 60, 0.05), f"B read {len(taken)}"
    finally:
        stop(engine, thread)
    assert len(ahead) == 1500
    assert max(ahead) <= 100 + 50  # paused after the batch that crossed max_backlog
    assert all(taken)  # nothing was dropped from the memo: every record handed over in-process


@pytest.mark.broker
def test_held_records_wait_in_order_and_each_is_processed_once(kafka):
    """A feeds Y at full speed, B is slow. A is held far more often than it is paused: its
    records are read and wait here (``_waiting``), beyond ``max_held`` its inputs are paused.
    Every record is handled once, in each partition's order, and the backlog stays bounded."""
    n = next(_ids)
    x, y = f"held{n}.x", f"held{n}.y"
    create_topics(kafka.bootstrap, (x, 2, False), (y, 2, False))
    produce(kafka.bootstrap, x, [(b"k%d" % (i % 50), b"%d" % i) for i in range(3000)])
    handled: dict[int, list[int]] = {0: [], 1: []}
    ahead: list[int] = []
    waited: list[int] = []
    pauses: list[str] = []

    def handle_a(msg, out):
        handled[msg.partition()].append(msg.offset())
        out.feed(y, msg.key(), msg.value(), {"v": msg.value()})
        ahead.append(out.handed[y])

    def handle_b(msg, out):
        assert out.take(msg.value()) is not None  # handed over in-process: nothing dropped from the memo
        waited.append(len(engine._waiting["A"]))
        time.sleep(0.0005)

    class Counted(Engine):
        def _pause(self, stage, pause):
            pauses.append("pause" if pause else "resume")
            super()._pause(stage, pause)

    engine = Counted(kafka.bootstrap, f"held{n}-group",
                     [Stage("A", [x], handle_a, lambda *a: None, feeds=[y]), Stage("B", [y], handle_b, lambda *a: None)],
                     [], consumer_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
                     producer_config={"linger.ms": 5}, batch_size=50, max_backlog=100, max_held=400)
    thread = start(engine)
    try:
        assert wait_until(lambda: len(waited) >= 3000, 90, 0.05), f"B read {len(waited)}"
    finally:
        stop(engine, thread)
    for partition, offsets in handled.items():  # once each, in order, none skipped
        assert offsets == list(range(len(offsets))), partition
    assert len(handled[0]) + len(handled[1]) == 3000
    assert max(ahead) <= 100 + 50
    assert max(waited) > 0  # A was held: its records waited
    assert max(waited) <= 400 + 2 * 50  # and were bounded: paused past max_held (after a batch)
    assert pauses.count("pause") >= 1 and pauses.count("pause") == pauses.count("resume")


def test_held_records_are_released_in_order_and_dropped_uncommitted_at_a_revoke():
    """Without a broker: a held stage's records wait; released, they are processed oldest
    first; at a revoke the records still waiting are not committed (the next owner reads
    them again) and nothing stays held."""
    seen: list[tuple[str, int]] = []
    stages = [Stage("A", ["x"], lambda m, o: seen.append((m.topic(), m.offset())), lambda *a: None, feeds=["y"]),
              Stage("B", ["y"], lambda m, o: seen.append((m.topic(), m.offset())), lambda *a: None)]
    engine = Engine("unused:9092", "g", stages, [], batch_size=3, max_backlog=10, max_held=100)

    class Out:
        fused: dict = {}
        opening: dict = {}
        handed: Counter = Counter()
        settled: Counter = Counter()
        unreleased: list = []
        awaiting: list = []

        def flush(self): pass
        def poll(self): pass
        def release(self): pass
        def drop_held(self): pass
        def forget_handed(self): pass

    class Consumer_:
        commits: list = []

        def assignment(self):
            return []

        def commit(self, offsets, asynchronous):
            self.commits.append({(tp.topic, tp.partition): tp.offset for tp in offsets})

    engine.out, engine.consumer = Out(), Consumer_()
    engine.assigned = {"x": {0}, "y": {0}}
    engine._process([_Msg("x", 0, 0, b"a")])
    engine.out.handed["y"] = 11  # what A fed is far behind: A is held
    engine._apply_back_pressure()
    engine._process([_Msg("x", 0, 1, b"b"), _Msg("y", 0, 0, b"c"), _Msg("x", 0, 2, b"d")])
    assert seen == [("x", 0), ("y", 0)]  # B is not held
    engine.out.handed["y"] = 6  # above half: still held
    engine._apply_back_pressure()
    engine._process([_Msg("x", 0, 3, b"e")])
    assert not engine._released and [m.offset() for m in engine._waiting["A"]] == [1, 2, 3]
    engine.out.handed["y"] = 5  # at half: released, oldest first, a batch at a time
    engine._apply_back_pressure()
    assert engine._released
    engine._process_released()
    assert seen[2:] == [("x", 1), ("x", 2), ("x", 3)]
    engine.out.handed["y"] = 11
    engine._apply_back_pressure()
    engine._process([_Msg("x", 0, 4, b"f"), _Msg("x", 0, 5, b"g")])
    assert engine.lag() == {"x": 2}  # nothing assigned in the consumer here: only what waits
    engine._on_revoke(engine.consumer, [])
    assert engine.consumer.commits[-1] == {("x", 0): 4, ("y", 0): 1}  # not past what waited
    assert not any(engine._waiting.values()) and not engine._held and not engine._paused


def test_settled_records_hold_a_stage_only_past_a_bound_of_their_own():
    """What a stage fed and this worker already applied, or wrote settled, is only skipped
    when read back: it is not work still to do, and holds the stage only when it alone is
    past the bound (the memo that lets it be skipped holds it until then)."""
    stages = [Stage("A", ["x"], lambda m, o: None, lambda *a: None, feeds=["y", "z"]),
              Stage("B", ["y"], lambda m, o: None, lambda *a: None),
              Stage("C", ["z"], lambda m, o: None, lambda *a: None)]
    engine = Engine("unused:9092", "g", stages, [], max_backlog=10)

    class Out:
        handed: Counter = Counter()
        settled: Counter = Counter()

    engine.out = out = Out()

    def held(handed_y, settled_y, unread_z, settled_z):
        out.handed["y"], out.settled["y"], out.settled["z"] = handed_y, settled_y, settled_z
        engine._unread = {"y": 0, "z": unread_z}
        engine._apply_back_pressure()
        return "A" in engine._held

    assert not held(9, 9, 9, 0)  # 18 behind, 9 of them settled: 9 to do (counted as work before, it was held)
    assert held(9, 9, 11, 0)  # 11 to do
    assert held(9, 0, 2, 0) and held(9, 3, 2, 0)  # 11 to do, then 8: held until half
    assert held(9, 6, 2, 0)  # 5 to do, but 6 settled: above half of their own bound
    assert not held(9, 5, 1, 0)  # 5 to do, 5 settled: released
    assert held(8, 8, 3, 3)  # nothing to do, but 11 settled: past their own bound
    assert held(6, 6, 0, 0) and not held(5, 5, 0, 0)  # released at half of it too
    assert not held(0, 0, 9, 9)  # the settled ones are among what is unread: nothing to do


@pytest.mark.broker
def test_a_fused_stage_is_applied_when_fed_after_what_its_partition_held_at_assignment(kafka):
    """B is fused. Y already holds records (fed by a worker that read X before): they are
    read first; every record A feeds is then applied at once (offset -1), in feed order.
    What A fed before the partition opened was written, and is skipped when read back;
    what it fed after is not written at all. Each record is handled exactly once."""
    n = next(_ids)
    x, y, group = f"fuse{n}.a-in", f"fuse{n}.b-fed", f"fuse{n}-group"
    create_topics(kafka.bootstrap, (x, 2, False), (y, 2, False))
    keys = [b"k%d" % i for i in range(10)]
    old = 20  # per key
    produce(kafka.bootstrap, y, [(k, b"old-%s-%d" % (k, i)) for i in range(old) for k in keys])
    produce(kafka.bootstrap, x, [(k, b"new-%s-%d" % (k, i)) for i in range(5) for k in keys])
    handled: list[tuple[bytes, bytes, int]] = []
    decoded_given = []

    def handle_a(msg, out):
        out.feed(y, msg.key(), msg.value(), {"v": msg.value()}, headers=[("source", b"x")])

    def handle_b(msg, out):
        handled.append((msg.key(), msg.value(), msg.offset()))
        if msg.offset() == -1:
            decoded_given.append(out.take(msg.value()) == {"v": msg.value()} and msg.headers() == [("source", b"x")])

    engine = Engine(kafka.bootstrap, group,
                    [Stage("A", [x], handle_a, lambda *a: None, feeds=[y]),
                     Stage("B", [y], handle_b, lambda *a: None, fuse=True)],
                    [], consumer_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
                    producer_config={"linger.ms": 5}, commit_interval=0.3, batch_size=20)
    applied_locally = metrics.APPLIED_LOCALLY.labels(y)
    thread = start(engine)
    try:
        assert wait_until(lambda: len(handled) >= 10 * old + 50, 40, 0.05), f"B handled {len(handled)}"
        produce(kafka.bootstrap, x, [(k, b"later-%s" % k) for k in keys])  # once open: applied as fed
        assert wait_until(lambda: len(handled) >= 10 * old + 60, 30, 0.05), f"B handled {len(handled)}"
        assert wait_until(lambda: sum(engine.out.handed.values()) == 0, 30, 0.05), "applied records not read back"
        time.sleep(0.5)  # anything handled twice would show now
    finally:
        stop(engine, thread)
    assert len(handled) == 10 * old + 60
    for k in keys:
        assert [v for key, v, _ in handled if key == k] == (
            [b"old-%s-%d" % (k, i) for i in range(old)] + [b"new-%s-%d" % (k, i) for i in range(5)] + [b"later-%s" % k])
    assert sorted(v for _, v, offset in handled if offset >= 0) == sorted(
        b"old-%s-%d" % (k, i) for k in keys for i in range(old))
    assert len(decoded_given) == 60 and all(decoded_given)
    assert committed(kafka.bootstrap, group, y, 2) == end_offsets(kafka.bootstrap, y)  # skipped ones too
    not_written = applied_locally._value.get()
    assert 10 <= not_written <= 60  # the later ones at least: fed once the partitions were open
    assert sum(end_offsets(kafka.bootstrap, y).values()) == 10 * old + 60 - not_written


# -- Output.feed / take (after the engine test, so that its producers are collected) ---------
class FullTwice:
    """A producer whose local queue is full at the first two produce() (librdkafka's BufferError)."""

    def __init__(self):
        self.produced: list[tuple[tuple, dict]] = []
        self.polls: list[float] = []
        self.full = 2

    def produce(self, *args, **kwargs):
        if self.full:
            self.full -= 1
            raise BufferError("Local: Queue full")
        self.produced.append((args, kwargs))

    def poll(self, timeout=None):
        self.polls.append(timeout)
        return 0


def test_a_full_local_queue_delays_a_record_and_loses_none():
    class FullOutput(Output):
        def _new_producer(self, config):
            return FullTwice()

    out = FullOutput({})
    out.write_state("c", b"k", b"state", 3)
    assert out._state_producer.produced == [(("c", b"state", b"k", 3), {})]
    assert out._state_producer.polls == [0.01]  # librdkafka sent, then the record went in
    out.write("o", b"k1", b"one")
    out.write("o", b"k2", b"two", headers=[("h", b"1")])
    assert out.release() == 2
    assert out._producer.produced == [(("o", b"one", b"k1"), {}), (("o", b"two", b"k2"), {"headers": [("h", b"1")]})]
    assert out._producer.polls == [0.01, 0]


@pytest.fixture
def output(kafka):
    """An Output feeding a 4-partition topic of which this worker owns partitions 0 and 1."""
    topic = f"feed{next(_ids)}"
    create_topics(kafka.bootstrap, (topic, 4, False))
    out = Output({"bootstrap.servers": kafka.bootstrap})
    out.partition_counts = {topic: 4}
    out.assigned = {topic: {0, 1}}
    out.topic = topic
    yield out
    out.flush(10)


def keys_in(partitions: set[int], n: int) -> list[bytes]:
    keys = (b"key-%d" % i for i in itertools.count())
    return list(itertools.islice((k for k in keys if partition_of(k, 4) in partitions), n))


@pytest.mark.broker
def test_feed_hands_over_what_this_worker_will_read_and_take_returns_it_once(output):
    mine, theirs = keys_in({0, 1}, 2), keys_in({2, 3}, 1)
    decoded = {"event_id": "e1"}
    output.feed(output.topic, mine[0], b"value-1", decoded)
    output.feed(output.topic, mine[1], b"value-2", {"event_id": "e2"})
    output.feed(output.topic, theirs[0], b"value-3", {"event_id": "e3"})  # another worker reads it: not kept
    assert output.handed[output.topic] == 2
    assert output.take(b"value-1") is decoded
    assert output.take(b"value-1") is None
    assert output.take(b"value-3") is None
    assert output.take(b"never handed") is None
    assert output.take(b"value-2") == {"event_id": "e2"}
    assert output.take(b"value-2") is None
    assert output.handed[output.topic] == 0 and not output._handed


@pytest.mark.broker
def test_when_delivered_runs_after_the_records_before_it_are_delivered_once(kafka, output):
    calls = []
    output.write(output.topic, b"k", b"decided", 0)
    output.when_delivered(lambda: calls.append(sum(end_offsets(kafka.bootstrap, output.topic).values())))
    output.poll()
    assert calls == []  # held, not yet produced
    output.flush(10)
    assert calls == [1]  # the record was in the topic when the callback ran
    output.flush(10)
    assert calls == [1]  # once
    output.write(output.topic, b"k", b"dropped", 0)
    output.when_delivered(lambda: calls.append("after a drop"))
    output.drop_held()  # the engine failed or lost its partitions: the record is processed again
    output.flush(10)
    assert calls == [1] and sum(end_offsets(kafka.bootstrap, output.topic).values()) == 1


@pytest.mark.broker
def test_feed_writes_each_record_to_the_partitioners_partition(kafka, output):
    keys = [b"payee-%d" % i for i in range(40)]
    for i, key in enumerate(keys):
        output.feed(output.topic, key, b"v%d" % i, {"n": i})
    output.flush(10)
    placed = {m.key(): m.partition() for m in read_topic(kafka.bootstrap, output.topic)}
    assert placed == {k: partition_of(k, 4) for k in keys}
    assert output.handed[output.topic] == sum(1 for k in keys if partition_of(k, 4) in {0, 1})


@pytest.mark.broker
def test_feeding_the_same_bytes_twice_counts_once(output):
    key = keys_in({0}, 1)[0]
    output.feed(output.topic, key, b"same", {"n": 1})
    output.feed(output.topic, key, b"same", {"n": 1})  # a redelivered event re-emits identical bytes
    assert output.handed[output.topic] == 1
    assert output.take(b"same") == {"n": 1}
    assert output.handed[output.topic] == 0


@pytest.mark.broker
def test_hand_over_memo_is_bounded_dropping_the_oldest(output):
    assert Output.HAND_OVER_MAX == 20_000
    output.HAND_OVER_MAX = 3
    key = keys_in({1}, 1)[0]
    for i in range(6):
        output.feed(output.topic, key, b"v%d" % i, {"n": i})
    assert list(output._handed) == [b"v3", b"v4", b"v5"]
    assert output.handed[output.topic] == 3
    assert [output.take(b"v%d" % i) for i in range(6)] == [None, None, None, {"n": 3}, {"n": 4}, {"n": 5}]
    assert output.handed[output.topic] == 0


@pytest.mark.broker
def test_a_topic_of_unknown_partition_count_is_written_but_not_handed_over(output):
    output.partition_counts = {}
    output.feed(output.topic, b"k", b"v", {"n": 1})
    assert output.take(b"v") is None and output.handed[output.topic] == 0


@pytest.mark.broker
def test_forget_handed_after_a_rebalance(output):
    output.feed(output.topic, keys_in({0}, 1)[0], b"v", {"n": 1})
    output.forget_handed()
    assert output.take(b"v") is None and output.handed[output.topic] == 0



class _Msg:
    def __init__(self, topic, partition, offset, value):
        self._t, self._p, self._o, self._v = topic, partition, offset, value

    def error(self):
        return None

    def topic(self):
        return self._t

    def partition(self):
        return self._p

    def offset(self):
        return self._o

    def value(self):
        return self._v

    def key(self):
        return b"k"

    def headers(self):
        return None


@pytest.mark.broker
def test_a_fused_partition_opens_only_after_what_it_held_at_assignment_was_read(output, monkeypatch):
    """Partition 0 held 3 records when assigned (fed before by another worker); partition 1
    was empty. Records fed to 0 wait (written and handed over) until offset 2 is read, then
    are applied in feed order; records fed to 1 are applied at once (and not written)."""
    handled = []
    y = output.topic
    engine = Engine("unused:9092", "g", [Stage("B", [y], lambda msg, out: handled.append((msg.offset(), msg.value())),
                                               lambda *a: None, fuse=True)], [])
    engine.out, output.fused = output, {y: engine.stages[0].handle}

    class Ends:
        def get_watermark_offsets(self, tp, timeout):
            return 0, {0: 3, 1: 0}[tp.partition]

    engine.consumer = Ends()
    monkeypatch.setattr(engine_module, "true_end_offsets", lambda bootstrap, reported: dict(reported))
    engine._set_barriers({y: {0, 1}})
    assert output.fusing == {(y, 1)} and output.opening == {(y, 0): 3}
    k0, k1 = keys_in({0}, 1)[0], keys_in({1}, 1)[0]
    output.feed(y, k0, b"new-1", {})
    output.feed(y, k1, b"other", {})
    output.feed(y, k0, b"new-2", {})
    assert handled == [(-1, b"other")]  # applied at once, not written
    engine._process([_Msg(y, 0, 0, b"old-0"), _Msg(y, 0, 1, b"old-1")])
    assert handled[1:] == [(0, b"old-0"), (1, b"old-1")] and (y, 0) not in output.fusing
    engine._process([_Msg(y, 0, 2, b"old-2"), _Msg(y, 0, 3, b"new-1")])
    # old-2 was the last record held at assignment: what waited is applied, then read back and skipped
    assert handled[3:] == [(2, b"old-2"), (-1, b"new-1"), (-1, b"new-2")]
    assert output.fusing == {(y, 0), (y, 1)} and output.opening == {}
    assert engine._done == {(y, 0): 4}
    assert output.handed[y] == 1 and output.arrived(b"new-2")


@pytest.mark.broker
def test_a_fused_partition_opens_only_when_its_waiting_records_are_processed(output, monkeypatch):
    """The fused stage is held while partition 0's records from before the assignment wait
    here: the consumer has read past the barrier, but the partition opens only once they
    are processed, so a new record is never applied before them."""
    handled = []
    y = output.topic
    engine = Engine("unused:9092", "g", [Stage("B", [y], lambda msg, out: handled.append((msg.offset(), msg.value())),
                                               lambda *a: None, feeds=["z"], fuse=True)], [])
    engine.out, output.fused = output, {y: engine.stages[0].handle}

    class Consumer_:
        def get_watermark_offsets(self, tp, timeout):
            return 0, 2

        def position(self, tps):
            return [TopicPartition(tp.topic, tp.partition, 2) for tp in tps]

    engine.consumer = Consumer_()
    engine.assigned = {y: {0}}
    monkeypatch.setattr(engine_module, "true_end_offsets", lambda bootstrap, reported: dict(reported))
    engine._set_barriers({y: {0}})
    assert output.opening == {(y, 0): 2}
    output.handed["z"] = engine.max_backlog + 1  # what B fed is far behind: B is held
    engine._apply_back_pressure()
    engine._process([_Msg(y, 0, 0, b"old-0"), _Msg(y, 0, 1, b"old-1")])
    engine._pass_barriers()  # read up to the barrier, but nothing processed
    assert handled == [] and (y, 0) not in output.fusing
    output.feed(y, keys_in({0}, 1)[0], b"new", {})
    assert handled == []  # waits behind the old records
    output.handed["z"] = 0
    engine._apply_back_pressure()
    engine._process_released()
    assert handled == [(0, b"old-0"), (1, b"old-1"), (-1, b"new")]
    assert (y, 0) in output.fusing and output.opening == {}


@pytest.mark.broker
def test_fused_records_are_applied_at_once_only_where_open_and_then_not_written(kafka, output):
    """Where the partition is open, a fed record is applied at once and not written (the
    topic carries only what another worker must do); where it is opening, it is written and
    waits, is applied when the partition opens, and skipped once when read back; where it
    failed at once, or the partition is neither, it is written and processed when read."""
    applied = []

    def handle(msg, out):
        if msg.value() == b"bad":
            raise ValueError("bad on purpose")
        applied.append((msg.partition(), msg.value(), out.take(msg.value())))

    output.fused = {output.topic: handle}
    k0, k1 = keys_in({0}, 1)[0], keys_in({1}, 1)[0]
    output.opening = {(output.topic, 1): 5}  # partition 1 opens when read past offset 5 (the engine's barrier)
    output.open_fusion(output.topic, 0)
    output.feed(output.topic, k0, b"a", {"n": "a"})
    output.feed(output.topic, k1, b"b", {"n": "b"})  # partition 1 not open yet: written, waits
    output.feed(output.topic, k1, b"c", {"n": "c"})
    output.feed(output.topic, k0, b"a", {"n": "a"})  # the same bytes again (a redelivery): applied again
    assert applied == [(0, b"a", {"n": "a"}), (0, b"a", {"n": "a"})]
    assert output.handed[output.topic] == 2 and output.settled[output.topic] == 0  # b, c wait: still work
    output.open_fusion(output.topic, 1)  # what waited for partition 1 first, in order
    assert applied[2:] == [(1, b"b", {"n": "b"}), (1, b"c", {"n": "c"})]
    assert output.handed[output.topic] == 2 and output.settled[output.topic] == 2  # written: read back, skipped
    output.feed(output.topic, k1, b"bad", {"n": "bad"})  # failed at once: written, processed when read
    assert output.handed[output.topic] == 3 and output.settled[output.topic] == 2
    assert output.take(b"bad") == {"n": "bad"}
    assert [output.arrived(v) for v in (b"a", b"b", b"c", b"c", b"bad")] == [False, True, True, False, False]
    assert output.handed[output.topic] == 0 and output.settled[output.topic] == 0
    output.feed(output.topic, k0, b"d", {"n": "d"})
    assert applied[-1] == (0, b"d", {"n": "d"}) and output.handed[output.topic] == 0
    output.write_settled("other", b"k", b"shown")  # done here already: skipped when read
    assert +Counter(output.settled) == Counter({"other": 1})
    output.forget_handed()  # a rebalance: nothing is open, nothing is skipped
    assert not output.fusing and not output.opening and not any(output.settled.values())
    output.read_settled("other")  # written before the rebalance, read after: never below zero
    assert output.settled["other"] == 0
    output.opening = {(output.topic, 0): 5}
    output.feed(output.topic, k0, b"e", {"n": "e"})  # waits for its partition to open
    output.feed(output.topic, k1, b"f", {"n": "f"})  # partition 1 neither open nor opening: handed over
    assert applied[-1][1] == b"d" and output.take(b"e") is None and output.take(b"f") == {"n": "f"}
    assert output.handed[output.topic] == 1
    output.open_fusion(output.topic, 0)
    assert applied[-1] == (0, b"e", {"n": "e"}) and output.arrived(b"e")
    output.flush(10)
    assert sorted(m.value() for m in read_topic(kafka.bootstrap, output.topic)) == [b"b", b"bad", b"c", b"e", b"f"]


# -- the equivalence the fused hops rely on ----------------------------------------------------
# The ledger stage hands its in-memory records on (the payee rules, the payee's own citizen
# view, the account-analysis stage via ``take``), and the state stores keep decoded values:
# each must equal what a consumer decodes from the bytes written for it.
def _micro_hotpath():
    spec = importlib.util.spec_from_file_location("micro_hotpath", ROOT / "benchmarks" / "micro_hotpath.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _with_decisions(codec, events):
    """Decision data on some events (the simulation publishes none), some under patient secrecy."""
    out = []
    for i, (payer, value) in enumerate(events):
        if i % 5 == 0:
            record = {**codec.decode(value, expect="PaymentEvent"), "decision": {
                "decision_id": f"d-{i}", "decision_date": dt.date(2026, 6, 1 + i % 28), "legal_basis": "SoL 4 kap. 1 §",
                "patient_secrecy": i % 15 == 0,
                "circumstances": [{"name": "household_size", "value": str(1 + i % 4), "patient_secrecy": False},
                                  {"name": "diagnosis_code", "value": "F32.1", "patient_secrecy": True}]}}
            value = codec.encode("PaymentEvent", record)
        out.append((payer, value))
    return out


def _run_fusions(now: dt.datetime, n_events: int = 2500):
    """Run realistic events through the ledger stage's steps (account.register, enrich,
    routes) and compare every record it keeps in memory with its decoded bytes at the
    moment it is written. Returns (records checked per schema, mismatches per schema,
    outcomes of register, the EnrichedPayment records)."""
    codec = default_codec()
    bench = _micro_hotpath()
    payers, registers, events = bench.build(n_events, 400, 11)
    accounts: dict[str, dict] = {}
    restored: dict[str, bytes] = {}  # the same accounts as the changelog holds them
    checked, mismatched, outcomes, expected = Counter(), Counter(), Counter(), Counter()
    enriched_records = []

    def written(schema: str, record: dict) -> bytes:
        data = codec.encode(schema, record)
        checked[schema] += 1
        if codec.decode(data, expect=schema) != record:
            mismatched[schema] += 1
        return data

    for payer, value in _with_decisions(codec, events):
        record = codec.decode(value, expect="PaymentEvent")
        entry = None
        if payer.in_ledger:
            payee = record["payee_id"]
            account = accounts.get(payee) or new_account(payee)
            outcome = register(account, record, now)
            # the same event on the account as restored from its changelog bytes: the same outcome
            wire = codec.decode(restored[payee], expect=SCHEMA) if payee in restored else new_account(payee)
            again = register(wire, record, now)
            if (again.kind, again.entry, again.reason) != (outcome.kind, outcome.entry, outcome.reason):
                mismatched["register"] += 1
            outcomes[outcome.kind] += 1
            if outcome.kind == "REGISTERED":
                accounts[payee] = account
                restored[payee] = written(SCHEMA, account)
            if outcome.entry is None:
                continue
            entry = outcome.entry
            # a citizen route per viewer in P1 and P3, under both policies
            expected["LedgerEntry"] += 2 * 2 * (2 if entry["representative_id"] else 1)
        # enriched in every scope, analysis in P1 and P2, under both policies
        expected["EnrichedPayment"] += 2 * 5
        is_person = len(record["payee_id"]) == 12
        enriched = enrich(record, payer, registers["accounts"].get(record["bank_account"]),
                          registers["population"].get(record["payee_id"]) if is_person else None, now)
        if entry is not None:
            enriched["ledger_sequence"] = entry["sequence"]
        for scope in ("PROPOSAL_1", "PROPOSAL_2", "PROPOSAL_3"):
            for allowed in (False, True):
                for _, _, schema, routed in routes(scope, enriched, entry, allowed):
                    written(schema, routed)
                    if schema == "EnrichedPayment":
                        enriched_records.append(routed)
    expected[SCHEMA] = outcomes["REGISTERED"]
    return checked, expected, mismatched, outcomes, enriched_records


def test_records_kept_in_memory_equal_their_decoded_bytes():
    from streams.ledger import wire_now

    now = wire_now()
    assert now.tzinfo is not None and now.microsecond % 1000 == 0
    checked, expected, mismatched, outcomes, enriched = _run_fusions(now)
    assert mismatched == Counter()
    assert checked == expected
    assert outcomes["REGISTERED"] > 1000 and outcomes["DUPLICATE"] > 0 and expected["EnrichedPayment"] == len(enriched)
    assert {r["verification"]["result"] for r in enriched} >= {"MATCH"}
    assert any(r["payment"]["decision"] and r["payment"]["decision"]["patient_secrecy"] for r in enriched)
    assert any(r["payment"]["representative_id"] for r in enriched)


def test_without_millisecond_truncation_the_records_would_differ():
    # the check above is not vacuous: a microsecond ``now`` does not survive the wire
    now = dt.datetime(2026, 7, 1, 8, 0, 1, 250123, tzinfo=dt.timezone.utc)
    checked, _, mismatched, _, _ = _run_fusions(now, n_events=300)
    assert mismatched[SCHEMA] == checked[SCHEMA] > 0  # every record carries ``now``
    assert mismatched["LedgerEntry"] == checked["LedgerEntry"] > 0
    assert mismatched["EnrichedPayment"] == checked["EnrichedPayment"] > 0
    assert mismatched["register"] > 0  # a redelivery after a restore would re-emit a different entry


def test_wire_now_is_now_in_utc_at_millisecond_precision_built_once_a_millisecond(monkeypatch):
    import streams.ledger as ledger_module

    ns = [1_796_361_158_610_999_998]  # 2026-12-04 05:12:38.610999998 UTC (not rounded up to .611)
    monkeypatch.setattr(ledger_module.time, "time_ns", lambda: ns[0])
    monkeypatch.setattr(ledger_module, "_now", (-1, None))
    first = ledger_module.wire_now()
    assert first == dt.datetime(2026, 12, 4, 5, 12, 38, 610000, tzinfo=dt.timezone.utc)
    assert first.tzinfo is dt.timezone.utc
    ns[0] += 1  # the same millisecond: the same object
    assert ledger_module.wire_now() is first
    ns[0] += 1  # the next one
    assert ledger_module.wire_now() == first + dt.timedelta(milliseconds=1)
    ns[0] = 1_796_361_158_000_000_000 - 1  # never rounded up: 37.999 stays in second 37
    assert ledger_module.wire_now() == dt.datetime(2026, 12, 4, 5, 12, 37, 999000, tzinfo=dt.timezone.utc)
