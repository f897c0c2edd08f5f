"""streams/state.py: the state partitions (memory and RocksDB), the once-per-commit flush,
and the restore from compacted changelog topics on the real embedded broker."""
from __future__ import annotations

import datetime as dt
import itertools

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.account import new_account, register
from streams.codec import default_codec
from streams.state import MemoryPartition, RocksPartition, Store, restore
from tests.conftest import STOCKHOLM, payment

SCHEMA = "se.tkonto.state.Account"
NOW = dt.datetime(2026, 11, 24, 9, 30, 1, 250000, tzinfo=dt.timezone.utc)  # millisecond precision
PAYEES = ["198112189876", "197503020417", "196001010005", "195512240011", "200001019999", "199902281234"]
_topics = itertools.count(1)


class CountingCodec:
    """The real codec, counting how often values are encoded and decoded."""

    def __init__(self):
        self.codec = default_codec()
        self.encoded: list[str] = []
        self.decoded = 0

    def encode(self, name, record):
        self.encoded.append(record["payee_id"])
        return self.codec.encode(name, record)

    def decode(self, data, expect=None):
        self.decoded += 1
        return self.codec.decode(data, expect=expect)


def account(payee: str, payments: int = 1) -> dict:
    """A real Account with ``payments`` registered payments."""
    acc = new_account(payee)
    for i in range(payments):
        outcome = register(acc, payment(STOCKHOLM, payee, f"p{i}", "PLANNED", 100_00 * (i + 1)), NOW)
        assert outcome.kind == "REGISTERED"
    return acc


def encoded(acc: dict) -> bytes:
    return default_codec().encode(SCHEMA, acc)


def make_store(backend: str, tmp_path, codec=None, cache_size: int = 2000, name: str = "accounts") -> Store:
    return Store(name, SCHEMA, "src", "src-changelog", codec or CountingCodec(), backend, str(tmp_path), cache_size)


def make_partition(kind: str, tmp_path, codec: CountingCodec, cache_size: int = 100):
    decode = lambda raw: codec.decode(raw, expect=SCHEMA)  # noqa: E731
    if kind == "memory":
        return MemoryPartition(decode)
    return RocksPartition(decode, tmp_path / "rocks" / "0", cache_size)


class Recorder:
    def __init__(self):
        self.calls: list[tuple[str, bytes, bytes, int]] = []

    def __call__(self, topic, key, value, partition):
        self.calls.append((topic, key, value, partition))


BACKENDS = ["memory://", "rocksdb://"]
KINDS = ["memory", "rocks"]


# -- partitions ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_put_marks_dirty_and_get_returns_the_same_object(kind, tmp_path):
    codec = CountingCodec()
    part = make_partition(kind, tmp_path, codec)
    a, b = account(PAYEES[0]), account(PAYEES[1], 2)
    assert part.dirty == set()
    part.put(b"a", a)
    part.put(b"b", b)
    assert part.dirty == {b"a", b"b"}
    assert part.get(b"a") is a
    assert part.get(b"b") is b
    assert part.get(b"missing") is None
    assert codec.decoded == 0 and codec.encoded == []


@pytest.mark.parametrize("kind", KINDS)
def test_loaded_bytes_are_decoded_lazily_once(kind, tmp_path):
    codec = CountingCodec()
    part = make_partition(kind, tmp_path, codec)
    original = account(PAYEES[0], 3)
    part.load(b"a", encoded(original))
    part.load(b"b", encoded(account(PAYEES[1])))
    assert codec.decoded == 0
    first = part.get(b"a")
    assert first == original and first is not original
    assert codec.decoded == 1
    assert part.get(b"a") is first  # kept decoded
    assert codec.decoded == 1
    assert part.dirty == set()  # loading and reading change nothing to write


@pytest.mark.parametrize("kind", KINDS)
def test_peek_does_not_mutate(kind, tmp_path):
    codec = CountingCodec()
    part = make_partition(kind, tmp_path, codec)
    original = account(PAYEES[0], 2)
    part.load(b"a", encoded(original))
    assert part.peek(b"a") == original
    assert part.peek(b"a") == original
    assert part.peek(b"missing") is None
    assert codec.decoded == 2  # nothing was kept decoded by peek
    assert part.dirty == set()
    value = part.get(b"a")
    assert codec.decoded == 3  # the first get still had to decode
    assert part.get(b"a") is value and codec.decoded == 3


def test_rocks_peek_does_not_touch_the_lru_order(tmp_path):
    codec = CountingCodec()
    part = RocksPartition(lambda raw: codec.decode(raw, expect=SCHEMA), tmp_path / "p", cache_size=2)
    for key, payee in zip((b"a", b"b", b"c"), PAYEES):
        part.load(key, encoded(account(payee)))
    a = part.get(b"a")
    part.get(b"b")
    assert codec.decoded == 2
    assert part.peek(b"a") is a  # the cached value, not a fresh decode; a stays the least recently used
    assert codec.decoded == 2
    part.get(b"c")  # evicts a, not b
    assert codec.decoded == 3
    assert list(part._cache) == [b"b", b"c"]
    again = part.get(b"a")
    assert codec.decoded == 4 and again == a and again is not a  # evicted: decoded afresh


@pytest.mark.parametrize("kind", KINDS)
def test_load_none_deletes(kind, tmp_path):
    codec = CountingCodec()
    part = make_partition(kind, tmp_path, codec)
    part.load(b"a", encoded(account(PAYEES[0])))
    part.load(b"b", encoded(account(PAYEES[1])))
    assert part.get(b"a")["payee_id"] == PAYEES[0]  # decoded (and cached) before the delete
    part.load(b"a", None)
    part.load(b"never-there", None)
    assert part.get(b"a") is None
    assert part.peek(b"a") is None
    assert part.get(b"b")["payee_id"] == PAYEES[1]
    assert len(part) == 1


def test_memory_len_through_put_load_and_delete(tmp_path):
    part = MemoryPartition(lambda raw: default_codec().decode(raw, expect=SCHEMA))
    assert len(part) == 0
    part.put(b"a", account(PAYEES[0]))
    part.put(b"a", account(PAYEES[0], 2))
    part.put(b"b", account(PAYEES[1]))
    assert len(part) == 2
    part.persist(b"a", encoded(account(PAYEES[0], 2)))
    assert len(part) == 2
    part.load(b"c", encoded(account(PAYEES[2])))
    part.load(b"a", encoded(account(PAYEES[0], 3)))  # replaces
    assert len(part) == 3
    part.load(b"b", None)
    part.load(b"b", None)
    assert len(part) == 2


def test_rocks_len_through_persist_load_and_delete(tmp_path):
    part = RocksPartition(lambda raw: default_codec().decode(raw, expect=SCHEMA), tmp_path / "p", 10)
    assert len(part) == 0
    part.persist(b"a", encoded(account(PAYEES[0])))
    part.persist(b"a", encoded(account(PAYEES[0], 2)))  # the same key again
    part.persist(b"b", encoded(account(PAYEES[1])))
    assert len(part) == 2
    part.load(b"c", encoded(account(PAYEES[2])))
    part.load(b"a", encoded(account(PAYEES[0], 3)))  # replaces
    assert len(part) == 3
    part.load(b"b", None)
    part.load(b"b", None)  # deleting twice counts once
    part.load(b"zz", None)
    assert len(part) == 2
    assert part.get(b"a")["sequence"] == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_store_len_counts_values_after_flush(backend, tmp_path):
    store = make_store(backend, tmp_path)
    store.partitions = {0: store._new_partition(0), 1: store._new_partition(1)}
    for i, payee in enumerate(PAYEES[:5]):
        store.put(i % 2, payee.encode(), account(payee))
        store.put(i % 2, payee.encode(), account(payee, 2))
    store.flush(Recorder())
    assert [len(store.partitions[0]), len(store.partitions[1])] == [3, 2]
    assert store.size() == 5


# -- the flush ---------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_flush_writes_each_changed_key_once_with_its_latest_value(backend, tmp_path):
    codec = CountingCodec()
    store = make_store(backend, tmp_path, codec)
    store.partitions = {0: store._new_partition(0), 3: store._new_partition(3)}
    a0, b0, a3 = PAYEES[0].encode(), PAYEES[1].encode(), PAYEES[2].encode()
    for n in range(1, 6):  # five changes of one key between two commits
        store.put(0, a0, account(PAYEES[0], n))
    store.put(0, b0, account(PAYEES[1]))
    acc = account(PAYEES[2])
    store.put(3, a3, acc)
    register(acc, payment(STOCKHOLM, PAYEES[2], "late", "EXECUTED", 7_00), NOW)  # changed in place, put again
    store.put(3, a3, acc)

    write = Recorder()
    assert store.flush(write) == 3
    assert sorted(codec.encoded) == sorted(PAYEES[:3])  # each changed value encoded exactly once
    assert sorted((t, k, p) for t, k, _, p in write.calls) == sorted(
        [("src-changelog", a0, 0), ("src-changelog", b0, 0), ("src-changelog", a3, 3)])
    values = {(k, p): default_codec().decode(v, expect=SCHEMA) for _, k, v, p in write.calls}
    assert values[(a0, 0)] == account(PAYEES[0], 5)
    assert values[(a0, 0)]["sequence"] == 5
    assert values[(b0, 0)] == account(PAYEES[1])
    assert values[(a3, 3)] == acc and values[(a3, 3)]["sequence"] == 2
    assert store.partitions[0].dirty == set() and store.partitions[3].dirty == set()

    again = Recorder()
    assert store.flush(again) == 0
    assert again.calls == [] and len(codec.encoded) == 3

    # the flushed values are still there, the same objects
    assert store.get(3, a3) is acc
    assert store.get(0, a0) == account(PAYEES[0], 5)
    store.put(0, b0, account(PAYEES[1], 4))
    third = Recorder()
    assert store.flush(third) == 1
    assert [(t, k, p) for t, k, _, p in third.calls] == [("src-changelog", b0, 0)]


def test_rocks_never_evicts_a_dirty_value_before_the_flush(tmp_path):
    codec = CountingCodec()
    store = make_store("rocksdb://", tmp_path, codec, cache_size=2)
    store.partitions = {0: store._new_partition(0)}
    values = {p.encode(): account(p, 2) for p in PAYEES}
    for key, value in values.items():
        store.put(0, key, value)
    part = store.partitions[0]
    assert len(part._cache) == 6  # over its size: nothing was persisted yet
    for key, value in values.items():
        assert store.get(0, key) is value  # none lost (RocksDB holds nothing yet)
    assert codec.decoded == 0
    assert store.flush(Recorder()) == 6
    assert len(part) == 6
    for key, value in values.items():  # all persisted: readable after eviction
        assert part.peek(key) == value
    store.put(0, b"new", account(PAYEES[0], 1) | {"payee_id": "new"})
    assert len(part._cache) == 2  # the next use evicts down to the size


def test_rocks_cache_shrinks_to_its_size_at_the_flush(tmp_path):
    store = make_store("rocksdb://", tmp_path, cache_size=2)
    store.partitions = {0: store._new_partition(0)}
    for p in PAYEES:
        store.put(0, p.encode(), account(p))
    store.flush(Recorder())
    assert len(store.partitions[0]._cache) == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_keep_only_drops_the_other_partitions(backend, tmp_path):
    store = make_store(backend, tmp_path)
    store.partitions = {p: store._new_partition(p) for p in range(4)}
    store.restored_to = {0: 5, 1: 6, 2: 7, 3: 8}
    for p in range(4):
        store.put(p, b"k", account(PAYEES[p]))
    store.flush(Recorder())
    store.keep_only([1, 3, 9])
    assert sorted(store.partitions) == [1, 3]
    assert store.restored_to == {1: 6, 3: 8}
    assert store.get(1, b"k") == account(PAYEES[1])
    if backend == "rocksdb://":
        assert sorted(d.name for d in (tmp_path / "state" / "accounts").iterdir()) == ["1", "3"]
    store.keep_only(())
    assert store.partitions == {} and store.restored_to == {} and store.size() == 0


# -- restore from the changelog on the real broker ----------------------------------------
def create_compacted(bootstrap: str, partitions: int) -> str:
    name = f"state-test-{next(_topics)}-changelog"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1, config={"cleanup.policy": "compact"})],
                                      operation_timeout=30).values():
        future.result(30)
    return name


def produce(bootstrap: str, topic: str, records: list[tuple[int, bytes, bytes | None]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    failures = []
    for partition, key, value in records:
        producer.produce(topic, value, key, partition=partition,
                         on_delivery=lambda err, msg: failures.append(err) if err else None)
    assert producer.flush(30) == 0
    assert failures == []


@pytest.mark.broker
@pytest.mark.parametrize("backend", BACKENDS)
def test_restore_applies_the_latest_value_per_key_then_only_the_tail(broker, backend, tmp_path):
    changelog = create_compacted(broker.bootstrap, 3)
    store = Store("accounts", SCHEMA, "payments", changelog, default_codec(), backend, str(tmp_path), 2)
    k1, k2, k3, k4 = (p.encode() for p in PAYEES[:4])
    produce(broker.bootstrap, changelog, [
        (0, k1, encoded(account(PAYEES[0], 1))),
        (0, k2, encoded(account(PAYEES[1], 1))),
        (0, k1, encoded(account(PAYEES[0], 2))),
        (0, k3, encoded(account(PAYEES[2], 1))),
        (0, k3, None),  # tombstone
        (1, k1, encoded(account(PAYEES[3], 4))),  # the same key, another partition
        (2, k4, encoded(account(PAYEES[3], 3))),  # not assigned here
        (2, k2, encoded(account(PAYEES[3], 3))),
    ])

    assert restore([store], {"payments": {0, 1}, "other": {2}}, broker.bootstrap) == 6
    assert sorted(store.partitions) == [0, 1]
    assert store.restored_to == {0: 5, 1: 1}
    assert store.get(0, k1) == account(PAYEES[0], 2)
    assert store.get(0, k2) == account(PAYEES[1], 1)
    assert store.get(0, k3) is None
    assert store.get(0, k4) is None
    assert store.get(1, k1) == account(PAYEES[3], 4)
    assert store.get(1, k2) is None
    assert [len(store.partitions[0]), len(store.partitions[1])] == [2, 1]
    assert store.partitions[0].dirty == set() and store.partitions[1].dirty == set()

    produce(broker.bootstrap, changelog, [
        (0, k2, encoded(account(PAYEES[1], 3))),
        (0, k4, encoded(account(PAYEES[3], 1))),
        (1, k1, None),
        (2, k1, encoded(account(PAYEES[0], 9))),  # still not assigned
    ])
    assert restore([store], {"payments": {0, 1}}, broker.bootstrap) == 3  # the tail only
    assert store.restored_to == {0: 7, 1: 2}
    assert store.get(0, k1) == account(PAYEES[0], 2)
    assert store.get(0, k2) == account(PAYEES[1], 3)
    assert store.get(0, k4) == account(PAYEES[3], 1)
    assert store.get(1, k1) is None
    assert store.size() == 3

    assert restore([store], {"payments": {0, 1}}, broker.bootstrap) == 0  # nothing new

    # partition 1 moves away, partition 2 arrives: read from its start
    assert restore([store], {"payments": {0, 2}}, broker.bootstrap) == 3
    assert sorted(store.partitions) == [0, 2]
    assert store.restored_to == {0: 7, 2: 3}
    assert store.get(2, k4) == account(PAYEES[3], 3)
    assert store.get(2, k1) == account(PAYEES[0], 9)
    assert store.get(0, k4) == account(PAYEES[3], 1)  # kept: not read again


@pytest.mark.broker
def test_restore_of_a_store_with_nothing_assigned_drops_its_partitions(broker, tmp_path):
    changelog = create_compacted(broker.bootstrap, 2)
    store = Store("accounts", SCHEMA, "payments", changelog, default_codec())
    produce(broker.bootstrap, changelog, [(0, b"k", encoded(account(PAYEES[0])))])
    assert restore([store], {"payments": {0, 1}}, broker.bootstrap) == 1
    assert store.restored_to == {0: 1, 1: 0}
    assert restore([store], {"other": {0}}, broker.bootstrap) == 0
    assert store.partitions == {} and store.restored_to == {}


@pytest.mark.broker
def test_restore_of_a_kept_partition_reapplies_own_writes_harmlessly(broker, tmp_path):
    """Documented: a partition that stays is read from where this worker last read it,
    its own writes since included; they are the values it holds."""
    changelog = create_compacted(broker.bootstrap, 1)
    store = Store("accounts", SCHEMA, "payments", changelog, default_codec())
    assert restore([store], {"payments": {0}}, broker.bootstrap) == 0
    for p in PAYEES:
        store.put(0, p.encode(), account(p))
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    assert store.flush(lambda t, k, v, p: producer.produce(t, v, k, partition=p)) == 6
    assert producer.flush(30) == 0
    del producer
    held = {p: store.get(0, p.encode()) for p in PAYEES}
    assert restore([store], {"payments": {0}}, broker.bootstrap) == 6
    assert {p: store.get(0, p.encode()) for p in PAYEES} == held
    assert store.restored_to == {0: 6}
