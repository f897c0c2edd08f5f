"""Reading topics from outside the worker: for the demo summary, the tests and the benchmark."""
from __future__ import annotations

import time
from typing import Callable, Iterable

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from .codec import default_codec


def read_topic(bootstrap: str, topic: str, timeout: float = 10.0) -> list:
    """Every message currently in ``topic`` (all partitions, from the start), as confluent Messages."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "tkonto-observer",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None:
            return []
        ends = {}
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                ends[p] = high
        if not ends:
            return []
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        out, deadline = [], time.monotonic() + timeout
        remaining = dict(ends)
        while remaining and time.monotonic() < deadline:
            for msg in consumer.consume(10000, 0.2):
                if msg.error():
                    continue
                out.append(msg)
                if msg.offset() + 1 >= remaining.get(msg.partition(), 0):
                    remaining.pop(msg.partition(), None)
        return out
    finally:
        consumer.close()


def decode_topic(bootstrap: str, topic: str, timeout: float = 10.0) -> list[dict]:
    codec = default_codec()
    return [codec.decode(m.value()) for m in read_topic(bootstrap, topic, timeout)]


def group_lag(bootstrap: str, group: str, topics: Iterable[str]) -> int:
    """Messages in ``topics`` not yet committed by consumer group ``group``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = []
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is not None and meta.error is None:
                tps += [TopicPartition(topic, p) for p in meta.partitions]
        committed = {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(tps, timeout=10)}
        lag = 0
        for tp in tps:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            done = committed.get((tp.topic, tp.partition), -1)
            lag += high - (done if done >= 0 else low)
        return lag
    finally:
        consumer.close()


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.25,
               progress: Callable[[], None] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if progress:
            progress()
        time.sleep(interval)
    return predicate()
