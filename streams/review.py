"""Review workflow: cases, analyst decisions, notifications to payers, in-depth review export
and audit records. Plain synchronous functions on Avro record dicts; no Kafka, no HTTP (the
worker wires agents, tables and endpoints around them). docs/review.md describes the rules.

Analysis selects, people decide:

- Selection hits (``SelectionHit``) open a **case** per rule, subject (the payee, or the
  bank account for account rules) and rule window: ``case_key`` / ``open_or_update_case``.
  Adding the same hit twice changes nothing.
- An analyst **decides** an OPEN case: CLOSED_NO_ACTION, NOTIFY_PAYER or IN_DEPTH_REVIEW
  (``decide``). A decided case is final (409). Every decision gives one ``AuditRecord``.
- NOTIFY_PAYER gives one ``Notification`` per payer involved, carrying only that payer's own
  payments and the rule's published description: never another payer's id, payments,
  amounts or evidence derived from them.
- IN_DEPTH_REVIEW allows ``export_person``: everything registered about a named person
  EXCEPT patient-secrecy data (always removed, whatever ``PATIENT_SECRECY_IN_ANALYSIS``
  says), without address-like data for a person with protected identity; every export
  gives one ``AuditRecord``.

NOTHING here reclaims, stops, holds or changes a payment. A decision only records the
analyst's outcome and, for NOTIFY_PAYER, informs the payers; what happens to a payment is
the payer's own decision.

Errors an endpoint should answer with are ``ReviewError(status, message)``: 400 for a bad
request (no reason, unknown outcome, no case id), 409 for a case in the wrong state. Their
messages never contain an identity number in clear.
"""
from __future__ import annotations

import copy
import datetime as dt
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .enrichment import as_record, strip_patient_secrecy
from .identity import is_valid, mask

OPEN = "OPEN"
CLOSED_NO_ACTION = "CLOSED_NO_ACTION"
NOTIFY_PAYER = "NOTIFY_PAYER"
IN_DEPTH_REVIEW = "IN_DEPTH_REVIEW"
CASE_STATUSES = (OPEN, CLOSED_NO_ACTION, NOTIFY_PAYER, IN_DEPTH_REVIEW)
OUTCOMES = (CLOSED_NO_ACTION, NOTIFY_PAYER, IN_DEPTH_REVIEW)

CASE_DECIDED = "CASE_DECIDED"
IN_DEPTH_REVIEW_EXPORT = "IN_DEPTH_REVIEW_EXPORT"

# Severity order (SelectionHit's Severity enum) for a case's "highest severity"; unknown ranks lowest.
SEVERITY_RANK = {"LOW": 1, "MEDIUM": 2, "HIGH": 3}

PAYMENT_REF_FIELDS = ("payer_id", "payment_id", "payee_id", "event_type", "amount_ore", "category", "period_start",
                      "period_end", "payout_date")

NOTICE = ("Information under the Payments Agency's notification duty, about your own payments only. "
          "The agency has not reclaimed, stopped or changed any payment; whether and how to act is "
          "your decision.")

EXCLUSIONS = ("Never exported: decision circumstances covered by patient secrecy, and all circumstances "
              "of a decision covered by patient secrecy (regardless of PATIENT_SECRECY_IN_ANALYSIS). "
              "For a person with protected identity also: address, municipality of residence, "
              "address-like circumstances, and the holder name of the person's own account.")

# What may be said to a payer about OTHER payers' part in a finding: a fact without a name,
# an amount, a payment or a count (docs/review.md). Used only when other payers are involved.
OTHER_PAYERS_STATEMENT = {
    "MULTI_MUNICIPALITY_AID": "Another municipality also paid social assistance to the same person for "
                              "the same month. It is not named here and its payments are not shown.",
    "OVERLAPPING_BENEFITS": "Another payer paid a benefit that the published rule's matrix marks as "
                            "incompatible with your payment, for an overlapping period. The payer, the "
                            "benefit and the amounts are not shown.",
    "SHARED_ACCOUNT": "The same bank account received payments for the rule's threshold number of distinct "
                      "payees or more within the window, also from other payers. Other payers, payees "
                      "and amounts are not shown.",
}
OTHER_PAYERS_GENERIC = ("Payments by one or more other connected payers are part of this finding. They are "
                        "not named and their payments are not shown.")

# Evidence keys (streams/rules.py RULES[...].evidence) that may reach a payer from a hit that
# also involves other payers' payments: the rule's published thresholds, register facts about
# the subject, and the rule's month; never a value computed from another payer's payment
# (counts, other categories, overlap dates, other payout dates). Any other key of such a hit
# is withheld (docs/review.md).
SAFE_EVIDENCE_KEYS: dict[str, frozenset[str]] = {
    "ACCOUNT_NOT_HELD": frozenset({"close_match_threshold_ore"}),
    "SHARED_ACCOUNT": frozenset({"threshold_payees", "window_days"}),
    "PAID_AFTER_DEATH": frozenset({"deceased_date"}),
    "PAID_AFTER_EMIGRATION": frozenset({"emigration_date"}),
    "MULTI_MUNICIPALITY_AID": frozenset({"month", "threshold_payers"}),
    "OVERLAPPING_BENEFITS": frozenset({"threshold_days"}),
    "DUPLICATE_PAYMENT": frozenset(),
    "ACCOUNT_CHANGE_BEFORE_PAYOUT": frozenset({"threshold_days", "threshold_ore"}),
}
# Evidence keys never sent to a payer, even from a hit on the payer's own payments only:
# ACCOUNT_CHANGE_BEFORE_PAYOUT's previous account comes from the payee's previous payment,
# which may be another payer's.
NEVER_TO_PAYER: dict[str, frozenset[str]] = {
    "ACCOUNT_CHANGE_BEFORE_PAYOUT": frozenset({"previous_account"}),
}
# Rules whose window is computed from several payers' payments (an overlap, a payout span):
# a payer involved with others is told the span of its own payments instead.
DERIVED_WINDOW_RULES = frozenset({"OVERLAPPING_BENEFITS", "SHARED_ACCOUNT"})

# Circumstance names (split on non-letters) that are address-like: left out of an export
# for a person with protected identity.
ADDRESS_LIKE_WORDS = frozenset({
    "address", "adress", "addr", "street", "gata", "gatuadress", "postcode", "postal", "postnummer",
    "postort", "zip", "city", "town", "municipality", "kommun", "residence", "bostadsort", "folkbokforing",
    "location", "coordinates", "phone", "telephone", "telefon", "email", "epost", "co",
})


class ReviewError(Exception):
    """A review request that cannot proceed: ``status`` 400 (bad request) or 409 (wrong state).
    The message is safe to return to the client and to log."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message

    def __repr__(self) -> str:
        return f"ReviewError({self.status}, {self.message!r})"


@dataclass(frozen=True)
class DecisionResult:
    case: dict  # the decided Case record
    notifications: list[dict] = field(default_factory=list)  # Notification records (NOTIFY_PAYER only)
    audit: list[dict] = field(default_factory=list)  # AuditRecord records (exactly one CASE_DECIDED)


# -- helpers ------------------------------------------------------------------------------
def _utc(now: dt.datetime) -> dt.datetime:
    if not isinstance(now, dt.datetime):
        raise TypeError(f"now must be a datetime, not {type(now).__name__}")
    return now.replace(tzinfo=dt.timezone.utc) if now.tzinfo is None else now.astimezone(dt.timezone.utc)


def _digest(prefix: str, *parts: str) -> str:
    return prefix + hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _required_text(value, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ReviewError(400, f"{what} is required")
    return value.strip()


def _severity_rank(severity: str) -> int:
    return SEVERITY_RANK.get(str(severity).upper(), -1)


def _payment_ref(payment: dict) -> dict:
    return {name: payment.get(name) if name == "payee_id" else payment[name] for name in PAYMENT_REF_FIELDS}


def _ref_key(ref: dict) -> tuple:
    return ref["payer_id"], ref["payment_id"], ref["event_type"]


# -- cases --------------------------------------------------------------------------------
def case_subject(hit: dict) -> tuple[str, str]:
    """(subject, subject_kind) of a hit: its payee when it names one, else its bank account."""
    if hit.get("payee_id"):
        return hit["payee_id"], "PAYEE"
    if hit.get("bank_account"):
        return hit["bank_account"], "BANK_ACCOUNT"
    raise ValueError(f"selection hit {hit.get('hit_id')!r} names neither a payee nor a bank account")


def case_key(hit: dict) -> str:
    """One case per rule, subject and rule window: ``rule_id|subject|window``. Contains the
    subject in clear: a table key, never a log line (log ``case_id`` instead)."""
    subject, _ = case_subject(hit)
    return f"{hit['rule_id']}|{subject}|{hit['window']}"


def case_id_for(key: str, secret: str | None = None) -> str:
    """The deterministic, log-safe case id of a case key. With ``secret`` (a server-side
    key), HMAC-SHA-256: a payer that knows the rule and subject cannot recover the window
    from a notification's case id by trying candidate windows. Without, plain SHA-256."""
    if secret:
        return "case-" + hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()[:32]
    return _digest("case-", key)


def _hit_payers(hit: dict) -> list[str]:
    return sorted(set(hit.get("payer_ids") or []) | {p["payer_id"] for p in hit.get("payments") or []})


def _evidence(hit: dict) -> dict:
    return {
        "hit_id": hit["hit_id"],
        "rule_version": int(hit["rule_version"]),
        "payer_ids": _hit_payers(hit),
        "severity": str(hit["severity"]),
        "detected_at": _utc(hit["detected_at"]),
        "values": {str(k): str(v) for k, v in (hit.get("evidence") or {}).items()},
    }


def open_or_update_case(case: dict | None, hit: dict, now: dt.datetime, *, id_secret: str | None = None) -> dict:
    """The case after ``hit``: a new OPEN case when ``case`` is None, else ``case`` with the
    hit added (its id to ``hits``, its evidence, its payments and payers to the unions).

    Idempotent: a hit already in the case returns the case unchanged (an equal copy). The
    input is never modified. A hit arriving after the decision is recorded the same way; the
    status and decision stay (``hits_at_decision`` tells which hits the decision covered).
    Raises ValueError when the hit belongs to another case. ``id_secret``: see ``case_id_for``."""
    now = _utc(now)
    key = case_key(hit)
    subject, kind = case_subject(hit)
    if case is None:
        case = {
            "case_id": case_id_for(key, id_secret), "rule_id": hit["rule_id"], "subject": subject, "subject_kind": kind,
            "window": str(hit["window"]), "status": OPEN, "severity": str(hit["severity"]),
            "hits": [], "evidence": [], "payments": [], "payer_ids": [],
            "opened_at": now, "updated_at": now,
            "decided_at": None, "decided_by": None, "decision_reason": None, "hits_at_decision": None,
            "decided_by_command": None,
        }
    else:
        if (case["rule_id"], case["subject"], case["window"]) != (hit["rule_id"], subject, str(hit["window"])):
            raise ValueError(f"hit {hit.get('hit_id')!r} belongs to another case than {case['case_id']}")
        case = copy.deepcopy(case)
        if hit["hit_id"] in case["hits"]:
            return case
        case["updated_at"] = now
        if _severity_rank(hit["severity"]) > _severity_rank(case["severity"]):
            case["severity"] = str(hit["severity"])
    case["hits"].append(hit["hit_id"])
    case["evidence"].append(_evidence(hit))
    refs = {_ref_key(r): r for r in case["payments"]}
    for payment in hit.get("payments") or []:
        refs.setdefault(_ref_key(payment), _payment_ref(payment))
    case["payments"] = [refs[k] for k in sorted(refs)]
    case["payer_ids"] = sorted(set(case["payer_ids"]) | set(_hit_payers(hit)))
    return case


# -- rule descriptions --------------------------------------------------------------------
def rule_description(rule_id: str, describe: Callable[[str], str] | None = None) -> str:
    """The rule's published description: ``describe(rule_id)`` when given, else from
    ``streams.rules.RULES`` (an object with ``.description`` or a mapping with
    ``"description"``). LookupError when neither knows the rule."""
    if describe is not None:
        text = describe(rule_id)
    else:
        try:
            from .rules import RULES  # the rules module publishes every rule
        except ImportError as exc:
            raise LookupError("streams.rules is not available; pass describe=") from exc
        try:
            rule = RULES[rule_id]
        except KeyError:
            raise LookupError(f"no published rule {rule_id!r}") from None
        text = rule["description"] if isinstance(rule, dict) else getattr(rule, "description")
    if not isinstance(text, str) or not text.strip():
        raise LookupError(f"rule {rule_id!r} has no published description")
    return text


# -- notifications ------------------------------------------------------------------------
def notification_id_for(case_id: str, payer_id: str) -> str:
    return _digest("ntf-", case_id, payer_id)


def _amount_forms(amount_ore: int) -> set[str]:
    sek, ore = divmod(int(amount_ore), 100)
    return {str(amount_ore), f"{sek}.{ore:02d}", f"{sek},{ore:02d}", f"{sek:,}".replace(",", " ") + f",{ore:02d}"}


def other_payer_tokens(case: dict, payer_id: str) -> set[str]:
    """Strings that would reveal another payer's data to ``payer_id``: the other payers'
    ids, their payment ids, the payees of their payments (unless also the recipient's
    payee), and their amounts (öre, and SEK written 1234.50 / 1234,50 /
    1 234,50) unless the recipient has a payment of the same amount."""
    own = [r for r in case["payments"] if r["payer_id"] == payer_id]
    others = [r for r in case["payments"] if r["payer_id"] != payer_id]
    own_amounts = {r["amount_ore"] for r in own}
    tokens = {p for p in case["payer_ids"] if p != payer_id} | {r["payer_id"] for r in others}
    own_payment_ids = {r["payment_id"] for r in own}
    tokens |= {r["payment_id"] for r in others if r["payment_id"] not in own_payment_ids}
    own_payees = {r.get("payee_id") for r in own}
    tokens |= {r["payee_id"] for r in others if r.get("payee_id") and r["payee_id"] not in own_payees}
    for r in others:
        if r["amount_ore"] not in own_amounts:
            tokens |= _amount_forms(r["amount_ore"])
    return tokens


def notification_findings(case: dict, payer_id: str) -> dict[str, str]:
    """What the notification to ``payer_id`` may say about the finding, hit by hit:

    - a hit on the recipient's own payments only: its evidence as the rule published it
      (derived from the recipient's payments, registers about the subject and the rule),
      except the keys in ``NEVER_TO_PAYER``;
    - a hit that also involves other payers' payments: only ``SAFE_EVIDENCE_KEYS[rule_id]``;
    - a hit not involving the recipient's payments: nothing.

    Values differing between hits are joined with "; " (in hit order). Then, always, any
    finding whose name or value contains another payer's id, payment id, payee or amount is
    withheld (fail closed). When other payers are involved a fixed statement
    (``OTHER_PAYERS_STATEMENT``) says so without naming them."""
    rule = case["rule_id"]
    others = any(p != payer_id for p in case["payer_ids"]) or any(r["payer_id"] != payer_id for r in case["payments"])
    forbidden = other_payer_tokens(case, payer_id)
    collected: dict[str, list[str]] = {}
    for item in case["evidence"]:
        payers = set(item.get("payer_ids") or [])
        if payer_id not in payers:
            continue
        if payers == {payer_id}:
            keys = set(item["values"]) - NEVER_TO_PAYER.get(rule, frozenset())
        else:
            keys = set(item["values"]) & SAFE_EVIDENCE_KEYS.get(rule, frozenset())
        for name, value in item["values"].items():
            if name not in keys or any(token in value or token in name for token in forbidden):
                continue
            if value not in collected.setdefault(name, []):
                collected[name].append(value)
    findings = {name: "; ".join(values) for name, values in collected.items()}
    if others:
        findings["other_payers"] = OTHER_PAYERS_STATEMENT.get(rule, OTHER_PAYERS_GENERIC)
    return findings


def notification_window(case: dict, payer_id: str) -> str:
    """The window a payer is told: the case's, except for a rule whose window is computed
    from several payers' payments (``DERIVED_WINDOW_RULES``) when other payers are involved:
    then the span of the recipient's own payments (payout dates for SHARED_ACCOUNT, periods
    otherwise), written like the rules write windows (``YYYY-MM-DD..YYYY-MM-DD``)."""
    own = [r for r in case["payments"] if r["payer_id"] == payer_id]
    others = any(r["payer_id"] != payer_id for r in case["payments"]) or any(
        p != payer_id for p in case["payer_ids"])
    if case["rule_id"] not in DERIVED_WINDOW_RULES or not others or not own:
        return case["window"]
    if case["rule_id"] == "SHARED_ACCOUNT":
        first, last = min(r["payout_date"] for r in own), max(r["payout_date"] for r in own)
    else:
        first, last = min(r["period_start"] for r in own), max(r["period_end"] for r in own)
    return f"{first.isoformat()}..{last.isoformat()}"


def notifications_for(case: dict, description: str, decided_at: dt.datetime) -> list[dict]:
    """One Notification per payer involved in the case (sorted by payer id), each with only
    that payer's own payments."""
    payers = sorted(set(case["payer_ids"]) | {r["payer_id"] for r in case["payments"]})
    latest_version = case["evidence"][-1]["rule_version"] if case["evidence"] else 0
    notes = []
    for payer_id in payers:
        own = [copy.deepcopy(r) for r in case["payments"] if r["payer_id"] == payer_id]
        notes.append({
            "notification_id": notification_id_for(case["case_id"], payer_id),
            "payer_id": payer_id,
            "case_id": case["case_id"],
            "rule_id": case["rule_id"],
            "rule_version": latest_version,
            "rule_description": description,
            "window": notification_window(case, payer_id),
            "subject_kind": case["subject_kind"],
            "subject": case["subject"],
            "payments": own,
            "other_payers_involved": any(p != payer_id for p in payers),
            "findings": notification_findings(case, payer_id),
            "notice": NOTICE,
            "decided_at": _utc(decided_at),
        })
    return notes


def notification_topic(payer_id: str, settings=None) -> str:
    """``<prefix>.notifications.<payer_id>``: the payer's own notification topic."""
    from .settings import Settings
    from .topics import Catalogue

    return Catalogue(settings or Settings.from_env()).payer_notifications(payer_id).name


# -- decisions ----------------------------------------------------------------------------
def audit_id_for(*parts: str) -> str:
    return _digest("audit-", *parts)


def decide(case: dict, outcome: str, analyst: str, reason: str, now: dt.datetime,
           describe: Callable[[str], str] | None = None, command_id: str | None = None) -> DecisionResult:
    """An analyst's outcome for an OPEN case.

    400 when ``outcome`` is not CLOSED_NO_ACTION, NOTIFY_PAYER or IN_DEPTH_REVIEW, when
    ``reason`` is empty, or when ``analyst`` is empty; 409 when the case is already decided
    (a decision is final: a re-decision, even with the same outcome, is refused). The
    request is checked before the case's state. ``case`` is never modified.

    Returns the decided case, for NOTIFY_PAYER one notification per payer involved (the
    rule's description from ``describe`` or ``streams.rules.RULES``), and one CASE_DECIDED
    audit record (``decision_outputs``). Nothing is reclaimed or stopped. ``command_id``, the
    deciding CaseCommand's id, is kept in the case (``is_redelivered``)."""
    if outcome not in OUTCOMES:
        raise ReviewError(400, f"outcome must be one of {', '.join(OUTCOMES)}; got {str(outcome)[:40]!r}")
    reason = _required_text(reason, "a reason for the decision")
    analyst = _required_text(analyst, "the deciding analyst")
    if case["status"] != OPEN:
        decided = case["decided_at"].isoformat() if case.get("decided_at") else "earlier"
        raise ReviewError(409, f"case {case['case_id']} is already decided ({case['status']}, {decided}); "
                               "a decision is final")
    now = _utc(now)
    decided = copy.deepcopy(case)
    decided.update(status=outcome, decided_at=now, decided_by=analyst, decision_reason=reason,
                   hits_at_decision=len(case["hits"]), updated_at=now, decided_by_command=command_id)
    return decision_outputs(decided, describe)


def is_redelivered(case: dict | None, command: dict) -> bool:
    """Whether ``command`` is the very command that decided ``case``, read again (after a
    crash before its offset was committed), not a second decision."""
    return (case is not None and case["status"] != OPEN and case.get("decided_by_command") is not None
            and case["decided_by_command"] == command["command_id"])


def case_at_decision(case: dict) -> dict:
    """The decided ``case`` as its decision saw it: without the hits recorded after it (their
    evidence, their payers, and the payments of payers only they involved)."""
    covered = case["hits_at_decision"]
    if covered is None or covered >= len(case["hits"]):
        return case
    evidence = case["evidence"][:covered]
    payers = sorted({p for item in evidence for p in item["payer_ids"]})
    return {**case, "hits": case["hits"][:covered], "evidence": evidence, "payer_ids": payers,
            "payments": [r for r in case["payments"] if r["payer_id"] in payers]}


def decision_outputs(decided: dict, describe: Callable[[str], str] | None = None) -> DecisionResult:
    """What deciding ``decided`` sends: for NOTIFY_PAYER one notification per payer involved,
    and one CASE_DECIDED audit record. Built from the decided case alone, with ids derived
    from the case, so the records of a redelivered command equal the first ones."""
    outcome, seen = decided["status"], case_at_decision(decided)
    notifications: list[dict] = []
    if outcome == NOTIFY_PAYER:
        notifications = notifications_for(seen, rule_description(decided["rule_id"], describe), decided["decided_at"])
    audit = {
        "audit_id": audit_id_for(CASE_DECIDED, decided["case_id"]),
        "action": CASE_DECIDED,
        "analyst": decided["decided_by"],
        "at": decided["decided_at"],
        "person_id": decided["subject"] if decided["subject_kind"] == "PAYEE" else None,
        "case_id": decided["case_id"],
        "reason": decided["decision_reason"],
        "items_exported": 0,
        "outcome": outcome,
        "notified_payer_ids": [n["payer_id"] for n in notifications],
        "export_id": None,
    }
    return DecisionResult(decided, notifications, [audit])


# -- in-depth review export ---------------------------------------------------------------
def _register_record(item) -> dict | None:
    """``enrichment.as_record``, never sharing a caller's dict (the export is edited)."""
    return copy.deepcopy(item) if isinstance(item, dict) else as_record(item)


def is_address_like(circumstance_name: str) -> bool:
    words = {w for w in re.split(r"[^a-z]+", circumstance_name.casefold()) if w}
    return bool(words & ADDRESS_LIKE_WORDS)


def _protect(enriched: dict) -> dict:
    enriched["municipality_code"] = None
    verification = enriched.get("verification") or {}
    if verification.get("matched_as") == "PAYEE":
        verification["holder_name"] = None
    decision = enriched["payment"].get("decision")
    if decision:
        decision["circumstances"] = [c for c in decision.get("circumstances", []) if not is_address_like(c["name"])]
    return enriched


def export_person(person_id: str, ledger_entries: Iterable[dict], enriched_payments: Iterable[dict],
                  case_id: str, analyst: str, reason: str, now: dt.datetime, *,
                  person: dict | None = None, case: dict | None = None) -> tuple[dict, dict]:
    """(ReviewExport, AuditRecord) of an in-depth review of ``person_id``.

    ``ledger_entries`` (LedgerEntry) and ``enriched_payments`` (EnrichedPayment, from the
    enriched topic, i.e. with decision data) may hold other people's records: only those
    with the person as payee are exported, ledger entries each ``entry_id`` once by
    sequence, payments each ``event_id`` once by event time. ``person`` is the population
    register record, included when given. ``case``, when given, must be the case
    ``case_id`` with outcome IN_DEPTH_REVIEW (409 otherwise).

    Exclusions (always, whatever PATIENT_SECRECY_IN_ANALYSIS says): every circumstance
    flagged patient_secrecy, and every circumstance of a decision flagged patient_secrecy
    (``strip_patient_secrecy(..., allowed=False)``). When the person has protected identity
    (the register record or any enriched payment says so): no address, no municipality, no
    address-like circumstance, no holder name on the person's own account.

    400 when ``case_id``, ``reason`` or ``analyst`` is empty or ``person_id`` is not a valid
    identity number. The inputs are never modified."""
    case_id = _required_text(case_id, "a case id")
    reason = _required_text(reason, "a reason for the in-depth review")
    analyst = _required_text(analyst, "the reviewing analyst")
    if not isinstance(person_id, str) or not is_valid(person_id):
        raise ReviewError(400, f"person {mask(person_id) if isinstance(person_id, str) else '-'} "
                               "is not a valid identity number")
    if case is not None:
        if case["case_id"] != case_id:
            raise ReviewError(409, f"case {case['case_id']} is not case {case_id}")
        if case["status"] != IN_DEPTH_REVIEW:
            raise ReviewError(409, f"case {case_id} has status {case['status']}; an export needs the outcome "
                                   f"{IN_DEPTH_REVIEW}")
    now = _utc(now)

    ledger: dict[str, dict] = {}
    for entry in ledger_entries:
        if entry["payee_id"] == person_id:
            ledger.setdefault(entry["entry_id"], copy.deepcopy(entry))
    ledger_list = sorted(ledger.values(), key=lambda e: (e["sequence"], e["entry_id"]))

    payments: dict[str, dict] = {}
    for enriched in enriched_payments:
        if enriched["payment"]["payee_id"] == person_id:
            payments.setdefault(enriched["payment"]["event_id"], strip_patient_secrecy(enriched, allowed=False))
    payment_list = sorted(payments.values(), key=lambda e: (_utc(e["payment"]["event_time"]), e["payment"]["event_id"]))

    person_rec = _register_record(person)
    protected = bool(person_rec and person_rec.get("protected_identity")) or any(
        p.get("protected_identity") for p in payment_list)
    if protected:
        payment_list = [_protect(p) for p in payment_list]
        for p in payment_list:
            p["protected_identity"] = True
        if person_rec is not None:
            person_rec["address"] = None
            person_rec["municipality_code"] = None

    decisions: dict[tuple[str, str], dict] = {}
    for p in payment_list:  # event-time order: the latest version of a decision wins
        event = p["payment"]
        if not event.get("decision"):
            continue
        key = (event["payer_id"], event["decision"]["decision_id"])
        ids = set(decisions[key]["payment_ids"]) if key in decisions else set()
        decisions[key] = {"payer_id": event["payer_id"], "payment_ids": sorted(ids | {event["payment_id"]}),
                          "decision": copy.deepcopy(event["decision"])}
    decision_list = [decisions[k] for k in sorted(decisions)]

    export_id = _digest("exp-", case_id, person_id, analyst, now.isoformat())
    export = {
        "export_id": export_id,
        "case_id": case_id,
        "person_id": person_id,
        "analyst": analyst,
        "reason": reason,
        "exported_at": now,
        "protected_identity": protected,
        "person": person_rec,
        "ledger_entries": ledger_list,
        "payments": payment_list,
        "decisions": decision_list,
        "exclusions": EXCLUSIONS,
    }
    audit = {
        "audit_id": audit_id_for(IN_DEPTH_REVIEW_EXPORT, export_id),
        "action": IN_DEPTH_REVIEW_EXPORT,
        "analyst": analyst,
        "at": now,
        "person_id": person_id,
        "case_id": case_id,
        "reason": reason,
        "items_exported": len(ledger_list) + len(payment_list) + (1 if person_rec is not None else 0),
        "outcome": None,
        "notified_payer_ids": [],
        "export_id": export_id,
    }
    return export, audit


def _json_default(value):
    if isinstance(value, dt.datetime):
        return _utc(value).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def export_json(export: dict) -> str:
    """The export as the JSON an endpoint answers with: dates YYYY-MM-DD, times ISO 8601 UTC
    with Z, keys as in the ReviewExport schema."""
    return json.dumps(export, default=_json_default, ensure_ascii=False, sort_keys=True)


__all__ = [
    "ReviewError", "DecisionResult", "CASE_STATUSES", "OUTCOMES", "case_key", "case_id_for", "case_subject",
    "open_or_update_case", "decide", "rule_description", "notifications_for", "notification_findings",
    "notification_topic", "notification_window", "other_payer_tokens", "export_person", "export_json", "is_address_like",
]
