"""Analysis: the published selection rules, evaluated per event as payments arrive.

Payee rules keep their state in ``payee-analysis`` (keyed by payee, partitioned like the
payments and analysis topics) and run in the ledger stage on the very record it writes to
the analysis topic (``analyse_payee``). The account rule (SHARED_ACCOUNT) needs every
payment to one bank account together, so each record is re-keyed by account onto
``analysis.by-account`` for the ``account-analysis`` stage (applied at once, and not
written, where this worker reads that record's partition: the stage is fused). Hits go to
the signals topic keyed by case id. Rules select; people decide (``cases``).
"""
from __future__ import annotations

from .app import catalogue, codec, settings, state_store
from .engine import Output, Stage
from .ingest import failed
from .review import case_id_for, case_key
from .rules import Thresholds, evaluate_account, evaluate_payee
from .state import Store

STATE_SCHEMA = "se.tkonto.state.AnalysisState"

thresholds = Thresholds.from_settings(settings)
by_account_topic = catalogue.analysis_by_account.name
signals_topic = catalogue.signals.name
payee_states = state_store("payee-analysis", STATE_SCHEMA, catalogue.payments.name)
account_states = state_store("account-analysis", STATE_SCHEMA, by_account_topic)


def publish_hits(out: Output, hits: list[dict]) -> None:
    for hit in hits:
        case_id = case_id_for(case_key(hit), settings.case_id_secret or None)
        out.write(signals_topic, case_id.encode(), codec.encode("SelectionHit", hit))


def apply_rules(out: Output, store: Store, partition: int, key: bytes, enriched: dict, evaluate) -> None:
    before = store.get(partition, key)
    state, hits = evaluate(before, enriched, thresholds)
    if state != before:
        store.put(partition, key, state)
    if hits:  # a redelivery repeats hits with the same ids; cases dedupe them
        publish_hits(out, hits)


def analyse_payee(out: Output, partition: int, payee_key: bytes, enriched: dict, encoded: bytes) -> None:
    """The payee rules on one analysis record, then its copy keyed by bank account."""
    apply_rules(out, payee_states, partition, payee_key, enriched, evaluate_payee)
    out.feed(by_account_topic, enriched["payment"]["bank_account"].encode(), encoded, enriched)


def analyse_account(msg, out: Output) -> None:
    """Stage: one analysis record keyed by bank account -> the account rule."""
    value = msg.value()
    enriched = out.take(value) or codec.decode(value, expect="EnrichedPayment")
    apply_rules(out, account_states, msg.partition(), msg.key(), enriched, evaluate_account)


# Fused, like the ledger: when this worker's ledger stage feeds a record to an analysis.by-account
# partition this worker reads, the account rule is applied at once instead of one hop later,
# and the record is not written (``Output.feed``). The rule is idempotent per event, and the
# events of one payment are fed by the one worker that registers them, in order; between
# payments the topic's order is any interleaving of its feeders anyway.
stage = Stage("account-analysis", [by_account_topic], analyse_account, failed("analysis"), fuse=True)
stores = [account_states]
