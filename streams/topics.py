"""The one topic catalogue: every topic tkonto reads or writes, its key, schema and shape.

Topic names derive from ``TKONTO_TOPIC_PREFIX`` (default ``tkonto``). The README's topic
table is this catalogue (``tkonto topics``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable

from .settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    schema: str
    doc: str
    compacted: bool = False
    partitions: int | None = None  # None: the settings' default
    config: dict = field(default_factory=dict)


class Catalogue:
    def __init__(self, settings: Settings):
        self.settings = settings
        p = settings.topic_prefix
        self.payments = TopicSpec(
            f"{p}.payments", "payee_id", "PaymentEvent",
            "Validated payment events re-keyed by payee (internal repartition; original payer bytes): only "
            "those another worker registers; a worker registers its own at once (fused ledger stage).")
        self.ledger = TopicSpec(
            f"{p}.ledger", "payee_id", "LedgerEntry",
            "Every registered change of a transaction account, numbered per account.")
        self.deadletter = TopicSpec(
            f"{p}.deadletter", "source topic", "DeadLetter",
            "Inputs tkonto could not accept: reason, source coordinates and original bytes.")

        self.ref_payers = TopicSpec(
            f"{p}.ref.payers", "payer_id", "PayerRecord",
            "Payer registry: name, kind, region, connection scope (compacted; a Faust global table).", compacted=True)
        self.ref_accounts = TopicSpec(
            f"{p}.ref.accounts", "account", "BankAccount",
            "Bank account register: holders and powers of attorney (compacted; a global table).", compacted=True)
        self.ref_population = TopicSpec(
            f"{p}.ref.population", "person_id", "Person",
            "Population register: deceased, emigrated, municipality, protected identity (compacted; global table).",
            compacted=True)
        self.enriched = TopicSpec(
            f"{p}.enriched", "payee_id", "EnrichedPayment",
            "Every accepted payment with payer, bank account verification and payee status (all scopes).")
        self.citizen = TopicSpec(
            f"{p}.citizen", "viewer id (payee or representative)", "LedgerEntry",
            "What a person may see: ledger entries of PROPOSAL_1/3 payers, once per viewer.")
        self.analysis = TopicSpec(
            f"{p}.analysis", "payee_id", "EnrichedPayment",
            "Analysis input: PROPOSAL_1/2 payers only; patient-secrecy data removed unless the policy allows it.")

        self.analysis_by_account = TopicSpec(
            f"{p}.analysis.by-account", "bank_account", "EnrichedPayment",
            "Analysis input re-keyed by bank account, for account-wide rules (internal repartition): only "
            "what another worker's account rule evaluates (the stage is fused).")
        self.signals = TopicSpec(
            f"{p}.signals", "case_id", "SelectionHit",
            "Selection hits of the analysis rules; a redelivery repeats a hit with the same hit_id.")
        self.cases = TopicSpec(
            f"{p}.cases", "case_id", "Case",
            "Every change of a review case (compacted: the latest state of each case).", compacted=True)
        self.case_commands = TopicSpec(
            f"{p}.case-commands", "case_id", "CaseCommand",
            "Analysts' decisions, applied by the worker that owns the case (internal).")
        self.audit = TopicSpec(
            f"{p}.audit", "case_id", "AuditRecord",
            "Audit log: every case decision and every in-depth review export (who, when, whom, why). "
            "Restricted; keep long.")

        self.workers = TopicSpec(
            f"{p}.workers", "worker URL", "WorkerAssignment",
            "Which pipeline partitions each worker owns, announced on every rebalance (compacted; internal).",
            compacted=True, partitions=1)

    def changelog(self, store: str) -> TopicSpec:
        """The compacted changelog of one pipeline state store (partitioned like its source)."""
        return TopicSpec(
            f"{self.settings.app_id}-{store}-changelog", "the store's key", "state",
            f"Changelog of the {store} state store: the latest value per key (compacted; internal).", compacted=True)

    def changelogs(self) -> list[TopicSpec]:
        return [self.changelog(s) for s in ("accounts", "payee-analysis", "account-analysis", "citizen-views")]

    def pipeline_inputs(self, payer_ids: Iterable[str]) -> list[str]:
        """Every topic the pipeline engine reads (its consumer group: ``settings.pipeline_group``)."""
        return [self.payer_input(pid).name for pid in payer_ids] + [
            self.payments.name, self.analysis_by_account.name, self.citizen.name, self.signals.name,
            self.case_commands.name]

    def registers(self) -> dict[str, TopicSpec]:
        return {"payers": self.ref_payers, "accounts": self.ref_accounts, "population": self.ref_population}

    def payer_input(self, payer_id: str) -> TopicSpec:
        return TopicSpec(
            f"{self.settings.topic_prefix}.in.{payer_id}", "payee_id (keeps a payee's events in order)", "PaymentEvent",
            "A connected payer's own input topic; only that payer's payments are accepted on it.")

    def payer_notifications(self, payer_id: str) -> TopicSpec:
        return TopicSpec(
            f"{self.settings.topic_prefix}.notifications.{payer_id}", "case_id", "Notification",
            "A payer's own notifications (notification duty): only that payer's payments, never another payer's.")

    def internal(self) -> list[TopicSpec]:
        return [self.payments, self.ledger, self.deadletter, *self.registers().values(),
                self.enriched, self.citizen, self.analysis, self.analysis_by_account, self.signals, self.cases,
                self.case_commands, self.audit, self.workers, *self.changelogs()]

    def all(self, payer_ids: Iterable[str]) -> list[TopicSpec]:
        payer_ids = list(payer_ids)
        return (self.internal() + [self.payer_input(pid) for pid in payer_ids]
                + [self.payer_notifications(pid) for pid in payer_ids])


def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec], settings: Settings, timeout: float = 30.0) -> int:
    """Create the topics that do not exist yet; return how many were created."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=timeout).topics)
    new = []
    for spec in specs:
        if spec.name in existing:
            continue
        config = dict(spec.config)
        if spec.compacted:
            config["cleanup.policy"] = "compact"
        new.append(NewTopic(spec.name, spec.partitions or settings.partitions, settings.replication, config=config))
    if not new:
        return 0
    created = 0
    for name, future in admin.create_topics(new, operation_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
            created += 1
        except Exception as exc:  # a concurrent creator is fine
            err = exc.args[0] if exc.args else None
            if getattr(err, "code", lambda: None)() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"could not create topic {name}: {exc}") from exc
    log.info("created %d topics", created)
    return created
