"""The published selection rules, as pure synchronous functions (no Kafka, no clock).

Analysis selects, people decide: a rule match is a *selection hit* (schema
``SelectionHit``) that opens an initial review; nothing is stopped or reclaimed here.
Every rule has a published id, version, description, inputs, thresholds (settings
``TKONTO_RULE_...``) and severity (``RULES``, docs/rules.md), and every hit carries the
evidence values that triggered it and only the payments involved.

API (the Faust agents keep the states in tables, encoded with the codec as
``se.tkonto.state.AnalysisState``, and publish the hits):

- ``evaluate_payee(state, enriched, thresholds) -> (state, hits)``: the payee-keyed rules,
  for one ``EnrichedPayment`` from the analysis topic, state keyed by payee_id.
- ``evaluate_account(state, enriched, thresholds) -> (state, hits)``: SHARED_ACCOUNT,
  state keyed by the payment's bank account.
- ``Thresholds.from_settings(settings)``.

Which events count. Only PLANNED and EXECUTED events are payments for the rules (a
PLANNED payment is checked before any money moves). CANCELLED, RETURNED and RECALLED never
raise a hit; they *withdraw* the payment: it stays in the state as a tombstone (so a
late or redelivered PLANNED cannot bring it back) and no longer counts for any rule, e.g.
a payment re-issued after a return is not a DUPLICATE_PAYMENT. Hits already raised stand:
they record what was seen; the reviewer sees the withdrawal in the ledger.

Idempotence. A payment is remembered with the values of its first event and an arrival
number (``seq``). A rule compares a payment only with payments that arrived *before* it,
so evaluating the same event again (redelivery, or the EXECUTED after the PLANNED of the
same payment) gives the same state and the same hit ids. Hit ids are the first 32 hex
digits of SHA-256 over rule id, subject, window and the sorted ``payer_id:payment_id`` of
the payments involved; the event type is not part of the id.

Bounded state. The watermark is the latest event day seen (the earlier of the payer's
event_time and enriched_at, so a payer clock in the future cannot prune the state).
Payments whose payout and period both ended more than ``retention_days`` before it are
pruned, and at most ``max_payments`` (the latest by payout date) are kept. An event that
old is still checked by the single-payment rules but not kept or compared.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import operator
from dataclasses import dataclass

from .account import month_of
from .avro_native import dict_lookup
from .categories import CATEGORIES
from .sealed import Sealed

COUNTED = ("PLANNED", "EXECUTED")
WITHDRAWING = ("CANCELLED", "RETURNED", "RECALLED")
_STEP = {"PLANNED": 1, "EXECUTED": 2}


@dataclass(frozen=True)
class Rule:
    rule_id: str
    version: int
    severity: str  # LOW | MEDIUM | HIGH
    keyed_by: str  # payee | account
    description: str
    inputs: tuple[str, ...]
    settings: tuple[str, ...]  # environment variables of its thresholds
    evidence: tuple[str, ...]  # keys of the hit's evidence map


RULES: dict[str, Rule] = {r.rule_id: r for r in [
    Rule("ACCOUNT_NOT_HELD", 1, "HIGH", "payee",
         "The bank account the payment goes to is not held by the payee or by the payment's registered "
         "representative: the bank account register answered NO_MATCH, or CLOSE_MATCH (a holder with a "
         "similar name but another identity number) for an amount above the threshold. NOT_POSSIBLE (account "
         "unknown or register unavailable) is not a hit.",
         ("verification.result", "verification.holder_name", "payment.amount_ore", "payment.bank_account"),
         ("TKONTO_RULE_ACCOUNT_NOT_HELD_CLOSE_MATCH_ORE",),
         ("verification_result", "holder_name", "amount_ore", "close_match_threshold_ore", "payout_date",
          "representative_given")),
    Rule("SHARED_ACCOUNT", 1, "HIGH", "account",
         "One bank account receives payments for at least N distinct payees whose payout dates fall within "
         "one window of D days, across all payers. Payments verified as going to the payee's registered "
         "representative's own account (a guardian or trustee managing several people's money) do not count. "
         "Each further payee entering a window that already meets N raises a further hit naming all of them.",
         ("payment.bank_account", "payment.payee_id", "payment.payout_date", "verification.matched_as"),
         ("TKONTO_RULE_SHARED_ACCOUNT_MIN_PAYEES", "TKONTO_RULE_SHARED_ACCOUNT_WINDOW_DAYS"),
         ("distinct_payees", "threshold_payees", "window_days", "first_payout", "last_payout",
          "representative_payments_excluded")),
    Rule("PAID_AFTER_DEATH", 1, "HIGH", "payee",
         "The payout date is after the payee's registered date of death (a payout on the day of death is not).",
         ("payment.payout_date", "deceased_date"), (),
         ("deceased_date", "payout_date", "days_after_death", "period_start", "period_end")),
    Rule("PAID_AFTER_EMIGRATION", 1, "MEDIUM", "payee",
         "A residence-based benefit (streams/categories.py residence_based) is paid for a period that starts "
         "after the payee's registered emigration date.",
         ("payment.category", "payment.period_start", "emigration_date"), (),
         ("emigration_date", "period_start", "period_end", "payout_date", "category")),
    Rule("MULTI_MUNICIPALITY_AID", 1, "HIGH", "payee",
         "Social assistance for the same person and the same calendar month (by the payments' periods) is "
         "paid by at least N different municipalities.",
         ("payment.category", "payer_kind", "payment.payer_id", "payment.period_start", "payment.period_end"),
         ("TKONTO_RULE_MULTI_MUNICIPALITY_MIN_PAYERS",),
         ("month", "distinct_municipalities", "threshold_payers")),
    Rule("OVERLAPPING_BENEFITS", 1, "MEDIUM", "payee",
         "Two benefits that the incompatibility matrix says cannot be paid for the same days (e.g. sickness "
         "benefit and unemployment benefit) are paid to the same payee for periods overlapping by at least "
         "the minimum number of days. The extent (full or part time) is not known to the rule: the reviewer "
         "checks it.",
         ("payment.category", "payment.period_start", "payment.period_end"),
         ("TKONTO_RULE_OVERLAPPING_BENEFITS_PAIRS", "TKONTO_RULE_OVERLAPPING_BENEFITS_MIN_DAYS"),
         ("categories", "overlap_start", "overlap_end", "overlap_days", "threshold_days")),
    Rule("DUPLICATE_PAYMENT", 1, "MEDIUM", "payee",
         "The same payer pays the same payee the same amount for the same period under two different payment "
         "ids, and neither has been cancelled, returned or recalled.",
         ("payment.payer_id", "payment.payment_id", "payment.amount_ore", "payment.period_start",
          "payment.period_end"), (),
         ("amount_ore", "period_start", "period_end", "original_payment_id", "duplicate_payment_id")),
    Rule("ACCOUNT_CHANGE_BEFORE_PAYOUT", 1, "MEDIUM", "payee",
         "The payment goes to another account than the payee's previous payment (in arrival order, any payer), "
         "that account was opened at most D days before the payout date, and the amount is above the threshold.",
         ("payment.bank_account", "account_opened", "payment.payout_date", "payment.amount_ore"),
         ("TKONTO_RULE_ACCOUNT_CHANGE_DAYS", "TKONTO_RULE_ACCOUNT_CHANGE_MIN_ORE"),
         ("previous_account", "account_opened", "payout_date", "days_before_payout", "amount_ore",
          "threshold_days", "threshold_ore")),
]}

RULE_IDS = tuple(RULES)


class ThresholdError(ValueError):
    """A rule threshold that cannot be used; the message names the variable."""


def parse_pairs(text: str) -> frozenset[frozenset[str]]:
    """``"A+B,C+D"`` -> {{A, B}, {C, D}}; each a pair of two different PaymentCategory codes."""
    pairs = set()
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        parts = [c.strip() for c in item.split("+")]
        if len(parts) != 2 or parts[0] == parts[1] or any(c not in CATEGORIES for c in parts):
            raise ThresholdError(f"TKONTO_RULE_OVERLAPPING_BENEFITS_PAIRS: {item!r} is not two different "
                                 "payment categories joined by + (e.g. SICKNESS_BENEFIT+UNEMPLOYMENT_BENEFIT)")
        pairs.add(frozenset(parts))
    return frozenset(pairs)


DEFAULT_PAIRS = ("SICKNESS_BENEFIT+UNEMPLOYMENT_BENEFIT,SICKNESS_BENEFIT+ACTIVITY_COMPENSATION,"
                 "UNEMPLOYMENT_BENEFIT+ACTIVITY_COMPENSATION")


@dataclass(frozen=True)
class Thresholds:
    close_match_above_ore: int = 1_000_000
    shared_min_payees: int = 3
    shared_window_days: int = 30
    multi_municipality_min_payers: int = 2
    incompatible: frozenset = parse_pairs(DEFAULT_PAIRS)
    overlap_min_days: int = 1
    account_change_days: int = 30
    account_change_above_ore: int = 1_000_000
    retention_days: int = 120
    max_payments: int = 200

    def __post_init__(self):
        checks = [
            (self.shared_min_payees >= 2, "TKONTO_RULE_SHARED_ACCOUNT_MIN_PAYEES must be at least 2"),
            (self.shared_window_days >= 1, "TKONTO_RULE_SHARED_ACCOUNT_WINDOW_DAYS must be at least 1"),
            (self.multi_municipality_min_payers >= 2, "TKONTO_RULE_MULTI_MUNICIPALITY_MIN_PAYERS must be at least 2"),
            (self.overlap_min_days >= 1, "TKONTO_RULE_OVERLAPPING_BENEFITS_MIN_DAYS must be at least 1"),
            (self.max_payments >= 10, "TKONTO_RULE_STATE_MAX_PAYMENTS must be at least 10"),
            (self.retention_days >= max(self.shared_window_days, self.account_change_days, 62),
             "TKONTO_RULE_STATE_RETENTION_DAYS must cover the longest rule window (and two months)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ThresholdError(message)

    @classmethod
    def from_settings(cls, settings) -> "Thresholds":
        return cls(
            close_match_above_ore=settings.rule_account_not_held_close_match_ore,
            shared_min_payees=settings.rule_shared_account_min_payees,
            shared_window_days=settings.rule_shared_account_window_days,
            multi_municipality_min_payers=settings.rule_multi_municipality_min_payers,
            incompatible=parse_pairs(settings.rule_overlapping_benefits_pairs),
            overlap_min_days=settings.rule_overlapping_benefits_min_days,
            account_change_days=settings.rule_account_change_days,
            account_change_above_ore=settings.rule_account_change_min_ore,
            retention_days=settings.rule_state_retention_days,
            max_payments=settings.rule_state_max_payments,
        )


# -- helpers ------------------------------------------------------------------------------
def hit_id(rule_id: str, subject: str, window: str, refs) -> str:
    """Deterministic hit id over rule, subject, window and the payments' payer_id:payment_id."""
    parts = [rule_id, subject, window] + sorted(f"{p}:{i}" for p, i in refs)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def months_covered(start: dt.date, end: dt.date) -> list[str]:
    months, year, month = [], start.year, start.month
    while (year, month) <= (end.year, end.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


_DATETIME, _UTC = dt.datetime, dt.timezone.utc  # looked up once, not in every call below


def _day_of(value) -> dt.date:
    """The UTC day of a datetime (a date as it is)."""
    if type(value) is _DATETIME and value.tzinfo is _UTC:  # as decoded: the common case
        return value.date()
    if isinstance(value, dt.datetime):
        zone = value.tzinfo
        if zone is not None and zone is not _UTC:
            value = value.astimezone(_UTC)
        return value.date()
    return value


def _ref(p: dict) -> dict:
    """A PaymentRef record of a tracked payment."""
    return {"payer_id": p["payer_id"], "payment_id": p["payment_id"], "payee_id": p["payee_id"],
            "event_type": p["status"], "amount_ore": p["amount_ore"], "category": p["category"],
            "period_start": p["period_start"], "period_end": p["period_end"], "payout_date": p["payout_date"]}


def _hit(rule_id: str, subject: str, window: str, payments: list[dict], evidence: dict, enriched: dict,
         *, payee_id: str | None, bank_account: str | None) -> dict:
    rule = RULES[rule_id]
    ordered = sorted(payments, key=lambda p: (p["payout_date"], p["payer_id"], p["payment_id"]))
    return {
        "hit_id": hit_id(rule_id, subject, window, [(p["payer_id"], p["payment_id"]) for p in ordered]),
        "rule_id": rule_id, "rule_version": rule.version, "severity": rule.severity,
        "payee_id": payee_id, "bank_account": bank_account, "window": window,
        "payments": [_ref(p) for p in ordered],
        "payer_ids": sorted({p["payer_id"] for p in ordered}),
        "evidence": {k: "" if v is None else str(v) for k, v in evidence.items()},
        "detected_at": enriched["enriched_at"],
    }


def _tracked(enriched: dict, status: str, seq: int) -> dict:
    ev = enriched["payment"]
    verification = enriched.get("verification") or {}
    return Sealed(  # keywords, not a dict then copied: ~0.1 µs less
        seq=seq, payer_id=ev["payer_id"], payment_id=ev["payment_id"],
        payer_kind=enriched["payer_kind"], payee_id=ev["payee_id"],
        via_representative=verification.get("matched_as") == "REPRESENTATIVE",
        bank_account=ev["bank_account"], account_opened=enriched.get("account_opened"),
        amount_ore=ev["amount_ore"], category=ev["category"],
        period_start=ev["period_start"], period_end=ev["period_end"], payout_date=ev["payout_date"],
        status=status,
    )


_PAYEE_ID = operator.itemgetter("payee_id")


def _last_day(p: dict) -> dt.date:
    """The last day a payment (or payment event) concerns: pruning counts back to it."""
    return max(p["payout_date"], p["period_end"])


#: from this many payments a state keeps indexes of them (``_State``). Below it, a search
#: of the list costs less than keeping them: instructions per event with an index from 8
#: payments against none (``benchmarks/instructions.py``) +0.28 % at ~3 events a payee,
#: -0.50 % at ~27, -5.70 % at ~100; with an index in every state +0.79, -1.14 and -6.12 %
INDEXED_FROM = 8


class _State(dict):
    """A rule state (``AnalysisState``) with two indexes of its payments that are not
    stored. It is written like any dict. A state read from its changelog or from RocksDB
    is a plain dict, and ``_track`` gives it the indexes when it evaluates it with
    ``INDEXED_FROM`` payments or more.

    * ``at``: (payer id, payment id) -> position in ``payments``, so that finding the
      payment an event concerns takes no pass over the list. A state holds up to
      ``max_payments``, and a payee's state is evaluated at every one of the payee's events;
    * ``payees``: the payee ids in ``payments`` of an ACCOUNT state (SHARED_ACCOUNT needs
      enough of them); None in a PAYEE state.

    Copy on write, like the payments: the next state shares the indexes
    (``_next_indexed``), and ``_add_to_index`` copies one only when it adds to it. Changing
    a status keeps a payment's position, and a prune builds the list and the indexes anew.
    So an input state is never changed.

    Memory: ~100 bytes a payment (a tracked payment's dict alone is ~470), only in
    decoded states: with ``rocksdb://`` the cached ones."""

    __slots__ = ("at", "payees")


dict_lookup(_State)  # its items read as fast as a dict's


def _index(st: _State) -> _State:
    """(Re)build the indexes of ``st`` from its payments."""
    payments = st["payments"]
    at: dict[tuple[str, str], int] = {}
    for i, p in enumerate(payments):
        at.setdefault((p["payer_id"], p["payment_id"]), i)  # the first, as a search finds it
    st.at = at
    st.payees = frozenset(map(_PAYEE_ID, payments)) if st["kind"] == "ACCOUNT" else None
    return st


def _next_indexed(state: _State) -> _State:
    """The copy of an indexed state that ``_track`` changes, sharing its indexes."""
    st = _State(state)
    st["payments"] = list(state["payments"])
    st.at, st.payees = state.at, state.payees
    return st


def _add_to_index(st: _State, p: dict) -> None:
    """Index a payment about to be appended (the search found none)."""
    st.at = {**st.at, (p["payer_id"], p["payment_id"]): len(st["payments"])}
    payees = st.payees
    if payees is not None and p["payee_id"] not in payees:
        st.payees = payees | {p["payee_id"]}


def _payees(st: dict) -> frozenset | set:
    """The payee ids of a state's payments."""
    if type(st) is _State and st.payees is not None:
        return st.payees
    return set(map(_PAYEE_ID, st["payments"]))


def _track(state: dict | None, kind: str, key: str, enriched: dict,
           th: Thresholds) -> tuple[dict, dict | None, bool, bool]:
    """The common bookkeeping of one event: (the new state; the tracked payment, stored or
    transient when too old to keep; whether it is stored; whether it counts, i.e. it is a
    PLANNED/EXECUTED of a payment not withdrawn). A tuple, not an object: this runs twice
    per payment, and a small class cost ~1,500 instructions to build and ~100 an attribute."""
    ev = enriched["payment"]
    # Copy on write instead of copy.deepcopy (most of the cost of a rule evaluation): a new
    # top-level dict and payment list; a tracked payment is copied only when it changes
    # (``_set_status``), so the input state is never modified and the unchanged payment
    # records are shared between the input and the returned state (they are ``Sealed``, and
    # their values immutable: strings, numbers, dates).
    indexed = type(state) is _State
    if indexed:
        st = _next_indexed(state)
    elif state:
        st = {**state, "payments": list(state["payments"])}
        if len(st["payments"]) >= INDEXED_FROM:
            st, indexed = _index(_State(st)), True
    else:
        st = {"kind": kind, "key": key, "next_seq": 1, "watermark": None, "payments": []}
    happened, enriched_at = ev["event_time"], enriched["enriched_at"]
    if type(happened) is _DATETIME and type(enriched_at) is _DATETIME \
            and happened.tzinfo is _UTC and enriched_at.tzinfo is _UTC:  # as decoded: ``_day_of`` without two calls
        day = min(happened, enriched_at).date()
    else:
        day = min(_day_of(happened), _day_of(enriched_at))
    moved = st["watermark"] is None or day > st["watermark"]
    if moved:
        st["watermark"] = day
    horizon = st["watermark"] - _days(th.retention_days)
    payer_id, payment_id = ev["payer_id"], ev["payment_id"]
    payments = st["payments"]
    index = tracked = None
    if indexed:
        index = st.at.get((payer_id, payment_id))
        tracked = None if index is None else payments[index]
    else:  # fewer than INDEXED_FROM: looked at one by one (compiled, _track took 3.37 µs a call
        # this way against 3.85 with a list of their ids searched)
        for i, p in enumerate(payments):
            if p["payment_id"] == payment_id and p["payer_id"] == payer_id:
                index, tracked = i, p
                break
    kept = max(ev["payout_date"], ev["period_end"]) >= horizon  # _last_day(ev), without the call
    event_type = ev["event_type"]
    payment, stored, counts = tracked, tracked is not None, False
    if event_type in WITHDRAWING:
        if tracked is not None:
            if tracked["status"] in COUNTED:
                payment = _set_status(st, index, event_type)
        elif kept:
            payment = _tracked(enriched, event_type, st["next_seq"])
            st["next_seq"] += 1
            if indexed:
                _add_to_index(st, payment)
            payments.append(payment)
            stored = True
    elif event_type in COUNTED:
        if tracked is None:
            payment = _tracked(enriched, event_type, st["next_seq"])
            if kept:
                st["next_seq"] += 1
                if indexed:
                    _add_to_index(st, payment)
                payments.append(payment)
                stored = True
            counts = True
        elif tracked["status"] in COUNTED:
            if _STEP[event_type] > _STEP[tracked["status"]]:
                payment = _set_status(st, index, event_type)
            counts = True
    # what is stored was kept by the horizon: only the size cap can have dropped it
    if _prune(st, horizon, th.max_payments, moved) and stored and payment is not None \
            and not _holds(st["payments"], payment):
        stored = False  # pruned by the size cap: compared no further
    return st, payment, stored, counts


def _holds(payments: list[dict], payment: dict) -> bool:
    """Whether ``payment`` itself (not an equal one) is in ``payments``."""
    return any(p is payment for p in payments)


@functools.lru_cache(maxsize=None)
def _days(n: int) -> dt.timedelta:
    return dt.timedelta(days=n)


def _set_status(st: dict, index: int, status: str) -> dict:
    """Set a tracked payment's status on a copy of it (the input state shares the original)."""
    changed = st["payments"][index] = Sealed({**st["payments"][index], "status": status})
    return changed


def _prune(st: dict, horizon: dt.date, cap: int, moved: bool) -> bool:
    """Drop what ended before ``horizon``, then all but the ``cap`` latest (True if the cap
    dropped any). Runs on every event and seldom drops anything: the list is rebuilt only then.

    The list is searched for what ended before ``horizon`` only when the horizon ``moved``
    (the state's watermark, a day, advanced). Otherwise there is none: every stored state
    was pruned at its watermark's horizon when it was written, and a payment is stored only
    if it ends on or after it. (A smaller ``TKONTO_RULE_STATE_RETENTION_DAYS`` after a
    restart therefore applies to a state from the next day its watermark reaches.)"""
    payments = before = st["payments"]
    if moved:
        for p in payments:
            if p["payout_date"] < horizon and p["period_end"] < horizon:  # _last_day(p) < horizon
                payments = st["payments"] = [p for p in payments if _last_day(p) >= horizon]
                break
    capped = len(payments) > cap
    if capped:
        keep = sorted(payments, key=lambda p: (p["payout_date"], p["seq"]))[-cap:]
        ids = {id(p) for p in keep}
        st["payments"] = [p for p in payments if id(p) in ids]
    if st["payments"] is not before and type(st) is _State:
        _index(st)  # the positions moved: once, after both prunes
    return capped


def _earlier(st: dict, p: dict) -> list[dict]:
    """Payments that arrived before ``p`` and still count."""
    seq = p["seq"]
    return [q for q in st["payments"] if q["seq"] < seq and q["status"] in COUNTED]


# -- payee rules --------------------------------------------------------------------------
def _account_not_held(enriched: dict, p: dict, th: Thresholds) -> list[dict]:
    verification = enriched.get("verification") or {}
    result = verification.get("result")
    ev = enriched["payment"]
    if result == "NO_MATCH" or (result == "CLOSE_MATCH" and ev["amount_ore"] > th.close_match_above_ore):
        evidence = {"verification_result": result, "holder_name": verification.get("holder_name"),
                    "amount_ore": ev["amount_ore"], "close_match_threshold_ore": th.close_match_above_ore,
                    "payout_date": ev["payout_date"].isoformat(),
                    "representative_given": "true" if ev.get("representative_id") else "false"}
        return [_hit("ACCOUNT_NOT_HELD", ev["payee_id"], month_of(ev["payout_date"]), [p], evidence, enriched,
                     payee_id=ev["payee_id"], bank_account=ev["bank_account"])]
    return []


def _paid_after_death(enriched: dict, p: dict) -> list[dict]:
    died = enriched.get("deceased_date")
    ev = enriched["payment"]
    if died is None or ev["payout_date"] <= died:
        return []
    evidence = {"deceased_date": died.isoformat(), "payout_date": ev["payout_date"].isoformat(),
                "days_after_death": (ev["payout_date"] - died).days,
                "period_start": ev["period_start"].isoformat(), "period_end": ev["period_end"].isoformat()}
    return [_hit("PAID_AFTER_DEATH", ev["payee_id"], month_of(ev["payout_date"]), [p], evidence, enriched,
                 payee_id=ev["payee_id"], bank_account=None)]


def _paid_after_emigration(enriched: dict, p: dict) -> list[dict]:
    left = enriched.get("emigration_date")
    ev = enriched["payment"]
    category = CATEGORIES.get(ev["category"])
    if left is None or category is None or not category.residence_based or ev["period_start"] <= left:
        return []
    evidence = {"emigration_date": left.isoformat(), "period_start": ev["period_start"].isoformat(),
                "period_end": ev["period_end"].isoformat(), "payout_date": ev["payout_date"].isoformat(),
                "category": ev["category"]}
    return [_hit("PAID_AFTER_EMIGRATION", ev["payee_id"], month_of(ev["payout_date"]), [p], evidence, enriched,
                 payee_id=ev["payee_id"], bank_account=None)]


def _multi_municipality(earlier: list[dict], p: dict, enriched: dict, th: Thresholds) -> list[dict]:
    if p["category"] != "SOCIAL_ASSISTANCE" or p["payer_kind"] != "MUNICIPALITY":
        return []
    others = [(q, months_covered(q["period_start"], q["period_end"])) for q in earlier
              if q["category"] == "SOCIAL_ASSISTANCE" and q["payer_kind"] == "MUNICIPALITY"]
    if not others:  # p alone: one payer is below any threshold (at least 2)
        return []
    hits = []
    for month in months_covered(p["period_start"], p["period_end"]):
        group = [q for q, months in others if month in months]
        before = {q["payer_id"] for q in group}
        payers = before | {p["payer_id"]}
        if p["payer_id"] in before or len(payers) < th.multi_municipality_min_payers:
            continue
        evidence = {"month": month, "distinct_municipalities": len(payers),
                    "threshold_payers": th.multi_municipality_min_payers}
        hits.append(_hit("MULTI_MUNICIPALITY_AID", p["payee_id"], month, group + [p], evidence, enriched,
                         payee_id=p["payee_id"], bank_account=None))
    return hits


@functools.lru_cache(maxsize=256)
def _partners(incompatible: frozenset, category: str) -> frozenset:
    """The categories that may not overlap with ``category`` (the pairs naming it)."""
    return frozenset(c for pair in incompatible if category in pair for c in (pair - {category} or pair))


def _overlapping(earlier: list[dict], p: dict, enriched: dict, th: Thresholds) -> list[dict]:
    partners = _partners(th.incompatible, p["category"])
    if not partners:
        return []
    hits = []
    for q in earlier:
        if q["category"] not in partners:
            continue
        start, end = max(p["period_start"], q["period_start"]), min(p["period_end"], q["period_end"])
        days = (end - start).days + 1
        if days < th.overlap_min_days:
            continue
        window = f"{start.isoformat()}..{end.isoformat()}"
        evidence = {"categories": "+".join(sorted((q["category"], p["category"]))),
                    "overlap_start": start.isoformat(), "overlap_end": end.isoformat(),
                    "overlap_days": days, "threshold_days": th.overlap_min_days}
        hits.append(_hit("OVERLAPPING_BENEFITS", p["payee_id"], window, [q, p], evidence, enriched,
                         payee_id=p["payee_id"], bank_account=None))
    return hits


def _duplicate(earlier: list[dict], p: dict, enriched: dict) -> list[dict]:
    hits = []
    amount, payer_id, payment_id = p["amount_ore"], p["payer_id"], p["payment_id"]
    start, end = p["period_start"], p["period_end"]
    for q in earlier:
        if (q["amount_ore"] == amount and q["payer_id"] == payer_id and q["payment_id"] != payment_id
                and q["period_start"] == start and q["period_end"] == end):
            window = f"{p['period_start'].isoformat()}..{p['period_end'].isoformat()}"
            evidence = {"amount_ore": p["amount_ore"], "period_start": p["period_start"].isoformat(),
                        "period_end": p["period_end"].isoformat(), "original_payment_id": q["payment_id"],
                        "duplicate_payment_id": p["payment_id"]}
            hits.append(_hit("DUPLICATE_PAYMENT", p["payee_id"], window, [q, p], evidence, enriched,
                             payee_id=p["payee_id"], bank_account=None))
    return hits


def _account_change(st: dict, p: dict, enriched: dict, th: Thresholds) -> list[dict]:
    if p["account_opened"] is None:
        return []
    days = (p["payout_date"] - p["account_opened"]).days
    if not 0 <= days <= th.account_change_days or p["amount_ore"] <= th.account_change_above_ore:
        return []  # decided by the payment alone: the payments before it are not looked at
    seq = p["seq"]
    earlier = [q for q in st["payments"] if q["seq"] < seq]
    if not earlier:
        return []
    previous = max(earlier, key=lambda q: q["seq"])
    if previous["bank_account"] == p["bank_account"]:
        return []
    evidence = {"previous_account": previous["bank_account"], "account_opened": p["account_opened"].isoformat(),
                "payout_date": p["payout_date"].isoformat(), "days_before_payout": days,
                "amount_ore": p["amount_ore"], "threshold_days": th.account_change_days,
                "threshold_ore": th.account_change_above_ore}
    return [_hit("ACCOUNT_CHANGE_BEFORE_PAYOUT", p["payee_id"], month_of(p["payout_date"]), [p], evidence,
                 enriched, payee_id=p["payee_id"], bank_account=p["bank_account"])]


def evaluate_payee(state: dict | None, enriched: dict, thresholds: Thresholds) -> tuple[dict, list[dict]]:
    """All payee-keyed rules for one EnrichedPayment. ``state`` is the payee's
    ``AnalysisState`` (kind PAYEE) or None; returns the new state (the input is not
    modified) and the hits (``SelectionHit`` records), possibly none."""
    ev = enriched["payment"]
    st, p, stored, counts = _track(state, "PAYEE", ev["payee_id"], enriched, thresholds)
    if not counts:
        return st, []
    hits = _account_not_held(enriched, p, thresholds) + _paid_after_death(enriched, p) \
        + _paid_after_emigration(enriched, p)
    if stored:
        earlier = _earlier(st, p)  # once for the three rules that compare with what came before
        if earlier:  # none of the three finds anything without an earlier payment (a payee's first)
            hits += _multi_municipality(earlier, p, enriched, thresholds) \
                + _overlapping(earlier, p, enriched, thresholds) + _duplicate(earlier, p, enriched)
        hits += _account_change(st, p, enriched, thresholds)
    return st, hits


# -- account rule -------------------------------------------------------------------------
def _shared_account(st: dict, p: dict, enriched: dict, th: Thresholds) -> list[dict]:
    if p["via_representative"]:
        return []
    if len(st["payments"]) < th.shared_min_payees or len(_payees(st)) < th.shared_min_payees:
        return []  # most accounts are one payee's: never enough payees, in any window
    considered = [q for q in st["payments"] if q["seq"] <= p["seq"] and q["status"] in COUNTED]
    counted = [q for q in considered if not q["via_representative"]]
    day, span = p["payout_date"], th.shared_window_days
    best = None
    for start in sorted({q["payout_date"] for q in counted if 0 <= (day - q["payout_date"]).days < span}):
        end = start + dt.timedelta(days=span - 1)
        members = [q for q in counted if start <= q["payout_date"] <= end]
        others = {q["payee_id"] for q in members if q is not p}
        payees = others | {p["payee_id"]}
        if p["payee_id"] in others or len(payees) < th.shared_min_payees:
            continue
        if best is None or len(payees) > len(best[1]):
            best = (start, payees, members)
    if best is None:
        return []
    start, payees, members = best
    end = start + dt.timedelta(days=span - 1)
    excluded = sum(1 for q in considered if q["via_representative"] and start <= q["payout_date"] <= end)
    first, last = min(q["payout_date"] for q in members), max(q["payout_date"] for q in members)
    window = f"{first.isoformat()}..{last.isoformat()}"
    evidence = {"distinct_payees": len(payees), "threshold_payees": th.shared_min_payees, "window_days": span,
                "first_payout": first.isoformat(), "last_payout": last.isoformat(),
                "representative_payments_excluded": excluded}
    return [_hit("SHARED_ACCOUNT", st["key"], window, members, evidence, enriched,
                 payee_id=None, bank_account=st["key"])]


def evaluate_account(state: dict | None, enriched: dict, thresholds: Thresholds) -> tuple[dict, list[dict]]:
    """SHARED_ACCOUNT for one EnrichedPayment. ``state`` is the ``AnalysisState`` (kind
    ACCOUNT) of the payment's bank account or None; returns the new state and the hits."""
    ev = enriched["payment"]
    st, p, stored, counts = _track(state, "ACCOUNT", ev["bank_account"], enriched, thresholds)
    if not counts or not stored:
        return st, []
    return st, _shared_account(st, p, enriched, thresholds)
