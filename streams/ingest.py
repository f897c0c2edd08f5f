"""Ingest: read every connected payer's input topic, validate, re-key by payee.

Valid events go on, byte for byte, to the payments topic keyed by payee (so one payee's
events meet in one partition, where their transaction account lives). Anything else goes
to the dead-letter topic with the reason, the source coordinates and the original bytes.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from . import metrics
from .app import app, catalogue, codec, emit, payers, raw_topic, settings
from .codec import Codec, CodecError
from .deadletters import SOURCE_HEADER, dead_letter, encode_source
from .payers import Payer
from .validation import Rejected, check_payment

log = logging.getLogger(__name__)

payer_topic_names = [catalogue.payer_input(pid).name for pid in sorted(payers)]
payments_topic = raw_topic(catalogue.payments.name)
deadletter_topic = raw_topic(catalogue.deadletter.name)


@dataclass
class Screened:
    event: dict | None = None  # the accepted PaymentEvent
    dead_letter: dict | None = None  # or why it was not accepted


def screen(codec: Codec, payer: Payer | None, topic: str, partition: int, offset: int,
           key: bytes | None, value: bytes | None) -> Screened:
    """Decode and validate one raw input record. Never raises on bad input."""
    source = (topic, partition, offset)
    payer_id = payer.payer_id if payer else None
    try:
        event = codec.decode(value, expect="PaymentEvent")
    except CodecError as exc:
        return Screened(dead_letter=dead_letter(exc.reason, exc.detail, "ingest", source, key, value, payer_id))
    try:
        check_payment(event, payer)
    except Rejected as exc:
        return Screened(dead_letter=dead_letter(
            exc.reason, exc.detail, "ingest", source, key, value, payer_id, event["event_id"]))
    return Screened(event=event)


if payer_topic_names:
    @app.agent(raw_topic(*payer_topic_names))
    async def ingest(stream):
        async for batch in stream.take_events(settings.batch_size, settings.batch_within):
            for event in batch:
                msg = event.message
                payer = payers.get(catalogue.payer_of_topic(msg.topic))
                metrics.EVENTS_IN.labels(payer.payer_id if payer else "unknown").inc()
                result = screen(codec, payer, msg.topic, msg.partition, msg.offset, msg.key, msg.value)
                if result.event is not None:
                    emit(payments_topic, result.event["payee_id"].encode(), msg.value,
                         [(SOURCE_HEADER, encode_source(msg.topic, msg.partition, msg.offset))])
                else:
                    send_dead_letter(result.dead_letter)
else:
    log.warning("no payers configured (TKONTO_PAYERS_FILE is empty): ingest consumes nothing")


def send_dead_letter(letter: dict) -> None:
    metrics.EVENTS_REJECTED.labels(letter["stage"], letter["reason"]).inc()
    emit(deadletter_topic, letter["source_topic"].encode(), codec.encode("DeadLetter", letter))
