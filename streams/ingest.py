"""Ingest: read every connected payer's input topic, validate, re-key by payee.

Valid events go on, byte for byte, to the payments topic keyed by payee (so one payee's
events meet in one partition, where their transaction account lives). Anything else goes
to the dead-letter topic with the reason, the source coordinates and the original bytes.
"""
from __future__ import annotations

import logging

from . import metrics
from .app import catalogue, codec, payers
from .codec import Codec, CodecError
from .deadletters import SOURCE_HEADER, dead_letter, encode_source, source_of
from .engine import Output, Stage
from .payers import Payer
from .validation import Rejected, check_payment

log = logging.getLogger(__name__)

#: input topic -> its payer (the payers file is read once, at start): one look-up per record
payer_of_topic = {catalogue.payer_input(pid).name: payer for pid, payer in payers.items()}
payer_topic_names = sorted(payer_of_topic)  # in payer id order: the topic names end in the ids
payments_topic = catalogue.payments.name
deadletter_topic = catalogue.deadletter.name
events_in = metrics.tally(metrics.EVENTS_IN)  # by payer


def screen(codec: Codec, payer: Payer | None, topic: str, partition: int, offset: int,
           key: bytes | None, value: bytes | None) -> tuple[dict | None, dict | None]:
    """Decode and validate one raw input record: (the accepted PaymentEvent, None), or
    (None, the dead letter saying why not). Never raises on bad input. (A tuple, not an
    object: a small class cost ~1,500 instructions a record to build.)"""
    source = (topic, partition, offset)
    payer_id = payer.payer_id if payer else None
    try:
        event = codec.decode(value, "PaymentEvent")  # positional: no keyword to match, per event
    except CodecError as exc:
        return None, dead_letter(exc.reason, exc.detail, "ingest", source, key, value, payer_id)
    try:
        check_payment(event, payer)
    except Rejected as exc:
        return None, dead_letter(exc.reason, exc.detail, "ingest", source, key, value, payer_id, event["event_id"])
    return event, None


def ingest(msg, out: Output) -> None:
    """Stage: one raw record from a payer's topic -> the payments topic, or a dead letter."""
    topic = msg.topic()
    payer = payer_of_topic.get(topic)
    events_in[payer.payer_id if payer else "unknown"] += 1
    value, partition, offset = msg.value(), msg.partition(), msg.offset()
    event, letter = screen(codec, payer, topic, partition, offset, msg.key(), value)
    if event is not None:
        out.feed(payments_topic, event["payee_id"].encode(), value, event,
                 [(SOURCE_HEADER, encode_source(topic, partition, offset))])  # the headers (positional)
    else:
        send_dead_letter(out, letter)


def failed(stage: str):
    """What a stage does with a record it failed on unexpectedly: a dead letter, never a crash."""
    def on_error(msg, exc: Exception, out: Output) -> None:
        send_dead_letter(out, dead_letter("PROCESSING_ERROR", f"{type(exc).__name__}: {exc}", stage,
                                          source_of(msg), msg.key(), msg.value()))
    return on_error


if not payer_topic_names:
    log.warning("no payers configured (TKONTO_PAYERS_FILE is empty): ingest consumes nothing")
stage = Stage("ingest", payer_topic_names, ingest, failed("ingest"), feeds=[payments_topic])


def send_dead_letter(out: Output, letter: dict) -> None:
    metrics.inc(metrics.EVENTS_REJECTED, letter["stage"], letter["reason"])
    out.write(deadletter_topic, letter["source_topic"].encode(), codec.encode("DeadLetter", letter))
