"""The review cases' engine stages (``streams.cases``) with their store in memory and the
engine's output replaced by a recorder: a hit opens its case once, however often it is
delivered; a redelivered DECIDE command sends the decision again, a second decision is
refused and sends nothing; the waiting request is answered on its event loop."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from streams import cases
from streams.codec import default_codec
from streams.engine import Fed
from streams.state import Store
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


class Recorder:
    """The engine's ``Output`` as the stages use it: every record written, in order."""

    def __init__(self):
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.callbacks: list = []

    def write(self, topic, key, value, partition=None, headers=None):
        self.sent.append((topic, key, value))

    def when_delivered(self, callback):
        self.callbacks.append(callback)

    def flush(self):
        """What the engine's commit does once everything written is delivered."""
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback()


@pytest.fixture
def worker(monkeypatch):
    """The cases store in memory, holding partition 0, and a recorder of what is sent."""
    store = Store("cases", "Case", cases.signals_topic, "cases-changelog", default_codec())
    store.partitions[0] = store._new_partition(0)
    monkeypatch.setattr(cases, "cases_store", store)
    return store, Recorder()


def changelog(store: Store) -> list[tuple[bytes, bytes]]:
    written = []
    store.flush(lambda topic, key, value, partition: written.append((key, value)))
    return written


def command(command_id: str, outcome: str = "NOTIFY_PAYER", case_id: str = "") -> dict:
    return {"command_id": command_id, "case_id": case_id, "action": "DECIDE", "outcome": outcome,
            "reason": "two municipalities, same month", "analyst": "analyst-7", "requested_at": T2}


HIT = {"hit_id": "hit-1", "rule_id": "MULTI_MUNICIPALITY_AID", "rule_version": 1, "payee_id": PAYEE,
       "bank_account": None, "window": "2026-11", "severity": "HIGH", "detected_at": T1,
       "payer_ids": [STHLM, GBG], "payments": [payment(STHLM, "sth-1", 512_300), payment(GBG, "gbg-1", 498_700)],
       "evidence": {"month": "2026-11", "threshold_payers": "2"}}


def signal(hit: dict, key: bytes) -> Fed:
    return Fed((cases.signals_topic, 0, key, default_codec().encode("SelectionHit", hit), None))


def test_a_hit_opens_its_case_once_however_often_it_is_delivered(worker):
    store, out = worker
    key = open_or_update_case(None, HIT, T1)["case_id"].encode()
    cases.open_case(signal(HIT, key), out)
    [(written_key, value)] = changelog(store)
    case = default_codec().decode(value, expect="Case")
    assert written_key == key and case["status"] == "OPEN" and case["hits"] == ["hit-1"]
    assert case["payer_ids"] == sorted([STHLM, GBG])

    cases.open_case(signal(HIT, key), out)  # redelivered: nothing changes, nothing is written
    assert changelog(store) == [] and out.sent == []

    second = {**HIT, "hit_id": "hit-2", "payments": [payment(STHLM, "sth-2", 100_000)]}
    cases.open_case(signal(second, key), out)
    [(_, value)] = changelog(store)
    assert default_codec().decode(value, expect="Case")["hits"] == ["hit-1", "hit-2"]


def test_a_redelivered_decide_command_sends_the_decision_again(worker):
    store, out = worker
    codec = default_codec()
    case = open_or_update_case(None, HIT, T1)
    key = case["case_id"].encode()
    store.put(0, key, case)
    changelog(store)

    decided = cases.decide_case(out, 0, key, command("cmd-1", case_id=case["case_id"]))
    assert decided["status"] == "NOTIFY_PAYER" and decided["decided_by_command"] == "cmd-1"
    [(_, value)] = changelog(store)  # the decided case, in the changelog (the cases topic)
    assert codec.decode(value, expect="Case") == decided
    first = list(out.sent)
    assert [t for t, _, _ in first] == [cases.catalogue.payer_notifications(STHLM).name,
                                        cases.catalogue.payer_notifications(GBG).name, cases.catalogue.audit.name]
    assert {k for _, k, _ in first} == {key}

    out.sent.clear()  # the worker crashed before the command's offset was committed: it is read again
    assert cases.decide_case(out, 0, key, command("cmd-1", case_id=case["case_id"])) == decided
    assert out.sent == first  # the same records, byte for byte
    assert changelog(store) == []  # the case is not changed again

    out.sent.clear()  # another analyst's request for the decided case
    refused = cases.decide_case(out, 0, key, command("cmd-2", outcome="CLOSED_NO_ACTION", case_id=case["case_id"]))
    assert isinstance(refused, ReviewError) and refused.status == 409
    assert out.sent == [] and changelog(store) == []
    assert store.get(0, key) == decided

    missing = cases.decide_case(out, 0, b"case-unknown", command("cmd-3", case_id="case-unknown"))
    assert isinstance(missing, ReviewError) and missing.status == 404 and out.sent == []


def test_the_waiting_request_is_answered_on_its_event_loop(worker):
    store, out = worker
    case = open_or_update_case(None, HIT, T1)
    key = case["case_id"].encode()
    store.put(0, key, case)
    cmd = command("cmd-1", outcome="CLOSED_NO_ACTION", case_id=case["case_id"])
    encoded = default_codec().encode("CaseCommand", cmd)

    async def request():
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        cases._pending["cmd-1"] = (loop, waiter)
        # the engine's thread applies the command; the request is answered only once what
        # the decision wrote is delivered (the engine's commit)
        await loop.run_in_executor(None, cases.apply_command,
                                   Fed((cases.commands_topic, 0, key, encoded, None)), out)
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await loop.run_in_executor(None, out.flush)
        return await asyncio.wait_for(waiter, 5)

    answered = asyncio.run(request())
    assert answered["status"] == "CLOSED_NO_ACTION" and answered["decided_by"] == "analyst-7"
    assert "cmd-1" not in cases._pending
    assert [t for t, _, _ in out.sent] == [cases.catalogue.audit.name]
