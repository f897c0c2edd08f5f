"""Writes the Grafana dashboards in ops/grafana/dashboards/ (the JSON files are generated).

    python ops/grafana/make_dashboards.py

Edit the panel lists below, not the JSON: tests/test_ops_static.py fails when the JSON
files differ from what this script writes, when a panel uses a metric that
streams/metrics.py does not define, and tests/test_prometheus_live.py fails when a
panel's query returns no series against a real worker.

To extend (rule hits, review outcomes and any other metric a later stage adds):
  1. define the metric in streams/metrics.py and record it in docs/operations.md;
  2. add a panel to ANALYSIS_EXTENSION_PANELS below (or to the dashboard it belongs to);
  3. run this script and commit the JSON together with the script.
"""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
RATE = "$__rate_interval"


def target(expr: str, legend: str, ref: str) -> dict:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref, "range": True}


def panel(title: str, description: str, queries: list[tuple[str, str]], unit: str = "short",
          kind: str = "timeseries", width: int = 12, height: int = 8, stack: bool = False) -> dict:
    p = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(queries)],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "_size": (width, height),
    }
    if kind == "timeseries":
        p["fieldConfig"]["defaults"]["custom"] = {
            "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if not stack else 40,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        }
        p["options"] = {"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull", "max"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}
    elif kind in ("stat", "bargauge"):
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    return p


def row(title: str) -> dict:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "_size": (24, 1)}


def text(title: str, content: str, width: int = 24, height: int = 5) -> dict:
    return {"type": "text", "title": title, "options": {"mode": "markdown", "content": content},
            "_size": (width, height)}


PAYER_VARIABLE = {
    "name": "payer",
    "label": "Payer (organisation number)",
    "type": "query",
    "datasource": DATASOURCE,
    "query": {"query": "label_values(tkonto_events_in_total, payer)", "refId": "payer"},
    "definition": "label_values(tkonto_events_in_total, payer)",
    "refresh": 2,
    "multi": True,
    "includeAll": True,
    "allValue": ".*",
    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
    "sort": 1,
}


def quantiles(metric: str) -> list[tuple[str, str]]:
    return [(f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket[{RATE}])))", f"p{int(q * 100)}")
            for q in (0.5, 0.99)]


PIPELINE_HEALTH = [
    row("Workers"),
    panel("Workers up", "Workers Prometheus can scrape (alert TkontoWorkerDown when one is not).",
          [('sum(up{job="tkonto"})', "up")], kind="stat", width=6, height=5),
    panel("Worker up, per instance", "1: scraped; 0: down.", [('up{job="tkonto"}', "{{instance}}")],
          width=18, height=5),
    row("Throughput"),
    panel("Events in, per payer", "Payment events read from each payer's input topic, per second.",
          [(f'sum by (payer) (rate(tkonto_events_in_total{{payer=~"$payer"}}[{RATE}]))', "{{payer}}")],
          unit="ops", stack=True),
    panel("Registered, per event type", "Ledger entries registered per second (selected payers).",
          [(f'sum by (event_type) (rate(tkonto_events_registered_total{{payer=~"$payer"}}[{RATE}]))',
            "{{event_type}}")], unit="ops", stack=True),
    panel("Dead letters, by stage and reason", "Events sent to the dead-letter topic per second "
          "(alert TkontoDeadLetterSpike).",
          [(f"sum by (stage, reason) (rate(tkonto_events_rejected_total[{RATE}]))", "{{stage}} {{reason}}")],
          unit="ops", stack=True),
    panel("Duplicates", "Redelivered or re-published events; the ledger is unchanged by them.",
          [(f'sum(rate(tkonto_events_duplicate_total{{payer=~"$payer"}}[{RATE}]))', "duplicates")], unit="ops"),
    row("Latency and backlog"),
    panel("Registration latency", "Event time to registration in the ledger; SLO p99 < 1 s "
          "(alert TkontoRegistrationLatencySLO).", quantiles("tkonto_registration_latency_seconds"), unit="s"),
    panel("Citizen visibility latency", "Event time to visible in the citizen view; objective p99 < 5 s "
          "(alert TkontoCitizenVisibilitySlow).", quantiles("tkonto_citizen_visibility_latency_seconds"), unit="s"),
    panel("Consumer lag, per topic", "Messages not yet processed, all workers together "
          "(alert TkontoConsumerLagGrowing).",
          [("sum by (topic) (tkonto_consumer_lag_messages)", "{{topic}}")]),
    panel("Applied at once, per internal topic", "Records of tkonto.payments and tkonto.analysis.by-account "
          "that the worker reading their partition applied at once instead of writing them (fused stages), "
          "per second. With several workers, the rest of those topics' records cross to another worker.",
          [(f"sum by (topic) (rate(tkonto_applied_locally_total[{RATE}]))", "{{topic}}")], unit="ops"),
    panel("API requests, by endpoint and status", "Citizen API and page requests per second.",
          [(f"sum by (endpoint, status) (rate(tkonto_api_requests_total[{RATE}]))", "{{endpoint}} {{status}}")],
          unit="reqps"),
]

# Panels for metrics that later stages add (selection rule hits, review outcomes). Add them
# here once the metric is defined in streams/metrics.py; see the module docstring.
ANALYSIS_EXTENSION_PANELS: list[dict] = [
    row("Analysis and review"),
    panel("Bank account verification, by result", "Verification of Payee outcomes per second "
          "(MATCH, CLOSE_MATCH, NO_MATCH, NOT_POSSIBLE).",
          [(f"sum by (result) (rate(tkonto_verification_outcomes_total[{RATE}]))", "{{result}}")], unit="ops",
          stack=True),
    panel("Selection hits, last 24 h, by rule", "New selection hits per published rule (docs/rules.md). "
          "Analysis selects, people decide.",
          [("sort_desc(sum by (rule) (increase(tkonto_rule_hits_total[24h])))", "{{rule}}")], kind="bargauge"),
    panel("Review cases, last 24 h, by outcome", "Cases opened (OPEN) and decided by analysts.",
          [("sum by (outcome) (increase(tkonto_cases_total[24h]))", "{{outcome}}")], kind="bargauge"),
]

PAYERS_AND_ANALYSIS = [
    row("Payers"),
    panel("Events in, per payer", "Payment events read from each payer's input topic, per second.",
          [(f'sum by (payer) (rate(tkonto_events_in_total{{payer=~"$payer"}}[{RATE}]))', "{{payer}}")], unit="ops"),
    panel("Events in, last 24 h, per payer", "A payer missing here on its payout day has stopped publishing "
          "(alert TkontoPayerStoppedPublishing).",
          [('sort_desc(sum by (payer) (increase(tkonto_events_in_total{payer=~"$payer"}[24h])))', "{{payer}}")],
          kind="bargauge"),
    panel("Registered, per payer", "Ledger entries registered per second, per payer (PROPOSAL_1 and 3 payers).",
          [(f'sum by (payer) (rate(tkonto_events_registered_total{{payer=~"$payer"}}[{RATE}]))', "{{payer}}")],
          unit="ops"),
    panel("Duplicates, per payer", "Events a payer re-published or that were redelivered (ledger unchanged).",
          [(f'sum by (payer) (rate(tkonto_events_duplicate_total{{payer=~"$payer"}}[{RATE}]))', "{{payer}}")],
          unit="ops"),
    panel("Rejections, by reason", "Dead letters per second by reason (all payers; the payer is in each "
          "dead letter on the tkonto.deadletter topic).",
          [(f"sum by (reason) (rate(tkonto_events_rejected_total[{RATE}]))", "{{reason}}")], unit="ops", stack=True),
    panel("Routed, by destination and scope", "Accepted payments written to the enriched, citizen and "
          "analysis topics, by the payer's connection scope.",
          [(f"sum by (destination, scope) (rate(tkonto_routed_total[{RATE}]))", "{{destination}} {{scope}}")],
          unit="ops"),
    row("Analysis"),
    panel("Bank account verification outcomes", "Verification of Payee results: MATCH, CLOSE_MATCH, NO_MATCH, "
          "NOT_POSSIBLE.",
          [(f"sum by (result) (rate(tkonto_verification_outcomes_total[{RATE}]))", "{{result}}")],
          unit="ops", stack=True),
    panel("Register look-ups that found nothing", "Enrichment look-ups with no entry in the bank account or "
          "population register.",
          [(f"sum by (register) (rate(tkonto_enrichment_lookup_missing_total[{RATE}]))", "{{register}}")],
          unit="ops"),
    *ANALYSIS_EXTENSION_PANELS,
    text("To extend: selection rule hits and review outcomes",
         "Panels for **selection rule hits** and **review outcomes** are added here when their metrics "
         "exist in `streams/metrics.py`. Edit `ANALYSIS_EXTENSION_PANELS` in "
         "`ops/grafana/make_dashboards.py`, run it, and commit the JSON; `tests/test_ops_static.py` "
         "checks that every metric used here is defined, and `tests/test_prometheus_live.py` that every "
         "query returns a series."),
]


def layout(panels: list[dict]) -> list[dict]:
    """Give each panel an id and a grid position (left to right, wrapping at 24 columns)."""
    out, x, y, line_height = [], 0, 0, 0
    for i, p in enumerate(panels, start=1):
        p = dict(p)
        w, h = p.pop("_size")
        if x + w > 24 or p["type"] == "row":
            x, y, line_height = 0, y + line_height, 0
        p["id"] = i
        p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        x += w
        line_height = max(line_height, h)
        out.append(p)
    return out


def dashboard(uid: str, title: str, description: str, panels: list[dict]) -> dict:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["tkonto"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "schemaVersion": 39,
        "version": 1,
        "templating": {"list": [PAYER_VARIABLE]},
        "annotations": {"list": []},
        "links": [],
        "panels": layout(panels),
    }


DASHBOARDS = {
    "pipeline-health.json": dashboard(
        "tkonto-pipeline-health", "tkonto: pipeline health",
        "Workers, throughput, dead letters, latency against the SLOs, consumer lag.", PIPELINE_HEALTH),
    "payers-and-analysis.json": dashboard(
        "tkonto-payers-analysis", "tkonto: payers and analysis",
        "Per-payer event rates, duplicates, rejections, routing by scope, verification outcomes.",
        PAYERS_AND_ANALYSIS),
}


def render() -> dict[str, str]:
    return {name: json.dumps(d, indent=2, ensure_ascii=False) + "\n" for name, d in DASHBOARDS.items()}


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, content in render().items():
        (OUT / name).write_text(content, encoding="utf-8")
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
