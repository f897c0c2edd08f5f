"""Ledger: the transaction accounts, one per payee, registered idempotently.

Stage ``ledger`` reads the payee-keyed payments topic, applies each event to the payee's
account (``account.register``) in the ``accounts`` store, and writes every registered
change to the ledger topic. A redelivered event changes nothing and re-emits its original
entry. Then every accepted payment is enriched and routed by its payer's scope
(``routing``); what goes to the analysis topic is also evaluated at once by the payee
rules (``analysis.analyse_payee``), which are keyed by payee like this stage.
"""
from __future__ import annotations

import datetime as dt
import logging
import time

from . import analysis, citizen, metrics
from .account import new_account, register
from .app import catalogue, codec, settings, state_store
from .avro_reader import timestamp_of
from .deadletters import dead_letter, source_of
from .engine import Output, Stage
from .enrichment import enrich
from .ingest import failed, send_dead_letter
from .reference import current_payer, registers
from .routing import routes

log = logging.getLogger(__name__)

ACCOUNT_SCHEMA = "se.tkonto.state.Account"

payments_topic = catalogue.payments.name
ledger_topic = catalogue.ledger.name
output_topics = {"enriched": catalogue.enriched.name, "citizen": catalogue.citizen.name,
                 "analysis": catalogue.analysis.name}
accounts = state_store("accounts", ACCOUNT_SCHEMA, payments_topic)
# counted per payment: tallies, published with metrics.inc's after every batch
verification_outcomes = metrics.tally(metrics.VERIFICATION_OUTCOMES)  # by result
routed_by_scope = metrics.TallyBy(metrics.ROUTED, "scope")  # scope -> by destination
registered_by_payer = metrics.TallyBy(metrics.EVENTS_REGISTERED, "payer")  # payer -> by event type
duplicates = metrics.tally(metrics.EVENTS_DUPLICATE)  # by payer


def fan_out(out: Output, partition: int, record: dict, payer, entry: dict | None, now: dt.datetime,
            entry_bytes: bytes | None = None) -> None:
    """Enrich an accepted payment and send it where its payer's scope allows."""
    held = registers.data  # its dicts looked up here: ``registers.get`` is an interpreted call, twice a payment
    account_record = held["accounts"].get(record["bank_account"])
    is_person = len(record["payee_id"]) == 12  # organisations are not in the population register
    person_record = held["population"].get(record["payee_id"]) if is_person else None
    if account_record is None:
        metrics.inc(metrics.ENRICHMENT_LOOKUP_MISSING, "accounts")
    if is_person and person_record is None:
        metrics.inc(metrics.ENRICHMENT_LOOKUP_MISSING, "population")
    enriched = enrich(record, payer, account_record, person_record, now)
    if entry is not None:
        enriched["ledger_sequence"] = entry["sequence"]
    verification_outcomes[enriched["verification"]["result"]] += 1
    encoded: dict[int, bytes] = {id(entry): entry_bytes} if entry_bytes is not None else {}
    payee_key = record["payee_id"].encode()
    scope = payer.scope
    routed_to = routed_by_scope[scope]
    for destination, viewer, schema, routed in routes(scope, enriched, entry, settings.patient_secrecy_in_analysis):
        routed_to[destination] += 1
        value = encoded.get(id(routed))
        if value is None:
            value = encoded[id(routed)] = codec.encode(schema, routed)
        key = viewer.encode()
        if destination == "citizen" and key == payee_key and citizen.can_show_here(out, partition):
            citizen.show(out, partition, key, routed, payer, now)  # the payee's own view, without a hop
            out.write_settled(output_topics["citizen"], key, value, citizen.SHOWN_HEADERS)
            continue
        out.write(output_topics[destination], key, value)
        if destination == "analysis":
            analysis.analyse_payee(out, partition, key, routed, value)


_now: tuple[int, dt.datetime | None] = (-1, None)  # the last millisecond asked for, and its datetime


def wire_now() -> dt.datetime:
    """Now, in UTC, at the millisecond precision of the schemas' timestamps: what the
    stage keeps in memory then equals what a consumer decodes, so the payee rules and the
    payee's own citizen view can use the records without a hop (and a decode). Built once
    per millisecond (a worker registers several events in one)."""
    global _now
    ms = time.time_ns() // 1_000_000
    if ms != _now[0]:
        _now = (ms, timestamp_of(ms))  # as a consumer decodes it
    return _now[1]


def ledger(msg, out: Output) -> None:
    """Stage: one payee-keyed payment event -> its account, the ledger and the fan-out."""
    now = wire_now()
    value = msg.value()
    record = out.take(value) or codec.decode(value, expect="PaymentEvent")  # validated at ingest
    payer = current_payer(record["payer_id"])
    partition = msg.partition()
    if not payer.in_ledger:  # PROPOSAL_2: analysis only, never registered
        fan_out(out, partition, record, payer, None, now)
        return
    key = msg.key()
    account = accounts.get(partition, key) or new_account(record["payee_id"])
    outcome = register(account, record, now)
    if outcome.kind == "REGISTERED":
        accounts.put(partition, key, account)
        registered_by_payer[payer.payer_id][record["event_type"]] += 1
        metrics.REGISTRATION_LATENCY.observe(max(0.0, (now - record["event_time"]).total_seconds()))
    elif outcome.kind == "DUPLICATE":
        duplicates[payer.payer_id] += 1
    else:
        send_dead_letter(out, dead_letter(outcome.reason, outcome.detail, "ledger", source_of(msg), None,
                                          value, payer.payer_id, record["event_id"], now))
        return
    if outcome.entry is not None:  # registered, or redelivered: (re-)emit everything it caused
        entry_bytes = codec.encode("LedgerEntry", outcome.entry)
        out.write(ledger_topic, key, entry_bytes)
        fan_out(out, partition, record, payer, outcome.entry, now, entry_bytes)


# Fused: when this worker's ingest feeds a payment to a payments partition this worker reads,
# the payment is registered at once instead of one hop later, and not written to the topic
# (``Output.feed``). Registration is idempotent per event, and the events of one payment come
# from one payer partition, in order, through one worker.
stage = Stage("ledger", [payments_topic], ledger, failed("ledger"),
              feeds=[catalogue.analysis_by_account.name, catalogue.citizen.name], fuse=True)
stores = [accounts, analysis.payee_states]
