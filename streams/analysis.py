"""Analysis: the published selection rules, evaluated per event as payments arrive.

Payee rules keep their state in ``payee-analysis`` (keyed by payee, as the analysis topic
is); the account rule (SHARED_ACCOUNT) needs every payment to one bank account together,
so each record is re-keyed by account onto ``analysis.by-account`` for ``account-analysis``.
Hits go to the signals topic keyed by case id. Rules select; people decide (``cases``).
"""
from __future__ import annotations

from .app import app, catalogue, codec, emit, raw_topic, settings
from .review import case_id_for, case_key
from .rules import Thresholds, evaluate_account, evaluate_payee

STATE_SCHEMA = "se.tkonto.state.AnalysisState"

thresholds = Thresholds.from_settings(settings)
analysis_topic = raw_topic(catalogue.analysis.name)
by_account_topic = raw_topic(catalogue.analysis_by_account.name)
signals_topic = raw_topic(catalogue.signals.name)
payee_states = app.Table("payee-analysis", key_type=bytes, value_type=bytes, partitions=settings.partitions,
                         help="Analysis state per payee (Avro AnalysisState).")
account_states = app.Table("account-analysis", key_type=bytes, value_type=bytes, partitions=settings.partitions,
                           help="Analysis state per bank account (Avro AnalysisState).")


def publish_hits(hits: list[dict]) -> None:
    for hit in hits:
        case_id = case_id_for(case_key(hit), settings.case_id_secret or None)
        emit(signals_topic, case_id.encode(), codec.encode("SelectionHit", hit))


async def run_rules(stream, table, evaluate, forward=None) -> None:
    async for batch in stream.take_events(settings.batch_size, settings.batch_within):
        for event in batch:
            stream._set_current_event(event)
            msg = event.message
            enriched = codec.decode(msg.value, expect="EnrichedPayment")
            raw = table.get(msg.key)
            state, hits = evaluate(codec.decode(raw, expect=STATE_SCHEMA) if raw else None, enriched, thresholds)
            encoded = codec.encode(STATE_SCHEMA, state)
            if encoded != raw:
                table[msg.key] = encoded
            publish_hits(hits)  # a redelivery repeats hits with the same ids; cases dedupe them
            if forward is not None:
                forward(enriched, msg.value)


@app.agent(analysis_topic)
async def analyse_payee(stream):
    await run_rules(stream, payee_states, evaluate_payee,
                    forward=lambda enriched, raw: emit(by_account_topic, enriched["payment"]["bank_account"].encode(), raw))


@app.agent(by_account_topic)
async def analyse_account(stream):
    await run_rules(stream, account_states, evaluate_account)
