"""The pipeline engine: the hot path, batch by batch, on one librdkafka consumer.

Why not Faust agents for it: a Faust agent costs ~150-300 µs of consumer, conductor and
stream machinery per record it reads (bench row 2, a naive one-hop app, ran ~1,800/s on
this machine), and a payment passes four hops. The engine reads the same topics with
one confluent-kafka consumer in batches (``consume(n)``), hands each record to its stage,
a plain function, and writes through one librdkafka producer. Faust still runs the web
server and the timers in the same process.

Guarantees, the same as before:

* **At-least-once.** A record's offset is committed only after everything it caused
  (output records and state changelog records) is delivered: the producers are flushed
  before every commit, and a delivery failure stops the engine instead of committing.
* **State before outputs.** The output records a batch causes are held in the process
  until the state changes the batch made are written to their changelogs and delivered
  (``Engine._settle``, after every batch). A record that reached a consumer was therefore
  caused by a state change that a replay after a crash finds: the replay changes nothing
  and re-emits the same records (a ledger entry keeps its sequence number). Without it, a
  kill -9 between the two could let a replay register an event again with another
  sequence, when two payers' partitions interleaved differently the second time.
* **Idempotent state.** A redelivered record meets the state it already changed and
  changes nothing (``account.register`` and the rules are idempotent).
* **State per partition**, restored from compacted changelog topics when a partition is
  assigned (``state.restore``), before any of its records is processed.

Stages are declared with the topics they read (``Stage``); a stage's handler gets the
record and an ``Output`` and must not block.
"""
from __future__ import annotations

import gc
import logging
import operator
import struct
import threading
import time
from collections import OrderedDict, defaultdict, deque
from dataclasses import dataclass, field
from typing import Callable

import confluent_kafka
from confluent_kafka import Consumer, KafkaError, TopicPartition

from . import avro_native, metrics
from .observe import next_batch, reported_ends, true_end_offsets
from .state import Store, restore

log = logging.getLogger(__name__)


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of a key (unsigned 32 bits), a word at a time."""
    m, length = 0x5BD1E995, len(data)
    h = 0x9747B28C ^ length
    whole = length & ~3
    for (k,) in struct.iter_unpack("<I", data[:whole]):
        k = (k * m) & 0xFFFFFFFF
        k = ((k ^ (k >> 24)) * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    rest = length & 3
    if rest:
        if rest == 3:
            h ^= data[whole + 2] << 16
        if rest >= 2:
            h ^= data[whole + 1] << 8
        h = ((h ^ data[whole]) * m) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * m) & 0xFFFFFFFF
    return h ^ (h >> 15)


#: the same hash in C where the native module is built (~0.1 µs a key instead of ~1)
_murmur2 = avro_native.murmur2 if avro_native.available else murmur2


#: librdkafka's name for the partitioner ``partition_of`` computes (Java's default): every
#: producer of a record whose partition a worker predicts sets it (payers, the pipeline, Faust)
PARTITIONER = "murmur2_random"


def partition_of(key: bytes, partitions: int) -> int:
    """The partition the producers' murmur2 partitioner (``PARTITIONER``, librdkafka's
    ``murmur2_random`` and Java's default for keyed records) puts ``key`` in."""
    return (_murmur2(key) & 0x7FFFFFFF) % partitions


def tune_collector() -> None:
    """The cyclic collector as the engine thread wants it, once its start-up is done: the
    objects made so far (the registers, caches, modules: millions, long-lived) are frozen out
    of its walks, and young collections are rarer (the hot path allocates fast). The
    stores' values leave it when they are written (``avro_native.untrack``)."""
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


#: a Fed's fields, read through ``operator.itemgetter``: ``self[i]`` on a tuple subclass
#: goes through its generic ``__getitem__`` slot (CPython gives subclasses of tuple the
#: Python-level one), 168 ns an accessor call compiled against 72 this way
_TOPIC, _PARTITION, _KEY, _VALUE, _HEADERS = map(operator.itemgetter, range(5))


class Fed(tuple):
    """A record as a fused stage sees it when it is applied at once (``Output.feed``): the
    consumed message's accessors, with no offset yet (-1). A tuple (topic, partition, key,
    value, headers): built twice per payment, where a class of five slots cost ~1,700
    instructions to build."""

    __slots__ = ()

    def topic(self) -> str:
        return _TOPIC(self)

    def partition(self) -> int:
        return _PARTITION(self)

    def offset(self) -> int:
        return -1

    def key(self) -> bytes:
        return _KEY(self)

    def value(self) -> bytes:
        return _VALUE(self)

    def headers(self) -> list | None:
        return _HEADERS(self)


class Output:
    """Where stages write: output records, held until the engine releases them (``release``)
    once the state changes they depend on are delivered; the stores' changelog records,
    written at once through a producer of their own (``write_state``, ``flush_state``).
    Delivery failures are collected for the commit."""

    #: default size of the hand-over memos: above what back-pressure lets two stages run
    #: ahead (2 x Engine.max_backlog); an engine with a larger max_backlog sizes its own
    HAND_OVER_MAX = 20_000

    def __init__(self, config: dict):
        self._producer = self._new_producer(config)
        #: the changelogs' own producer: the engine waits for what it sent, not for the outputs.
        #: It sends at once: the outputs wait for it (``Engine._settle``)
        self._state_producer = self._new_producer({**config, "linger.ms": 1})
        self.errors: list[str] = []
        #: output records written and not yet produced: (produce's positional arguments, headers)
        self.unreleased: list[tuple[tuple, list | None]] = []
        #: output records whose state changes are written to the changelogs, and produced once
        #: those are delivered (``await_state``, ``release_awaiting``)
        self.awaiting: list[tuple[tuple, list | None]] = []
        self.assigned: dict[str, set[int]] = {}  # the engine's partitions, for stages that fuse hops
        self.partition_counts: dict[str, int] = {}  # of the topics stages feed (the engine sets them)
        self._handed: OrderedDict[bytes, tuple[str, dict]] = OrderedDict()
        #: per fed topic: records handed over or applied, not yet read. (A defaultdict, not a
        #: Counter: Counter defines ``__delitem__`` in Python, which routes every ``+= 1`` on
        #: it through a Python-level ``__setitem__`` look-up, ~3 times a dict's cost)
        self.handed: defaultdict[str, int] = defaultdict(int)
        #: per topic this worker reads: records it wrote whose work is done (applied when their
        #: fused partition opened, or ``write_settled``), not yet read back: reading one back is
        #: a skip, not work
        self.settled: defaultdict[str, int] = defaultdict(int)
        #: per fed topic: records applied at once, published with the other counts
        self.applied_locally = metrics.tally(metrics.APPLIED_LOCALLY)
        #: fed topic -> the handler of the stage reading it, when that stage's records may be
        #: applied at once (``Stage.fuse``); the partitions where that is safe now (``open_fusion``)
        self.fused: dict[str, Callable] = {}
        self.fusing: set[tuple[str, int]] = set()
        #: fused partitions not open yet -> the end offset each had at the assignment, which
        #: this worker reads past before the partition opens (the engine's barrier)
        self.opening: dict[tuple[str, int], int] = {}
        self._applied: OrderedDict[bytes, tuple[str, int]] = OrderedDict()  # value -> (topic, copies applied)
        #: records fed to a fused partition not open yet, in feed order: applied when it opens
        #: (not bounded here: back-pressure bounds them, and none may be dropped, see open_fusion)
        self._waiting: dict[tuple[str, int], list[tuple[bytes, bytes, list | None, dict]]] = {}
        self._current: tuple[bytes, dict] | None = None  # the record being applied at once (``take``)
        self._on_delivered: list[Callable[[], None]] = []  # ``when_delivered``

    def _new_producer(self, config: dict):
        # delivery reports for failures only: no Python callback per delivered record
        return confluent_kafka.Producer({**config, "delivery.report.only.error": True, "on_delivery": self._delivered})

    def _delivered(self, err, msg) -> None:
        if err is not None:
            self.errors.append(f"{msg.topic()}: {err}")

    def write(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
              headers: list | None = None) -> None:
        """Write an output record. It is held here and produced by ``release`` (or ``flush``),
        which the engine calls once the state changes of the batch are delivered."""
        # positional arguments for produce(): it parses each keyword at ~0.5 µs, and this runs
        # ~8 times per payment event
        self.unreleased.append(((topic, value, key) if partition is None else (topic, value, key, partition), headers))

    def release(self) -> int:
        """Produce every held output record (awaiting its state, then written since), in the
        order they were written; returns how many."""
        released = self.release_awaiting()
        held = self.unreleased
        if held:
            self.unreleased = []
            self._produce_all(held)
        return released + len(held)

    def await_state(self) -> None:
        """The output records written so far wait for the changelog records written so far
        (``state_delivered``), then ``release_awaiting``."""
        self.awaiting += self.unreleased
        self.unreleased = []

    def release_awaiting(self) -> int:
        """Produce the output records that waited for their state (``await_state``)."""
        held = self.awaiting
        if not held:
            return 0
        self.awaiting = []
        self._produce_all(held)
        return len(held)

    def _produce_all(self, held: list[tuple[tuple, list | None]]) -> None:
        producer = self._producer
        produce = producer.produce
        for args, headers in held:
            try:
                if headers is None:
                    produce(*args)
                else:
                    produce(*args, headers=headers)
            except BufferError:  # the local queue is full: retried while librdkafka sends
                self._produce(producer, args, headers)
        producer.poll(0)

    def drop_held(self) -> None:
        """Forget the held output records (the engine failed, or lost its partitions): the
        records that caused them are not committed, and are processed again."""
        self.unreleased.clear()
        self.awaiting.clear()
        self._on_delivered.clear()

    def state_delivered(self) -> bool:
        """Whether every changelog record written so far is delivered, without waiting; raises
        if any was not (or if any record failed before)."""
        producer = self._state_producer
        producer.poll(0)  # serves the failures' delivery reports, which count in len() until then
        self._raise_if_undelivered(0)
        return len(producer) == 0

    def write_state(self, topic: str, key: bytes, value: bytes, partition: int) -> None:
        """Write a changelog record (``Store.flush``): produced at once, by the state's producer."""
        try:  # ~2 records an event: produce() itself, without _produce's loop and argument tuple
            self._state_producer.produce(topic, value, key, partition)
        except BufferError:  # the local queue is full: retried while librdkafka sends
            self._produce(self._state_producer, (topic, value, key, partition), None)

    @staticmethod
    def _produce(producer, args: tuple, headers: list | None) -> None:
        while True:
            try:
                if headers is None:
                    producer.produce(*args)
                else:
                    producer.produce(*args, headers=headers)
                return
            except BufferError:  # local queue full: let librdkafka send, then retry
                producer.poll(0.01)

    def feed(self, topic: str, key: bytes, value: bytes, decoded: dict, headers: list | None = None) -> None:
        """Hand a record to a later stage of this pipeline. Its partition is chosen here, as
        the producer's partitioner would:

        * a partition another worker reads: the record is written to the topic (the hop);
        * a partition this worker reads whose stage is fused and open (``open_fusion``): the
          stage's handler is applied at once, and the record is **not written**. The topic is
          an internal repartition: what it carries is only what another worker must do.
          Nothing is lost by not writing it: what the record changed is written with the
          stage's state at the next settle or commit, before the offset of the input that
          caused it is committed (a crash before that commit makes the input processed
          again, which feeds the record again). If the handler fails, the record is written and processed when
          read, like any other (dead-lettered there);
        * else (a stage not fused, or a partition not open yet) the record is written, and
          the decoded record is remembered so that the stage need not decode it when it
          reads it (``take``); a partition not open yet applies it when it opens.

        Written and not yet read back, it counts as that stage's backlog (back-pressure).
        Bounded: beyond ``HAND_OVER_MAX`` the oldest are dropped (then decoded, or applied
        again, idempotently, when read)."""
        count = self.partition_counts.get(topic)
        if count is None:  # partition count not known (yet): written like any record, decoded when read
            self.write(topic, key, value, headers=headers)
            return
        partition = partition_of(key, count)
        mine = partition in self.assigned.get(topic, ())
        fused = mine and topic in self.fused
        if fused and (topic, partition) in self.fusing \
                and self._run_fused(topic, partition, key, value, headers, decoded):
            self.applied_locally[topic] += 1
            return
        self.write(topic, key, value, partition, headers)
        if not mine:
            return
        if fused and (topic, partition) in self.opening:
            self._waiting.setdefault((topic, partition), []).append((value, key, headers, decoded))
            self.handed[topic] += 1
            return
        memo = self._handed
        if value not in memo:
            memo[value] = (topic, decoded)
            self.handed[topic] += 1
            if len(memo) > self.HAND_OVER_MAX:
                self.handed[memo.popitem(last=False)[1][0]] -= 1

    def take(self, value: bytes) -> dict | None:
        """The decoded form of ``value`` if this process fed it (see ``feed``), once."""
        current = self._current
        if current is not None and current[0] is value:
            self._current = None
            return current[1]
        item = self._handed.pop(value, None)
        if item is None:
            return None
        self.handed[item[0]] -= 1
        return item[1]

    def _run_fused(self, topic: str, partition: int, key: bytes, value: bytes, headers: list | None,
                   decoded: dict) -> bool:
        """Apply the fused stage's handler to a record fed to ``partition``; False if it
        failed (logged)."""
        self._current = (value, decoded)
        try:
            self.fused[topic](Fed((topic, partition, key, value, headers)), self)
        except Exception:
            log.exception("%s[%d]: applying a fed record at once failed; it is processed when read",
                          topic, partition)
            return False
        finally:
            self._current = None
        return True

    def _apply(self, topic: str, partition: int, key: bytes, value: bytes, headers: list | None,
               decoded: dict) -> None:
        """Apply the fused stage to a record that was written while its partition was not open
        yet (``open_fusion``): skipped when read back (``arrived``), or, if it failed,
        processed then like any other record (dead-lettered there)."""
        if not self._run_fused(topic, partition, key, value, headers, decoded):
            return
        applied = self._applied
        copies = applied.get(value)
        applied[value] = (topic, copies[1] + 1 if copies else 1)
        self.handed[topic] += 1
        self.settled[topic] += 1
        if len(applied) > self.HAND_OVER_MAX:  # applied again when read (idempotent), not skipped
            dropped_topic, dropped = applied.popitem(last=False)[1]
            self.handed[dropped_topic] -= dropped
            self.settled[dropped_topic] -= dropped

    def arrived(self, value: bytes) -> bool:
        """Whether a record just read was already applied at once (``feed``): then it is
        only marked processed. Each applied copy is skipped once."""
        copies = self._applied.get(value)
        if copies is None:
            return False
        topic, n = copies
        if n == 1:
            del self._applied[value]
        else:
            self._applied[value] = (topic, n - 1)
        self.handed[topic] -= 1
        self.settled[topic] -= 1
        return True

    def open_fusion(self, topic: str, partition: int) -> None:
        """From now on records fed to ``partition`` are applied at once (and not written).
        Called when this worker has read everything the partition held at its assignment:
        what is still unread there was fed by this worker since (written while the partition
        was opening, and applied here first, in feed order: none
        may be missing, or a later event of a payment could be applied before an earlier
        one), or by another worker's ingest, whose records are other payments than this
        worker's (each payment's events come from one payer partition, read by one worker)."""
        self.fusing.add((topic, partition))
        self.opening.pop((topic, partition), None)
        for value, key, headers, decoded in self._waiting.pop((topic, partition), ()):
            self.handed[topic] -= 1
            self._apply(topic, partition, key, value, headers, decoded)

    def forget_handed(self) -> None:
        """After a rebalance: what was handed over may now be another worker's to read."""
        self._handed.clear()
        self._applied.clear()
        self._waiting.clear()
        self.fusing.clear()
        self.opening.clear()
        self.handed.clear()
        self.settled.clear()

    def write_settled(self, topic: str, key: bytes, value: bytes, headers: list | None = None) -> None:
        """Write a record to a topic this worker reads whose work this worker has already
        done (a payee's own citizen view, folded by the ledger stage): the stage reading it
        only skips it (and calls ``read_settled``), so back-pressure does not count it as
        work still to do."""
        self.write(topic, key, value, None, headers)
        self.settled[topic] += 1

    def read_settled(self, topic: str) -> None:
        """A record written with ``write_settled`` was read back and skipped. (One another
        worker wrote before a rebalance may be read too: never counted below zero.)"""
        if self.settled[topic] > 0:
            self.settled[topic] -= 1

    def poll(self) -> None:
        """Serve librdkafka's callbacks (delivery failures) without waiting."""
        self._producer.poll(0)
        self._state_producer.poll(0)

    def flush_state(self, timeout: float = 60.0) -> None:
        """Wait until every changelog record written so far is delivered; raise if any was not
        (or if any record failed before)."""
        self._raise_if_undelivered(self._state_producer.flush(timeout))

    def flush(self, timeout: float = 60.0) -> None:
        """Produce what is held, and wait until every record written so far (changelogs and
        outputs) is delivered; raise if any was not. Then call the ``when_delivered``
        callbacks."""
        self.flush_state(timeout)
        self.release()
        self._raise_if_undelivered(self._producer.flush(timeout))
        if self._on_delivered:
            callbacks, self._on_delivered = self._on_delivered, []
            for callback in callbacks:
                try:
                    callback()
                except Exception:  # a callback never stops the engine
                    log.exception("a callback after delivery failed")

    def when_delivered(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the engine's thread once every record written so far, state
        and outputs, is delivered: after the next ``flush`` (the engine's next commit, within
        its commit interval). Never if that flush fails, or the held records are dropped."""
        self._on_delivered.append(callback)

    def _raise_if_undelivered(self, left: int) -> None:
        if left or self.errors:
            errors, self.errors = self.errors, []
            raise confluent_kafka.KafkaException(
                f"{left} record(s) still queued, {len(errors)} not delivered{': ' + errors[0] if errors else ''}")


@dataclass
class Stage:
    name: str
    topics: list[str]
    handle: Callable  # (msg, out) -> None
    on_error: Callable  # (msg, exc, out) -> None: an unexpected failure on one record (dead letter)
    #: topics this stage writes that the engine reads again: while their backlog here is
    #: above ``Engine.max_backlog`` the stage's own inputs wait (back-pressure)
    feeds: list[str] = field(default_factory=list)
    #: the engine may apply this stage to a record when this worker feeds it, instead of
    #: writing it and applying it when read back (``Output.feed``): for a stage whose topics
    #: are internal repartitions, that is idempotent per record, and whose
    #: order matters only between records fed from one input partition (the ledger, and the
    #: account rule: each payment's events are fed to either by the one worker that reads
    #: them, in order)
    fuse: bool = False


@dataclass
class Engine:
    bootstrap: str
    group: str
    stages: list[Stage]
    stores: list[Store]
    consumer_config: dict = field(default_factory=dict)
    producer_config: dict = field(default_factory=dict)
    batch_size: int = 2000
    poll_timeout: float = 0.05
    commit_interval: float = 0.5
    lag_interval: float = 5.0
    #: records a stage may have fed this worker and not yet had read back before it is held
    #: (TKONTO_PIPELINE_MAX_BACKLOG); what ingest hands over must still be in the memo when read
    max_backlog: int = 8_000
    #: records of held stages kept here, read but not processed; beyond it their inputs are paused
    max_held: int = 10_000
    trim_interval: float = 30.0
    #: called on the engine thread after every assignment (and with {} after a revoke)
    on_assigned: Callable | None = None

    def __post_init__(self):
        self._by_topic = {t: s for s in self.stages for t in s.topics}
        self._done: dict[tuple[str, int], int] = {}  # next offset to commit, per input partition
        self._stop = threading.Event()
        self.assigned: dict[str, set[int]] = {}
        self.rebalancing = True
        self.failed: BaseException | None = None
        self.processed = 0
        self.lag_by_topic: dict[str, int] = {}
        self._held: set[str] = set()  # stages over their backlog: their records wait in _waiting
        self._waiting: dict[str, deque] = {s.name: deque() for s in self.stages}  # read, not processed, in order
        self._paused: set[str] = set()  # stages whose inputs are also paused in the consumer (max_held)
        self._unread: dict[str, int] = {}  # fed topics: records not yet read here (refreshed every 0.25 s)
        self._fed = sorted({t for s in self.stages for t in s.feeds})
        #: where the engine thread's time goes: reading, the stages, writing the state and
        #: producing the held outputs after a batch (``_settle``), waiting there for the state's
        #: delivery, and the commit's flush and offset commit
        self.seconds = {"consume": 0.0, "process": 0.0, "settle": 0.0, "wait": 0.0, "commit": 0.0}
        self._reported = (0, dict(self.seconds))

    # -- lifecycle ------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Consume until ``stop()``; raises (after logging) on a failure that must not be
        committed past, e.g. an undeliverable output record."""
        self.out = Output({"bootstrap.servers": self.bootstrap, "linger.ms": 100, "acks": "all",
                           "partitioner": PARTITIONER, "queue.buffering.max.messages": 1_000_000,
                           "queue.buffering.max.kbytes": 32768,
                           "enable.idempotence": False, **self.producer_config})
        self.out.fused = {t: s.handle for s in self.stages if s.fuse for t in s.topics}
        self.out.HAND_OVER_MAX = max(Output.HAND_OVER_MAX, 2 * (self.max_backlog + self.batch_size))
        self.consumer = Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": self.group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "partition.assignment.strategy": "range",
            "fetch.wait.max.ms": 100, "fetch.min.bytes": 65536, "queued.max.messages.kbytes": 32768, **self.consumer_config})
        self.consumer.subscribe(sorted(self._by_topic), on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)
        last_commit = last_lag = last_pressure = last_trim = time.monotonic()
        clock = time.perf_counter
        try:
            while not self._stop.is_set():
                t0 = clock()
                # outputs waiting for their state: no waiting here for records (``_settle``)
                waits = not self.out.awaiting
                batch = next_batch(self.consumer, self.batch_size, self.poll_timeout if waits else 0)
                t1 = clock()
                if batch:
                    self._process(batch)
                if self._released:
                    self._process_released()
                self.seconds["consume"] += t1 - t0
                self.seconds["process"] += clock() - t1
                self._settle()  # counts its own time, as the commit does
                now = time.monotonic()
                # idle (a poll that waited found nothing): what was done is committed now, not
                # up to commit_interval later (the end of a backlog, a lull in the stream)
                if now - last_commit >= self.commit_interval or (waits and not batch and self._done):
                    self.commit()
                    last_commit = now
                if now - last_pressure >= 0.25:
                    self._unread = self._backlog(self._fed)
                    if self.out.opening:
                        self._pass_barriers()
                    last_pressure = now
                self._apply_back_pressure()
                if now - last_trim >= self.trim_interval:
                    release_freed_memory()
                    last_trim = now
                if now - last_lag >= self.lag_interval:
                    self.lag_by_topic = self.lag()
                    self._report(now - last_lag)
                    last_lag = now
            self.commit()
            self._announce({})
        except BaseException as exc:
            self.failed = exc  # from here on nothing is committed: not even by the revoke in close()
            self._done = {}
            self.out.drop_held()  # nor is anything held released
            log.exception("pipeline engine stopped")
            raise
        finally:
            try:
                self.consumer.close()  # leaves the group: partitions move at once
            finally:
                for store in self.stores:
                    store.keep_only(())

    # -- the hot path -----------------------------------------------------------------
    def _process(self, batch: list) -> None:
        waiting, held, handle, by_topic = self._waiting, self._held, self._handle, self._by_topic
        handled = 0
        for msg in batch:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", err)
                continue
            stage = by_topic[msg.topic()]
            queue = waiting[stage.name]
            if queue or stage.name in held:  # over its backlog, or earlier records still wait: in order
                queue.append(msg)
            else:
                handle(msg, stage)
                handled += 1
        self.processed += handled
        metrics.publish_pending()

    @property
    def _released(self) -> bool:
        """Whether a stage that is no longer held has records waiting."""
        return any(queue and name not in self._held for name, queue in self._waiting.items())

    def _process_released(self) -> None:
        """Process the waiting records of stages no longer held, oldest first, up to a batch
        (the rest wait for the next round, after the next back-pressure check)."""
        handled = 0
        for stage in self.stages:
            queue = self._waiting[stage.name]
            if stage.name in self._held:
                continue
            while queue and handled < self.batch_size:
                self._handle(queue.popleft(), stage)
                handled += 1
        self.processed += handled
        metrics.publish_pending()

    def _handle(self, msg, stage: Stage) -> None:
        """Process one record of ``stage``: its handler, or a skip for a record already applied
        when fed; a failure goes to the stage's dead-letter handler."""
        out, topic, partition = self.out, msg.topic(), msg.partition()
        if topic in out.fused and out.arrived(msg.value()):  # fed while opening: applied when it opened
            self._done[(topic, partition)] = msg.offset() + 1
            return
        try:
            stage.handle(msg, out)
        except Exception as exc:  # never crash on input: the record goes to the dead-letter topic
            log.exception("%s: unexpected failure on %s[%d]@%d", stage.name, topic, partition, msg.offset())
            stage.on_error(msg, exc, out)
        self._done[(topic, partition)] = msg.offset() + 1
        if out.opening and (topic, partition) in out.opening:
            self._pass_barrier(topic, partition, msg.offset() + 1)

    # -- fused stages -----------------------------------------------------------------
    def _set_barriers(self, assigned: dict[str, set[int]]) -> None:
        """At an assignment: each fused input partition opens (``Output.open_fusion``) once
        this worker has read what it holds now (records fed before, e.g. by the worker that
        read the same payer partition until this rebalance). When the end offsets cannot be
        read, nothing is fused until the next assignment: records are processed when read."""
        tps = [TopicPartition(t, p) for t in self.out.fused for p in sorted(assigned.get(t, ()))]
        try:
            ends = true_end_offsets(self.bootstrap, reported_ends(self.consumer, tps)) if tps else {}
        except confluent_kafka.KafkaException as exc:
            log.warning("no end offsets for the fused partitions (%s): their records are applied when read", exc)
            ends = {}
        self.out.opening = ends
        for (t, p), end in list(ends.items()):
            if end <= 0:
                self.out.open_fusion(t, p)

    def _pass_barrier(self, topic: str, partition: int, position: int) -> None:
        if position >= self.out.opening[(topic, partition)]:
            self.out.open_fusion(topic, partition)

    def _pass_barriers(self) -> None:
        """Partitions whose read position is already past their barrier (nothing to read).
        Not while their stage has records waiting (held): read is not processed, and those
        records open the partition when they are (``_handle``)."""
        tps = [TopicPartition(t, p) for t, p in self.out.opening if not self._waiting[self._by_topic[t].name]]
        for tp in self.consumer.position(tps) if tps else []:
            if tp.offset >= 0:
                self._pass_barrier(tp.topic, tp.partition, tp.offset)

    def _settle(self, always: bool = False) -> None:
        """After a batch: outputs are produced only once the state changes that caused them
        are delivered to the changelogs. A crash before that loses only outputs whose inputs
        are not committed: processed again, they find the state and re-emit the same records.

        Pipelined, so that the engine does not wait for the broker after every batch: the
        state changes of a batch are written now, its outputs wait (``Output.await_state``),
        and they are produced at the next settle, when the state is delivered (by then it
        usually is; if not, that settle waits). The run loop does not block on an empty
        consumer while outputs wait. With no held output the state waits for the commit
        (``always``: everything is written, delivered and produced), where several changes
        of one value are written once."""
        out = self.out
        started, waited = time.perf_counter(), 0.0
        if out.awaiting:
            if not out.state_delivered():
                waited += self._wait_for_state()
            out.release_awaiting()
        if always or out.unreleased:
            written = 0
            for store in self.stores:
                written += store.flush(out.write_state)
            if always:
                if written:
                    waited += self._wait_for_state()
                out.release()
            elif written:
                out.await_state()
            else:  # no state changed since the last delivered: nothing to wait for
                out.release()
        self.seconds["wait"] += waited
        self.seconds["settle"] += time.perf_counter() - started - waited

    def _wait_for_state(self) -> float:
        """Wait until the changelog records written so far are delivered; returns how long it took."""
        started = time.perf_counter()
        self.out.flush_state()
        return time.perf_counter() - started

    def commit(self) -> None:
        """Write the changed state, flush every output, then commit what was processed."""
        if self.failed is not None:
            raise RuntimeError("the engine failed; nothing more is committed") from self.failed
        out = self.out
        if not (self._done or out.unreleased or out.awaiting):
            out.poll()
            return
        self._settle(always=True)
        started = time.perf_counter()
        out.flush()
        if self._done:  # else outputs only (of fed records applied when their partition opened)
            offsets = [TopicPartition(t, p, o) for (t, p), o in self._done.items()]
            self._done = {}
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
                metrics.LAST_COMMIT.set(time.time())
            except confluent_kafka.KafkaException as exc:  # e.g. a rebalance in between: records are redone, idempotently
                log.warning("offset commit failed (%s); the records will be processed again", exc)
        self.seconds["commit"] += time.perf_counter() - started

    # -- rebalancing ------------------------------------------------------------------
    def _on_assign(self, consumer, partitions) -> None:
        assigned: dict[str, set[int]] = {}
        for tp in partitions:
            assigned.setdefault(tp.topic, set()).add(tp.partition)
        self.rebalancing = True
        restore(self.stores, assigned, self.bootstrap)
        self.out.forget_handed()
        self.out.partition_counts = self._partition_counts(self._fed)
        self.assigned = self.out.assigned = assigned
        self._set_barriers(assigned)
        self._drop_waiting()  # a new assignment starts with nothing held or paused
        self._announce(assigned)
        self.rebalancing = False
        log.info("pipeline assigned %d partitions", len(partitions))

    def _announce(self, assigned: dict[str, set[int]]) -> None:
        if self.on_assigned is not None:
            try:
                self.on_assigned(self, assigned)
            except Exception:
                log.exception("could not announce the assignment")

    def _on_revoke(self, consumer, partitions) -> None:
        self.rebalancing = True
        if self.failed is not None:  # closing after a failure: commit nothing, keep nothing
            self._forget()
            return
        try:
            self.commit()
        except Exception:
            log.exception("could not commit before the rebalance; the records will be processed again")
            self._forget()
        self.out.forget_handed()
        self._drop_waiting()  # not committed: the next owner reads them again
        self.assigned = self.out.assigned = {}
        self._announce({})

    def _on_lost(self, consumer, partitions) -> None:
        self.rebalancing = True
        self._forget()
        self.assigned = self.out.assigned = {}

    def _forget(self) -> None:
        """Drop uncommitted progress and all state: it is restored from the changelogs and
        the records since the last commit are processed again (by whichever worker owns them)."""
        self._done = {}
        self.out.drop_held()
        self.out.forget_handed()
        self._drop_waiting()
        for store in self.stores:
            store.keep_only(())

    def _drop_waiting(self) -> None:
        """Forget the records that wait (read, never processed, so never committed)."""
        for queue in self._waiting.values():
            queue.clear()
        self._held.clear()
        self._paused.clear()

    def _partition_counts(self, topics: list[str]) -> dict[str, int]:
        counts = {}
        for topic in topics:
            try:
                meta = self.consumer.list_topics(topic, timeout=10).topics.get(topic)
            except confluent_kafka.KafkaException as exc:
                log.warning("no metadata for %s (%s): its records are decoded when read", topic, exc)
                continue
            if meta is not None and meta.error is None and meta.partitions:
                counts[topic] = len(meta.partitions)
        return counts

    # -- observation ------------------------------------------------------------------
    def lag(self) -> dict[str, int]:
        """Messages not yet processed, per topic: not yet read (from the high watermarks of
        the last fetches), or read and waiting while their stage is held."""
        try:
            behind = self._behind(self.consumer.assignment(), unread_from_start=True)
        except Exception:
            return {}
        for queue in self._waiting.values():
            for msg in queue:
                behind[msg.topic()] = behind.get(msg.topic(), 0) + 1
        return behind

    def _behind(self, tps: list[TopicPartition], unread_from_start: bool) -> dict[str, int]:
        """Records not yet read, per topic: cached high watermark minus this consumer's
        position. A partition not read yet counts from offset 0, or not at all."""
        behind: dict[str, int] = {}
        for tp in self.consumer.position(tps) if tps else []:
            try:
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except Exception:
                continue
            if high is None or high < 0 or (tp.offset < 0 and not unread_from_start):
                continue
            behind[tp.topic] = behind.get(tp.topic, 0) + max(0, high - max(tp.offset, 0))
        return behind

    def _apply_back_pressure(self) -> None:
        """Hold a stage while what it fed this worker is far behind, release it at half.
        Behind: records handed over and not yet taken (exact, after every batch), or not yet
        read by the last measure (``_unread``, for what is not handed over), whichever is more;
        of those, the settled ones (``Output.settled``: applied when their fused partition
        opened, or written settled) are not work still to do, and count only against a bound of their own, as
        many again: the memo that lets their read-back be skipped holds each until then.
        (Counted as work, they held ingest while the engine had nothing left to do but wait
        for its own records to come back from the broker: docs/performance.md, "781a54b → e01922c".)

        A held stage's records are still read, and wait here in order (``_waiting``); only
        beyond ``max_held`` of them are its inputs paused in the consumer, until half have
        been processed. Pausing alone cost a fetch at every release: librdkafka drops what
        it has prefetched of a paused partition, and the engine's polls came back empty
        ~20 % of the time at saturation (docs/performance.md).

        Without back-pressure, ingest read a whole 1M-record backlog before the ledger got
        its share: buffers filled, memory grew and every event waited behind the backlog."""
        handed, unread, held, settled = self.out.handed, self._unread, self._held, self.out.settled
        for stage in self.stages:
            if not stage.feeds:
                continue
            name = stage.name
            done = sum(settled[t] for t in stage.feeds)
            backlog = max(done, sum(max(0, max(handed[t], unread.get(t, 0)) - settled[t]) for t in stage.feeds))
            if name in held:
                if backlog <= self.max_backlog // 2:
                    held.discard(name)
            elif backlog > self.max_backlog:
                held.add(name)
                log.debug("%s held: backlog %d (%d settled)", name, backlog, done)
            waiting = len(self._waiting[name])
            if name not in self._paused:
                if waiting > self.max_held:
                    self._pause(stage, True)
            elif waiting <= self.max_held // 2:
                self._pause(stage, False)

    def _pause(self, stage: Stage, pause: bool) -> None:
        inputs = [TopicPartition(t, p) for t in stage.topics for p in self.assigned.get(t, ())]
        if not inputs:
            return
        if pause:
            self.consumer.pause(inputs)
            self._paused.add(stage.name)
            log.debug("%s paused: %d records wait", stage.name, len(self._waiting[stage.name]))
        else:
            self.consumer.resume(inputs)
            self._paused.discard(stage.name)

    def _backlog(self, topics: list[str]) -> dict[str, int]:
        tps = [TopicPartition(t, p) for t in topics for p in self.assigned.get(t, ())]
        return self._behind(tps, unread_from_start=False)

    def _report(self, interval: float) -> None:
        """Progress in the log: records per second and where the time went since the last report."""
        processed, seconds = self._reported
        count = self.processed - processed
        if count:
            spent = {k: (v - seconds[k]) / interval for k, v in self.seconds.items()}
            log.info("pipeline: %d records in %.0f s (%.0f/s); time in consume %.0f%%, process %.0f%%, "
                     "settle %.0f%% (+ %.0f%% waiting for the state's delivery), commit %.0f%%; lag %s",
                     count, interval, count / interval, 100 * spent["consume"], 100 * spent["process"],
                     100 * spent["settle"], 100 * spent["wait"], 100 * spent["commit"], sum(self.lag_by_topic.values()))
        self._reported = (self.processed, dict(self.seconds))

    def partitions(self) -> int:
        return sum(len(p) for p in self.assigned.values())


def release_freed_memory() -> None:
    """Give memory Python has freed back to the OS (glibc keeps it otherwise: ~75 MB after
    the 1M-event run). A no-op where glibc's malloc_trim is not available."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
