"""Dead letters: what could not be accepted, why, and the original bytes (nothing is lost)."""
from __future__ import annotations

import datetime as dt


def dead_letter(reason: str, detail: str, stage: str, source: tuple[str, int, int],
                key: bytes | None, value: bytes | None, payer_id: str | None = None,
                event_id: str | None = None, now: dt.datetime | None = None) -> dict:
    topic, partition, offset = source
    return {
        "reason": reason,
        "detail": detail,
        "stage": stage,
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "payer_id": payer_id,
        "event_id": event_id,
        "original_key": key,
        "original_value": value,
        "rejected_at": now or dt.datetime.now(dt.timezone.utc),
    }


SOURCE_HEADER = "tkonto-source"


def encode_source(topic: str, partition: int, offset: int) -> bytes:
    """Where a repartitioned record came from, carried in a header for later dead letters."""
    return f"{topic}|{partition}|{offset}".encode()


def source_of(msg) -> tuple[str, int, int]:
    """Where a consumed record came from: the payer's record named in its source header
    (set when ingest re-keyed it), else the record's own coordinates."""
    raw = dict(msg.headers() or []).get(SOURCE_HEADER)
    if not raw:
        return msg.topic(), msg.partition(), msg.offset()
    topic, partition, offset = raw.decode().rsplit("|", 2)
    return topic, int(partition), int(offset)
