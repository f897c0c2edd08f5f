"""Stage state: key -> value per partition, backed by a compacted changelog topic.

A ``Store`` belongs to one stage and is partitioned like the stage's source topic: the
state of source partition *p* is written to changelog partition *p*, so whichever worker is
assigned *p* restores exactly that partition. A changed value is encoded and written once
per commit (``flush``, before the inputs' offsets are committed), however often it changed
in between: a payee's PLANNED and EXECUTED events often arrive close together. Values are kept decoded in memory for the
hot path (``memory://``), or as Avro bytes in RocksDB with a bounded cache of decoded
values (``rocksdb://``, for state larger than memory). A value restored from the changelog
stays bytes until it is first read.
"""
from __future__ import annotations

import logging
import shutil
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterable

from confluent_kafka import Consumer, TopicPartition

from .codec import Codec
from .observe import reported_ends, true_end_offsets

log = logging.getLogger(__name__)

Write = Callable[[str, bytes, bytes, int], None]  # topic, key, value, partition


class MemoryPartition:
    """Decoded values in a dict; bytes until first read after a restore."""

    def __init__(self, decode: Callable[[bytes], Any]):
        self._data: dict[bytes, Any] = {}
        self._decode = decode
        self.dirty: set[bytes] = set()

    def get(self, key: bytes) -> Any:
        value = self._data.get(key)
        if value.__class__ is bytes:
            value = self._data[key] = self._decode(value)
        return value

    def peek(self, key: bytes) -> Any:
        """Read from another thread (the web server): nothing is changed."""
        value = self._data.get(key)
        return self._decode(value) if value.__class__ is bytes else value

    def put(self, key: bytes, value: Any) -> None:
        self._data[key] = value
        self.dirty.add(key)

    def persist(self, key: bytes, encoded: bytes) -> None:
        pass  # the dict holds the value itself

    def trim(self) -> None:
        pass

    def load(self, key: bytes, encoded: bytes | None) -> None:
        if encoded is None:
            self._data.pop(key, None)
        else:
            self._data[key] = encoded

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

    def __init__(self, decode: Callable[[bytes], Any], path: Path, cache_size: int):
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

    def get(self, key: bytes) -> Any:
        value = self._cache.get(key)
        if value is not None:
            self._cache.move_to_end(key)
            return value
        raw = self._db.get(key)
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
        raw = self._db.get(key)
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

    def trim(self) -> None:
        """Back to the cache's size once the dirty values are persisted (oldest first)."""
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def load(self, key: bytes, encoded: bytes | None) -> None:
        self._cache.pop(key, None)
        exists = key in self._db
        if encoded is None:
            if exists:
                del self._db[key]
                self._count -= 1
        else:
            self._count += not exists
            self._db[key] = encoded

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        self._cache.clear()
        self._db.close()
        shutil.rmtree(self._path, ignore_errors=True)


class Store:
    """One stage's state, per partition of its source topic."""

    def __init__(self, name: str, schema: str, source_topic: str, changelog_topic: str, codec: Codec,
                 backend: str = "memory://", data_dir: str = "", cache_size: int = 250):
        self.name, self.schema, self.source_topic, self.changelog_topic = name, schema, source_topic, changelog_topic
        self._codec = codec
        self._backend = backend
        self._dir = Path(data_dir or ".") / "state" / name
        self._cache_size = cache_size
        self.partitions: dict[int, MemoryPartition | RocksPartition] = {}
        self.restored_to: dict[int, int] = {}  # changelog offset each partition is restored up to

    def _decode(self, raw: bytes) -> Any:
        return self._codec.decode(raw, expect=self.schema)

    def _new_partition(self, partition: int):
        if self._backend == "rocksdb://":
            return RocksPartition(self._decode, self._dir / str(partition), self._cache_size)
        return MemoryPartition(self._decode)

    def get(self, partition: int, key: bytes) -> Any:
        return self.partitions[partition].get(key)

    def put(self, partition: int, key: bytes, value: Any) -> None:
        """Keep ``value``; it is written to the changelog at the next ``flush``."""
        self.partitions[partition].put(key, value)

    def flush(self, write: Write) -> int:
        """Encode every value changed since the last flush and write it to the changelog
        (the engine flushes before it commits offsets). Returns how many were written."""
        written = 0
        for p, part in self.partitions.items():
            if not part.dirty:
                continue
            dirty, part.dirty = part.dirty, set()
            for key in dirty:
                encoded = self._codec.encode(self.schema, part.peek(key))
                part.persist(key, encoded)
                write(self.changelog_topic, key, encoded, p)
            part.trim()
            written += len(dirty)
        return written

    def keep_only(self, partitions: Iterable[int]) -> None:
        """Forget the partitions this worker no longer owns."""
        keep = set(partitions)
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
                store.partitions[p].load(msg.key(), msg.value())
                applied += 1
                store.restored_to[p] = msg.offset() + 1
                if msg.offset() + 1 >= remaining[tp]:
                    del remaining[tp]
    finally:
        consumer.close()
    if applied:
        log.info("restored %d state records in %.1f s (%s)", applied, time.monotonic() - started,
                 ", ".join(f"{s.name}: {s.size()}" for s in stores))
    return applied
