"""The citizen API on running workers over the real broker: exact items, auth, routing."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from streams.auth import issue_token
from streams.codec import default_codec
from streams.identity import make_person
from streams.observe import read_topic, wait_until
from tests.conftest import FK, STOCKHOLM, UPPSALA_P2, payment

pytestmark = pytest.mark.broker

SECRET = "test-secret-not-for-production-0123456789"
PEOPLE = [make_person(dt.date(1950, 1, 1) + dt.timedelta(days=211 * i), i) for i in range(40)]
REP = make_person(dt.date(1948, 5, 5), 999)
TODAY = dt.datetime.now(dt.timezone.utc).date()
PAST, FUTURE = TODAY - dt.timedelta(days=20), TODAY + dt.timedelta(days=20)


def get(worker, person=None, query="", token=None, role="citizen", ttl=600):
    headers = {}
    if token is None and person is not None:
        token = issue_token(SECRET, person, role, ttl)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    status, body = worker.get(f"/api/v1/me/payments{query}", headers=headers)
    return status, json.loads(body)


def publish_all(pipe):
    sth, fk, upp = (pipe.client(p) for p in (STOCKHOLM, FK, UPPSALA_P2))
    for i, person in enumerate(PEOPLE):
        sth.publish(payment(STOCKHOLM, person, f"s{i}", "EXECUTED", 1000_00 + i, payout=PAST))
        fk.publish(payment(FK, person, f"f{i}", "PLANNED", 2000_00, category="SICKNESS_BENEFIT", payout=FUTURE))
    person = PEOPLE[0]
    sth.publish(payment(STOCKHOLM, person, "r1", "EXECUTED", 300_00, payout=PAST))
    sth.publish(payment(STOCKHOLM, person, "r1", "RETURNED", 300_00, payout=PAST))
    fk.publish(payment(FK, person, "c1", "PLANNED", 50_00, category="SICKNESS_BENEFIT", payout=FUTURE))
    fk.publish(payment(FK, person, "c1", "CANCELLED", 50_00, category="SICKNESS_BENEFIT", payout=FUTURE))
    sth.publish(payment(STOCKHOLM, person, "rep1", "EXECUTED", 700_00, payout=PAST, representative_id=REP))
    upp.publish(payment(UPPSALA_P2, person, "u1", "EXECUTED", 9999_00, payout=PAST))  # analysis only: never shown
    for c in (sth, fk, upp):
        c.flush()


def test_a_person_sees_exactly_their_payments_from_either_worker(pipeline_factory):
    pipe = pipeline_factory([STOCKHOLM, FK, UPPSALA_P2])
    w1 = pipe.start_worker()
    w2 = pipe.start_worker()
    assert wait_until(lambda: w1.get("/ready")[0] == 200 and w2.get("/ready")[0] == 200, 60), "workers not ready"
    publish_all(pipe)
    pipe.wait_drained()
    me = PEOPLE[0]

    def complete():
        status, body = get(w1, me)
        return status == 200 and len(body["history"]) == 3 and len(body["upcoming"]) == 1
    assert wait_until(complete, 30), get(w1, me)

    for worker in (w1, w2):  # either worker answers, wherever the person's partition lives
        status, body = get(worker, me)
        assert status == 200
        assert sorted((i["payment_id"], i["status"], i["amount_ore"]) for i in body["history"]) == [
            ("r1", "RETURNED", 300_00), ("rep1", "EXECUTED", 700_00), ("s0", "EXECUTED", 1000_00)]
        assert [(i["payment_id"], i["amount_ore"], i["payout_date"]) for i in body["upcoming"]] == [
            ("f0", 2000_00, FUTURE.isoformat())]
        assert [i["payment_id"] for i in body["cancelled"]] == ["c1"]
        assert body["totals"]["paid_ore"] == 1000_00 + 700_00 and body["totals"]["upcoming_ore"] == 2000_00
        assert "u1" not in json.dumps(body) and "bank_account\"" not in json.dumps(body)
    # A request taken as forwarded (a stale owner claim, or a rebalance) is answered only by
    # the worker that holds the person's partition; the other says to retry, never "no payments".
    token = issue_token(SECRET, me, "citizen", 600)
    answers = sorted(worker.get("/api/v1/me/payments", headers={"Authorization": f"Bearer {token}",
                                                                   "X-Tkonto-Routed": "1"}) for worker in (w1, w2))
    assert [status for status, _ in answers] == [200, 503]
    assert len(json.loads(answers[0][1])["history"]) == 3
    assert "being reassigned" in json.loads(answers[1][1])["error"]
    # every other person: exactly their own two payments
    for i, person in enumerate(PEOPLE[1:], start=1):
        status, body = get((w1, w2)[i % 2], person)
        assert status == 200
        assert [(x["payment_id"], x["amount_ore"]) for x in body["history"]] == [(f"s{i}", 1000_00 + i)]
        assert [x["payment_id"] for x in body["upcoming"]] == [f"f{i}"]

    # The representative sees the payment received on the payee's behalf, and nothing else.
    status, body = get(w2, REP)
    assert status == 200 and [(x["payment_id"], x["on_behalf_of"]) for x in body["history"]] == [("rep1", me)]

    # Auth: none, wrong signature, expired, wrong role; a token only ever shows its own subject.
    assert get(w1)[0] == 401
    assert get(w1, token=issue_token("another-secret-of-thirty-two-bytes-or-more", me, "citizen", 600))[0] == 401
    assert get(w1, token=issue_token(SECRET, me, "citizen", 60, now=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)))[0] == 401
    assert get(w1, me, role="analyst")[0] == 403
    status, body = get(w1, make_person(dt.date(1999, 9, 9), 1))  # a person with no payments
    assert status == 200 and body["history"] == [] and body["upcoming"] == []
    assert get(w1, me, query="?from=2026-13-01")[0] == 400
    assert w1.metric_sum("tkonto_api_requests_total") + w2.metric_sum("tkonto_api_requests_total") > 40
    hist = w1.metric_sum("tkonto_citizen_visibility_latency_seconds_count") + \
        w2.metric_sum("tkonto_citizen_visibility_latency_seconds_count")
    assert hist == 40 * 2 + 6  # every stored change measured once (rep1 counts for payee and representative)


def test_a_restarted_worker_answers_from_views_restored_item_by_item(pipeline_factory):
    """The citizen-views changelog holds one record per item; a worker that starts empty
    rebuilds every view from it and answers exactly as the one before, with either store."""
    pipe = pipeline_factory([STOCKHOLM, FK, UPPSALA_P2])
    first = pipe.start_worker()
    publish_all(pipe)
    pipe.wait_drained()
    me, other = PEOPLE[0], PEOPLE[7]
    assert wait_until(lambda: len(get(first, me)[1].get("history", [])) == 3, 30), get(first, me)
    before = {person: get(first, person) for person in (me, other, REP)}
    assert all(status == 200 for status, _ in before.values())

    codec = default_codec()
    latest = {m.key(): codec.decode(m.value(), expect="se.tkonto.state.CitizenViewItem")["item"]
              for m in read_topic(pipe.broker.bootstrap, pipe.catalogue.changelog("citizen-views").name)}
    mine = {key.split(b"\x00", 1)[1].decode(): item for key, item in latest.items() if key.startswith(me.encode() + b"\x00")}
    assert {k.split(":")[1]: item["status"] for k, item in mine.items()} == {
        "s0": "EXECUTED", "f0": "PLANNED", "r1": "RETURNED", "c1": "CANCELLED", "rep1": "EXECUTED"}
    assert len(latest) == 40 * 2 + 3 + 1  # every item once, by key: 2 a person, r1, c1, rep1, and rep1 for REP

    first.stop()
    for store in ("rocksdb://", "memory://"):  # each on its own, empty data directory
        pipe.settings = pipe.settings.with_overrides(store=store)
        worker = pipe.start_worker()
        for person, (status, body) in before.items():
            assert get(worker, person) == (status, body), (store, person)
        worker.stop()
