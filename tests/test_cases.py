"""The worker's case commands (``streams.cases._apply``) with the table and the producer
replaced by recorders: a redelivered DECIDE command sends the decision again, a second
decision is refused and sends nothing."""
from __future__ import annotations

import datetime as dt

import pytest

from streams import cases
from streams.codec import default_codec
from streams.identity import make_person
from streams.review import ReviewError, open_or_update_case

PAYEE = make_person(dt.date(1980, 5, 17), 123)
STHLM, GBG = "2120000142", "2120001355"
T1 = dt.datetime(2026, 11, 27, 10, 30, tzinfo=dt.timezone.utc)
T2 = dt.datetime(2026, 12, 1, 14, 15, tzinfo=dt.timezone.utc)


def payment(payer_id: str, payment_id: str, amount_ore: int) -> dict:
    return {"payer_id": payer_id, "payment_id": payment_id, "payee_id": PAYEE, "event_type": "EXECUTED",
            "amount_ore": amount_ore, "category": "SOCIAL_ASSISTANCE", "period_start": dt.date(2026, 11, 1),
            "period_end": dt.date(2026, 11, 30), "payout_date": dt.date(2026, 11, 25)}


@pytest.fixture
def worker(monkeypatch):
    """The cases table as a dict, and every record the worker would send, in order."""
    table, sent = {}, []
    monkeypatch.setattr(cases, "cases_table", table)
    monkeypatch.setattr(cases, "emit", lambda topic, key, value: sent.append((topic.get_topic_name(), key, value)))
    return table, sent


def command(command_id: str, outcome: str = "NOTIFY_PAYER", case_id: str = "") -> dict:
    return {"command_id": command_id, "case_id": case_id, "action": "DECIDE", "outcome": outcome,
            "reason": "two municipalities, same month", "analyst": "analyst-7", "requested_at": T2}


def test_a_redelivered_decide_command_sends_the_decision_again(worker):
    table, sent = worker
    codec = default_codec()
    hit = {"hit_id": "hit-1", "rule_id": "MULTI_MUNICIPALITY_AID", "rule_version": 1, "payee_id": PAYEE,
           "bank_account": None, "window": "2026-11", "severity": "HIGH", "detected_at": T1,
           "payer_ids": [STHLM, GBG], "payments": [payment(STHLM, "sth-1", 512_300), payment(GBG, "gbg-1", 498_700)],
           "evidence": {"month": "2026-11", "threshold_payers": "2"}}
    case = open_or_update_case(None, hit, T1)
    key = case["case_id"].encode()
    table[key] = codec.encode("Case", case)

    decided = cases._apply(key, command("cmd-1", case_id=case["case_id"]))
    assert decided["status"] == "NOTIFY_PAYER" and decided["decided_by_command"] == "cmd-1"
    first = list(sent)
    topics = [t for t, _, _ in first]
    assert topics == [cases.cases_topic.get_topic_name(),
                      cases.catalogue.payer_notifications(STHLM).name, cases.catalogue.payer_notifications(GBG).name,
                      cases.audit_topic.get_topic_name()]

    sent.clear()  # the worker crashed before the command's offset was committed: it is read again
    assert cases._apply(key, command("cmd-1", case_id=case["case_id"])) == decided
    assert sent == first  # the same records, byte for byte

    sent.clear()  # another analyst's request for the decided case
    refused = cases._apply(key, command("cmd-2", outcome="CLOSED_NO_ACTION", case_id=case["case_id"]))
    assert isinstance(refused, ReviewError) and refused.status == 409
    assert sent == []
    assert codec.decode(table[key], expect="Case") == decided
