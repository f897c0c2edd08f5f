"""Selection rules (streams/rules.py): per rule a positive and near-miss negatives with the
exact hit, stable hit ids under re-evaluation, withdrawn payments, bounded state."""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

import pytest

from streams.codec import default_codec
from streams.rules import (RULES, ThresholdError, Thresholds, evaluate_account, evaluate_payee, hit_id,
                           months_covered, parse_pairs)
from streams.settings import Settings

PAYEE = "198112189876"
OTHER = "199001012380"
THIRD = "198505051234"
FOURTH = "197003030303"
REP = "196512121212"
FK = "2021005521"
FUND = "8020024190"
STHLM = "2120000142"
GBG = "2120001355"
ACC = "8327-9123456789"
NEW_ACC = "6000-123456789"
TH = Thresholds()
D = dt.date


def enriched(payment_id="p1", *, payee=PAYEE, payer=FK, payer_kind="STATE_AGENCY", event_type="EXECUTED",
             account=ACC, amount=500_000, category="SICKNESS_BENEFIT", period=(D(2026, 11, 1), D(2026, 11, 30)),
             payout=D(2026, 11, 25), rep=None, result="MATCH", matched_as="PAYEE", holder_name=None,
             deceased=None, emigrated=None, opened=D(2015, 1, 1), at=None) -> dict:
    at = at or dt.datetime.combine(payout, dt.time(6), tzinfo=dt.timezone.utc)
    return {
        "payment": {"event_id": f"e-{payment_id}-{event_type}", "payer_id": payer, "payment_id": payment_id,
                    "event_type": event_type, "payee_id": payee, "representative_id": rep, "bank_account": account,
                    "amount_ore": amount, "currency": "SEK", "category": category, "period_start": period[0],
                    "period_end": period[1], "payout_date": payout, "decision": None, "event_time": at},
        "payer_name": "Payer", "payer_kind": payer_kind, "payer_scope": "PROPOSAL_1",
        "verification": {"result": result, "holder_name": holder_name,
                         "matched_as": matched_as if result == "MATCH" else None},
        "payee_status": "ALIVE", "deceased_date": deceased, "emigration_date": emigrated,
        "municipality_code": "0180", "protected_identity": False, "account_opened": opened,
        "ledger_sequence": None, "enriched_at": at + dt.timedelta(seconds=1),
    }


def run(records, evaluate=evaluate_payee, th=TH, state=None):
    """Evaluate records in order; returns (final state, all hits)."""
    hits = []
    for r in records:
        state, found = evaluate(state, r, th)
        hits += found
    return state, hits


def only(hits, rule):
    return [h for h in hits if h["rule_id"] == rule]


def check_hit(hit, rule):
    """Every hit: catalogue fields, evidence keys as published, id as published, encodes."""
    assert hit["rule_version"] == RULES[rule].version and hit["severity"] == RULES[rule].severity
    assert set(hit["evidence"]) == set(RULES[rule].evidence)
    subject = hit["bank_account"] if rule == "SHARED_ACCOUNT" else hit["payee_id"]
    assert hit["hit_id"] == hit_id(rule, subject, hit["window"],
                                   [(p["payer_id"], p["payment_id"]) for p in hit["payments"]])
    assert hit["payer_ids"] == sorted({p["payer_id"] for p in hit["payments"]})
    codec = default_codec()
    assert codec.decode(codec.encode("SelectionHit", hit))["hit_id"] == hit["hit_id"]


def test_hit_id_is_the_published_formula():
    parts = "|".join(["ACCOUNT_NOT_HELD", PAYEE, "2026-11", f"{FK}:p1"])
    assert hit_id("ACCOUNT_NOT_HELD", PAYEE, "2026-11", [(FK, "p1")]) == hashlib.sha256(parts.encode()).hexdigest()[:32]
    assert hit_id("ACCOUNT_NOT_HELD", PAYEE, "2026-11", [(FK, "p1")]) == "fc147beb11bc02d167cd316b89112ed6"
    assert hit_id("X", "s", "w", [("b", "2"), ("a", "1")]) == hit_id("X", "s", "w", [("a", "1"), ("b", "2")])


# -- ACCOUNT_NOT_HELD ---------------------------------------------------------------------------
def test_account_not_held_no_match_is_a_hit_with_its_evidence():
    _, hits = run([enriched(result="NO_MATCH", amount=12_345)])
    (hit,) = hits
    check_hit(hit, "ACCOUNT_NOT_HELD")
    assert hit["hit_id"] == "fc147beb11bc02d167cd316b89112ed6"
    assert (hit["payee_id"], hit["bank_account"], hit["window"]) == (PAYEE, ACC, "2026-11")
    assert hit["evidence"] == {"verification_result": "NO_MATCH", "holder_name": "", "amount_ore": "12345",
                               "close_match_threshold_ore": "1000000", "payout_date": "2026-11-25",
                               "representative_given": "false"}
    assert hit["payments"] == [{"payer_id": FK, "payment_id": "p1", "payee_id": PAYEE, "event_type": "EXECUTED",
                                "amount_ore": 12_345, "category": "SICKNESS_BENEFIT",
                                "period_start": D(2026, 11, 1), "period_end": D(2026, 11, 30),
                                "payout_date": D(2026, 11, 25)}]


def test_account_not_held_close_match_only_above_the_threshold():
    _, at = run([enriched(result="CLOSE_MATCH", holder_name="Anna Carlsson", amount=TH.close_match_above_ore)])
    assert at == []
    _, above = run([enriched(result="CLOSE_MATCH", holder_name="Anna Carlsson", amount=TH.close_match_above_ore + 1)])
    (hit,) = above
    check_hit(hit, "ACCOUNT_NOT_HELD")
    assert hit["evidence"]["verification_result"] == "CLOSE_MATCH"
    assert hit["evidence"]["holder_name"] == "Anna Carlsson"


@pytest.mark.parametrize("result,matched_as", [("MATCH", "PAYEE"), ("MATCH", "REPRESENTATIVE"),
                                               ("NOT_POSSIBLE", None)])
def test_account_not_held_not_for_match_or_not_possible(result, matched_as):
    _, hits = run([enriched(result=result, matched_as=matched_as, rep=REP if matched_as else None,
                            amount=5_000_000)])
    assert hits == []


# -- SHARED_ACCOUNT -----------------------------------------------------------------------------
def shared(payment_id, payee, payout, **kw):
    return enriched(payment_id, payee=payee, payout=payout, result=kw.pop("result", "NO_MATCH"), **kw)


def test_shared_account_third_payee_within_30_days_is_a_hit():
    records = [shared("a", PAYEE, D(2026, 11, 1)), shared("b", OTHER, D(2026, 11, 15)),
               shared("c", THIRD, D(2026, 11, 30))]
    state, hits = run(records, evaluate_account)
    (hit,) = hits
    check_hit(hit, "SHARED_ACCOUNT")
    assert (hit["payee_id"], hit["bank_account"], hit["window"]) == (None, ACC, "2026-11-01..2026-11-30")
    assert [p["payment_id"] for p in hit["payments"]] == ["a", "b", "c"]
    assert [p["payee_id"] for p in hit["payments"]] == [PAYEE, OTHER, THIRD]
    assert hit["evidence"] == {"distinct_payees": "3", "threshold_payees": "3", "window_days": "30",
                               "first_payout": "2026-11-01", "last_payout": "2026-11-30",
                               "representative_payments_excluded": "0"}
    assert state["kind"] == "ACCOUNT" and state["key"] == ACC
    # a fourth payee: a further hit naming all four
    _, more = run([shared("d", FOURTH, D(2026, 11, 20))], evaluate_account, state=state)
    (hit4,) = more
    assert [p["payment_id"] for p in hit4["payments"]] == ["a", "b", "d", "c"]
    assert hit4["evidence"]["distinct_payees"] == "4" and hit4["hit_id"] != hit["hit_id"]


def test_shared_account_near_misses():
    two = [shared("a", PAYEE, D(2026, 11, 1)), shared("b", OTHER, D(2026, 11, 15)), shared("c", OTHER, D(2026, 11, 20))]
    assert run(two, evaluate_account)[1] == []
    spread = [shared("a", PAYEE, D(2026, 11, 1)), shared("b", OTHER, D(2026, 11, 16)),
              shared("c", THIRD, D(2026, 12, 1))]  # 31 days from first to last
    assert run(spread, evaluate_account)[1] == []
    trustee = [shared(f"w{i}", pid, D(2026, 11, 25), rep=REP, result="MATCH", matched_as="REPRESENTATIVE")
               for i, pid in enumerate([PAYEE, OTHER, THIRD, FOURTH])]
    assert run(trustee, evaluate_account)[1] == []
    cancelled = [shared("a", PAYEE, D(2026, 11, 1)), shared("a", PAYEE, D(2026, 11, 1), event_type="CANCELLED"),
                 shared("b", OTHER, D(2026, 11, 15)), shared("c", THIRD, D(2026, 11, 20))]
    assert run(cancelled, evaluate_account)[1] == []


def test_shared_account_counts_representative_payments_as_excluded_evidence():
    records = [shared("r", FOURTH, D(2026, 11, 4), rep=REP, result="MATCH", matched_as="REPRESENTATIVE"),
               shared("a", PAYEE, D(2026, 11, 3)), shared("b", OTHER, D(2026, 11, 4)), shared("c", THIRD, D(2026, 11, 5))]
    (hit,) = run(records, evaluate_account)[1]
    assert hit["evidence"]["distinct_payees"] == "3"
    assert hit["evidence"]["representative_payments_excluded"] == "1"
    assert "r" not in [p["payment_id"] for p in hit["payments"]]


# -- PAID_AFTER_DEATH ---------------------------------------------------------------------------
def test_paid_after_death_day_after_is_a_hit_on_the_day_or_before_is_not():
    (hit,) = run([enriched(deceased=D(2026, 11, 24))])[1]
    check_hit(hit, "PAID_AFTER_DEATH")
    assert hit["evidence"] == {"deceased_date": "2026-11-24", "payout_date": "2026-11-25", "days_after_death": "1",
                               "period_start": "2026-11-01", "period_end": "2026-11-30"}
    assert hit["bank_account"] is None and hit["window"] == "2026-11"
    assert run([enriched(deceased=D(2026, 11, 25))])[1] == []
    assert run([enriched(deceased=D(2026, 11, 26))])[1] == []


# -- PAID_AFTER_EMIGRATION ----------------------------------------------------------------------
def test_paid_after_emigration_residence_based_period_after_emigration():
    (hit,) = run([enriched(emigrated=D(2026, 10, 31))])[1]
    check_hit(hit, "PAID_AFTER_EMIGRATION")
    assert hit["evidence"] == {"emigration_date": "2026-10-31", "period_start": "2026-11-01",
                               "period_end": "2026-11-30", "payout_date": "2026-11-25",
                               "category": "SICKNESS_BENEFIT"}
    assert run([enriched(emigrated=D(2026, 11, 1))])[1] == []  # period starts on the day: not after
    assert run([enriched(emigrated=D(2026, 10, 1), category="PENSION")])[1] == []  # not residence-based


# -- MULTI_MUNICIPALITY_AID ---------------------------------------------------------------------
def aid(payment_id, payer, period=(D(2026, 11, 1), D(2026, 11, 30)), amount=800_000, kind="MUNICIPALITY", **kw):
    return enriched(payment_id, payer=payer, payer_kind=kind, category="SOCIAL_ASSISTANCE", period=period,
                    amount=amount, **kw)


def test_multi_municipality_same_month_is_a_hit():
    (hit,) = run([aid("s1", STHLM), aid("g1", GBG, amount=700_000, payout=D(2026, 11, 10))])[1]
    check_hit(hit, "MULTI_MUNICIPALITY_AID")
    assert hit["window"] == "2026-11" and hit["payer_ids"] == sorted([STHLM, GBG])
    assert hit["evidence"] == {"month": "2026-11", "distinct_municipalities": "2", "threshold_payers": "2"}
    assert [p["payment_id"] for p in hit["payments"]] == ["g1", "s1"]


def test_multi_municipality_near_misses():
    moved = [aid("s1", STHLM), aid("g1", GBG, period=(D(2026, 12, 1), D(2026, 12, 31)), payout=D(2026, 12, 5))]
    assert run(moved)[1] == []
    supplement = [aid("s1", STHLM), aid("s2", STHLM, amount=150_000)]
    assert run(supplement)[1] == []
    not_municipal = [aid("s1", STHLM), aid("r1", "2321000016", kind="REGION")]
    assert run(not_municipal)[1] == []


def test_months_covered():
    assert months_covered(D(2026, 11, 15), D(2027, 1, 14)) == ["2026-11", "2026-12", "2027-01"]


# -- OVERLAPPING_BENEFITS -----------------------------------------------------------------------
def test_overlapping_benefits_incompatible_pair_is_a_hit():
    records = [enriched("s1"), enriched("u1", payer=FUND, payer_kind="UNEMPLOYMENT_FUND",
                                        category="UNEMPLOYMENT_BENEFIT", period=(D(2026, 11, 16), D(2026, 12, 15)))]
    (hit,) = run(records)[1]
    check_hit(hit, "OVERLAPPING_BENEFITS")
    assert hit["window"] == "2026-11-16..2026-11-30"
    assert hit["evidence"] == {"categories": "SICKNESS_BENEFIT+UNEMPLOYMENT_BENEFIT", "overlap_start": "2026-11-16",
                               "overlap_end": "2026-11-30", "overlap_days": "15", "threshold_days": "1"}


def test_overlapping_benefits_near_misses():
    adjacent = [enriched("u1", payer=FUND, category="UNEMPLOYMENT_BENEFIT", period=(D(2026, 10, 1), D(2026, 10, 31))),
                enriched("s1")]
    assert run(adjacent)[1] == []
    compatible = [enriched("s1"), enriched("h1", category="HOUSING_ALLOWANCE", amount=200_000)]
    assert run(compatible)[1] == []
    one_day = [enriched("s1"), enriched("u1", payer=FUND, category="UNEMPLOYMENT_BENEFIT",
                                        period=(D(2026, 11, 30), D(2026, 12, 29)))]
    assert len(run(one_day)[1]) == 1
    assert run(one_day, th=dataclasses.replace(TH, overlap_min_days=2))[1] == []


def test_overlapping_benefits_matrix_is_configurable():
    th = dataclasses.replace(TH, incompatible=parse_pairs("SICKNESS_BENEFIT+HOUSING_ALLOWANCE"))
    records = [enriched("s1"), enriched("h1", category="HOUSING_ALLOWANCE", amount=200_000)]
    (hit,) = run(records, th=th)[1]
    assert hit["evidence"]["categories"] == "HOUSING_ALLOWANCE+SICKNESS_BENEFIT"
    with pytest.raises(ThresholdError, match="TKONTO_RULE_OVERLAPPING_BENEFITS_PAIRS"):
        parse_pairs("SICKNESS_BENEFIT+SICKNESS_BENEFIT")
    with pytest.raises(ThresholdError):
        parse_pairs("SICKNESS_BENEFIT+NAPPING")


# -- DUPLICATE_PAYMENT --------------------------------------------------------------------------
def test_duplicate_payment_same_payer_amount_period_is_a_hit():
    (hit,) = run([enriched("p1"), enriched("p2", payout=D(2026, 11, 27))])[1]
    check_hit(hit, "DUPLICATE_PAYMENT")
    assert hit["window"] == "2026-11-01..2026-11-30"
    assert hit["evidence"] == {"amount_ore": "500000", "period_start": "2026-11-01", "period_end": "2026-11-30",
                               "original_payment_id": "p1", "duplicate_payment_id": "p2"}


@pytest.mark.parametrize("withdrawn", ["CANCELLED", "RETURNED", "RECALLED"])
def test_duplicate_payment_not_after_the_original_was_withdrawn(withdrawn):
    records = [enriched("p1", event_type="PLANNED"), enriched("p1", event_type=withdrawn), enriched("p2")]
    assert run(records)[1] == []


def test_duplicate_payment_near_misses():
    assert run([enriched("p1"), enriched("p2", amount=500_001)])[1] == []
    assert run([enriched("p1"), enriched("p2", payer="2021006297", category="PENSION")])[1] == []  # other payer
    assert run([enriched("p1"), enriched("p2", period=(D(2026, 12, 1), D(2026, 12, 31)))])[1] == []
    assert run([enriched("p1", event_type="PLANNED"), enriched("p1"), enriched("p1")])[1] == []  # one payment


# -- ACCOUNT_CHANGE_BEFORE_PAYOUT ---------------------------------------------------------------
def change(days_before, amount, previous=True, account=NEW_ACC):
    records = [enriched("old", payout=D(2026, 10, 25), period=(D(2026, 10, 1), D(2026, 10, 31)))] if previous else []
    return records + [enriched("new", account=account, amount=amount,
                               opened=D(2026, 11, 25) - dt.timedelta(days=days_before))]


def test_account_change_before_payout_is_a_hit():
    (hit,) = run(change(TH.account_change_days, TH.account_change_above_ore + 1))[1]
    check_hit(hit, "ACCOUNT_CHANGE_BEFORE_PAYOUT")
    assert (hit["bank_account"], hit["window"]) == (NEW_ACC, "2026-11")
    assert hit["evidence"] == {"previous_account": ACC, "account_opened": "2026-10-26", "payout_date": "2026-11-25",
                               "days_before_payout": "30", "amount_ore": "1000001", "threshold_days": "30",
                               "threshold_ore": "1000000"}
    assert [p["payment_id"] for p in hit["payments"]] == ["new"]


def test_account_change_near_misses():
    big = TH.account_change_above_ore + 1
    assert run(change(TH.account_change_days + 1, big))[1] == []
    assert run(change(3, TH.account_change_above_ore))[1] == []
    assert run(change(3, big, previous=False))[1] == []
    assert run(change(3, big, account=ACC))[1] == []
    assert run(change(-1, big))[1] == []  # opened after the payout day


# -- withdrawn events, idempotence, bounded state -----------------------------------------------
@pytest.mark.parametrize("event_type", ["CANCELLED", "RETURNED", "RECALLED"])
def test_withdrawing_events_raise_no_hits(event_type):
    record = enriched(event_type=event_type, result="NO_MATCH", deceased=D(2026, 1, 1))
    state, hits = run([record])
    assert hits == []
    assert [p["status"] for p in state["payments"]] == [event_type]
    # the tombstone keeps a late PLANNED of the same payment from counting
    assert run([enriched(event_type="PLANNED", result="NO_MATCH")], state=state)[1] == []


def test_planned_then_executed_gives_the_same_hit_id():
    planned = run([enriched(event_type="PLANNED", deceased=D(2026, 11, 1))])
    executed = run([enriched(event_type="EXECUTED", deceased=D(2026, 11, 1))], state=planned[0])
    assert [h["hit_id"] for h in planned[1]] == [h["hit_id"] for h in executed[1]]
    assert planned[1][0]["payments"][0]["event_type"] == "PLANNED"
    assert executed[1][0]["payments"][0]["event_type"] == "EXECUTED"
    assert executed[0]["payments"][0]["status"] == "EXECUTED"
    again = run([enriched(event_type="PLANNED", deceased=D(2026, 11, 1))], state=executed[0])
    assert again[0] == executed[0]  # a late PLANNED never moves a payment back


def test_redelivery_gives_the_same_state_and_hit_ids():
    records = [aid("s1", STHLM, result="NO_MATCH"), aid("g1", GBG), enriched("p1"), enriched("p2"),
               enriched("u1", payer=FUND, category="UNEMPLOYMENT_BENEFIT"),
               enriched("n1", account=NEW_ACC, amount=2_000_000, opened=D(2026, 11, 20))]
    state, first_hits = None, []
    for r in records:
        state, hits = evaluate_payee(state, r, TH)
        again_state, again_hits = evaluate_payee(state, r, TH)
        assert again_state == state
        assert [h["hit_id"] for h in again_hits] == [h["hit_id"] for h in hits]
        first_hits.append([h["hit_id"] for h in hits])
    assert sorted({h["rule_id"] for r in records for h in evaluate_payee(state, r, TH)[1]}) == [
        "ACCOUNT_CHANGE_BEFORE_PAYOUT", "ACCOUNT_NOT_HELD", "DUPLICATE_PAYMENT", "MULTI_MUNICIPALITY_AID",
        "OVERLAPPING_BENEFITS"]
    # re-evaluating every event after all of them (a replay from an old offset) gives the same ids
    assert [[h["hit_id"] for h in evaluate_payee(state, r, TH)[1]] for r in records] == first_hits


def test_evaluate_does_not_modify_its_input_state():
    state, _ = run([enriched("p1")])
    before = repr(state)
    evaluate_payee(state, enriched("p2"), TH)
    assert repr(state) == before


@pytest.mark.parametrize("later", ["EXECUTED", "CANCELLED"])
def test_a_status_change_does_not_modify_the_input_state(later):
    # payments are copied on write: the changed one is a new record, the input keeps its own
    state, _ = run([enriched("p1", event_type="PLANNED"), enriched("p2", event_type="PLANNED")])
    before = repr(state)
    after, _ = evaluate_payee(state, enriched("p1", event_type=later), TH)
    assert repr(state) == before
    assert [p["status"] for p in after["payments"]] == [later, "PLANNED"]
    _, _ = evaluate_account(state | {"kind": "ACCOUNT"}, enriched("p1", event_type=later), TH)
    assert repr(state) == before


def monthly(i, **kw):
    first = D(2024 + i // 12, i % 12 + 1, 1)
    last = (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    return enriched(f"m{i}", period=(first, last), payout=first.replace(day=25), **kw)


def test_state_is_pruned_to_the_retention_window():
    state, _ = run([monthly(i) for i in range(36)])
    payouts = [p["payout_date"] for p in state["payments"]]
    assert state["watermark"] == D(2026, 12, 25)
    assert min(payouts) >= state["watermark"] - dt.timedelta(days=TH.retention_days + 31)
    assert len(payouts) == 5  # Aug..Dec 2026: period ends within 120 days of the watermark
    # an event older than the retention is checked by single-payment rules but not kept
    old, hits = evaluate_payee(state, monthly(0, result="NO_MATCH"), TH)
    assert old == state and [h["rule_id"] for h in hits] == ["ACCOUNT_NOT_HELD"]


def random_stream(seed: int, n: int, payees: list[str]) -> list[dict]:
    """``n`` events of 400 payment ids from three payers (the same id from two payers is two
    payments), with status changes, late and early events, and days with many events."""
    import random

    rnd = random.Random(seed)
    records = []
    for i in range(n):
        payout = D(2026, 1, 1) + dt.timedelta(days=rnd.randrange(400))
        first = payout.replace(day=1)
        at = dt.datetime.combine(payout - dt.timedelta(days=rnd.randrange(-20, 40)), dt.time(6),
                                 tzinfo=dt.timezone.utc)
        records.append(enriched(f"r{rnd.randrange(400)}", payee=rnd.choice(payees),
                                payer=rnd.choice([FK, STHLM, GBG]), event_type=rnd.choice(
                                    ["PLANNED", "EXECUTED", "EXECUTED", "CANCELLED", "RECLAIMED"]),
                                category=rnd.choice(["SICKNESS_BENEFIT", "SOCIAL_ASSISTANCE", "PARENTAL_BENEFIT"]),
                                amount=rnd.choice([500_000, 2_000_000]), period=(first, payout), payout=payout,
                                at=at))
    records.sort(key=lambda r: r["payment"]["event_time"] + dt.timedelta(days=rnd.randrange(5)))  # a bit late
    return records


def test_retention_scan_only_when_the_watermark_moves_is_exact(monkeypatch):
    """_prune looks for payments older than the horizon only when the watermark moved: over
    a random stream (events late and early, status changes, days with many events) the
    states and hits are those of a scan on every event."""
    from streams import rules

    records = random_stream(7, 800, payees=[PAYEE, OTHER])
    th = TH
    results = {}
    for mode in ("skip", "always"):
        if mode == "always":
            prune = rules._prune
            monkeypatch.setattr(rules, "_prune", lambda st, horizon, cap, moved: prune(st, horizon, cap, True))
        results[mode] = [run([r for r in records if r["payment"]["payee_id"] == PAYEE], evaluate_payee, th),
                         run(records, evaluate_account, th)]  # one account, two payees
    assert results["skip"] == results["always"]
    (payee_state, payee_hits), (account_state, _) = results["skip"]
    assert 10 < len(payee_state["payments"]) < len(account_state["payments"]) < th.max_payments  # by the horizon
    assert payee_hits  # the rules ran on the kept payments


def test_state_is_capped_at_max_payments():
    th = dataclasses.replace(TH, max_payments=10)
    state, _ = run([enriched(f"t{i}", category="PATIENT_TRAVEL", amount=10_000 + i,
                             payout=D(2026, 11, 1) + dt.timedelta(days=i % 28)) for i in range(40)], th=th)
    assert len(state["payments"]) == 10
    codec = default_codec()
    assert codec.decode(codec.encode("se.tkonto.state.AnalysisState", state)) == state
    account_state, _ = run([shared(f"a{i}", PAYEE, D(2026, 11, 1) + dt.timedelta(days=i % 28)) for i in range(40)],
                           evaluate_account, th=th)
    assert len(account_state["payments"]) == 10


@pytest.mark.parametrize("indexed_from", [0, None, 10_000])  # None: the default INDEXED_FROM
@pytest.mark.parametrize("max_payments", [200, 10])
def test_a_state_carried_from_event_to_event_is_one_read_back_every_time(max_payments, indexed_from, monkeypatch):
    """A state returned by the rules may carry indexes of its payments that are not stored
    (``rules._State``, from ``INDEXED_FROM`` payments); a state read from the changelog or
    RocksDB is a plain dict and gets them anew. Over a random stream, with the size cap
    pruning on every event or not, and indexes from the first payment, from the default
    size or never, a state passed on as returned gives the same states and hits as one
    encoded and decoded before every event."""
    from streams import rules

    if indexed_from is None:
        indexed_from = rules.INDEXED_FROM
    monkeypatch.setattr(rules, "INDEXED_FROM", indexed_from)
    codec = default_codec()
    th = dataclasses.replace(TH, max_payments=max_payments)
    records = random_stream(11, 600, payees=[PAYEE, OTHER, THIRD])
    rules_hit = set()
    for evaluate, events in ((evaluate_payee, [r for r in records if r["payment"]["payee_id"] == PAYEE]),
                             (evaluate_account, records)):  # one account, three payees
        carried = read_back = None
        hits = {"carried": [], "read back": []}
        sizes, indexed = set(), False
        for r in events:
            carried, found = evaluate(carried, r, th)
            hits["carried"] += found
            read_back, found = evaluate(read_back, r, th)
            hits["read back"] += found
            assert carried == read_back
            read_back = codec.decode(codec.encode("se.tkonto.state.AnalysisState", read_back))
            assert read_back == carried and type(read_back) is dict
            sizes.add(len(carried["payments"]))
            indexed |= type(carried) is rules._State
        assert hits["carried"] == hits["read back"]
        assert indexed == (indexed_from < max(sizes))
        assert max(sizes) == 10 if max_payments == 10 else 10 < max(sizes) < max_payments
        rules_hit |= {h["rule_id"] for h in hits["carried"]}
    assert {"SHARED_ACCOUNT", "DUPLICATE_PAYMENT"} <= rules_hit


# -- catalogue and thresholds -------------------------------------------------------------------
def test_catalogue_is_complete_and_names_real_settings():
    variables = {f.metadata["env"] for f in dataclasses.fields(Settings)}
    assert list(RULES) == ["ACCOUNT_NOT_HELD", "SHARED_ACCOUNT", "PAID_AFTER_DEATH", "PAID_AFTER_EMIGRATION",
                           "MULTI_MUNICIPALITY_AID", "OVERLAPPING_BENEFITS", "DUPLICATE_PAYMENT",
                           "ACCOUNT_CHANGE_BEFORE_PAYOUT"]
    for rule in RULES.values():
        assert rule.description and rule.inputs and rule.evidence
        assert rule.severity in ("LOW", "MEDIUM", "HIGH") and rule.keyed_by in ("payee", "account")
        assert set(rule.settings) <= variables


def test_thresholds_from_settings(monkeypatch):
    assert Thresholds.from_settings(Settings.from_env()) == Thresholds()
    monkeypatch.setenv("TKONTO_RULE_SHARED_ACCOUNT_MIN_PAYEES", "5")
    monkeypatch.setenv("TKONTO_RULE_OVERLAPPING_BENEFITS_PAIRS", "PARENTAL_BENEFIT+SICKNESS_BENEFIT")
    monkeypatch.setenv("TKONTO_RULE_ACCOUNT_CHANGE_MIN_ORE", "2500000")
    th = Thresholds.from_settings(Settings.from_env())
    assert th.shared_min_payees == 5 and th.account_change_above_ore == 2_500_000
    assert th.incompatible == {frozenset({"PARENTAL_BENEFIT", "SICKNESS_BENEFIT"})}
    monkeypatch.setenv("TKONTO_RULE_STATE_RETENTION_DAYS", "20")
    with pytest.raises(ThresholdError, match="TKONTO_RULE_STATE_RETENTION_DAYS"):
        Thresholds.from_settings(Settings.from_env())
    monkeypatch.setenv("TKONTO_RULE_STATE_RETENTION_DAYS", "120")
    monkeypatch.setenv("TKONTO_RULE_SHARED_ACCOUNT_MIN_PAYEES", "1")
    with pytest.raises(ThresholdError, match="TKONTO_RULE_SHARED_ACCOUNT_MIN_PAYEES"):
        Thresholds.from_settings(Settings.from_env())


def test_the_day_of_an_instant_is_its_utc_day_whatever_its_zone():
    from streams.rules import _day_of
    utc = dt.datetime(2026, 12, 4, 23, 30, tzinfo=dt.timezone.utc)
    assert _day_of(utc) == dt.date(2026, 12, 4)
    assert _day_of(utc.astimezone(dt.timezone(dt.timedelta(hours=2)))) == dt.date(2026, 12, 4)  # 01:30 on the 5th
    assert _day_of(utc.replace(tzinfo=None)) == dt.date(2026, 12, 4)  # naive: taken as it is
    assert _day_of(dt.date(2026, 12, 5)) == dt.date(2026, 12, 5)
