"""The one settings object: every tunable of tkonto, read from environment variables.

Each field names its variable; the README's configuration table is generated from the
same list (``tkonto config``), so code and docs cannot drift apart.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r}: use true or false")


def _number(name: str, default, minimum, kind: type, what: str):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: must be {what}") from None
    if value < minimum:
        raise SettingsError(f"{name}={raw!r}: must be at least {minimum}")
    return value


def _int(name: str, default: int, minimum: int = 0) -> int:
    return _number(name, default, minimum, int, "a whole number")


def _float(name: str, default: float, minimum: float = 0.0) -> float:
    return _number(name, default, minimum, float, "a number")


def env_field(var: str, doc: str, default):
    """A dataclass field that remembers its environment variable and description."""
    return field(default=default, metadata={"env": var, "doc": doc})


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = env_field(
        "KAFKA_BOOTSTRAP_SERVERS",
        "Kafka bootstrap servers (host:port,...). Empty: the demo starts the embedded broker.",
        "",
    )
    app_id: str = env_field("TKONTO_APP_ID", "Faust application id (consumer group, changelog prefix).", "tkonto")
    topic_prefix: str = env_field("TKONTO_TOPIC_PREFIX", "Prefix of every topic tkonto creates.", "tkonto")
    partitions: int = env_field("TKONTO_PARTITIONS", "Partitions of every topic tkonto creates.", 4)
    replication: int = env_field("TKONTO_REPLICATION", "Replication factor of every topic tkonto creates.", 1)
    payers_file: str = env_field(
        "TKONTO_PAYERS_FILE",
        "CSV payer registry (see README) seeding the payer list; the worker consumes their topics.",
        "",
    )
    web_host: str = env_field("TKONTO_WEB_HOST", "Interface the worker's HTTP server binds.", "127.0.0.1")
    web_port: int = env_field("TKONTO_WEB_PORT", "Port of the worker's HTTP server (/metrics, API, page).", 6066)
    advertised_host: str = env_field(
        "TKONTO_ADVERTISED_HOST", "Host name other workers use to reach this one; default: the bound host, "
        "or the machine's host name when bound to 0.0.0.0.", "")
    data_dir: str = env_field("TKONTO_DATA_DIR", "Directory for worker state (RocksDB tables).", "var/tkonto")
    store: str = env_field("TKONTO_STORE", "State store: memory:// (all state decoded in memory) or rocksdb:// "
                           "(state on disk, a bounded cache decoded; for state larger than memory).", "memory://")
    state_cache: int = env_field(
        "TKONTO_STATE_CACHE", "With rocksdb://: values kept decoded per state partition (LRU; a decoded account "
        "takes ~10 KB, 9x its Avro bytes).", 250)
    session_timeout: float = env_field(
        "TKONTO_SESSION_TIMEOUT",
        "Consumer group session timeout in seconds; a dead worker's partitions move after this.",
        10.0,
    )
    fetch_max_wait_ms: int = env_field(
        "TKONTO_FETCH_MAX_WAIT_MS", "Longest a fetch of the worker's pipeline waits for new records; each hop "
        "of the pipeline can wait this long when idle, and on the embedded broker every fetch takes the whole "
        "wait (Faust's own default, 1500, made a payment take ~2.3 s to be visible; 50 instead of 100 took "
        "~35 ms off p50 and p99 at 2,000 events/s, docs/performance.md).", 50)
    pipeline_batch: int = env_field(
        "TKONTO_PIPELINE_BATCH", "Most records the pipeline engine takes from its consumer at a time.", 1000)
    pipeline_max_backlog: int = env_field(
        "TKONTO_PIPELINE_MAX_BACKLOG", "Back-pressure: records a pipeline stage may have fed this worker and not yet "
        "had read back before its own records wait (4,000 held ingest back while its records made the hop: "
        "8,000 gave ~15 % more events/s at saturation, docs/performance.md).", 8000)
    linger_ms: int = env_field(
        "TKONTO_LINGER_MS", "How long the pipeline's producer waits to fill a batch: larger batches cost the "
        "broker far less per record (5 ms drowned the embedded broker at 2,000 events/s; 100 instead of 25 took "
        "~25 % off its CPU and ~120 ms off p99 at 2,000 events/s, docs/performance.md). Registration does not "
        "wait for it (the ledger stage is fused); a representative's view and the account rule do, one hop "
        "each. The commit flushes every 0.5 s whatever it is.", 100)
    jwt_secret: str = env_field(
        "TKONTO_JWT_SECRET", "HS256 secret for citizen and analyst bearer tokens. Set it in production.", ""
    )
    case_id_secret: str = env_field(
        "TKONTO_CASE_ID_SECRET", "Key for case ids (HMAC), so a payer cannot guess a case's subject or window "
        "from its id. Set it in production.", "")
    patient_secrecy_in_analysis: bool = env_field(
        "PATIENT_SECRECY_IN_ANALYSIS",
        "Policy switch: may decision data under patient secrecy be used in analysis? Default off.",
        False,
    )
    single_record_batches: bool = env_field(
        "TKONTO_SINGLE_RECORD_BATCHES",
        "Produce one record per batch, so that even naive readers of the embedded Tansu broker's "
        "high watermark (last batch's base offset + 1) see exact ends. Not needed by tkonto itself, "
        "which corrects the ends it reads; costs ~30x producer throughput there. Leave off.",
        False,
    )
    native_codec: bool = env_field(
        "TKONTO_NATIVE_CODEC", "Write Avro records with the C writer (streams/avro_native.py) where it was built at "
        "install; off: the Python writers alone, same bytes (~30 µs more CPU per payment event).", True)
    compiled: bool = env_field(
        "TKONTO_COMPILED", "Run the modules of the per-event path as built by Cython at install (setup.py), where "
        "built from their present source; off: their Python source (~10 % more instructions per payment event). "
        "Read when the package is imported (streams/__init__.py).", True)
    log_level: str = env_field("TKONTO_LOG_LEVEL", "Worker log level (info, warning, debug).", "info")
    # -- selection rules (streams/rules.py, docs/rules.md) ------------------------------
    rule_account_not_held_close_match_ore: int = env_field(
        "TKONTO_RULE_ACCOUNT_NOT_HELD_CLOSE_MATCH_ORE",
        "ACCOUNT_NOT_HELD: a CLOSE_MATCH verification is a hit when the amount is above this (öre).", 1_000_000)
    rule_shared_account_min_payees: int = env_field(
        "TKONTO_RULE_SHARED_ACCOUNT_MIN_PAYEES",
        "SHARED_ACCOUNT: distinct payees (representatives' accounts excluded) on one account for a hit.", 3)
    rule_shared_account_window_days: int = env_field(
        "TKONTO_RULE_SHARED_ACCOUNT_WINDOW_DAYS", "SHARED_ACCOUNT: days the payout dates may span.", 30)
    rule_multi_municipality_min_payers: int = env_field(
        "TKONTO_RULE_MULTI_MUNICIPALITY_MIN_PAYERS",
        "MULTI_MUNICIPALITY_AID: municipalities paying social assistance for one person and month for a hit.", 2)
    rule_overlapping_benefits_pairs: str = env_field(
        "TKONTO_RULE_OVERLAPPING_BENEFITS_PAIRS",
        "OVERLAPPING_BENEFITS: incompatible category pairs, A+B separated by commas.",
        "SICKNESS_BENEFIT+UNEMPLOYMENT_BENEFIT,SICKNESS_BENEFIT+ACTIVITY_COMPENSATION,"
        "UNEMPLOYMENT_BENEFIT+ACTIVITY_COMPENSATION")
    rule_overlapping_benefits_min_days: int = env_field(
        "TKONTO_RULE_OVERLAPPING_BENEFITS_MIN_DAYS", "OVERLAPPING_BENEFITS: days the periods must overlap.", 1)
    rule_account_change_days: int = env_field(
        "TKONTO_RULE_ACCOUNT_CHANGE_DAYS",
        "ACCOUNT_CHANGE_BEFORE_PAYOUT: a changed account opened at most this many days before the payout.", 30)
    rule_account_change_min_ore: int = env_field(
        "TKONTO_RULE_ACCOUNT_CHANGE_MIN_ORE",
        "ACCOUNT_CHANGE_BEFORE_PAYOUT: the payout must be above this amount (öre).", 1_000_000)
    rule_state_retention_days: int = env_field(
        "TKONTO_RULE_STATE_RETENTION_DAYS",
        "Selection rules: days of payments kept per payee/account before the latest event (>= every rule window).",
        120)
    rule_state_max_payments: int = env_field(
        "TKONTO_RULE_STATE_MAX_PAYMENTS", "Selection rules: most payments kept per payee or account.", 200)

    @property
    def pipeline_group(self) -> str:
        """Consumer group of the pipeline engine (ingest, ledger, analysis, citizen)."""
        return f"{self.app_id}-pipeline"

    @property
    def canonical_url(self) -> str:
        """How other workers reach this one (API requests are routed to the owner of a key)."""
        if self.advertised_host:
            host = self.advertised_host
        elif self.web_host in ("0.0.0.0", "::"):
            import socket
            host = socket.gethostname()
        else:
            host = self.web_host
        return f"http://{host}:{self.web_port}"

    @classmethod
    def flag(cls, name: str) -> bool:
        """One boolean setting read on its own, as ``from_env`` reads it: for the package's
        import (``compiled``), before anything builds the settings."""
        f = cls.__dataclass_fields__[name]
        return _bool(f.metadata["env"], f.default)

    @classmethod
    def from_env(cls) -> "Settings":
        values = {}
        for f in dataclasses.fields(cls):
            var = f.metadata["env"]
            if f.type in ("int", int):
                values[f.name] = _int(var, f.default, minimum=1 if f.name in ("partitions", "replication") else 0)
            elif f.type in ("float", float):
                values[f.name] = _float(var, f.default)
            elif f.type in ("bool", bool):
                values[f.name] = _bool(var, f.default)
            else:
                values[f.name] = _env(var, f.default)
        settings = cls(**values)
        if settings.store not in ("memory://", "rocksdb://"):
            raise SettingsError(f"TKONTO_STORE={settings.store!r}: use memory:// or rocksdb://")
        return settings

    def with_overrides(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)

    def as_env(self) -> dict[str, str]:
        """These settings as environment variables, to hand to a worker subprocess."""
        env = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            env[f.metadata["env"]] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return env

    def producer_tuning(self) -> dict:
        """librdkafka settings every tkonto producer shares."""
        return {"batch.num.messages": 1} if self.single_record_batches else {}

    @staticmethod
    def documentation() -> list[tuple[str, str, str]]:
        return [(f.metadata["env"], repr(f.default), f.metadata["doc"]) for f in dataclasses.fields(Settings)]
