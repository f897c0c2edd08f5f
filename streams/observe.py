"""Reading topics: batches as they arrive, true end offsets, and whole topics from outside the
worker (for the demo summary, the tests and the benchmark)."""
from __future__ import annotations

import time
from typing import Callable, Iterable

from confluent_kafka import Consumer, TopicPartition

from .codec import default_codec


def partitions_of(consumer: Consumer, topics: Iterable[str], timeout: float = 10.0) -> list[TopicPartition]:
    """Every partition of the ``topics`` that exist."""
    tps = []
    for topic in topics:
        meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is not None and meta.error is None:
            tps += [TopicPartition(topic, p) for p in meta.partitions]
    return tps


def next_batch(consumer: Consumer, limit: int, timeout: float) -> list:
    """What ``consumer`` holds now, up to ``limit`` records; when it holds none, the first
    record to arrive within ``timeout`` (seconds) and what came with it. For a consumer
    that follows live topics.

    Not ``consumer.consume(limit, timeout)``: librdkafka returns from that only when
    ``limit`` records are there or the timeout is over, so below saturation every batch
    waited out the whole timeout with its records already read (docs/performance.md)."""
    batch = consumer.consume(limit, 0)
    if batch:
        return batch
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first] + consumer.consume(limit - 1, 0) if limit > 1 else [first]


def reported_ends(consumer: Consumer, tps: Iterable[TopicPartition], timeout: float = 10.0) -> dict[tuple[str, int], int]:
    """The broker's own high watermarks (to be corrected by ``true_end_offsets``)."""
    return {(tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=timeout)[1] for tp in tps}


def true_end_offsets(bootstrap: str, reported: dict[tuple[str, int], int], quiet: float = 0.3,
                     timeout: float = 10.0) -> dict[tuple[str, int], int]:
    """Correct reported high watermarks by reading from the last batch's base offset.

    The embedded Tansu broker reports the high watermark as the base offset of the last
    record batch + 1, so with batched writes it can be short by up to a batch. A fetch
    from ``reported - 1`` returns that whole last batch (and anything written since): one
    past the highest offset seen is the true end. On Apache Kafka it changes nothing.
    """
    result = dict(reported)
    probe = {tp: high for tp, high in reported.items() if high > 0}
    if not probe:
        return result
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "tkonto-end-probe",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        consumer.assign([TopicPartition(t, p, high - 1) for (t, p), high in probe.items()])
        waiting = set(probe)  # the record at reported - 1 exists: wait until each has arrived
        deadline = time.monotonic() + timeout
        last_seen = time.monotonic()
        while time.monotonic() < deadline and (waiting or time.monotonic() - last_seen < quiet):
            for msg in consumer.consume(10000, quiet / 3):
                if msg.error():
                    continue
                tp = (msg.topic(), msg.partition())
                waiting.discard(tp)
                result[tp] = max(result[tp], msg.offset() + 1)
                last_seen = time.monotonic()
        if waiting:
            raise RuntimeError(f"could not read the last records of {sorted(waiting)[:3]} within {timeout}s")
        return result
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """True end offset of every partition of ``topic`` (see ``true_end_offsets``)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "tkonto-observer", "enable.auto.commit": False})
    try:
        reported = reported_ends(consumer, partitions_of(consumer, [topic], timeout), timeout)
    finally:
        consumer.close()
    return {p: end for (_, p), end in true_end_offsets(bootstrap, reported, timeout=timeout).items()}


def read_topic(bootstrap: str, topic: str, timeout: float = 10.0, partitions: Iterable[int] | None = None) -> list:
    """Every message currently in ``topic`` (all partitions, or those named, from the start)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "tkonto-observer",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        wanted = set(partitions) if partitions is not None else None
        ends = {p: high for p, high in end_offsets(bootstrap, topic, timeout).items()
                if high > 0 and (wanted is None or p in wanted)}
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
        tps = partitions_of(consumer, topics)
        committed = {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(tps, timeout=10)}
        reported = reported_ends(consumer, tps)
    finally:
        consumer.close()
    ends = true_end_offsets(bootstrap, reported)
    return sum(max(0, end - max(committed.get(tp, -1), 0)) for tp, end in ends.items())


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def histogram_buckets(exposition: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts of a Prometheus histogram in a /metrics text, summed over
    label sets: {upper bound: count}, +Inf as ``math.inf``."""
    import math
    import re

    buckets: dict[float, float] = {}
    pattern = re.compile(rf'^{re.escape(name)}_bucket{{(?:[^}}]*,)?le="([^"]+)"[^}}]*}} ([0-9.eE+-]+)$')
    for line in exposition.splitlines():
        match = pattern.match(line)
        if match:
            le = math.inf if match.group(1) == "+Inf" else float(match.group(1))
            buckets[le] = buckets.get(le, 0.0) + float(match.group(2))
    return buckets


def histogram_quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float | None:
    """The q-quantile of what a histogram observed between two scrapes, interpolated
    linearly inside its bucket (as PromQL's histogram_quantile); None if nothing was observed."""
    import math

    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cumulative in zip(bounds, counts):
        if cumulative >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bound: the best known is that bound
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return lower


def histogram_max_bound(before: dict[float, float], after: dict[float, float]) -> float | None:
    """The upper bound of the highest bucket that received an observation between two scrapes."""
    bounds = sorted(after)
    previous = 0.0
    top = None
    for bound in bounds:
        delta = after[bound] - before.get(bound, 0.0)
        if delta > previous:
            top = bound
        previous = delta
    return top
