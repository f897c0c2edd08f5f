"""Histogram quantiles from two /metrics scrapes (the benchmark's citizen-visibility latency)."""
from __future__ import annotations

import math

from streams.observe import histogram_buckets, histogram_max_bound, histogram_quantile

NAME = "tkonto_citizen_visibility_latency_seconds"


def exposition(counts: dict[str, float], labels: str = "") -> str:
    lines = [f"# HELP {NAME} x", f"# TYPE {NAME} histogram"]
    lines += [f'{NAME}_bucket{{{labels}le="{le}"}} {n}' for le, n in counts.items()]
    lines += [f"{NAME}_count{{{labels[:-1]}}} {list(counts.values())[-1]}", f"{NAME}_sum 1.0"]
    return "\n".join(lines) + "\n"


def test_buckets_are_parsed_and_summed_over_label_sets():
    text = exposition({"0.1": 1.0, "0.5": 3.0, "+Inf": 4.0}, 'instance="a",') + \
        exposition({"0.1": 2.0, "0.5": 2.0, "+Inf": 2.0}, 'instance="b",')
    assert histogram_buckets(text, NAME) == {0.1: 3.0, 0.5: 5.0, math.inf: 6.0}
    assert histogram_buckets(text, "other") == {}


def test_quantiles_interpolate_inside_the_bucket_between_two_scrapes():
    before = {0.1: 5.0, 0.2: 5.0, 0.5: 5.0, 1.0: 5.0, math.inf: 5.0}
    after = {0.1: 15.0, 0.2: 65.0, 0.5: 104.0, 1.0: 105.0, math.inf: 105.0}  # 100 new: 10 / 50 / 39 / 1
    assert histogram_quantile(0.5, before, after) == 0.1 + 0.1 * (40 / 50)
    assert histogram_quantile(0.99, before, after) == 0.5
    assert histogram_quantile(0.995, before, after) == 0.5 + 0.5 * 0.5
    assert histogram_max_bound(before, after) == 1.0


def test_nothing_observed_gives_none_and_beyond_the_last_bound_gives_that_bound():
    same = {0.1: 1.0, math.inf: 1.0}
    assert histogram_quantile(0.5, same, same) is None
    assert histogram_max_bound(same, same) is None
    assert histogram_quantile(0.99, {}, {0.1: 1.0, 60.0: 1.0, math.inf: 3.0}) == 60.0
    assert histogram_max_bound({}, {0.1: 1.0, 60.0: 1.0, math.inf: 3.0}) == math.inf
