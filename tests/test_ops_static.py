"""Operations files, checked without a broker: Prometheus config and alert rules (promtool),
Alertmanager (amtool), docker-compose.yml (the compose tool itself, then every setting,
port, volume and image it names), the Dockerfile, and the Grafana dashboards (every
metric they use exists in streams/metrics.py)."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from streams import metrics
from streams.payers import load_payers
from streams.settings import REPO_ROOT, Settings

OPS = REPO_ROOT / "ops"
PROMETHEUS_DIR = OPS / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTMANAGER_CONFIG = OPS / "alertmanager" / "alertmanager.yml"
GRAFANA = OPS / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
OPERATIONS_DOC = REPO_ROOT / "docs" / "operations.md"
#: Secrets docker-compose.yml requires from the environment (it refuses to start without them).
COMPOSE_SECRETS = {"TKONTO_JWT_SECRET": "compose-test-secret", "GRAFANA_ADMIN_PASSWORD": "compose-test-password"}
#: Labels Prometheus attaches itself, and the histogram bucket label.
SERVER_LABELS = {"job", "instance", "le"}


# --- helpers (also used by tests/test_prometheus_live.py) -------------------------------------

def load_yaml(path: Path):
    """Parse a YAML file (PyYAML, a test dependency)."""
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))


def exposed_metric_names() -> dict[str, object]:
    """Every sample name streams/metrics.py exposes, per prometheus_client conventions:
    a Counter ``x_total`` exposes ``x_total`` (and ``x_created``), a Gauge its name, a
    Histogram ``_bucket``, ``_sum``, ``_count`` (and ``_created``); tkonto's own
    ``HotHistogram`` ``_bucket``, ``_sum`` and ``_count``."""
    from prometheus_client import Counter, Gauge, Histogram, Summary

    names: dict[str, object] = {}
    for obj in vars(metrics).values():
        if isinstance(obj, metrics.HotHistogram):
            names.update({obj.name + suffix: obj for suffix in ("_bucket", "_sum", "_count")})
            continue
        if isinstance(obj, Counter):
            suffixes = ("_total", "_created")
        elif isinstance(obj, Gauge):
            suffixes = ("",)
        elif isinstance(obj, Histogram):
            suffixes = ("_bucket", "_sum", "_count", "_created")
        elif isinstance(obj, Summary):
            suffixes = ("_sum", "_count", "_created", "")
        else:
            continue
        for suffix in suffixes:
            names[obj._name + suffix] = obj
    return names


def metric_labels(obj) -> set[str]:
    return set() if isinstance(obj, metrics.HotHistogram) else set(obj._labelnames)  # a HotHistogram has none


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def _panels(panels: list[dict]):
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # collapsed rows keep their panels inside


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, PromQL) of every panel target and query variable."""
    queries = []
    for path in dashboard_files():
        board = json.loads(path.read_text(encoding="utf-8"))
        for panel in _panels(board.get("panels", [])):
            for tgt in panel.get("targets", []):
                if tgt.get("expr"):
                    queries.append((path.name, panel.get("title", ""), tgt["expr"]))
        for var in board.get("templating", {}).get("list", []):
            if var.get("type") == "query":
                query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
                queries.append((path.name, f"variable {var['name']}", query))
    return queries


def alert_rules() -> list[dict]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"] if "alert" in rule]


METRIC_RE = re.compile(r"\btkonto_\w+")


def metric_names_in(text: str) -> set[str]:
    return set(METRIC_RE.findall(text))


def run(cmd: list[str], cwd: Path = REPO_ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (Debian package; `make system` installs it)")
    return path


# --- Prometheus and Alertmanager ---------------------------------------------------------------

def test_promtool_check_config():
    done = run([need("promtool"), "check", "config", str(PROMETHEUS_CONFIG)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_promtool_check_rules():
    done = run([need("promtool"), "check", "rules", str(ALERTS)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def test_promtool_test_rules():
    done = run([need("promtool"), "test", "rules", ALERTS_TEST.name], cwd=PROMETHEUS_DIR)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_test_rules_fails_on_a_broken_rule(tmp_path):
    """The unit tests bite: raise the worker-down threshold and they must fail."""
    shutil.copy(ALERTS_TEST, tmp_path / ALERTS_TEST.name)
    broken = ALERTS.read_text(encoding="utf-8").replace('up{job="tkonto"} == 0', 'up{job="tkonto"} == 2')
    assert broken != ALERTS.read_text(encoding="utf-8")
    (tmp_path / ALERTS.name).write_text(broken, encoding="utf-8")
    done = run([need("promtool"), "test", "rules", ALERTS_TEST.name], cwd=tmp_path)
    assert done.returncode != 0 and "TkontoWorkerDown" in done.stdout + done.stderr


def test_prometheus_config_loads_the_rules_and_alertmanager():
    config = load_yaml(PROMETHEUS_CONFIG)
    assert [(PROMETHEUS_DIR / f).resolve() for f in config["rule_files"]] == [ALERTS.resolve()]
    targets = [t for am in config["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]]
    assert targets == ["alertmanager:9093"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["tkonto"].get("metrics_path", "/metrics") == "/metrics"


def test_every_alert_has_a_firing_and_a_silent_unit_test():
    tests = load_yaml(ALERTS_TEST)
    assert [(PROMETHEUS_DIR / f).resolve() for f in tests["rule_files"]] == [ALERTS.resolve()]
    firing, silent = set(), set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names, "no alerts in alerts.yml"
    assert names - firing == set(), "alerts without a firing test case"
    assert names - silent == set(), "alerts without a not-firing test case"
    assert (firing | silent) <= names, "tests for alerts that do not exist"


def _anchors(markdown: str) -> set[str]:
    """GitHub-style heading anchors of a Markdown document."""
    anchors = set()
    for line in markdown.splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            anchors.add(slug)
    return anchors


def test_alerts_have_severity_summary_and_runbook():
    anchors = _anchors(OPERATIONS_DOC.read_text(encoding="utf-8"))
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        notes = rule["annotations"]
        assert notes["summary"].strip() and notes["description"].strip(), name
        assert "Runbook:" in notes["description"], f"{name}: the description must name the runbook action"
        doc, _, anchor = notes["runbook_url"].partition("#")
        assert (REPO_ROOT / doc).resolve() == OPERATIONS_DOC.resolve(), name
        assert anchor in anchors, f"{name}: docs/operations.md has no section #{anchor}"
        assert rule.get("for"), f"{name}: an alert without `for` pages on a single bad scrape"


def test_amtool_check_config_and_routes():
    amtool = need("amtool")
    done = run([amtool, "check-config", str(ALERTMANAGER_CONFIG)])
    assert done.returncode == 0, done.stdout + done.stderr
    severities = {rule["labels"]["severity"] for rule in alert_rules()}
    expected = {"critical": "ops-oncall", "warning": "ops-team"}
    for severity in severities:
        done = run([amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
                    f"severity={severity}", "alertname=TkontoWorkerDown"])
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.strip() == expected[severity], (severity, done.stdout)


# --- metrics used by rules and dashboards ---------------------------------------------------------

def test_every_metric_in_rules_and_dashboards_is_defined():
    exposed = exposed_metric_names()
    assert "tkonto_events_in_total" in exposed and "tkonto_registration_latency_seconds_bucket" in exposed
    used: dict[str, set[str]] = {}
    for path in (ALERTS, ALERTS_TEST):
        for name in metric_names_in(path.read_text(encoding="utf-8")):
            used.setdefault(name, set()).add(path.name)
    for board, title, expr in dashboard_queries():
        for name in metric_names_in(expr):
            used.setdefault(name, set()).add(f"{board}: {title}")
    assert used, "no tkonto metric used anywhere"
    unknown = {name: sorted(where) for name, where in used.items() if name not in exposed}
    assert unknown == {}, "metrics not defined in streams/metrics.py"


LABEL_USE_RE = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
MATCHER_RE = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"")


def _labels_used(expr: str) -> set[str]:
    labels = set()
    for group in LABEL_USE_RE.findall(expr):
        labels |= {part.strip() for part in group.split(",") if part.strip()}
    for selector in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(MATCHER_RE.findall(selector))
    return labels


def test_every_label_in_rules_and_dashboards_exists_on_its_metrics():
    """`sum by (payer)` over a metric without a payer label is silently one empty series."""
    exposed = exposed_metric_names()
    exprs = [(f"alerts.yml: {r['alert']}", r["expr"]) for r in alert_rules()]
    exprs += [(f"{board}: {title}", expr) for board, title, expr in dashboard_queries()]
    wrong = {}
    for where, expr in exprs:
        names = metric_names_in(expr)
        known = set(SERVER_LABELS)
        for name in names:
            known |= metric_labels(exposed[name])
        if not names:  # e.g. up{job="tkonto"}
            continue
        extra = _labels_used(expr) - known
        if extra:
            wrong[where] = sorted(extra)
    assert wrong == {}


def test_every_metric_is_in_the_operations_catalogue():
    doc = OPERATIONS_DOC.read_text(encoding="utf-8")
    defined = {(obj.name if isinstance(obj, metrics.HotHistogram) else
                obj._name + ("_total" if type(obj).__name__ == "Counter" else "")): obj
               for obj in set(exposed_metric_names().values())}
    missing = sorted(name for name in defined if f"`{name}`" not in doc)
    assert missing == [], "document these metrics in docs/operations.md (metrics catalogue)"
    exposed = exposed_metric_names()
    stale = sorted(name for name in metric_names_in(doc) if name not in exposed and name not in defined)
    assert stale == [], "docs/operations.md names metrics that streams/metrics.py does not define"
    for name, obj in defined.items():
        for label in metric_labels(obj):
            row = next(line for line in doc.splitlines() if line.startswith(f"| `{name}`"))
            assert f"`{label}`" in row, f"{name}: label {label} missing from its catalogue row"


# --- Grafana -------------------------------------------------------------------------------------

def _make_dashboards_module():
    sys.path.insert(0, str(GRAFANA))
    try:
        import importlib
        import make_dashboards
        return importlib.reload(make_dashboards)
    finally:
        sys.path.remove(str(GRAFANA))


def test_dashboards_are_what_the_generator_writes():
    rendered = _make_dashboards_module().render()
    assert {"pipeline-health.json", "payers-and-analysis.json"} <= set(rendered)
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in dashboard_files()}
    assert on_disk.keys() == rendered.keys()
    stale = [name for name in rendered if rendered[name] != on_disk[name]]
    assert stale == [], "run `python ops/grafana/make_dashboards.py` and commit the JSON"


def test_dashboards_are_well_formed_and_use_the_provisioned_datasource():
    datasource = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]
    uids = set()
    for path in dashboard_files():
        board = json.loads(path.read_text(encoding="utf-8"))
        assert board["uid"] not in uids
        uids.add(board["uid"])
        panels = list(_panels(board["panels"]))
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for p in panels:
            assert {"x", "y", "w", "h"} <= set(p["gridPos"]) and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
            if p["type"] in ("row", "text"):
                continue
            assert p["targets"], f"{path.name}: {p['title']} has no query"
            for t in [p, *p["targets"]]:
                assert t["datasource"]["uid"] == datasource["uid"], f"{path.name}: {p['title']}"
    assert datasource["type"] == "prometheus"


def test_pipeline_health_dashboard_covers_what_operations_watch():
    exprs = " ".join(e for board, _, e in dashboard_queries() if board == "pipeline-health.json")
    for needed in ("tkonto_events_in_total", "tkonto_events_registered_total", "tkonto_events_rejected_total",
                   "tkonto_registration_latency_seconds_bucket", "tkonto_consumer_lag_messages", 'up{job="tkonto"}'):
        assert needed in exprs, needed
    assert "histogram_quantile(0.5," in exprs and "histogram_quantile(0.99," in exprs


# --- docker-compose.yml ----------------------------------------------------------------------------

def _compose_command() -> list[str]:
    docker = shutil.which("docker")
    if docker and run([docker, "compose", "version"]).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    pytest.skip("no compose tool: neither `docker compose` nor docker-compose (`make system` installs it)")


def test_compose_file_is_valid():
    compose = _compose_command()
    done = run([*compose, "-f", str(COMPOSE_FILE), "config", "-q"], env=COMPOSE_SECRETS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_refuses_to_start_without_the_secrets():
    compose = _compose_command()
    env = {k: v for k, v in os.environ.items() if k not in COMPOSE_SECRETS}
    done = subprocess.run([*compose, "-f", str(COMPOSE_FILE), "config", "-q"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode != 0
    assert "TKONTO_JWT_SECRET" in done.stdout + done.stderr or "GRAFANA_ADMIN_PASSWORD" in done.stdout + done.stderr


@pytest.fixture(scope="module")
def compose() -> dict:
    """docker-compose.yml as YAML (anchors and merge keys resolved), secrets interpolated."""
    raw = load_yaml(COMPOSE_FILE)

    def interpolate(value):
        if isinstance(value, str):
            return re.sub(r"\$\{(\w+)(?::?[?-][^}]*)?\}", lambda m: COMPOSE_SECRETS.get(m.group(1), ""), value)
        if isinstance(value, dict):
            return {k: interpolate(v) for k, v in value.items()}
        if isinstance(value, list):
            return [interpolate(v) for v in value]
        return value

    return interpolate(raw)


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _workers(compose: dict) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items() if "build" in s}


def _kafkas(compose: dict) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items() if s.get("image", "").startswith("apache/kafka")}


def _published(port: str) -> tuple[int, int]:
    parts = str(port).split(":")
    return int(parts[-2]), int(parts[-1])


def test_compose_has_three_kraft_brokers_and_two_workers(compose):
    assert sorted(_workers(compose)) == ["worker-1", "worker-2"]
    brokers = _kafkas(compose)
    assert len(brokers) == 3
    node_ids = {}
    for name, svc in brokers.items():
        env = _env(svc)
        assert "controller" in env["KAFKA_PROCESS_ROLES"] and "broker" in env["KAFKA_PROCESS_ROLES"], name
        node_ids[env["KAFKA_NODE_ID"]] = name
        cluster_id = env["CLUSTER_ID"]
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16, "CLUSTER_ID must be a base64 UUID"
        assert base64.urlsafe_b64encode(base64.urlsafe_b64decode(cluster_id + "==")).decode().rstrip("=") == cluster_id
    assert not any("zookeeper" in s.get("image", "") for s in compose["services"].values())
    voters = {}
    for name, svc in brokers.items():
        voters[name] = _env(svc)["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert len(set(voters.values())) == 1, "every broker must name the same controller quorum"
    quorum = dict(v.split("@") for v in next(iter(voters.values())).split(","))
    assert {node: hostport.split(":")[0] for node, hostport in quorum.items()} == node_ids


def test_compose_replicates_every_topic_three_times(compose):
    brokers = _kafkas(compose)
    for name, svc in brokers.items():
        env = _env(svc)
        for var in ("KAFKA_DEFAULT_REPLICATION_FACTOR", "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
                    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
            assert env[var] == "3", (name, var)
        assert int(env["KAFKA_MIN_INSYNC_REPLICAS"]) == 2, name
    for name, svc in _workers(compose).items():
        settings = _settings_of(svc)
        assert settings.replication == 3 == len(brokers), name


def _settings_of(service: dict) -> Settings:
    saved = dict(os.environ)
    try:
        for f in Settings.__dataclass_fields__.values():
            os.environ.pop(f.metadata["env"], None)
        os.environ.update(_env(service))
        return Settings.from_env()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_compose_worker_environment_is_real_settings(compose):
    known = {f.metadata["env"] for f in Settings.__dataclass_fields__.values()}
    for name, svc in _workers(compose).items():
        env = _env(svc)
        assert set(env) - known == set(), f"{name}: not a tkonto setting (see streams/settings.py)"
        settings = _settings_of(svc)  # every value parses
        assert settings.web_host == "0.0.0.0", name
        assert settings.advertised_host == name, f"{name}: other workers route API requests to it by this name"
        assert settings.store == "rocksdb://", f"{name}: production keeps table state on disk"
        assert settings.jwt_secret, name
        for server in settings.bootstrap_servers.split(","):
            host, port = server.split(":")
            assert host in _kafkas(compose), f"{name}: {host} is no broker service"
            listeners = _env(compose["services"][host])["KAFKA_ADVERTISED_LISTENERS"]
            assert f"//{host}:{port}" in listeners, f"{name}: {server} is not an advertised listener of {host}"
        assert len(settings.bootstrap_servers.split(",")) == 3


def _binds(service: dict) -> list[tuple[str, str]]:
    out = []
    for vol in service.get("volumes", []):
        if isinstance(vol, dict):
            out.append((vol["source"], vol["target"]))
        else:
            source, target = vol.split(":")[:2]
            out.append((source, target))
    return out


def test_compose_mounts_exist(compose):
    named = set(compose.get("volumes") or {})
    for name, svc in compose["services"].items():
        for source, target in _binds(svc):
            if source.startswith((".", "/")):
                assert (REPO_ROOT / source).exists(), f"{name}: {source} does not exist in the repository"
            else:
                assert source in named, f"{name}: volume {source} is not declared"
    for name, svc in _workers(compose).items():
        settings = _settings_of(svc)
        mounted = {target: source for source, target in _binds(svc)}
        assert settings.payers_file in mounted, f"{name}: TKONTO_PAYERS_FILE is not mounted"
        payers = load_payers(REPO_ROOT / mounted[settings.payers_file])
        assert len(payers) >= 3 and len({p.scope for p in payers}) == 3
        assert settings.data_dir in mounted, f"{name}: table state must live on a volume"
    prom = compose["services"]["prometheus"]
    config_dir = next(t for s, t in _binds(prom) if (REPO_ROOT / s).resolve() == PROMETHEUS_DIR.resolve())
    assert f"--config.file={config_dir}/prometheus.yml" in prom["command"]
    am = compose["services"]["alertmanager"]
    am_dir = next(t for s, t in _binds(am) if (REPO_ROOT / s).resolve() == ALERTMANAGER_CONFIG.parent.resolve())
    assert f"--config.file={am_dir}/alertmanager.yml" in am["command"]
    grafana = {(REPO_ROOT / s).resolve(): t for s, t in _binds(compose["services"]["grafana"]) if s.startswith(".")}
    assert grafana[(GRAFANA / "provisioning").resolve()] == "/etc/grafana/provisioning"
    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "dashboards.yml")["providers"][0]
    assert grafana[DASHBOARDS.resolve()] == provider["options"]["path"]


def _listen_port(service: dict, default: int) -> int:
    for arg in service.get("command", []) or []:
        if arg.startswith("--web.listen-address="):
            return int(arg.rsplit(":", 1)[1])
    return default


def test_compose_ports_are_consistent(compose):
    host_ports = []
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            host_ports.append(_published(port)[0])
    assert len(host_ports) == len(set(host_ports)), "two services publish the same host port"
    for name, svc in _workers(compose).items():
        settings = _settings_of(svc)
        assert [_published(p)[1] for p in svc["ports"]] == [settings.web_port], name
    for name, svc in _kafkas(compose).items():
        env = _env(svc)
        (host, container), = [_published(p) for p in svc["ports"]]
        assert f"EXTERNAL://:{container}" in env["KAFKA_LISTENERS"], name
        assert f"EXTERNAL://localhost:{host}" in env["KAFKA_ADVERTISED_LISTENERS"], name
        controller_port = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")[0].rsplit(":", 1)[1]
        assert f"CONTROLLER://:{controller_port}" in env["KAFKA_LISTENERS"], name
    # Prometheus scrapes each worker on its web port, and reaches Alertmanager on its port.
    config = load_yaml(PROMETHEUS_CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    scraped = [t for sc in jobs["tkonto"]["static_configs"] for t in sc["targets"]]
    assert sorted(t.split(":")[0] for t in scraped) == sorted(_workers(compose))
    for tgt in scraped:
        host, port = tgt.split(":")
        assert int(port) == _settings_of(compose["services"][host]).web_port
    am_port = _listen_port(compose["services"]["alertmanager"], 9093)
    assert [_published(p)[1] for p in compose["services"]["alertmanager"]["ports"]] == [am_port]
    for am in config["alerting"]["alertmanagers"]:
        for sc in am["static_configs"]:
            assert sc["targets"] == [f"alertmanager:{am_port}"]
    prom_port = _listen_port(compose["services"]["prometheus"], 9090)
    assert [_published(p)[1] for p in compose["services"]["prometheus"]["ports"]] == [prom_port]
    datasource = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]
    assert datasource["url"] == f"http://prometheus:{prom_port}"
    grafana = compose["services"]["grafana"]
    assert [_published(p)[1] for p in grafana["ports"]] == [int(_env(grafana)["GF_SERVER_HTTP_PORT"])]


def test_compose_images_are_pinned_or_built_here(compose):
    for name, svc in compose["services"].items():
        if "build" in svc:
            build = svc["build"]
            context = REPO_ROOT / (build["context"] if isinstance(build, dict) else build)
            dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
            assert (context / dockerfile).resolve() == DOCKERFILE.resolve(), name
        else:
            image = svc["image"]
            assert re.fullmatch(r"[\w./-]+:v?\d+(\.\d+)+", image), f"{name}: pin a version, not {image!r}"
        for dep in svc.get("depends_on", []):
            assert dep in compose["services"], f"{name} depends on unknown service {dep}"


# --- Dockerfile ------------------------------------------------------------------------------------

def test_dockerfile_builds_the_worker_from_this_repository():
    text = DOCKERFILE.read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    copied = []
    for line in lines:
        if line.startswith("COPY "):
            *sources, _dest = line.split()[1:]
            copied += sources
    for source in copied:
        assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repository"
    # streams/codec.py reads REPO_ROOT/schemas: the package must stay next to schemas/.
    assert "schemas/" in copied and "streams/" in copied
    install = next(line for line in lines if "pip install" in line)
    assert "-c requirements.lock" in install and " -e ." in install
    assert lines[-1] == 'CMD ["tkonto", "worker"]'
    ignored = {line.strip().rstrip("/") for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", "var", "results", ".git"} <= ignored
    for source in copied:
        assert source.rstrip("/") not in ignored
