"""Every Prometheus metric tkonto exports (catalogue in the README).

Conventions: ``tkonto_`` prefix, ``_total`` counters, ``_seconds`` histograms, bounded
label sets only (payer ids are a registry of ~340 organisations; never a payee id, never
a payment id).
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0,
                   60.0)  # fine around the 500 ms target, so quantiles from the buckets mean something

EVENTS_IN = Counter(
    "tkonto_events_in_total", "Payment events read from payer input topics.", ["payer"])
EVENTS_REGISTERED = Counter(
    "tkonto_events_registered_total", "Ledger entries registered, by payer and event type.", ["payer", "event_type"])
EVENTS_DUPLICATE = Counter(
    "tkonto_events_duplicate_total", "Events already registered (redelivered or re-published); ledger unchanged.",
    ["payer"])
EVENTS_REJECTED = Counter(
    "tkonto_events_rejected_total", "Events sent to the dead-letter topic, by stage and reason.", ["stage", "reason"])
REGISTRATION_LATENCY = Histogram(
    "tkonto_registration_latency_seconds", "From the payer's event time to registration in the ledger.",
    buckets=LATENCY_BUCKETS)
CONSUMER_LAG = Gauge(
    "tkonto_consumer_lag_messages", "Messages not yet processed by this worker, per topic.", ["topic"])
VERIFICATION_OUTCOMES = Counter(
    "tkonto_verification_outcomes_total", "Bank account verifications by result (Verification of Payee).", ["result"])
ENRICHMENT_LOOKUP_MISSING = Counter(
    "tkonto_enrichment_lookup_missing_total", "Enrichment look-ups that found no register entry, by register.",
    ["register"])
ROUTED = Counter(
    "tkonto_routed_total", "Accepted payments written to each downstream topic, by destination and scope.",
    ["destination", "scope"])
CITIZEN_VISIBILITY_LATENCY = Histogram(
    "tkonto_citizen_visibility_latency_seconds", "From the payer's event time to visible in the citizen view.",
    buckets=LATENCY_BUCKETS)
API_REQUESTS = Counter(
    "tkonto_api_requests_total", "HTTP API and page requests, by endpoint and status code.", ["endpoint", "status"])
RULE_HITS = Counter(
    "tkonto_rule_hits_total", "New selection hits (distinct hit ids) by rule.", ["rule"])
CASES = Counter(
    "tkonto_cases_total", "Review cases opened (OPEN) and decided, by outcome.", ["outcome"])
NOTIFICATIONS = Counter(
    "tkonto_notifications_total", "Notifications sent to payers (notification duty), by payer.", ["payer"])
REVIEW_EXPORTS = Counter(
    "tkonto_review_exports_total", "In-depth review exports of a named person (each one audited).")

_pending: dict[tuple, int] = {}


def inc(metric: Counter, *labels: str) -> None:
    """``metric.labels(*labels).inc()`` for the pipeline's hot path: counted here and added
    to the counter by ``publish_pending``, which the engine calls after every batch (on
    its own thread, the only one that calls ``inc``)."""
    key = (metric, labels)
    _pending[key] = _pending.get(key, 0) + 1


def publish_pending() -> None:
    global _pending
    pending, _pending = _pending, {}
    for (metric, labels), count in pending.items():
        metric.labels(*labels).inc(count)
