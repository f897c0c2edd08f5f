"""Histogram quantiles from two /metrics scrapes (the benchmark's citizen-visibility latency),
and ``next_batch``, the read of a consumer that follows live topics, on the real broker."""
from __future__ import annotations

import math
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from streams.observe import histogram_buckets, histogram_max_bound, histogram_quantile, next_batch
from tests.broker_topics import create_topics

NAME = "tkonto_citizen_visibility_latency_seconds"


def exposition(counts: dict[str, float], labels: str = "") -> str:
    lines = [f"# HELP {NAME} x", f"# TYPE {NAME} histogram"]
    lines += [f'{NAME}_bucket{{{labels}le="{le}"}} {n}' for le, n in counts.items()]
    lines += [f"{NAME}_count{{{labels[:-1]}}} {list(counts.values())[-1]}", f"{NAME}_sum 1.0"]
    return "\n".join(lines) + "\n"


def test_buckets_are_parsed_and_summed_over_label_sets():
    text = exposition({"0.1": 1.0, "0.5": 3.0, "+Inf": 4.0}, 'instance="a",') + \
        exposition({"0.1": 2.0, "0.5": 2.0, "+Inf": 2.0}, 'instance="b",')
    assert histogram_buckets(text, NAME) == {0.1: 3.0, 0.5: 5.0, math.inf: 6.0}
    assert histogram_buckets(text, "other") == {}


def test_quantiles_interpolate_inside_the_bucket_between_two_scrapes():
    before = {0.1: 5.0, 0.2: 5.0, 0.5: 5.0, 1.0: 5.0, math.inf: 5.0}
    after = {0.1: 15.0, 0.2: 65.0, 0.5: 104.0, 1.0: 105.0, math.inf: 105.0}  # 100 new: 10 / 50 / 39 / 1
    assert histogram_quantile(0.5, before, after) == 0.1 + 0.1 * (40 / 50)
    assert histogram_quantile(0.99, before, after) == 0.5
    assert histogram_quantile(0.995, before, after) == 0.5 + 0.5 * 0.5
    assert histogram_max_bound(before, after) == 1.0


def test_nothing_observed_gives_none_and_beyond_the_last_bound_gives_that_bound():
    same = {0.1: 1.0, math.inf: 1.0}
    assert histogram_quantile(0.5, same, same) is None
    assert histogram_max_bound(same, same) is None
    assert histogram_quantile(0.99, {}, {0.1: 1.0, 60.0: 1.0, math.inf: 3.0}) == 60.0
    assert histogram_max_bound({}, {0.1: 1.0, 60.0: 1.0, math.inf: 3.0}) == math.inf


def test_next_batch_returns_the_records_there_without_waiting_out_its_timeout(broker):
    """Fewer records than the limit are returned as they arrive. ``consume(1000, 30)`` would
    hold each batch for the whole 30 s; the reads here are over long before that."""
    topic = "observe-next-batch"
    create_topics(broker.bootstrap, (topic, 1, False))
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "observe-next-batch",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 50})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        assert next_batch(consumer, 1000, 0.2) == []  # nothing there: empty after the timeout

        def read(count: int, limit: int) -> tuple[list[bytes], list[int], float]:
            values, sizes, start = [], [], time.monotonic()
            while len(values) < count and time.monotonic() - start < 60:
                batch = [m for m in next_batch(consumer, limit, 30.0) if not m.error()]
                sizes.append(len(batch))
                values += [m.value() for m in batch]
            return values, sizes, time.monotonic() - start

        for i in range(10):
            producer.produce(topic, f"a{i}".encode())
        producer.flush(10)
        values, _, took = read(10, 1000)
        assert values == [f"a{i}".encode() for i in range(10)]
        assert took < 15.0, f"a read of 10 records took {took:.1f} s: it waited out the 30 s timeout"

        for i in range(10):
            producer.produce(topic, f"b{i}".encode())
        producer.flush(10)
        time.sleep(0.5)  # fetched by now: the limit, not the arrival, cuts the batches
        values, sizes, _ = read(10, 4)
        assert values == [f"b{i}".encode() for i in range(10)]
        assert max(sizes) == 4 and sum(sizes) == 10
    finally:
        consumer.close()
