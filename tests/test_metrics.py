"""streams/metrics.py: the hot-path histogram exports what prometheus_client's Histogram does."""
from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from streams.metrics import LATENCY_BUCKETS, HotHistogram

NAME = "tkonto_test_latency_seconds"


def test_a_hot_histogram_exports_exactly_what_a_prometheus_client_histogram_does():
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    hot = HotHistogram(NAME, "A latency.", LATENCY_BUCKETS, registry=ours)
    reference = Histogram(NAME, "A latency.", buckets=LATENCY_BUCKETS, registry=theirs)
    rng = random.Random(5)
    # on the bounds, just above them, zero, and beyond the last bound
    values = [0.0, 0.005, 0.0050001, 0.5, 0.5000001, 60.0, 60.0001, 1e6]
    values += [rng.expovariate(4.0) for _ in range(2000)]
    for value in values:
        hot.observe(value)
        reference.observe(value)

    def lines(registry):
        return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]
    assert lines(ours) == lines(theirs)
    assert ours.get_sample_value(f"{NAME}_bucket", {"le": "0.005"}) == sum(v <= 0.005 for v in values) > 2
    assert ours.get_sample_value(f"{NAME}_bucket", {"le": "60.0"}) == len(values) - 2
    assert ours.get_sample_value(f"{NAME}_count") == len(values)
    assert ours.get_sample_value(f"{NAME}_sum") == sum(values)  # added in the same order


def test_a_hot_histogram_with_nothing_observed_exports_zeros():
    registry = CollectorRegistry()
    HotHistogram(NAME, "A latency.", (0.1, 1.0), registry=registry)
    assert [registry.get_sample_value(f"{NAME}_bucket", {"le": le}) for le in ("0.1", "1.0", "+Inf")] == [0, 0, 0]
    assert registry.get_sample_value(f"{NAME}_count") == 0 and registry.get_sample_value(f"{NAME}_sum") == 0


def test_pending_counts_reach_their_counters_once_per_publish():
    from prometheus_client import CollectorRegistry, Counter

    from streams import metrics
    registry = CollectorRegistry()
    counter = Counter("tkonto_test_pending_total", "test", ["a", "b"], registry=registry)
    metrics.publish_pending()  # whatever other tests counted
    for _ in range(3):
        metrics.inc(counter, "x", "y")
    metrics.inc(counter, "x", "z")
    assert registry.get_sample_value("tkonto_test_pending_total", {"a": "x", "b": "y"}) is None  # not yet
    metrics.publish_pending()
    metrics.publish_pending()  # nothing pending: nothing added twice
    assert registry.get_sample_value("tkonto_test_pending_total", {"a": "x", "b": "y"}) == 3
    assert registry.get_sample_value("tkonto_test_pending_total", {"a": "x", "b": "z"}) == 1


def test_a_tally_reaches_its_counter_once_per_publish_with_the_inc_counts():
    from prometheus_client import CollectorRegistry, Counter

    from streams import metrics
    registry = CollectorRegistry()
    counter = Counter("tkonto_test_tally_total", "test", ["topic"], registry=registry)
    counts = metrics.tally(counter)
    assert metrics.tally(counter) is counts  # one per metric
    counts["t1",] += 2
    metrics.inc(counter, "t1")
    counts["t2"] += 1  # one label: the value itself
    assert registry.get_sample_value("tkonto_test_tally_total", {"topic": "t1"}) is None  # not yet
    metrics.publish_pending()
    metrics.publish_pending()  # published and cleared: nothing added twice
    assert registry.get_sample_value("tkonto_test_tally_total", {"topic": "t1"}) == 3
    assert registry.get_sample_value("tkonto_test_tally_total", {"topic": "t2"}) == 1
    assert not counts


def test_a_tally_with_fixed_labels_and_a_tally_by_label_publish_every_label():
    from prometheus_client import CollectorRegistry, Counter

    from streams import metrics
    registry = CollectorRegistry()
    counter = Counter("tkonto_test_routed_total", "test", ["destination", "scope"], registry=registry)
    by_scope = metrics.TallyBy(counter, "scope")
    by_scope["PROPOSAL_1"]["citizen"] += 2
    by_scope["PROPOSAL_1"]["analysis"] += 1
    by_scope["PROPOSAL_2"]["analysis"] += 1
    assert metrics.tally(counter, scope="PROPOSAL_1") is by_scope["PROPOSAL_1"]  # one per metric and labels
    metrics.inc(counter, "citizen", "PROPOSAL_1")
    metrics.publish_pending()
    metrics.publish_pending()
    sample = registry.get_sample_value
    assert sample("tkonto_test_routed_total", {"destination": "citizen", "scope": "PROPOSAL_1"}) == 3
    assert sample("tkonto_test_routed_total", {"destination": "analysis", "scope": "PROPOSAL_1"}) == 1
    assert sample("tkonto_test_routed_total", {"destination": "analysis", "scope": "PROPOSAL_2"}) == 1
    assert sample("tkonto_test_routed_total", {"destination": "citizen", "scope": "PROPOSAL_2"}) is None
    with pytest.raises(ValueError, match="no label payer"):
        metrics.tally(counter, payer="x")
