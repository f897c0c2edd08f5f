"""streams/state.py: the state partitions (memory and RocksDB), the once-per-commit flush,
and the restore from compacted changelog topics on the real embedded broker."""
from __future__ import annotations

import datetime as dt
import itertools

import pytest
from confluent_kafka import Producer

from streams.account import _entry, new_account, register
from streams.citizen_view import citizen_item, fold, item_key
from streams.codec import default_codec
from streams.state import Entries, MemoryPartition, RocksPartition, Store, restore
from tests.broker_topics import create_topics
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


@pytest.mark.parametrize("backend", BACKENDS)
def test_store_peek_reads_a_held_partition_and_answers_none_for_one_not_held(backend, tmp_path):
    store = make_store(backend, tmp_path)
    store.partitions = {1: store._new_partition(1)}
    key = PAYEES[0].encode()
    store.put(1, key, account(PAYEES[0], 3))
    assert store.peek(1, key) == account(PAYEES[0], 3)
    assert store.peek(1, PAYEES[1].encode()) is None  # held, no such key
    assert store.peek(0, key) is None  # another worker's partition: no KeyError
    with pytest.raises(KeyError):
        store.get(0, key)  # the engine's own reads expect their partitions


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


@pytest.mark.parametrize("backend", BACKENDS)
def test_flush_takes_the_written_values_out_of_the_cyclic_collector(backend, tmp_path):
    """A value lives long: once written, its containers leave the collector (avro_native.untrack),
    whose walks over ~1 million of them took ~5-9 % of a worker's time. A change puts a
    container back (a dict tracks itself again); the next flush takes it out again."""
    import gc

    store = make_store(backend, tmp_path)
    store.partitions[0] = store._new_partition(0)
    key = PAYEES[0].encode()
    acc = account(PAYEES[0], 3)
    store.put(0, key, acc)
    assert gc.is_tracked(acc["payments"]) and all(gc.is_tracked(s) for s in acc["payments"].values())
    write = Recorder()
    assert store.flush(write) == 1
    containers = [acc, acc["payments"], acc["balances"], *acc["payments"].values(), *acc["balances"].values()]
    assert not any(gc.is_tracked(c) for c in containers)
    assert default_codec().decode(write.calls[0][2], expect=SCHEMA) == acc

    register(acc, payment(STOCKHOLM, PAYEES[0], "late", "EXECUTED", 7_00), NOW)  # changed in place
    assert gc.is_tracked(acc["payments"])
    store.put(0, key, acc)
    again = Recorder()
    assert store.flush(again) == 1
    assert not any(gc.is_tracked(c) for c in [acc, acc["payments"], *acc["payments"].values()])
    gc.collect()
    assert store.get(0, key) is acc and acc["sequence"] == 4
    assert default_codec().decode(again.calls[0][2], expect=SCHEMA) == acc


def test_flush_of_entries_takes_the_whole_view_out_of_the_cyclic_collector(tmp_path):
    import gc

    store = view_store("memory://", tmp_path)
    store.partitions[0] = store._new_partition(0)
    viewer = PAYEES[1].encode()
    view = fold_all(None, items_of(PAYEES[1], 3))
    store.put(0, viewer, view)
    assert store.flush(Recorder()) == 3
    assert not any(gc.is_tracked(c) for c in [view, view["payments"], *view["payments"].values()])


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
    create_topics(bootstrap, (name, partitions, True))
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

    assert not store.serves(0)  # nothing restored yet: no answers for its keys
    assert restore([store], {"payments": {0, 1}, "other": {2}}, broker.bootstrap) == 6
    assert sorted(store.partitions) == [0, 1]
    assert [store.serves(p) for p in (0, 1, 2)] == [True, True, False]
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
    assert [store.serves(p) for p in (0, 1, 2)] == [True, False, True]
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
    assert not store.serves(0) and not store.serves(1)


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


# -- per-entry changelog records (Entries: the citizen views) ---------------------------
VIEW = "se.tkonto.state.CitizenView"
VIEW_ENTRIES = Entries("payments", "se.tkonto.state.CitizenViewItem")


def items_of(payee: str, payments: int, event_type: str = "PLANNED") -> dict[str, dict]:
    """Real CitizenItems of ``payments`` registered payments, by their view key."""
    acc = account(payee, payments)
    if event_type != "PLANNED":
        for i in range(payments):
            outcome = register(acc, payment(STOCKHOLM, payee, f"p{i}", event_type, 100_00 * (i + 1)), NOW)
            assert outcome.kind == "REGISTERED"
    items = {}
    for state_key, state in acc["payments"].items():
        applied = state["applied"][state["status"]]
        entry = _entry(payee, payment(STOCKHOLM, payee, state_key.split(":")[1], state["status"],
                                      state["amount_ore"]), applied)
        item = citizen_item(entry, STOCKHOLM.name, payee)
        items[item_key(item)] = item
    return items


def view_store(backend: str, tmp_path, changelog: str = "views-changelog", cache_size: int = 2000) -> Store:
    return Store("citizen-views", VIEW, "citizen", changelog, default_codec(), backend, str(tmp_path), cache_size,
                 VIEW_ENTRIES)


def fold_all(view: dict | None, items: dict[str, dict]) -> dict:
    for item in items.values():
        view = fold(view, item)
    return view


def decoded_entries(calls) -> dict[bytes, dict]:
    codec = default_codec()
    return {key: codec.decode(value, expect="se.tkonto.state.CitizenViewItem")["item"] for _, key, value, _ in calls}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_store_with_entries_writes_only_the_entries_that_changed(backend, tmp_path):
    store = view_store(backend, tmp_path)
    store.partitions[0] = store._new_partition(0)
    viewer = PAYEES[0].encode()
    planned = items_of(PAYEES[0], 3)
    view = None
    for name, item in planned.items():
        view = fold(view, item)
        store.put(0, viewer, view, name)
    first = Recorder()
    assert store.flush(first) == 3
    assert decoded_entries(first.calls) == {viewer + b"\x00" + name.encode(): item for name, item in planned.items()}
    assert {(t, p) for t, _, _, p in first.calls} == {("views-changelog", 0)}

    executed = items_of(PAYEES[0], 3, "EXECUTED")
    changed = list(executed)[1]
    view = fold(view, executed[changed])
    store.put(0, viewer, view, changed)
    second = Recorder()
    assert store.flush(second) == 1  # one entry of three: not the whole view
    assert decoded_entries(second.calls) == {viewer + b"\x00" + changed.encode(): executed[changed]}
    assert store.flush(Recorder()) == 0

    store.put(0, viewer, view)  # without saying which entry changed: every entry is written
    everything = Recorder()
    assert store.flush(everything) == 3
    assert decoded_entries(everything.calls) == {viewer + b"\x00" + name.encode(): item
                                                 for name, item in view["payments"].items()}


def test_entries_are_only_for_values_that_are_one_map(tmp_path):
    with pytest.raises(ValueError, match=r"one map field 'payments'; se.tkonto.state.Account has \['payee_id'"):
        Store("accounts", SCHEMA, "payments", "c", default_codec(), entries=Entries("payments", "x"))


def test_rocks_reads_a_value_back_from_its_entries(tmp_path):
    store = view_store("rocksdb://", tmp_path, cache_size=1)
    store.partitions[0] = store._new_partition(0)
    views = {p: fold_all(None, items_of(p, n)) for p, n in zip(PAYEES[:3], (1, 4, 2))}
    for p, view in views.items():
        store.put(0, p.encode(), view)
    assert store.flush(Recorder()) == 7
    part = store.partitions[0]
    assert len(part._cache) == 1 and len(part) == 3
    for p, view in views.items():  # two of three come from RocksDB, assembled from their entries
        assert part.peek(p.encode()) == view
        assert store.get(0, p.encode()) == view
    assert store.get(0, PAYEES[3].encode()) is None
    assert store.get(0, PAYEES[0].encode()[:-1]) is None  # a key that is a prefix of another's entries


@pytest.mark.broker
@pytest.mark.parametrize("backend", BACKENDS)
def test_restore_of_entries_gives_the_views_as_they_were_flushed(broker, backend, tmp_path):
    changelog = create_compacted(broker.bootstrap, 2)
    writer = view_store("memory://", tmp_path / "w", changelog)
    writer.partitions[0] = writer._new_partition(0)
    writer.partitions[1] = writer._new_partition(1)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})

    def write(topic, key, value, partition):
        producer.produce(topic, value, key, partition=partition)

    a, b, c = (p.encode() for p in PAYEES[:3])
    planned, executed = items_of(PAYEES[0], 4), items_of(PAYEES[0], 4, "EXECUTED")
    # an older worker wrote b's view whole; this one adds entries to it
    old_b = fold_all(None, items_of(PAYEES[1], 2))
    produce(broker.bootstrap, changelog, [(0, b, default_codec().encode(VIEW, old_b))])
    writer.partitions[0].load(b, default_codec().encode(VIEW, old_b))
    view_a = fold_all(None, planned)
    writer.put(0, a, view_a)
    assert writer.flush(write) == 4
    for name in list(executed)[:2]:  # two of a's payments paid, in a later commit
        view_a = fold(view_a, executed[name])
        writer.put(0, a, view_a, name)
    newer_b = fold(writer.get(0, b), items_of(PAYEES[1], 3)[f"{STOCKHOLM.payer_id}:p2"])
    writer.put(0, b, newer_b, f"{STOCKHOLM.payer_id}:p2")
    view_c = fold_all(None, items_of(PAYEES[2], 1))
    writer.put(1, c, view_c)
    assert writer.flush(write) == 4
    assert producer.flush(30) == 0

    reader = view_store(backend, tmp_path / "r", changelog, cache_size=1)
    assert restore([reader], {"citizen": {0, 1}}, broker.bootstrap) == 1 + 4 + 2 + 1 + 1
    assert reader.get(0, a) == view_a and [i["status"] for i in view_a["payments"].values()] == \
        ["EXECUTED", "EXECUTED", "PLANNED", "PLANNED"]
    assert reader.get(0, b) == newer_b and len(newer_b["payments"]) == 3
    assert reader.get(1, c) == view_c
    assert reader.get(0, c) is None and reader.get(1, a) is None
    assert [len(reader.partitions[0]), len(reader.partitions[1])] == [2, 1]

    # the same worker keeps its partitions and reads its own writes of the second commit
    # again (4 records, from offset 5 of partition 0): what it holds decoded stays as it is
    writer.restored_to = {0: 5, 1: 0}
    assert restore([writer], {"citizen": {0, 1}}, broker.bootstrap) == 4
    assert [writer.get(0, a), writer.get(0, b), writer.get(1, c)] == [view_a, newer_b, view_c]


@pytest.mark.parametrize("backend", BACKENDS)
def test_tombstones_delete_an_entry_or_a_value_with_all_its_entries(backend, tmp_path):
    store = view_store(backend, tmp_path, cache_size=1)
    store.partitions[0] = store._new_partition(0)
    codec = default_codec()
    items = items_of(PAYEES[0], 3)
    names = list(items)
    viewer = PAYEES[0].encode()
    for name, item in items.items():
        store.load(0, viewer + b"\x00" + name.encode(), codec.encode(VIEW_ENTRIES.schema, {"item": item}))
    store.load(0, PAYEES[1].encode(), codec.encode(VIEW, fold_all(None, items_of(PAYEES[1], 1))))
    store.load(0, viewer + b"\x00" + names[0].encode(), None)
    assert store.get(0, viewer) == {"payments": {n: items[n] for n in names[1:]}}
    store.load(0, viewer, None)  # the whole value: its entries go with it
    assert store.get(0, viewer) is None and len(store.partitions[0]) == 1
    store.load(0, viewer + b"\x00" + names[2].encode(), codec.encode(VIEW_ENTRIES.schema, {"item": items[names[2]]}))
    assert store.get(0, viewer) == {"payments": {names[2]: items[names[2]]}}  # nothing older comes back
    assert len(store.partitions[0]) == 2


def test_a_view_read_while_a_restore_adds_to_it_is_read_as_it_was(tmp_path):
    """The web server's thread may read a view whose entries the engine's restore is still
    loading: the read sees the entries there when it began, and does not fail."""
    store = view_store("memory://", tmp_path)
    store.partitions[0] = part = store._new_partition(0)
    items = items_of(PAYEES[0], 3)
    names = list(items)
    real = store._codec
    viewer = PAYEES[0].encode()

    def load(name):
        store.load(0, viewer + b"\x00" + name.encode(), real.encode(VIEW_ENTRIES.schema, {"item": items[name]}))

    load(names[0])
    load(names[1])

    class RestoreMeanwhile:
        def decode(self, data, expect=None):
            store._codec = real
            load(names[2])  # the engine's thread, between two entries of the read
            return real.decode(data, expect=expect)

    store._codec = RestoreMeanwhile()
    assert part.peek(viewer) == {"payments": {n: items[n] for n in names[:2]}}
    assert store.get(0, viewer) == {"payments": items}
