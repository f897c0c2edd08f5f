"""Ledger: the transaction accounts, one per payee, registered idempotently.

Reads the payee-keyed payments topic, applies each event to the payee's account
(``account.register``) in the ``accounts`` table, and writes every registered change to
the ledger topic. A redelivered event changes nothing and re-emits its original entry.
Then every accepted payment is enriched and routed by its payer's scope (``routing``).
"""
from __future__ import annotations

import datetime as dt
import logging

from . import metrics
from .account import new_account, register
from .app import app, catalogue, codec, emit, raw_topic, settings
from .deadletters import SOURCE_HEADER, dead_letter, decode_source
from .enrichment import enrich
from .ingest import payments_topic, send_dead_letter
from .reference import current_payer, registers
from .routing import routes

log = logging.getLogger(__name__)

ACCOUNT_SCHEMA = "se.tkonto.state.Account"

ledger_topic = raw_topic(catalogue.ledger.name)
output_topics = {
    "enriched": raw_topic(catalogue.enriched.name),
    "citizen": raw_topic(catalogue.citizen.name),
    "analysis": raw_topic(catalogue.analysis.name),
}
accounts = app.Table(
    "accounts", key_type=bytes, value_type=bytes,
    partitions=settings.partitions, help="Transaction accounts keyed by payee (Avro Account).",
)


def load_account(raw: bytes | None, payee_id: str) -> dict:
    return codec.decode(raw, expect=ACCOUNT_SCHEMA) if raw else new_account(payee_id)


def fan_out(record: dict, payer, entry: dict | None, now: dt.datetime, entry_bytes: bytes | None = None) -> None:
    """Enrich an accepted payment and send it where its payer's scope allows."""
    account_record = registers.get("accounts", record["bank_account"])
    is_person = len(record["payee_id"]) == 12  # organisations are not in the population register
    person_record = registers.get("population", record["payee_id"]) if is_person else None
    if account_record is None:
        metrics.ENRICHMENT_LOOKUP_MISSING.labels("accounts").inc()
    if is_person and person_record is None:
        metrics.ENRICHMENT_LOOKUP_MISSING.labels("population").inc()
    enriched = enrich(record, payer, account_record, person_record, now)
    if entry is not None:
        enriched["ledger_sequence"] = entry["sequence"]
    metrics.VERIFICATION_OUTCOMES.labels(enriched["verification"]["result"]).inc()
    encoded: dict[int, bytes] = {id(entry): entry_bytes} if entry_bytes is not None else {}
    for route in routes(payer.scope, enriched, entry, settings.patient_secrecy_in_analysis):
        metrics.ROUTED.labels(route.destination, payer.scope).inc()
        value = encoded.get(id(route.record))
        if value is None:
            value = encoded[id(route.record)] = codec.encode(route.schema, route.record)
        emit(output_topics[route.destination], route.key.encode(), value)


@app.agent(payments_topic)
async def ledger(stream):
    await registers.wait_loaded()  # enrichment after a (re)start must see the registers
    async for batch in stream.take_events(settings.batch_size, settings.batch_within):
        now = dt.datetime.now(dt.timezone.utc)
        for event in batch:
            stream._set_current_event(event)  # table writes go to this event's partition
            msg = event.message
            record = codec.decode(msg.value, expect="PaymentEvent")  # validated at ingest
            payer = current_payer(record["payer_id"])
            if not payer.in_ledger:  # PROPOSAL_2: analysis only, never registered
                fan_out(record, payer, None, now)
                continue
            key = msg.key
            account = load_account(accounts.get(key), record["payee_id"])
            outcome = register(account, record, now)
            if outcome.kind == "REGISTERED":
                accounts[key] = codec.encode(ACCOUNT_SCHEMA, account)
                metrics.EVENTS_REGISTERED.labels(payer.payer_id, record["event_type"]).inc()
                metrics.REGISTRATION_LATENCY.observe(max(0.0, (now - record["event_time"]).total_seconds()))
            elif outcome.kind == "DUPLICATE":
                metrics.EVENTS_DUPLICATE.labels(payer.payer_id).inc()
            else:
                headers = dict(msg.headers or {})
                source = decode_source(headers.get(SOURCE_HEADER), (msg.topic, msg.partition, msg.offset))
                send_dead_letter(dead_letter(outcome.reason, outcome.detail, "ledger", source, None,
                                             msg.value, payer.payer_id, record["event_id"], now))
                continue
            if outcome.entry is not None:  # registered, or redelivered: (re-)emit everything it caused
                entry_bytes = codec.encode("LedgerEntry", outcome.entry)
                emit(ledger_topic, key, entry_bytes)
                fan_out(record, payer, outcome.entry, now, entry_bytes)
