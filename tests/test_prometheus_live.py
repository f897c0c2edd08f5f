"""A real Prometheus server (Debian package ``prometheus``) scrapes a real tkonto worker
that processes demo traffic on the embedded broker, with ops/prometheus/alerts.yml
loaded; via the HTTP API: the target is up, every alert rule evaluates without error,
every metric selector in the alert rules and every dashboard query returns a series."""
from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from streams.broker import free_port, spawn_child, stop_child
from streams.identity import make_person
from tests.conftest import FK, GOTEBORG, MALMO_P3, STOCKHOLM, UPPSALA_P2, payment
from tests.test_ops_static import ALERTS, alert_rules, dashboard_queries

pytestmark = [pytest.mark.prometheus, pytest.mark.broker]

PAYERS = [STOCKHOLM, GOTEBORG, FK, UPPSALA_P2, MALMO_P3]
#: Grafana's variables, as a dashboard with every payer selected sends them.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$payer": ".*"}


class Prometheus:
    def __init__(self, url: str, proc: subprocess.Popen):
        self.url, self.proc = url, proc

    def api(self, path: str, **params) -> dict:
        query = ("?" + urllib.parse.urlencode(params, doseq=True)) if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=5) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:  # 400 on a bad query: the body says why
            body = json.load(exc)
        return body

    def query(self, expr: str) -> list[dict]:
        body = self.api("query", query=expr)
        assert body["status"] == "success", f"{expr}: {body.get('error')}"
        return body["data"]["result"]


@pytest.fixture
def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.skip("prometheus is not installed (Debian package; `make system` installs it)")
    return path


def start_prometheus(binary: str, tmp_path, target: str) -> Prometheus:
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [{"job_name": "tkonto", "metrics_path": "/metrics",
                            "static_configs": [{"targets": [target]}]}],
    }))
    log = (tmp_path / "prometheus.log").open("ab")
    proc = spawn_child([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                        f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    prom = Prometheus(f"http://127.0.0.1:{port}", proc)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prometheus exited with {proc.returncode}; see {tmp_path / 'prometheus.log'}")
        try:
            with urllib.request.urlopen(f"{prom.url}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return prom
        except OSError:
            time.sleep(0.2)
    stop_child(proc)
    raise RuntimeError(f"prometheus not ready within 20 s; see {tmp_path / 'prometheus.log'}")


def publish_demo_traffic(pipe) -> None:
    """Valid payments from every payer, a redelivery, and rejects at both stages."""
    clients = {p.payer_id: pipe.client(p) for p in PAYERS}
    for i in range(20):
        payee = make_person(dt.date(1970, 1, 1), 100 + i)
        for p in PAYERS:
            clients[p.payer_id].publish(payment(p, payee, f"live-{i}", "EXECUTED", 1000_00 + i))
    sth = clients[STOCKHOLM.payer_id]
    again = sth.publish(payment(STOCKHOLM, make_person(dt.date(1980, 5, 5), 7), "dup", "PLANNED", 50_00))
    sth.publish_raw(again, key=b"dup")  # exact redelivery: a duplicate
    sth.publish_raw(b"not avro at all", key=b"x")  # ingest: UNDECODABLE
    sth.publish(payment(STOCKHOLM, make_person(dt.date(1981, 6, 6), 8), "never", "CANCELLED", 50_00))
    twice = make_person(dt.date(1982, 7, 7), 9)  # the same payment under two ids: DUPLICATE_PAYMENT, a case
    sth.publish(payment(STOCKHOLM, twice, "twice-1", "EXECUTED", 777_00))
    sth.publish(payment(STOCKHOLM, twice, "twice-2", "EXECUTED", 777_00))
    for client in clients.values():
        client.flush()


def _selectors(expr: str) -> list[str]:
    """The metric selectors in a PromQL expression (name plus label matchers)."""
    found = re.findall(r"\b(tkonto_\w+(?:\{[^}]*\})?|up\{[^}]*\})", expr)
    return sorted(set(found))


def _grafana(expr: str) -> str:
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def _label_values(query: str) -> tuple[str, str] | None:
    m = re.fullmatch(r"label_values\((\w+)\s*,\s*(\w+)\)", query.strip())
    return (m.group(1), m.group(2)) if m else None


def test_prometheus_scrapes_a_worker_and_every_query_has_data(pipeline_factory, prometheus_binary, tmp_path):
    pipe = pipeline_factory(PAYERS)
    worker = pipe.start_worker()
    prom = start_prometheus(prometheus_binary, tmp_path, f"127.0.0.1:{worker.settings.web_port}")
    try:
        publish_demo_traffic(pipe)
        pipe.wait_drained(timeout=45)
        status, _ = worker.get("/api/v1/me/payments")  # no token: counted as a 401
        assert status == 401

        # The target is up.
        def target_up() -> bool:
            active = prom.api("targets")["data"]["activeTargets"]
            return len(active) == 1 and active[0]["health"] == "up"
        assert _wait(target_up, 15), prom.api("targets")
        assert [s["value"][1] for s in prom.query('up{job="tkonto"}')] == ["1"]

        # Every query used by an alert rule or a dashboard returns at least one series.
        rules = alert_rules()
        checks: dict[str, str] = {}
        for rule in rules:
            for selector in _selectors(rule["expr"]):
                checks[selector] = f"alerts.yml {rule['alert']}"
        variables = []
        for board, title, expr in dashboard_queries():
            if _label_values(expr):
                variables.append((board, title, _label_values(expr)))
            else:
                checks[_grafana(expr)] = f"{board}: {title}"
        assert len(checks) > 20

        def empty() -> dict[str, str]:
            return {expr: where for expr, where in checks.items() if not prom.query(expr)}
        assert _wait(lambda: not empty(), 30), f"queries without a series: {empty()}"

        # Rules: all loaded, every evaluation succeeds (no PromQL error at run time).
        def rules_state() -> dict[str, str]:
            return {r["name"]: r["health"] for g in prom.api("rules")["data"]["groups"] for r in g["rules"]}
        assert _wait(lambda: set(rules_state().values()) == {"ok"}, 10), rules_state()
        assert set(rules_state()) == {r["alert"] for r in rules}
        for rule in rules:  # the whole expression parses and evaluates as Prometheus runs it
            prom.query(rule["expr"])
        firing = [a for a in prom.api("alerts")["data"]["alerts"] if a["state"] == "firing"]
        assert firing == [], "a healthy worker on demo traffic must not fire alerts"

        # Dashboard variables: the payer list is exactly the payers that published.
        for board, title, (metric, label) in variables:
            values = prom.api(f"label/{label}/values", **{"match[]": metric})["data"]
            assert sorted(values) == sorted(p.payer_id for p in PAYERS), f"{board}: {title}"

        # The numbers are the traffic's: 20 events per payer plus Stockholm's extra 6.
        events_in = {s["metric"]["payer"]: float(s["value"][1])
                     for s in prom.query("sum by (payer) (tkonto_events_in_total)")}
        assert events_in == {p.payer_id: 20.0 + (6 if p is STOCKHOLM else 0) for p in PAYERS}
        rejected = {(s["metric"]["stage"], s["metric"]["reason"]): float(s["value"][1])
                    for s in prom.query("sum by (stage, reason) (tkonto_events_rejected_total)")}
        assert rejected == {("ingest", "UNDECODABLE"): 1.0, ("ledger", "UNKNOWN_PAYMENT"): 1.0}
    finally:
        stop_child(prom.proc)
        worker.stop()
    assert prom.proc.poll() is not None and not worker.alive()


def _wait(predicate, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
