"""streams/owners.py: the partition of a key, the newest claim of a partition, and the
WorkerAssignment announcement on the wire."""
from __future__ import annotations

import datetime as dt
import random

import pytest
from confluent_kafka import Producer

from streams.codec import default_codec
from streams.engine import PARTITIONER
from streams.observe import read_topic
from streams.owners import SCHEMA, announcement, owner_of, partition_of
from tests.broker_topics import create_topics

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 24, 8, 0, 0, 123000, tzinfo=UTC)


def keys() -> list[bytes]:
    """200 keys like the real ones (personnummer, organisation numbers, bank accounts, URLs),
    of every length from 1 to 40 bytes so that murmur2's tail handling is exercised."""
    rng = random.Random(7)
    out = [b"198112189876", b"2120000142", b"8327-9123456789", b"http://worker-2:6066", "Göteborg".encode()]
    while len(out) < 200:
        n = len(out) % 40 + 1
        out.append(bytes(rng.randrange(256) for _ in range(n)))
    return out


@pytest.mark.broker
def test_partition_of_agrees_with_librdkafka_murmur2_random(broker):
    topic = "owners-test-keys"
    create_topics(broker.bootstrap, (topic, 4, False))
    producer = Producer({"bootstrap.servers": broker.bootstrap, "partitioner": PARTITIONER, "linger.ms": 5})
    sent = keys()
    for i, key in enumerate(sent):
        producer.produce(topic, str(i).encode(), key)
    assert producer.flush(30) == 0

    messages = read_topic(broker.bootstrap, topic)
    assert len(messages) == 200
    placed = {int(m.value()): m.partition() for m in messages}
    assert sorted(placed) == list(range(200))
    assert {i: partition_of(key, 4) for i, key in enumerate(sent)} == placed
    assert len(set(placed.values())) == 4  # every partition used: the comparison is not trivial


# Kafka's own murmur2 test vectors (clients UtilsTest.testMurmur2): a partition is
# toPositive(murmur2(key)) % partitions, as in the Java client and librdkafka's murmur2_random.
MURMUR2 = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
           b"a-little-bit-longer-string": -1486304829, b"abc": 479470107,
           b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971}


@pytest.mark.parametrize("partitions", [7, 12, 1000])
def test_partition_of_matches_kafkas_murmur2_vectors(partitions):
    assert {k: partition_of(k, partitions) for k in MURMUR2} == {
        k: (h & 0x7FFFFFFF) % partitions for k, h in MURMUR2.items()}
    assert partition_of(b"21", 1000) == 340 and partition_of(b"abc", 12) == 3


def claim(url: str, topic: str, partitions, at: dt.datetime) -> dict:
    return announcement(url, topic, partitions, now=at)


def test_owner_of_picks_the_newest_claim():
    later = T0 + dt.timedelta(seconds=5)
    claims = {
        "http://a:6066": claim("http://a:6066", "citizen", {0, 1, 2}, T0),
        "http://b:6066": claim("http://b:6066", "citizen", {2, 3}, later),  # took 2 over from a
        "http://c:6066": claim("http://c:6066", "other", {4, 5, 0}, later + dt.timedelta(seconds=1)),
    }
    assert owner_of(claims, "citizen", 0) == "http://a:6066"
    assert owner_of(claims, "citizen", 1) == "http://a:6066"
    assert owner_of(claims, "citizen", 2) == "http://b:6066"
    assert owner_of(claims, "citizen", 3) == "http://b:6066"
    assert owner_of(claims, "citizen", 4) is None  # claimed on another topic only
    assert owner_of(claims, "citizen", 5) is None
    assert owner_of(claims, "other", 0) == "http://c:6066"
    assert owner_of(claims, "other", 2) is None
    assert owner_of({}, "citizen", 0) is None

    # the order of the claims does not matter
    reordered = dict(reversed(list(claims.items())))
    assert [owner_of(reordered, "citizen", p) for p in range(5)] == [
        "http://a:6066", "http://a:6066", "http://b:6066", "http://b:6066", None]

    # a survivor's newer claim supersedes a stale one; an empty announcement claims nothing
    claims["http://a:6066"] = claim("http://a:6066", "citizen", (), later + dt.timedelta(seconds=2))
    claims["http://b:6066"] = claim("http://b:6066", "citizen", range(4), later + dt.timedelta(seconds=3))
    assert [owner_of(claims, "citizen", p) for p in range(5)] == ["http://b:6066"] * 4 + [None]


def test_owner_of_prefers_the_newest_even_when_an_older_one_comes_later():
    claims = {
        "http://new:1": claim("http://new:1", "citizen", {7}, T0 + dt.timedelta(milliseconds=1)),
        "http://old:1": claim("http://old:1", "citizen", {7}, T0),
    }
    assert owner_of(claims, "citizen", 7) == "http://new:1"


def test_announcement_record_round_trips_through_the_codec():
    codec = default_codec()
    record = announcement("http://worker-1:6066", "tkonto.citizen", {5, 1, 3}, now=T0)
    assert record == {"worker_url": "http://worker-1:6066", "topic": "tkonto.citizen", "partitions": [1, 3, 5],
                      "announced_at": T0}
    data = codec.encode(SCHEMA, record)
    assert codec.writer_of(data).name == SCHEMA
    assert codec.decode(data, expect=SCHEMA) == record
    empty = announcement("http://worker-1:6066", "tkonto.citizen", (), now=T0)
    assert codec.decode(codec.encode(SCHEMA, empty), expect=SCHEMA)["partitions"] == []


def test_announcement_defaults_to_now_in_utc():
    before = dt.datetime.now(UTC)
    record = announcement("http://w:1", "t", [2])
    after = dt.datetime.now(UTC)
    assert before <= record["announced_at"] <= after
    assert record["announced_at"].tzinfo is not None
    # on the wire at millisecond precision: what every reader compares
    decoded = default_codec().decode(default_codec().encode(SCHEMA, record), expect=SCHEMA)
    assert decoded["announced_at"] == record["announced_at"].replace(
        microsecond=record["announced_at"].microsecond // 1000 * 1000)


def test_murmur2_is_aiokafkas_on_keys_of_every_length():
    import random

    from aiokafka.partitioner import murmur2 as reference
    from streams.engine import murmur2
    rnd = random.Random(7)
    keys = [bytes(rnd.randrange(256) for _ in range(n % 41)) for n in range(4000)] + [b"195501175979", b"8327-9123456789"]
    assert [murmur2(k) & 0x7FFFFFFF for k in keys] == [reference(k) & 0x7FFFFFFF for k in keys]
