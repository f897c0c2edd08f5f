"""Every Prometheus metric tkonto exports (catalogue in the README).

Conventions: ``tkonto_`` prefix, ``_total`` counters, ``_seconds`` histograms, bounded
label sets only (payer ids are a registry of ~340 organisations; never a payee id, never
a payment id).
"""
from __future__ import annotations

import itertools
from bisect import bisect_left
from collections import defaultdict

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0,
                   60.0)  # fine around the 500 ms target, so quantiles from the buckets mean something


class HotHistogram:
    """A histogram the engine thread observes into, once or twice per payment: a bisect and
    two adds, ~0.2 µs, where prometheus_client's ``Histogram`` takes a lock for a bucket and
    one for the sum, ~1.5 µs. Exported like any histogram (``_bucket``, ``_count``,
    ``_sum``; no ``_created``). One thread observes; a scrape copies the counts first, so
    its buckets and count agree (the sum may be an observation ahead of them)."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...],
                 registry: CollectorRegistry = REGISTRY):
        self.name, self.documentation = name, documentation
        self._bounds = tuple(float(b) for b in buckets if b != float("inf"))
        self._les = [floatToGoString(b) for b in self._bounds] + ["+Inf"]
        self._counts = [0] * (len(self._bounds) + 1)  # per bucket, not cumulative: the last is +Inf
        self._sum = 0.0
        registry.register(self)

    def observe(self, amount: float) -> None:
        self._counts[bisect_left(self._bounds, amount)] += 1  # le: a value on a bound counts in it
        self._sum += amount

    def collect(self) -> list[HistogramMetricFamily]:
        counts, total = list(self._counts), self._sum
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], list(zip(self._les, itertools.accumulate(counts))), total)
        return [family]


EVENTS_IN = Counter(
    "tkonto_events_in_total", "Payment events read from payer input topics.", ["payer"])
EVENTS_REGISTERED = Counter(
    "tkonto_events_registered_total", "Ledger entries registered, by payer and event type.", ["payer", "event_type"])
EVENTS_DUPLICATE = Counter(
    "tkonto_events_duplicate_total", "Events already registered (redelivered or re-published); ledger unchanged.",
    ["payer"])
EVENTS_REJECTED = Counter(
    "tkonto_events_rejected_total", "Events sent to the dead-letter topic, by stage and reason.", ["stage", "reason"])
REGISTRATION_LATENCY = HotHistogram(
    "tkonto_registration_latency_seconds", "From the payer's event time to registration in the ledger.",
    LATENCY_BUCKETS)
CONSUMER_LAG = Gauge(
    "tkonto_consumer_lag_messages", "Messages not yet processed by this worker, per topic.", ["topic"])
LAST_COMMIT = Gauge(
    "tkonto_pipeline_last_commit_timestamp_seconds",
    "When this worker's pipeline last committed offsets of records it processed (Unix time, UTC): "
    "stays put while it has nothing to do, and while it is stalled.")
VERIFICATION_OUTCOMES = Counter(
    "tkonto_verification_outcomes_total", "Bank account verifications by result (Verification of Payee).", ["result"])
ENRICHMENT_LOOKUP_MISSING = Counter(
    "tkonto_enrichment_lookup_missing_total", "Enrichment look-ups that found no register entry, by register.",
    ["register"])
ROUTED = Counter(
    "tkonto_routed_total", "Accepted payments written to each downstream topic, by destination and scope.",
    ["destination", "scope"])
APPLIED_LOCALLY = Counter(
    "tkonto_applied_locally_total", "Records of an internal repartition topic applied at once by the worker that "
    "reads their partition, instead of written to the topic and read back (fused stages).", ["topic"])
CITIZEN_VISIBILITY_LATENCY = HotHistogram(
    "tkonto_citizen_visibility_latency_seconds", "From the payer's event time to visible in the citizen view.",
    LATENCY_BUCKETS)
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


def _cell() -> list[int]:
    return [0]


#: (metric, labels) -> [count]: a cell changed in place, so a count costs one look-up of its
#: key (``+= 1`` on the dict's value would hash and compare the key twice), and no ``.get``
#: to look up and call (~7 counts per payment)
_pending: defaultdict[tuple, list[int]] = defaultdict(_cell)


def inc(metric: Counter, *labels: str) -> None:
    """``metric.labels(*labels).inc()`` for the pipeline's hot path: counted here and added
    to the counter by ``publish_pending``, which the engine calls after every batch (on
    its own thread, the only one that calls ``inc``)."""
    _pending[metric, labels][0] += 1


#: (metric, fixed labels) -> (the fixed labels, the other label names, the counts by them)
_tallies: dict[tuple, tuple[dict, tuple[str, ...], defaultdict[tuple | str, int]]] = {}


def tally(metric: Counter, **fixed: str) -> defaultdict[tuple | str, int]:
    """Counts for ``metric`` that the caller adds to directly (``counts[labels] += 1``, where
    ``inc`` costs a call and a key of metric and labels, ~1,300 instructions), added to the
    counter by ``publish_pending`` with ``inc``'s. ``fixed`` gives labels the same for all
    these counts (by name); a key is the value of the one label left, or the tuple of the
    labels left, in the metric's order. Only the thread that calls ``publish_pending`` may
    add to them."""
    key = (metric, tuple(sorted(fixed.items())))
    if key not in _tallies:
        unknown = set(fixed) - set(metric._labelnames)
        if unknown:
            raise ValueError(f"{metric._name}: no label {', '.join(sorted(unknown))}")
        _tallies[key] = (fixed, tuple(n for n in metric._labelnames if n not in fixed), defaultdict(int))
    return _tallies[key][2]


class TallyBy(dict):
    """``tally(metric, **{label: value})`` per value of one label, made on first use: for a
    hot path that counts by two labels, one of them known before the loop that counts (a
    key tuple per count is built, hashed and compared item by item, where two string keys are
    found by their cached hash and identity)."""

    def __init__(self, metric: Counter, label: str):
        super().__init__()
        self.metric, self.label = metric, label

    def __missing__(self, value: str) -> defaultdict[str, int]:
        counts = self[value] = tally(self.metric, **{self.label: value})
        return counts


def publish_pending() -> None:
    global _pending
    pending, _pending = _pending, defaultdict(_cell)
    for (metric, labels), (count,) in pending.items():
        metric.labels(*labels).inc(count)
    for (metric, _), (fixed, names, counts) in _tallies.items():
        if counts:
            for labels, count in counts.items():
                if count:
                    free = labels if type(labels) is tuple else (labels,)
                    metric.labels(**fixed, **dict(zip(names, free))).inc(count)
            counts.clear()
