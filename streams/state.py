"""Stage state: key -> value per partition, backed by a compacted changelog topic.

A ``Store`` belongs to one stage and is partitioned like the stage's source topic: the
state of source partition *p* is written to changelog partition *p*, so whichever worker is
assigned *p* restores exactly that partition. A changed value is encoded and written once
per flush, however often it changed in between: the engine flushes after a batch that wrote
outputs (which are produced only once the state is delivered) and at every commit, before
the inputs' offsets are committed. Values are kept decoded in memory for the
hot path (``memory://``), or as Avro bytes in RocksDB with a bounded cache of decoded
values (``rocksdb://``, for state larger than memory). A value restored from the changelog
stays bytes until it is first read.

A store whose values are one map of records that only grow (``Entries``: the citizen
views) writes each changed entry as a record of its own instead of the whole value: a
change then costs one entry's bytes, however many the value holds.
"""
from __future__ import annotations

import logging
import shutil
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from confluent_kafka import Consumer, TopicPartition

from .avro_native import untrack
from .codec import Codec
from .observe import reported_ends, true_end_offsets

log = logging.getLogger(__name__)

Write = Callable[[str, bytes, bytes, int], None]  # topic, key, value, partition

#: between a value's key and an entry's key, in the changelog keys of a store with ``Entries``
ENTRY_SEP = b"\x00"


def entry_key(key: bytes, name: str) -> bytes:
    """The changelog key of entry ``name`` of the value at ``key`` (``Entries``)."""
    return key + ENTRY_SEP + name.encode()


@dataclass(frozen=True)
class Entries:
    """The values of a store are ``{field: map}`` and nothing else, and an entry of the map
    is never removed, only added or replaced. Each changed entry is then written to the
    changelog as a record of its own: key = the value's key + ``ENTRY_SEP`` + the entry's
    key, value = a ``schema`` record ``{"item": entry}``. A value is the union of its
    entries' latest records (and of a whole record written before entries were). A value's
    key never holds ``ENTRY_SEP``: tkonto's keys are identity numbers.

    Only for such values: without Kafka transactions, a crash can leave some of a commit's
    records written and others not. An entry written without the others is still a value
    the map could have had (each entry stands alone, and the records that changed it are
    read again and fold idempotently). A value with more than its map, such as an account
    whose sequence and balances follow from its payments, could be restored inconsistent
    that way: accounts and rule states are written whole."""

    field: str
    schema: str  # a record with one field, "item": the map's value type


class _Pieces:
    """A value of a store with ``Entries``, restored and not decoded yet: its whole record
    (bytes; or its decoded value, when this worker held it; or None) and its entries' records."""

    __slots__ = ("whole", "entries")

    def __init__(self, whole):
        self.whole = whole
        self.entries: dict[str, bytes] = {}


class MemoryPartition:
    """Decoded values in a dict; bytes until first read after a restore."""

    def __init__(self, decode: Callable[[bytes | _Pieces], Any]):
        self._data: dict[bytes, Any] = {}
        self._decode = decode
        self.dirty: set[bytes] = set()
        self.changed_entries: dict[bytes, set[str | None]] = {}  # with Entries: what to write (None: all)

    def get(self, key: bytes) -> Any:
        value = self._data.get(key)
        if type(value) is bytes or type(value) is _Pieces:
            value = self._data[key] = self._decode(value)
        return value

    def peek(self, key: bytes) -> Any:
        """Read from another thread (the web server): nothing is changed."""
        value = self._data.get(key)
        return self._decode(value) if type(value) is bytes or type(value) is _Pieces else value

    def put(self, key: bytes, value: Any) -> None:
        self._data[key] = value
        self.dirty.add(key)

    def persist(self, key: bytes, encoded: bytes) -> None:
        pass  # the dict holds the value itself

    def persist_entry(self, key: bytes, name: str, encoded: bytes) -> None:
        pass

    def trim(self) -> None:
        pass

    def load(self, key: bytes, encoded: bytes | None) -> None:
        if encoded is None:
            self._data.pop(key, None)
        else:
            self._data[key] = encoded

    def load_entry(self, key: bytes, name: str, encoded: bytes | None) -> None:
        pieces = self._data.get(key)
        if type(pieces) is not _Pieces:
            pieces = self._data[key] = _Pieces(pieces)
        if encoded is None:
            pieces.entries.pop(name, None)
        else:
            pieces.entries[name] = encoded

    def __len__(self) -> int:
        return len(self._data)

    def close(self) -> None:
        self._data.clear()


class RocksPartition:
    """Avro bytes in RocksDB, with the most recently used values kept decoded."""

    #: memtable per partition: RocksDB's default (64 MiB, several per db, 16 dbs per worker)
    #: kept ~1.3 GB of writes in memory in the 1M-event run
    WRITE_BUFFER = 2 << 20
    #: one block cache for every partition's database (each had its own 32 MiB: ~510 MB)
    BLOCK_CACHE = 16 << 20
    _block_cache = None

    @classmethod
    def _table_options(cls):
        from rocksdict import BlockBasedOptions, Cache

        if cls._block_cache is None:
            cls._block_cache = Cache(cls.BLOCK_CACHE)
        table = BlockBasedOptions()
        table.set_block_cache(cls._block_cache)
        return table

    def __init__(self, decode: Callable[[bytes | _Pieces], Any], path: Path, cache_size: int,
                 entries: bool = False):
        from rocksdict import Options, Rdict, WriteOptions

        shutil.rmtree(path, ignore_errors=True)  # the changelog is the truth: start empty, restore
        path.parent.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.set_write_buffer_size(self.WRITE_BUFFER)
        options.set_max_write_buffer_number(2)
        options.set_block_based_table_factory(self._table_options())
        self._db = Rdict(str(path), options)
        no_wal = WriteOptions()
        no_wal.disable_wal = True  # a crash loses the directory anyway: it is rebuilt from the changelog
        self._db.set_write_options(no_wal)
        self._path = path
        self._cache: OrderedDict[bytes, Any] = OrderedDict()
        self._cache_size = cache_size
        self._decode = decode
        self._count = 0
        self.dirty: set[bytes] = set()  # changed since the last flush: kept in the cache until persisted
        self.changed_entries: dict[bytes, set[str | None]] = {}  # with Entries: what to write (None: all)
        #: with Entries, a value's entries are kept under their changelog keys, and its own key
        #: holds a whole record written before entries were, or b"" (none)
        self._entries = entries

    def _read(self, key: bytes) -> bytes | _Pieces | None:
        raw = self._db.get(key)
        if not self._entries or raw is None:
            return raw
        pieces = _Pieces(raw or None)
        prefix = key + ENTRY_SEP
        it = self._db.iter()
        it.seek(prefix)
        while it.valid():
            found = it.key()
            if not found.startswith(prefix):
                break
            pieces.entries[found[len(prefix):].decode()] = it.value()
            it.next()
        return pieces

    def get(self, key: bytes) -> Any:
        value = self._cache.get(key)
        if value is not None:
            self._cache.move_to_end(key)
            return value
        raw = self._read(key)
        if raw is None:
            return None
        value = self._decode(raw)
        self._remember(key, value)
        return value

    def peek(self, key: bytes) -> Any:
        """Read without changing the cache's order (the web server's thread; the flush)."""
        value = self._cache.get(key)  # a changed value not yet persisted is only here
        if value is not None:
            return value
        raw = self._read(key)
        return self._decode(raw) if raw is not None else None

    def _remember(self, key: bytes, value: Any) -> None:
        self._cache[key] = value
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            oldest = next(iter(self._cache))
            if oldest in self.dirty:  # not persisted yet: the cache may exceed its size until the flush
                break
            del self._cache[oldest]

    def put(self, key: bytes, value: Any) -> None:
        self._remember(key, value)
        self.dirty.add(key)

    def persist(self, key: bytes, encoded: bytes) -> None:
        if key not in self._db:
            self._count += 1
        self._db[key] = encoded

    def _hold(self, key: bytes) -> None:
        """Count the value at ``key`` once it has an entry: its own key holds b"" until a
        whole record is written there."""
        if key not in self._db:
            self._count += 1
            self._db[key] = b""

    def persist_entry(self, key: bytes, name: str, encoded: bytes) -> None:
        self._hold(key)
        self._db[entry_key(key, name)] = encoded

    def trim(self) -> None:
        """Back to the cache's size once the dirty values are persisted (oldest first)."""
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def load(self, key: bytes, encoded: bytes | None) -> None:
        self._cache.pop(key, None)
        exists = key in self._db
        if encoded is None:  # the value is gone, with its entries
            if exists:
                del self._db[key]
                self._count -= 1
            if self._entries:
                self._db.delete_range(key + ENTRY_SEP, key + b"\x01")
        else:
            self._count += not exists
            self._db[key] = encoded

    def load_entry(self, key: bytes, name: str, encoded: bytes | None) -> None:
        self._cache.pop(key, None)
        if encoded is None:
            self._db.delete(entry_key(key, name))
        else:
            self.persist_entry(key, name, encoded)

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        self._cache.clear()
        self._db.close()
        shutil.rmtree(self._path, ignore_errors=True)


class Store:
    """One stage's state, per partition of its source topic."""

    def __init__(self, name: str, schema: str, source_topic: str, changelog_topic: str, codec: Codec,
                 backend: str = "memory://", data_dir: str = "", cache_size: int = 250, entries: Entries | None = None):
        self.name, self.schema, self.source_topic, self.changelog_topic = name, schema, source_topic, changelog_topic
        self._codec = codec
        self._backend = backend
        self._dir = Path(data_dir or ".") / "state" / name
        self._cache_size = cache_size
        if entries is not None:
            fields = [f["name"] for f in codec.schema(schema).parsed["fields"]]
            if fields != [entries.field]:
                raise ValueError(f"store {name}: per-entry changelog records need values of one map field "
                                 f"{entries.field!r}; {schema} has {fields} (see state.Entries)")
        self.entries = entries
        self.partitions: dict[int, MemoryPartition | RocksPartition] = {}
        self.restored_to: dict[int, int] = {}  # changelog offset each partition is restored up to
        #: the partitions restored to their changelog's end (``serves``); replaced, never
        #: changed in place: the web server's thread reads it
        self.serving: frozenset[int] = frozenset()

    def _decode(self, raw: bytes | _Pieces) -> Any:
        if type(raw) is bytes:
            return self._codec.decode(raw, expect=self.schema)
        field = self.entries.field
        whole = raw.whole
        if whole is None:
            value = {field: {}}
        elif type(whole) is bytes:
            value = self._codec.decode(whole, expect=self.schema)
        else:  # the decoded value this worker held: copied, it may be shared with the web server
            value = {**whole, field: dict(whole[field])}
        entries = value[field]
        # a copy first: the web server's thread may read a value that a restore is adding to
        for name, encoded in tuple(raw.entries.items()):
            entries[name] = self._codec.decode(encoded, expect=self.entries.schema)["item"]
        return value

    def _new_partition(self, partition: int):
        if self._backend == "rocksdb://":
            return RocksPartition(self._decode, self._dir / str(partition), self._cache_size, self.entries is not None)
        return MemoryPartition(self._decode)

    def get(self, partition: int, key: bytes) -> Any:
        part = self.partitions[partition]
        if type(part) is MemoryPartition:  # its get without a call: 3-4 per payment event
            value = part._data.get(key)
            if type(value) is not bytes and type(value) is not _Pieces:
                return value
        return part.get(key)

    def serves(self, partition: int) -> bool:
        """Whether this worker holds ``partition`` restored, so that a key missing from it
        is missing, not elsewhere or not read yet (the web server's thread asks)."""
        return partition in self.serving

    def peek(self, partition: int, key: bytes) -> Any:
        """Read from another thread (the web server): nothing is changed; None if this
        worker does not hold ``partition`` (or the key)."""
        part = self.partitions.get(partition)
        return part.peek(key) if part is not None else None

    def put(self, partition: int, key: bytes, value: Any, entry: str | None = None) -> None:
        """Keep ``value``; it is written to the changelog at the next ``flush``. With
        ``Entries``: ``entry`` is the key of the one entry that changed (None: any may have)."""
        part = self.partitions[partition]
        if type(part) is MemoryPartition:  # its put without a call
            part._data[key] = value
            part.dirty.add(key)
        else:
            part.put(key, value)
        if self.entries is not None:
            part.changed_entries.setdefault(key, set()).add(entry)

    def load(self, partition: int, key: bytes, encoded: bytes | None) -> None:
        """Apply one changelog record (``restore``)."""
        part = self.partitions[partition]
        if self.entries is not None:
            value_key, sep, name = key.partition(ENTRY_SEP)
            if sep:
                part.load_entry(value_key, name.decode(), encoded)
                return
        part.load(key, encoded)

    def flush(self, write: Write) -> int:
        """Encode every value (with ``Entries``: every entry) changed since the last flush
        and write it to the changelog (the engine flushes before it produces the outputs
        those changes caused, and before it commits offsets).
        Returns how many records were written."""
        written = 0
        for p, part in self.partitions.items():
            if not part.dirty:
                continue
            dirty, part.dirty = part.dirty, set()
            if self.entries is not None:
                written += self._flush_entries(p, part, dirty, write)
            else:
                encode, schema, topic = self._codec.encode, self.schema, self.changelog_topic
                # a memory partition's dict read here, and nothing to persist (~2 records an event)
                data = part._data if type(part) is MemoryPartition else None
                for key in dirty:
                    value = data.get(key) if data is not None else None
                    if value is None or type(value) is bytes or type(value) is _Pieces:
                        value = part.peek(key)
                    encoded = encode(schema, value)
                    untrack(value)  # long-lived: out of the cyclic collector's way (avro_native.untrack)
                    if data is None:
                        part.persist(key, encoded)
                    write(topic, key, encoded, p)
                written += len(dirty)
            part.trim()
        return written

    def _flush_entries(self, p: int, part, dirty: set[bytes], write: Write) -> int:
        changed, part.changed_entries = part.changed_entries, {}
        field, schema, encode, topic = self.entries.field, self.entries.schema, self._codec.encode, self.changelog_topic
        written = 0
        for key in dirty:
            value = part.peek(key)
            entries = value[field]
            names = changed.get(key) or {None}
            for name in (entries if None in names else names):
                encoded = encode(schema, {"item": entries[name]})
                part.persist_entry(key, name, encoded)
                write(topic, entry_key(key, name), encoded, p)
                written += 1
            untrack(value)
        return written

    def keep_only(self, partitions: Iterable[int]) -> None:
        """Forget the partitions this worker no longer owns."""
        keep = set(partitions)
        self.serving = self.serving & keep
        for p in [p for p in self.partitions if p not in keep]:  # flushed before a revoke
            self.partitions.pop(p).close()
            self.restored_to.pop(p, None)

    def size(self) -> int:
        return sum(len(p) for p in self.partitions.values())


def restore(stores: list[Store], assigned: dict[str, set[int]], bootstrap: str, timeout: float = 120.0) -> int:
    """Bring each store's assigned partitions up to date from its changelog, from where
    this worker last read it: a partition that stays here is read only from there, which
    includes this worker's own writes since (re-applying them is harmless, they are the
    values it holds). Returns the number of changelog records applied."""
    wanted: dict[tuple[str, int], tuple[Store, int]] = {}
    for store in stores:
        partitions = assigned.get(store.source_topic, set())
        store.keep_only(partitions)
        for p in partitions:
            if p not in store.partitions:
                store.partitions[p] = store._new_partition(p)
            wanted[(store.changelog_topic, p)] = (store, p)
    if not wanted:
        return 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "tkonto-restore", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "fetch.max.bytes": 64 << 20})
    applied = 0
    started = time.monotonic()
    try:
        tps = [TopicPartition(t, p) for t, p in wanted]
        ends = true_end_offsets(bootstrap, reported_ends(consumer, tps, 30))
        remaining = {}
        for (topic, p), (store, _) in wanted.items():
            start = store.restored_to.get(p, 0)
            if ends[(topic, p)] > start:
                remaining[(topic, p)] = ends[(topic, p)]
            else:
                store.restored_to[p] = max(start, ends[(topic, p)])
        if remaining:
            consumer.assign([TopicPartition(t, p, wanted[(t, p)][0].restored_to.get(p, 0)) for t, p in remaining])
        deadline = time.monotonic() + timeout
        while remaining:
            if time.monotonic() > deadline:
                raise RuntimeError(f"changelog restore incomplete after {timeout}s: {sorted(remaining)[:3]}")
            for msg in consumer.consume(10_000, 0.2):
                if msg.error():
                    continue
                tp = (msg.topic(), msg.partition())
                store, p = wanted[tp]
                if tp not in remaining or msg.offset() >= remaining[tp]:
                    continue
                store.load(p, msg.key(), msg.value())
                applied += 1
                store.restored_to[p] = msg.offset() + 1
                if msg.offset() + 1 >= remaining[tp]:
                    del remaining[tp]
    finally:
        consumer.close()
    for store, p in wanted.values():  # restored to the end: it answers for its keys now
        store.serving = store.serving | {p}
    if applied:
        log.info("restored %d state records in %.1f s (%s)", applied, time.monotonic() - started,
                 ", ".join(f"{s.name}: {s.size()}" for s in stores))
    return applied
