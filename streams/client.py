"""PayerClient: how a payer system publishes its payment events, in code or from a file.

    with PayerClient("2120000142", "kafka:9092") as client:
        client.publish({...PaymentEvent fields...})

Events are Avro single-object encoded with tkonto's codec and keyed by payee, so all of
one payer's events for a payee stay in order: a payment's lifecycle, and a cancellation
before its re-issue (keyed by payment id, the two could be read in either order).

The key is partitioned with murmur2, Java's default partitioner and the one tkonto's
pipeline uses for its own topics. With the input topic and the payments topic of the same
partition count, a payee's events then land on the partition number of the payee's
payments, and the range assignor gives both to one worker: that worker registers the
payment at once, with no hop through the payments topic to another worker. A payer that
publishes with another client should use murmur2 too (librdkafka: ``partitioner =
murmur2_random``); any other partitioner still works, at the price of that hop.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Iterable, Iterator

from confluent_kafka import Producer

from .codec import CodecError, default_codec
from .engine import PARTITIONER
from .settings import Settings
from .topics import Catalogue

DATE_FIELDS = ("period_start", "period_end", "payout_date")


class EventFileError(ValueError):
    pass


def with_defaults(event: dict) -> dict:
    """Fill what a payer may leave out: event id, event time, currency, optional fields."""
    out = dict(event)
    out.setdefault("event_id", str(uuid.uuid4()))
    out.setdefault("event_time", dt.datetime.now(dt.timezone.utc))
    out.setdefault("currency", "SEK")
    out.setdefault("representative_id", None)
    out.setdefault("decision", None)
    return out


def event_from_json(obj: dict) -> dict:
    """A PaymentEvent from its JSON form (dates YYYY-MM-DD, event_time ISO 8601 with zone)."""
    event = dict(obj)
    try:
        for name in DATE_FIELDS:
            event[name] = dt.date.fromisoformat(event[name])
        if event.get("decision"):
            decision = dict(event["decision"])
            decision["decision_date"] = dt.date.fromisoformat(decision["decision_date"])
            decision.setdefault("circumstances", [])
            event["decision"] = decision
        if "event_time" in event:
            when = dt.datetime.fromisoformat(event["event_time"].replace("Z", "+00:00"))
            if when.tzinfo is None:
                raise ValueError(f"event_time {event['event_time']!r} has no zone; write it in UTC, e.g. ...T10:00:00Z")
            event["event_time"] = when.astimezone(dt.timezone.utc)
    except KeyError as exc:
        raise ValueError(f"missing field {exc.args[0]}") from None
    except (TypeError, AttributeError) as exc:
        raise ValueError(f"bad value: {exc}") from None
    return with_defaults(event)


def read_event_file(path: str | Path) -> Iterator[tuple[int, dict]]:
    path = Path(path)
    if not path.is_file():
        raise EventFileError(f"{path}: no such file")
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, event_from_json(json.loads(line))
            except (ValueError, json.JSONDecodeError) as exc:
                raise EventFileError(f"{path}:{line_no}: {exc}") from None


class PayerClient:
    """Publishes one payer's payment events on that payer's input topic."""

    def __init__(self, payer_id: str, bootstrap: str, settings: Settings | None = None, **producer_config):
        settings = settings or Settings.from_env()
        self.payer_id = payer_id
        self.topic = Catalogue(settings).payer_input(payer_id).name
        self.codec = default_codec()
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all",
                                  "enable.idempotence": False, "partitioner": PARTITIONER,  # as the pipeline
                                  **settings.producer_tuning(), **producer_config})
        self.sent = 0

    def encode(self, event: dict) -> bytes:
        return self.codec.encode("PaymentEvent", with_defaults(event))

    def publish(self, event: dict) -> bytes:
        """Encode and publish one event; returns the bytes sent."""
        event = with_defaults(event)
        value = self.codec.encode("PaymentEvent", event)
        self.publish_raw(value, key=event["payee_id"].encode())
        return value

    def publish_raw(self, value: bytes, key: bytes | None = None) -> None:
        while True:
            try:
                self.producer.produce(self.topic, value=value, key=key)
                break
            except BufferError:
                self.producer.poll(0.05)
        self.producer.poll(0)
        self.sent += 1

    def publish_all(self, events: Iterable[dict]) -> int:
        n = 0
        for event in events:
            self.publish(event)
            n += 1
        return n

    def flush(self, timeout: float = 30.0) -> None:
        if self.producer.flush(timeout) > 0:
            raise RuntimeError(f"{self.topic}: messages still unsent after {timeout}s; is the broker reachable?")

    def __enter__(self) -> "PayerClient":
        return self

    def __exit__(self, *exc) -> None:
        self.flush()


__all__ = ["PayerClient", "event_from_json", "read_event_file", "with_defaults", "CodecError", "EventFileError"]
