"""Analysis and review end to end on the real broker, with the fraud scenario's ground truth."""
from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import pytest

from streams.auth import issue_token
from streams.observe import decode_topic, read_topic, wait_until
from streams.register_loader import load_register
from streams.registers import write_csv
from streams.scenario import fraud_scenario, score
from tests.conftest import payment

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def scenario():
    return fraud_scenario(11, 250)


def analyst_get(worker, path, secret, who="analyst-anna"):
    status, body = worker.get(path, headers={"Authorization": f"Bearer {issue_token(secret, who, 'analyst', 600)}"})
    return status, json.loads(body)


def analyst_post(worker, path, secret, body, who="analyst-anna"):
    import urllib.request
    request = urllib.request.Request(worker.url + path, data=json.dumps(body).encode(), method="POST", headers={
        "Authorization": f"Bearer {issue_token(secret, who, 'analyst', 600)}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_rules_select_exactly_and_people_decide(pipeline_factory, scenario, tmp_path):
    payers = list(scenario.registers.payers)
    pipe = pipeline_factory(payers)
    for kind, items in (("accounts", scenario.registers.accounts), ("population", scenario.registers.people)):
        write_csv(kind, tmp_path / f"{kind}.csv", items)
        load_register(kind, str(tmp_path / f"{kind}.csv"), pipe.settings)
    first = pipe.start_worker()
    clients = {p.payer_id: pipe.client(p) for p in payers}
    half = len(scenario.events) // 2
    for event in scenario.events[:half]:
        clients[event["payer_id"]].publish(event)
    for c in clients.values():
        c.flush()
    assert wait_until(lambda: first.registered() > half // 4, 60, interval=0.1)
    first.kill()  # SIGKILL mid-stream: hits must still be exact, none doubled
    second = pipe.start_worker()
    for event in scenario.events[half:]:
        clients[event["payer_id"]].publish(event)
    for c in clients.values():
        c.flush()
    cat = pipe.catalogue
    assert wait_until(pipe.drained, 180, interval=0.5)  # the engine's inputs include the signals

    hits = {h["hit_id"]: h for h in decode_topic(pipe.broker.bootstrap, cat.signals.name)}
    scores = score(list(hits.values()), scenario)
    for rule, s in scores.items():
        assert s.recall == 1.0, (rule, s)
        assert s.precision >= 0.95, (rule, s)
    assert set(scores) == set(scenario.labels)

    secret = pipe.settings.jwt_secret
    def cases_count():
        return analyst_get(second, "/api/v1/cases", secret)[1]["count"]
    assert wait_until(lambda: cases_count() > 0, 30)
    status, listing = analyst_get(second, "/api/v1/cases?status=OPEN", secret)
    cases = {c["case_id"]: c for c in listing["cases"]}
    assert status == 200 and sum(len(c["hits"]) for c in cases.values()) == len(hits), "a hit counted twice"
    assert Counter(c["rule_id"] for c in cases.values()).keys() == scores.keys()

    # Citizens cannot use analyst endpoints.
    citizen = issue_token(secret, scenario.registers.people[0].person_id, "citizen", 600)
    assert second.get("/api/v1/cases", headers={"Authorization": f"Bearer {citizen}"})[0] == 403

    # A third worker takes half the partitions: their cases are restored from tkonto.cases,
    # and either worker answers for any case (the one that does not hold it forwards).
    third = pipe.start_worker()

    def answered_everywhere(case_id: str) -> bool:
        return all(analyst_get(w, f"/api/v1/cases/{case_id}", secret) == (200, cases[case_id]) for w in (second, third))
    assert wait_until(lambda: all(answered_everywhere(case_id) for case_id in cases), 60, interval=0.5)

    # NOTIFY_PAYER: each payer gets only its own payments, checked on the bytes.
    multi = next(c for c in cases.values() if c["rule_id"] == "MULTI_MUNICIPALITY_AID")
    status, decided = analyst_post(second, f"/api/v1/cases/{multi['case_id']}/decision", secret,
                                   {"outcome": "NOTIFY_PAYER", "reason": "two municipalities, same month"})
    assert status == 200 and decided["status"] == "NOTIFY_PAYER" and decided["decided_by"] == "analyst-anna"
    assert analyst_get(third, f"/api/v1/cases/{multi['case_id']}", secret) == (200, decided)
    assert analyst_post(second, f"/api/v1/cases/{multi['case_id']}/decision", secret,
                        {"outcome": "CLOSED_NO_ACTION", "reason": "again"})[0] == 409
    involved = sorted(multi["payer_ids"])
    assert len(involved) >= 2
    for payer_id in involved:
        [msg] = read_topic(pipe.broker.bootstrap, cat.payer_notifications(payer_id).name)
        own = [p for p in multi["payments"] if p["payer_id"] == payer_id]
        others = [p for p in multi["payments"] if p["payer_id"] != payer_id]
        for p in own:
            assert p["payment_id"].encode() in msg.value()
        for p in others:
            assert p["payer_id"].encode() not in msg.value() and p["payment_id"].encode() not in msg.value()
    for payer in payers:
        if payer.payer_id not in involved:
            assert read_topic(pipe.broker.bootstrap, cat.payer_notifications(payer.payer_id).name) == []

    # IN_DEPTH_REVIEW: export everything about the person except patient-secrecy data; audited.
    death = next(c for c in cases.values() if c["rule_id"] == "PAID_AFTER_DEATH")
    person = death["subject"]
    payer = next(p for p in payers if p.payer_id == death["payments"][0]["payer_id"])
    secret_decision = {"decision_id": "d-secret", "decision_date": dt.date(2026, 7, 1), "legal_basis": "HSL",
                       "patient_secrecy": False, "circumstances": [
                           {"name": "diagnosis_code", "value": "F32.1", "patient_secrecy": True},
                           {"name": "household_size", "value": "2", "patient_secrecy": False}]}
    clients[payer.payer_id].publish(payment(payer, person, "secret-1", "PLANNED", 100_00, category=death["payments"][0]["category"],
                                            payout=dt.date(2026, 12, 24), decision=secret_decision))
    clients[payer.payer_id].flush()
    pipe.wait_drained()
    path = f"/api/v1/persons/{person}/export?case_id={death['case_id']}&reason=follow-up"
    assert analyst_get(second, path, secret)[0] == 409  # not yet decided for in-depth review
    assert analyst_post(second, f"/api/v1/cases/{death['case_id']}/decision", secret,
                        {"outcome": "IN_DEPTH_REVIEW", "reason": "payout after death"})[0] == 200
    status, body = second.get(path, headers={"Authorization": f"Bearer {issue_token(secret, 'analyst-anna', 'analyst', 600)}"})
    assert status == 200, body
    assert b"F32.1" not in body and b"diagnosis_code" not in body and b"household_size" in body
    export = json.loads(body)
    assert export["person_id"] == person and export["case_id"] == death["case_id"]
    audit = decode_topic(pipe.broker.bootstrap, cat.audit.name)
    actions = Counter((a["action"], a["case_id"]) for a in audit)
    assert actions[("CASE_DECIDED", multi["case_id"])] == 1
    assert actions[("CASE_DECIDED", death["case_id"])] == 1
    [export_audit] = [a for a in audit if a["action"] == "IN_DEPTH_REVIEW_EXPORT"]
    assert (export_audit["analyst"], export_audit["person_id"], export_audit["reason"]) == ("analyst-anna", person, "follow-up")
    assert export_audit["items_exported"] > 0


def test_the_engine_group_takes_over_where_fausts_group_left_off(broker):
    """An upgrade from the review cases as Faust agents: the engine's group starts on each
    review partition where Faust's group committed, not from the beginning (which would
    re-send the notifications of every decision already made), and never moves a partition
    it has committed itself."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    from streams.cases import adopt_offsets
    from tests.broker_topics import create_topics

    signals, commands = "upgrade.signals", "upgrade.case-commands"
    create_topics(broker.bootstrap, (signals, 2, False), (commands, 2, False))
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for topic in (signals, commands):
        for partition in (0, 1):
            for i in range(5):
                producer.produce(topic, b"v%d" % i, b"case-%d" % i, partition=partition)
    producer.flush(10)

    def commit(group: str, offsets: dict[tuple[str, int], int]) -> None:
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
        c.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
        c.close()

    def committed(group: str) -> dict[tuple[str, int], int]:
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
        tps = [TopicPartition(t, p) for t in (signals, commands) for p in (0, 1)]
        found = {(tp.topic, tp.partition): tp.offset for tp in c.committed(tps, timeout=10)}
        c.close()
        return found

    # Faust's group read 3 and 5 of the signals and 2 of commands' partition 0; commands'
    # partition 1 was never committed. The engine's group has already committed signals' 1.
    commit("upgrade-faust", {(signals, 0): 3, (signals, 1): 5, (commands, 0): 2})
    commit("upgrade-engine", {(signals, 1): 4})
    assert adopt_offsets(broker.bootstrap, "upgrade-faust", "upgrade-engine", [signals, commands]) == 2
    after = committed("upgrade-engine")
    assert after[(signals, 0)] == 3 and after[(commands, 0)] == 2  # taken over
    assert after[(signals, 1)] == 4  # its own commit stays
    assert after[(commands, 1)] < 0  # neither group committed: from the beginning
    assert adopt_offsets(broker.bootstrap, "upgrade-faust", "upgrade-engine", [signals, commands]) == 0
    assert adopt_offsets(broker.bootstrap, "no-such-group", "upgrade-new", [signals, commands]) == 0
    assert adopt_offsets(broker.bootstrap, "upgrade-faust", "upgrade-new", ["upgrade.none"]) == 0
