"""``tkonto ref load KIND FILE.csv``: publish a register to its compacted topic, all or nothing."""
from __future__ import annotations

from confluent_kafka import Producer

from .codec import default_codec
from .registers import SCHEMAS, load_csv, record_key, to_record
from .settings import Settings
from .topics import Catalogue


def load_register(kind: str, path: str, settings: Settings) -> int:
    """Validate the whole file first (raises RegisterFileError listing bad lines), then publish."""
    items = load_csv(kind, path)
    codec = default_codec()
    encoded = [(record_key(kind, item).encode(), codec.encode(SCHEMAS[kind], to_record(kind, item))) for item in items]
    topic = Catalogue(settings).registers()[kind].name
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "acks": "all", "linger.ms": 5,
                         **settings.producer_tuning()})
    for key, value in encoded:
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(30) > 0:
        raise RuntimeError(f"{topic}: records still unsent after 30 s; is Kafka reachable at {settings.bootstrap_servers}?")
    return len(encoded)
