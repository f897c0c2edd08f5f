"""Review workflow: cases from selection hits, the three outcomes, notifications without
leaks (asserted on the encoded bytes), the in-depth review export without patient-secrecy
data (asserted byte for byte), and the audit record of every decision and export."""
from __future__ import annotations

import copy
import datetime as dt
import hashlib
import hmac
import json
import sys
import types

import pytest

from streams import review
from streams.codec import Codec
from streams.identity import make_person
from streams.review import (
    EXCLUSIONS, NOTICE, OTHER_PAYERS_GENERIC, OTHER_PAYERS_STATEMENT, DecisionResult, ReviewError, case_id_for,
    case_key, decide, decision_outputs, export_json, export_person, is_redelivered, notification_topic,
    open_or_update_case, rule_description,
)
from streams.settings import Settings
from streams.topics import Catalogue

STHLM = "2120000142"
GBG = "2120001355"
FK = "2021005521"
PAYEE = make_person(dt.date(1980, 5, 17), 123)
OTHER_PERSON = make_person(dt.date(1975, 8, 2), 456)
ACCOUNT = "8327-9123456789"
T0 = dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.timezone.utc)
T1 = dt.datetime(2026, 11, 27, 10, 30, tzinfo=dt.timezone.utc)
T2 = dt.datetime(2026, 12, 1, 14, 15, tzinfo=dt.timezone.utc)
DESCRIPTIONS = {
    "MULTI_MUNICIPALITY_AID": "Social assistance for the same person and month from two or more municipalities.",
    "SHARED_ACCOUNT": "One bank account receives payments for 4 or more distinct payees within 30 days.",
    "DUPLICATE_PAYMENT": "Same payer, payee, amount and period under different payment ids.",
}
describe = DESCRIPTIONS.__getitem__


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec()


def ref(payer_id, payment_id, amount_ore, category="SOCIAL_ASSISTANCE", event_type="EXECUTED",
        payout=dt.date(2026, 11, 25), payee_id=PAYEE, period=(dt.date(2026, 11, 1), dt.date(2026, 11, 30))) -> dict:
    """A SelectionHit PaymentRef."""
    return {"payer_id": payer_id, "payment_id": payment_id, "payee_id": payee_id, "event_type": event_type,
            "amount_ore": amount_ore, "category": category, "period_start": period[0], "period_end": period[1],
            "payout_date": payout}


STHLM_PAY = ref(STHLM, "sth-2026-11-0007", 512_300)
GBG_PAY = ref(GBG, "gbg-77-1131", 498_700)


def hit(hit_id="hit-1", rule_id="MULTI_MUNICIPALITY_AID", payee_id=PAYEE, bank_account=None, window="2026-11",
        payments=(STHLM_PAY, GBG_PAY), evidence=None, severity="HIGH", rule_version=1, detected_at=T0) -> dict:
    payments = [dict(p) for p in payments]
    return {
        "hit_id": hit_id, "rule_id": rule_id, "rule_version": rule_version, "severity": severity,
        "payee_id": payee_id, "bank_account": bank_account, "window": window, "payments": payments,
        "payer_ids": sorted({p["payer_id"] for p in payments}),
        "evidence": {"month": "2026-11", "distinct_municipalities": "2", "threshold_payers": "2"}
        if evidence is None else evidence,
        "detected_at": detected_at,
    }


def zigzag(n: int) -> bytes:
    """Avro's encoding of a long: how another payer's amount would look inside the body."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def assert_no_leak(data: bytes, other_refs: list[dict], other_payer_ids: set[str]) -> None:
    for payer_id in other_payer_ids:
        assert payer_id.encode() not in data
    for r in other_refs:
        assert r["payment_id"].encode() not in data
        assert str(r["amount_ore"]).encode() not in data
        assert f"{r['amount_ore'] // 100}".encode() not in data
        assert zigzag(r["amount_ore"]) not in data


# -- cases --------------------------------------------------------------------------------
def test_case_key_is_rule_subject_window_and_case_id_is_its_digest():
    assert case_key(hit()) == f"MULTI_MUNICIPALITY_AID|{PAYEE}|2026-11"
    shared = hit(rule_id="SHARED_ACCOUNT", payee_id=None, bank_account=ACCOUNT, window="2026-10-27/2026-11-25")
    assert case_key(shared) == f"SHARED_ACCOUNT|{ACCOUNT}|2026-10-27/2026-11-25"
    # a hit naming both: the payee is the subject
    assert case_key(hit(rule_id="ACCOUNT_NOT_HELD", bank_account=ACCOUNT)) == f"ACCOUNT_NOT_HELD|{PAYEE}|2026-11"
    key = case_key(hit())
    assert case_id_for(key) == "case-" + hashlib.sha256(key.encode()).hexdigest()[:32]
    assert PAYEE not in case_id_for(key)
    with pytest.raises(ValueError):
        case_key(hit(payee_id=None, bank_account=None))


def test_first_hit_opens_an_open_case():
    h = hit()
    case = open_or_update_case(None, h, T1)
    assert case == {
        "case_id": case_id_for(f"MULTI_MUNICIPALITY_AID|{PAYEE}|2026-11"),
        "rule_id": "MULTI_MUNICIPALITY_AID", "subject": PAYEE, "subject_kind": "PAYEE", "window": "2026-11",
        "status": "OPEN", "severity": "HIGH", "hits": ["hit-1"],
        "evidence": [{"hit_id": "hit-1", "rule_version": 1, "payer_ids": [STHLM, GBG], "severity": "HIGH",
                      "detected_at": T0, "values": h["evidence"]}],
        "payments": [STHLM_PAY, GBG_PAY], "payer_ids": [STHLM, GBG],
        "opened_at": T1, "updated_at": T1,
        "decided_at": None, "decided_by": None, "decision_reason": None, "hits_at_decision": None,
        "decided_by_command": None,
    }
    account_case = open_or_update_case(None, hit(rule_id="SHARED_ACCOUNT", payee_id=None, bank_account=ACCOUNT), T1)
    assert (account_case["subject"], account_case["subject_kind"]) == (ACCOUNT, "BANK_ACCOUNT")


def test_the_same_hit_twice_changes_nothing():
    h = hit()
    case = open_or_update_case(None, h, T1)
    snapshot = copy.deepcopy(case)
    again = open_or_update_case(case, copy.deepcopy(h), T2)
    assert again == snapshot
    assert case == snapshot  # input untouched
    # also after a second hit: replaying either leaves the case as it is
    two = open_or_update_case(case, hit("hit-2", payments=[STHLM_PAY]), T2)
    assert open_or_update_case(open_or_update_case(two, h, T2), hit("hit-2", payments=[STHLM_PAY]), T2) == two


def test_a_new_hit_for_the_same_key_joins_the_case():
    case = open_or_update_case(None, hit(severity="MEDIUM", payments=[GBG_PAY]), T1)
    later_sthlm = ref(STHLM, "sth-2026-11-0009", 101_100, event_type="PLANNED", payout=dt.date(2026, 11, 30))
    h2 = hit("hit-2", payments=[GBG_PAY, STHLM_PAY, later_sthlm], severity="HIGH", rule_version=2,
             detected_at=T1, evidence={"month": "2026-11", "count": "2"})
    case2 = open_or_update_case(case, h2, T2)
    assert case2["hits"] == ["hit-1", "hit-2"]
    assert case2["payments"] == [STHLM_PAY, later_sthlm, GBG_PAY]  # each once, sorted by payer, payment, event
    assert case2["payer_ids"] == [STHLM, GBG]
    assert case2["severity"] == "HIGH"
    assert [e["hit_id"] for e in case2["evidence"]] == ["hit-1", "hit-2"]
    assert case2["evidence"][1] == {"hit_id": "hit-2", "rule_version": 2, "payer_ids": [STHLM, GBG], "severity": "HIGH",
                                    "detected_at": T1, "values": {"month": "2026-11", "count": "2"}}
    assert (case2["opened_at"], case2["updated_at"], case2["status"]) == (T1, T2, "OPEN")
    # a lower severity never lowers the case's
    case3 = open_or_update_case(case2, hit("hit-3", severity="LOW"), T2)
    assert case3["severity"] == "HIGH"
    with pytest.raises(ValueError):
        open_or_update_case(case2, hit("hit-9", window="2026-12"), T2)


def test_case_round_trips_through_the_codec(codec):
    case = open_or_update_case(None, hit(), T1)
    assert codec.decode(codec.encode("Case", case), expect="Case") == case
    decided = decide(case, "NOTIFY_PAYER", "analyst-7", "two municipalities, same month", T2, describe).case
    assert codec.decode(codec.encode("Case", decided), expect="Case") == decided


# -- decisions ----------------------------------------------------------------------------
@pytest.mark.parametrize("outcome", ["CLOSED_NO_ACTION", "NOTIFY_PAYER", "IN_DEPTH_REVIEW"])
def test_each_outcome_decides_the_case_and_is_audited(outcome, codec):
    case = open_or_update_case(None, hit(), T1)
    snapshot = copy.deepcopy(case)
    result = decide(case, outcome, "analyst-7", "  checked against the payers' files  ", T2, describe)
    assert isinstance(result, DecisionResult)
    assert case == snapshot
    assert result.case == {**snapshot, "status": outcome, "decided_at": T2, "decided_by": "analyst-7",
                           "decision_reason": "checked against the payers' files", "hits_at_decision": 1,
                           "updated_at": T2}
    notified = [STHLM, GBG] if outcome == "NOTIFY_PAYER" else []
    assert [n["payer_id"] for n in result.notifications] == notified
    assert result.audit == [{
        "audit_id": "audit-" + hashlib.sha256(f"CASE_DECIDED|{case['case_id']}".encode()).hexdigest()[:32],
        "action": "CASE_DECIDED", "analyst": "analyst-7", "at": T2, "person_id": PAYEE,
        "case_id": case["case_id"], "reason": "checked against the payers' files", "items_exported": 0,
        "outcome": outcome, "notified_payer_ids": notified, "export_id": None,
    }]
    assert codec.decode(codec.encode("AuditRecord", result.audit[0]), expect="AuditRecord") == result.audit[0]


def test_account_case_decision_audit_names_no_person():
    case = open_or_update_case(None, hit(rule_id="SHARED_ACCOUNT", payee_id=None, bank_account=ACCOUNT), T1)
    audit = decide(case, "CLOSED_NO_ACTION", "analyst-7", "known care home account", T2, describe).audit[0]
    assert audit["person_id"] is None
    assert audit["outcome"] == "CLOSED_NO_ACTION"


def test_a_decided_case_is_final_409():
    decided = decide(open_or_update_case(None, hit(), T1), "CLOSED_NO_ACTION", "analyst-7", "fine", T2, describe).case
    for outcome in ("CLOSED_NO_ACTION", "NOTIFY_PAYER", "IN_DEPTH_REVIEW"):
        with pytest.raises(ReviewError) as err:
            decide(decided, outcome, "analyst-9", "second look", T2, describe)
        assert err.value.status == 409
        assert err.value.message == (f"case {decided['case_id']} is already decided (CLOSED_NO_ACTION, "
                                     "2026-12-01T14:15:00+00:00); a decision is final")
        assert PAYEE not in err.value.message
    # a later hit is recorded, the decision stays
    later = open_or_update_case(decided, hit("hit-2"), T2)
    assert later["hits"] == ["hit-1", "hit-2"]
    assert (later["status"], later["hits_at_decision"], later["decided_by"]) == ("CLOSED_NO_ACTION", 1, "analyst-7")


def test_a_redelivered_decision_is_recognised_and_sends_the_same_records(codec):
    case = open_or_update_case(None, hit(), T1)
    first = decide(case, "NOTIFY_PAYER", "analyst-7", "two municipalities, same month", T2, describe, command_id="cmd-1")
    assert first.case["decided_by_command"] == "cmd-1"
    stored = codec.decode(codec.encode("Case", first.case), expect="Case")  # as the table holds it
    assert is_redelivered(stored, {"command_id": "cmd-1"})
    assert not is_redelivered(stored, {"command_id": "cmd-2"})  # a second request: still 409 in decide
    assert not is_redelivered(case, {"command_id": "cmd-1"})  # an OPEN case
    assert not is_redelivered({**stored, "decided_by_command": None}, {"command_id": "cmd-1"})  # decided before the field
    again = decision_outputs(stored, describe)
    assert again == first
    assert [codec.encode("Notification", n) for n in again.notifications] == [
        codec.encode("Notification", n) for n in first.notifications]
    assert codec.encode("AuditRecord", again.audit[0]) == codec.encode("AuditRecord", first.audit[0])


def test_a_rebuilt_decision_leaves_out_hits_recorded_after_it():
    case = open_or_update_case(None, hit(), T1)
    first = decide(case, "NOTIFY_PAYER", "analyst-7", "two municipalities, same month", T2, describe, command_id="cmd-1")
    fk_pay = ref(FK, "FK-SJP-8812345", 1_234_567, category="SICKNESS_BENEFIT")
    later = open_or_update_case(first.case, hit("hit-2", payments=[STHLM_PAY, fk_pay], rule_version=2,
                                                evidence={"month": "2026-11", "threshold_payers": "3"}), T2)
    assert later["payer_ids"] == sorted([STHLM, GBG, FK]) and later["hits_at_decision"] == 1
    again = decision_outputs(later, describe)
    assert [n["payer_id"] for n in again.notifications] == [STHLM, GBG]  # FK was not part of the decision
    assert again.notifications == first.notifications
    assert again.audit == first.audit


@pytest.mark.parametrize("outcome, reason, analyst, message", [
    ("NOTIFY_PAYER", None, "analyst-7", "a reason for the decision is required"),
    ("NOTIFY_PAYER", "", "analyst-7", "a reason for the decision is required"),
    ("NOTIFY_PAYER", "   ", "analyst-7", "a reason for the decision is required"),
    ("NOTIFY_PAYER", "ok", "", "the deciding analyst is required"),
    ("OPEN", "ok", "analyst-7",
     "outcome must be one of CLOSED_NO_ACTION, NOTIFY_PAYER, IN_DEPTH_REVIEW; got 'OPEN'"),
    ("RECLAIM", "ok", "analyst-7",
     "outcome must be one of CLOSED_NO_ACTION, NOTIFY_PAYER, IN_DEPTH_REVIEW; got 'RECLAIM'"),
    (None, "ok", "analyst-7",
     "outcome must be one of CLOSED_NO_ACTION, NOTIFY_PAYER, IN_DEPTH_REVIEW; got 'None'"),
])
def test_bad_decision_requests_are_400(outcome, reason, analyst, message):
    case = open_or_update_case(None, hit(), T1)
    with pytest.raises(ReviewError) as err:
        decide(case, outcome, analyst, reason, T2, describe)
    assert (err.value.status, err.value.message) == (400, message)
    # the request is checked before the state: a bad request to a decided case is still 400
    decided = decide(case, "CLOSED_NO_ACTION", "analyst-7", "fine", T2, describe).case
    with pytest.raises(ReviewError) as err:
        decide(decided, outcome, analyst, reason, T2, describe)
    assert err.value.status == 400


# -- notifications ------------------------------------------------------------------------
def test_notify_payer_sends_each_payer_only_its_own_payments():
    case = open_or_update_case(None, hit(), T1)
    notes = decide(case, "NOTIFY_PAYER", "analyst-7", "two municipalities, same month", T2, describe).notifications
    statement = OTHER_PAYERS_STATEMENT["MULTI_MUNICIPALITY_AID"]
    expected = []
    for payer_id, own in ((STHLM, STHLM_PAY), (GBG, GBG_PAY)):
        expected.append({
            "notification_id": "ntf-" + hashlib.sha256(f"{case['case_id']}|{payer_id}".encode()).hexdigest()[:32],
            "payer_id": payer_id, "case_id": case["case_id"], "rule_id": "MULTI_MUNICIPALITY_AID",
            "rule_version": 1, "rule_description": DESCRIPTIONS["MULTI_MUNICIPALITY_AID"], "window": "2026-11",
            "subject_kind": "PAYEE", "subject": PAYEE, "payments": [own], "other_payers_involved": True,
            # the month and the published threshold are said; the count of municipalities is not
            "findings": {"month": "2026-11", "threshold_payers": "2", "other_payers": statement},
            "notice": NOTICE, "decided_at": T2,
        })
    assert notes == expected


def test_no_notification_bytes_carry_another_payers_data(codec):
    fk_pay = ref(FK, "FK-SJP-8812345", 1_234_567, category="SICKNESS_BENEFIT")
    extra_sthlm = ref(STHLM, "sth-2026-11-0011", 77_700, event_type="PLANNED")
    hits = [
        hit("hit-1", evidence={"month": "2026-11", "distinct_municipalities": "2", "threshold_payers": "2",
                               "municipalities": f"{STHLM},{GBG}", "amounts_ore": "512300,498700",
                               "total_sek": "10110.00"}),
        # a later hit whose evidence names the other payers' data in every way a rule might
        hit("hit-2", payments=[STHLM_PAY, GBG_PAY, fk_pay, extra_sthlm], detected_at=T1,
            evidence={"month": "2026-11", "other_payment": "gbg-77-1131", "gbg_amount": "4987,00",
                      "fk": f"paid by {FK}", "sickness_ore": "1234567", f"payer_{GBG}": "yes",
                      "threshold_payers": f"2 ({GBG},{FK})"}),  # a safe key is withheld when it names another
        # a hit on Stockholm's payments only, whose evidence still mentions another payer's payment
        hit("hit-3", payments=[extra_sthlm], detected_at=T1,
            evidence={"month": "2026-11", "compared_with": "gbg-77-1131", "own_amount_ore": "77700"}),
    ]
    case = None
    for h in hits:
        case = open_or_update_case(case, h, T1)
    notes = decide(case, "NOTIFY_PAYER", "analyst-7", "cross-payer overlap", T2, describe).notifications
    assert [n["payer_id"] for n in notes] == [FK, STHLM, GBG]
    for note in notes:
        data = codec.encode("Notification", note)
        assert codec.decode(data, expect="Notification") == note
        own = [r for r in case["payments"] if r["payer_id"] == note["payer_id"]]
        others = [r for r in case["payments"] if r["payer_id"] != note["payer_id"]]
        assert note["payments"] == own and own
        assert_no_leak(data, others, set(case["payer_ids"]) - {note["payer_id"]})
        for r in own:  # the recipient's own data is there
            assert r["payment_id"].encode() in data and zigzag(r["amount_ore"]) in data
    statement = OTHER_PAYERS_STATEMENT["MULTI_MUNICIPALITY_AID"]
    assert [n["findings"] for n in notes] == [
        {"month": "2026-11", "other_payers": statement},  # FK: only hit-2 involves it
        {"month": "2026-11", "threshold_payers": "2", "own_amount_ore": "77700", "other_payers": statement},
        {"month": "2026-11", "threshold_payers": "2", "other_payers": statement},
    ]


def test_shared_account_notification_withholds_other_payees_and_counts(codec):
    a, b, c = (make_person(dt.date(1990, 1, d), 100 + d) for d in (3, 4, 5))
    payments = [ref(STHLM, "sth-1", 400_000, payee_id=PAYEE, payout=dt.date(2026, 11, 3)),
                ref(STHLM, "sth-2", 410_000, payee_id=a, payout=dt.date(2026, 11, 10)),
                ref(FK, "fk-1", 930_000, "PENSION", payee_id=b, payout=dt.date(2026, 10, 27)),
                ref(GBG, "gbg-1", 250_000, payee_id=c, payout=dt.date(2026, 11, 25))]
    h = hit(rule_id="SHARED_ACCOUNT", payee_id=None, bank_account=ACCOUNT, window="2026-10-27..2026-11-25",
            payments=payments, evidence={"distinct_payees": "4", "threshold_payees": "4", "window_days": "30",
                                         "first_payout": "2026-10-27", "last_payout": "2026-11-25",
                                         "representative_payments_excluded": "1"})
    case = open_or_update_case(None, h, T1)
    notes = decide(case, "NOTIFY_PAYER", "analyst-7", "one account, many payees", T2, describe).notifications
    assert [n["payer_id"] for n in notes] == [FK, STHLM, GBG]
    sthlm = notes[1]
    assert sthlm["subject"] == ACCOUNT and sthlm["subject_kind"] == "BANK_ACCOUNT"
    assert sthlm["payments"] == payments[:2]
    assert sthlm["findings"] == {"threshold_payees": "4", "window_days": "30",
                                 "other_payers": OTHER_PAYERS_STATEMENT["SHARED_ACCOUNT"]}
    # the case window spans other payers' payout dates: each payer is told its own span
    assert [n["window"] for n in notes] == ["2026-10-27..2026-10-27", "2026-11-03..2026-11-10",
                                            "2026-11-25..2026-11-25"]
    for note in notes:
        data = codec.encode("Notification", note)
        assert codec.decode(data, expect="Notification") == note
        others = [r for r in payments if r["payer_id"] != note["payer_id"]]
        assert_no_leak(data, others, {STHLM, GBG, FK} - {note["payer_id"]})
        for r in others:  # other payers' payees and payout dates
            assert r["payee_id"].encode() not in data
            assert r["payout_date"].isoformat().encode() not in data


def test_single_payer_case_passes_its_own_evidence_on():
    p1, p2 = ref(STHLM, "sth-1", 512_300), ref(STHLM, "sth-2", 512_300)
    h = hit(rule_id="DUPLICATE_PAYMENT", payments=[p1, p2], window="2026-11-01..2026-11-30",
            evidence={"amount_ore": "512300", "period_start": "2026-11-01", "period_end": "2026-11-30",
                      "original_payment_id": "sth-1", "duplicate_payment_id": "sth-2"})
    note, = decide(open_or_update_case(None, h, T1), "NOTIFY_PAYER", "analyst-7", "duplicate", T2,
                   describe).notifications
    assert note["payments"] == [p1, p2]
    assert note["other_payers_involved"] is False
    assert note["findings"] == h["evidence"]
    assert note["window"] == "2026-11-01..2026-11-30"


def test_unknown_rule_with_other_payers_gets_the_generic_statement_and_no_evidence():
    h = hit(rule_id="SOME_FUTURE_RULE", evidence={"month": "2026-11", "x": "y"})
    notes = review.notifications_for(open_or_update_case(None, h, T1), "a future rule", T2)
    assert [n["findings"] for n in notes] == [{"other_payers": OTHER_PAYERS_GENERIC}] * 2


def test_rule_description_comes_from_the_published_rules(monkeypatch):
    class Rule:
        description = "Published text of the rule."

    fake = types.ModuleType("streams.rules")
    fake.RULES = {"MULTI_MUNICIPALITY_AID": Rule(), "SHARED_ACCOUNT": {"description": "As a mapping."}}
    monkeypatch.setitem(sys.modules, "streams.rules", fake)
    assert rule_description("MULTI_MUNICIPALITY_AID") == "Published text of the rule."
    assert rule_description("SHARED_ACCOUNT") == "As a mapping."
    assert rule_description("SHARED_ACCOUNT", describe=lambda r: f"given {r}") == "given SHARED_ACCOUNT"
    with pytest.raises(LookupError):
        rule_description("NO_SUCH_RULE")
    case = open_or_update_case(None, hit(), T1)
    notes = decide(case, "NOTIFY_PAYER", "analyst-7", "two municipalities", T2).notifications
    assert {n["rule_description"] for n in notes} == {"Published text of the rule."}


def test_notification_topic_is_the_payers_own():
    settings = Settings().with_overrides(topic_prefix="t9")
    spec = Catalogue(settings).payer_notifications(STHLM)
    assert (spec.name, spec.key, spec.schema) == (f"t9.notifications.{STHLM}", "case_id", "Notification")
    assert notification_topic(GBG, settings) == f"t9.notifications.{GBG}"


# -- in-depth review export ---------------------------------------------------------------
def payment_event(payment_id, event_type="EXECUTED", payee_id=PAYEE, payer_id=STHLM, decision=None,
                  event_time=T0, event_id=None):
    return {
        "event_id": event_id or f"ev-{payment_id}-{event_type}", "payer_id": payer_id, "payment_id": payment_id,
        "event_type": event_type, "payee_id": payee_id, "representative_id": None, "bank_account": ACCOUNT,
        "amount_ore": 512_300, "currency": "SEK", "category": "SOCIAL_ASSISTANCE",
        "period_start": dt.date(2026, 11, 1), "period_end": dt.date(2026, 11, 30),
        "payout_date": dt.date(2026, 11, 25), "decision": decision, "event_time": event_time,
    }


def enriched(event, protected=False, municipality="0180"):
    return {
        "payment": event, "payer_name": "Stockholms kommun", "payer_kind": "MUNICIPALITY",
        "payer_scope": "PROPOSAL_1",
        "verification": {"result": "MATCH", "holder_name": "Anna Karlsson", "matched_as": "PAYEE"},
        "payee_status": "ALIVE", "deceased_date": None, "emigration_date": None,
        "municipality_code": municipality, "protected_identity": protected,
        "account_opened": dt.date(2019, 4, 1), "ledger_sequence": 1, "enriched_at": T0,
    }


def ledger_entry(sequence, payment_id, payee_id=PAYEE):
    return {
        "entry_id": f"{STHLM}:{payment_id}:EXECUTED", "payee_id": payee_id, "sequence": sequence,
        "payer_id": STHLM, "payment_id": payment_id, "event_id": f"ev-{payment_id}", "event_type": "EXECUTED",
        "status": "EXECUTED", "previous_status": None, "representative_id": None, "bank_account": ACCOUNT,
        "amount_ore": 512_300, "category": "SOCIAL_ASSISTANCE", "period_start": dt.date(2026, 11, 1),
        "period_end": dt.date(2026, 11, 30), "payout_date": dt.date(2026, 11, 25), "paid_delta_ore": 512_300,
        "upcoming_delta_ore": 0, "event_time": T0, "registered_at": T0,
    }


OPEN_DECISION = {
    "decision_id": "d-1", "decision_date": dt.date(2026, 10, 20), "legal_basis": "SoL 4 kap. 1 §",
    "patient_secrecy": False,
    "circumstances": [
        {"name": "household_size", "value": "3", "patient_secrecy": False},
        {"name": "diagnosis_code", "value": "F32.1", "patient_secrecy": True},
        {"name": "income_considered_ore", "value": "1200000", "patient_secrecy": False},
        {"name": "home_address", "value": "Hemliga vägen 4, 123 45 Ort", "patient_secrecy": False},
    ],
}
SECRET_DECISION = {
    "decision_id": "d-2", "decision_date": dt.date(2026, 10, 21), "legal_basis": "HSL 8 kap. 1 §",
    "patient_secrecy": True,
    "circumstances": [
        {"name": "care_unit", "value": "Psykiatri Nordväst", "patient_secrecy": False},
        {"name": "sick_leave_reason", "value": "M54.5", "patient_secrecy": True},
    ],
}
SECRETS = ("F32.1", "M54.5", "Psykiatri Nordväst", "diagnosis_code", "sick_leave_reason", "care_unit")


def export_inputs(protected=False):
    ledger = [ledger_entry(2, "sth-2"), ledger_entry(1, "sth-1"), ledger_entry(1, "sth-1"),  # redelivered
              ledger_entry(1, "oth-1", payee_id=OTHER_PERSON)]
    payments = [
        enriched(payment_event("sth-2", decision=SECRET_DECISION, event_time=T1), protected),
        enriched(payment_event("sth-1", decision=OPEN_DECISION), protected),
        enriched(payment_event("sth-1", decision=OPEN_DECISION), protected),  # redelivered
        enriched(payment_event("sth-3", "PLANNED", decision=OPEN_DECISION, event_time=T2), protected),
        enriched(payment_event("oth-1", payee_id=OTHER_PERSON, decision=OPEN_DECISION)),
    ]
    return ledger, payments


def test_export_contains_the_persons_records_without_patient_secrecy(codec):
    ledger, payments = export_inputs()
    before = copy.deepcopy((ledger, payments))
    export, audit = export_person(PAYEE, ledger, payments, "case-abc", "analyst-7", "suspected double aid", T2)
    assert (ledger, payments) == before  # inputs untouched (they still hold the secrets)
    assert [e["entry_id"] for e in export["ledger_entries"]] == [f"{STHLM}:sth-1:EXECUTED", f"{STHLM}:sth-2:EXECUTED"]
    assert [(p["payment"]["payment_id"], p["payment"]["event_type"]) for p in export["payments"]] == [
        ("sth-1", "EXECUTED"), ("sth-2", "EXECUTED"), ("sth-3", "PLANNED")]
    open_stripped = {**OPEN_DECISION, "circumstances": [OPEN_DECISION["circumstances"][i] for i in (0, 2, 3)]}
    secret_stripped = {**SECRET_DECISION, "circumstances": []}
    assert export["payments"][0]["payment"]["decision"] == open_stripped
    assert export["payments"][1]["payment"]["decision"] == secret_stripped
    assert export["decisions"] == [
        {"payer_id": STHLM, "payment_ids": ["sth-1", "sth-3"], "decision": open_stripped},
        {"payer_id": STHLM, "payment_ids": ["sth-2"], "decision": secret_stripped},
    ]
    assert export["payments"][0]["municipality_code"] == "0180"  # not protected: kept
    assert export["protected_identity"] is False
    assert (export["case_id"], export["person_id"], export["analyst"], export["reason"], export["exported_at"]) == (
        "case-abc", PAYEE, "analyst-7", "suspected double aid", T2)
    assert export["exclusions"] == EXCLUSIONS
    assert OTHER_PERSON not in json.dumps(export, default=str)
    # byte for byte: no patient-secrecy value or name in any form the export leaves in
    texts = [json.dumps(export, default=str), export_json(export)]
    data = codec.encode("ReviewExport", export)
    assert codec.decode(data, expect="ReviewExport") == export
    for secret in SECRETS:
        for text in texts:
            assert secret not in text
        assert secret.encode() not in data
    assert json.loads(export_json(export))["exported_at"] == "2026-12-01T14:15:00Z"


def test_export_never_includes_patient_secrecy_even_when_analysis_may_use_it(monkeypatch):
    monkeypatch.setenv("PATIENT_SECRECY_IN_ANALYSIS", "true")
    assert Settings.from_env().patient_secrecy_in_analysis is True
    ledger, payments = export_inputs()
    export, _ = export_person(PAYEE, ledger, payments, "case-abc", "analyst-7", "policy on", T2)
    for secret in SECRETS:
        assert secret not in json.dumps(export, default=str)


def test_export_audit_record(codec):
    ledger, payments = export_inputs()
    person = {"person_id": PAYEE, "name": "Anna Karlsson", "deceased_date": None, "emigration_date": None,
              "municipality_code": "0180", "protected_identity": False, "address": "Storgatan 1, 111 22 Stockholm"}
    export, audit = export_person(PAYEE, ledger, payments, "case-abc", "analyst-7", "suspected double aid", T2,
                                  person=person)
    export_id = "exp-" + hashlib.sha256(
        f"case-abc|{PAYEE}|analyst-7|2026-12-01T14:15:00+00:00".encode()).hexdigest()[:32]
    assert export["export_id"] == export_id
    assert export["person"] == person  # not protected: the register record as it is
    assert audit == {
        "audit_id": "audit-" + hashlib.sha256(f"IN_DEPTH_REVIEW_EXPORT|{export_id}".encode()).hexdigest()[:32],
        "action": "IN_DEPTH_REVIEW_EXPORT", "analyst": "analyst-7", "at": T2, "person_id": PAYEE,
        "case_id": "case-abc", "reason": "suspected double aid",
        "items_exported": 2 + 3 + 1,  # ledger entries + enriched payments + the register record
        "outcome": None, "notified_payer_ids": [], "export_id": export_id,
    }
    assert codec.decode(codec.encode("AuditRecord", audit), expect="AuditRecord") == audit
    _, audit2 = export_person(PAYEE, ledger, payments, "case-abc", "analyst-7", "second export", T2 + dt.timedelta(1))
    assert audit2["audit_id"] != audit["audit_id"] and audit2["items_exported"] == 5


def test_protected_identity_export_has_no_address_like_data(codec):
    ledger, payments = export_inputs(protected=True)
    person = {"person_id": PAYEE, "name": "Anna Karlsson", "deceased_date": None, "emigration_date": None,
              "municipality_code": "0180", "protected_identity": True, "address": "Skyddad väg 9, 999 99 Gömd"}
    export, audit = export_person(PAYEE, ledger, payments, "case-abc", "analyst-7", "protected payee", T2,
                                  person=person)
    assert export["protected_identity"] is True
    assert export["person"] == {**person, "address": None, "municipality_code": None}
    assert {p["municipality_code"] for p in export["payments"]} == {None}
    assert {p["verification"]["holder_name"] for p in export["payments"]} == {None}
    assert [c["name"] for c in export["decisions"][0]["decision"]["circumstances"]] == [
        "household_size", "income_considered_ore"]
    data = codec.encode("ReviewExport", export)
    text = export_json(export)
    for value in ("Skyddad väg", "999 99", "Hemliga vägen", "0180", "home_address"):
        assert value not in text
        assert value.encode() not in data
    # the reviewed person's name is what the review is about: once, in the register record only
    assert text.count("Anna Karlsson") == 1
    assert audit["items_exported"] == 6
    # a protected flag on any enriched payment is enough, even without the register record
    _, payments = export_inputs()
    payments[0]["protected_identity"] = True
    export, _ = export_person(PAYEE, ledger, payments, "case-abc", "analyst-7", "protected payee", T2)
    assert export["protected_identity"] is True
    assert "Hemliga vägen" not in export_json(export) and '"0180"' not in export_json(export)


@pytest.mark.parametrize("kwargs, message", [
    ({"reason": ""}, "a reason for the in-depth review is required"),
    ({"reason": None}, "a reason for the in-depth review is required"),
    ({"case_id": ""}, "a case id is required"),
    ({"case_id": None}, "a case id is required"),
    ({"analyst": " "}, "the reviewing analyst is required"),
    ({"person_id": "198005171234"}, None),
])
def test_bad_export_requests_are_400(kwargs, message):
    ledger, payments = export_inputs()
    args = {"person_id": PAYEE, "ledger_entries": ledger, "enriched_payments": payments, "case_id": "case-abc",
            "analyst": "analyst-7", "reason": "why", "now": T2, **kwargs}
    with pytest.raises(ReviewError) as err:
        export_person(**args)
    assert err.value.status == 400
    if message:
        assert err.value.message == message
    else:
        assert "198005171234" not in err.value.message and err.value.message.endswith("not a valid identity number")


def test_export_needs_the_case_in_in_depth_review():
    ledger, payments = export_inputs()
    case = open_or_update_case(None, hit(), T1)
    with pytest.raises(ReviewError) as err:
        export_person(PAYEE, ledger, payments, case["case_id"], "analyst-7", "why", T2, case=case)
    assert err.value.status == 409
    assert err.value.message == f"case {case['case_id']} has status OPEN; an export needs the outcome IN_DEPTH_REVIEW"
    decided = decide(case, "IN_DEPTH_REVIEW", "analyst-7", "look closer", T2, describe).case
    export, audit = export_person(PAYEE, ledger, payments, case["case_id"], "analyst-8", "why", T2, case=decided)
    assert (audit["case_id"], audit["analyst"]) == (case["case_id"], "analyst-8")
    with pytest.raises(ReviewError) as err:
        export_person(PAYEE, ledger, payments, "case-other", "analyst-7", "why", T2, case=decided)
    assert err.value.status == 409


# -- against the rules' published contract ------------------------------------------------
def test_a_selection_hit_from_the_wire_opens_a_case_and_notifies_with_the_published_description(codec):
    from streams.rules import RULES

    wire = codec.encode("SelectionHit", hit())
    decoded = codec.decode(wire, expect="SelectionHit")
    case = open_or_update_case(None, decoded, T1)
    assert case["payments"] == [STHLM_PAY, GBG_PAY]
    assert open_or_update_case(case, codec.decode(wire, expect="SelectionHit"), T2) == case
    notes = decide(case, "NOTIFY_PAYER", "analyst-7", "two municipalities, same month", T2).notifications
    assert {n["rule_description"] for n in notes} == {RULES["MULTI_MUNICIPALITY_AID"].description}
    for note in notes:
        assert codec.decode(codec.encode("Notification", note), expect="Notification") == note


def test_safe_evidence_keys_are_published_evidence_keys():
    from streams.rules import RULES

    assert set(review.SAFE_EVIDENCE_KEYS) == set(RULES)
    for rule_id, keys in review.SAFE_EVIDENCE_KEYS.items():
        assert keys <= set(RULES[rule_id].evidence), rule_id
    for rule_id, keys in review.NEVER_TO_PAYER.items():
        assert keys <= set(RULES[rule_id].evidence), rule_id


def test_overlapping_benefits_tells_each_payer_its_own_period_only(codec):
    sick = ref(FK, "FK-SJP-1", 1_234_500, "SICKNESS_BENEFIT", period=(dt.date(2026, 11, 10), dt.date(2026, 12, 9)))
    unemployed = ref("2021004714", "AK-22-9", 987_600, "UNEMPLOYMENT_BENEFIT",
                     period=(dt.date(2026, 11, 1), dt.date(2026, 11, 30)))
    h = hit(rule_id="OVERLAPPING_BENEFITS", window="2026-11-10..2026-11-30", payments=[sick, unemployed],
            evidence={"categories": "SICKNESS_BENEFIT+UNEMPLOYMENT_BENEFIT", "overlap_start": "2026-11-10",
                      "overlap_end": "2026-11-30", "overlap_days": "21", "threshold_days": "1"})
    notes = decide(open_or_update_case(None, h, T1), "NOTIFY_PAYER", "analyst-7", "overlap", T2,
                   lambda r: "incompatible benefits").notifications
    by_payer = {n["payer_id"]: n for n in notes}
    assert by_payer[FK]["window"] == "2026-11-10..2026-12-09"
    assert by_payer["2021004714"]["window"] == "2026-11-01..2026-11-30"
    for note, other in ((by_payer[FK], unemployed), (by_payer["2021004714"], sick)):
        assert note["findings"] == {"threshold_days": "1",
                                    "other_payers": OTHER_PAYERS_STATEMENT["OVERLAPPING_BENEFITS"]}
        data = codec.encode("Notification", note)
        assert_no_leak(data, [other], {other["payer_id"]})
        # not the other's category or period, nor the overlap (the case window) or its evidence
        for text in (other["category"], other["period_start"].isoformat(), other["period_end"].isoformat(),
                     "2026-11-10..2026-11-30", "overlap_"):
            assert text.encode() not in data


def test_account_change_never_tells_the_previous_account():
    own = ref(STHLM, "sth-5", 2_500_000)
    h = hit(rule_id="ACCOUNT_CHANGE_BEFORE_PAYOUT", bank_account=ACCOUNT, payments=[own],
            evidence={"previous_account": "6000-123456789", "account_opened": "2026-11-20",
                      "payout_date": "2026-11-25", "days_before_payout": "5", "amount_ore": "2500000",
                      "threshold_days": "14", "threshold_ore": "1000000"})
    note, = decide(open_or_update_case(None, h, T1), "NOTIFY_PAYER", "analyst-7", "new account", T2,
                   lambda r: "account change").notifications
    assert note["findings"] == {k: v for k, v in h["evidence"].items() if k != "previous_account"}
    assert "6000-123456789" not in json.dumps(note, default=str)


def test_keyed_case_ids():
    key = case_key(hit())
    assert case_id_for(key, "s3cret") == "case-" + hmac.new(b"s3cret", key.encode(), hashlib.sha256).hexdigest()[:32]
    assert case_id_for(key, "s3cret") != case_id_for(key) != case_id_for(key, "other")
    case = open_or_update_case(None, hit(), T1, id_secret="s3cret")
    assert case["case_id"] == case_id_for(key, "s3cret")
    # a later hit joins by rule, subject and window, whatever secret made the id
    assert open_or_update_case(case, hit("hit-2"), T2)["hits"] == ["hit-1", "hit-2"]
