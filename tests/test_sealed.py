"""Sealed state items: never changed in place, written from the bytes they were written or
read as, and those bytes always what fastavro writes for them."""
import copy
import datetime as dt
import io
import pickle
import random

import pytest
from fastavro import schemaless_writer

from streams import citizen_view, rules
from streams.account import new_account, register
from streams.codec import HEADER_LEN, default_codec
from streams.sealed import SEALED_RECORDS, Sealed, memo_of
from tests.conftest import GOTEBORG, STOCKHOLM, payment

PAYEE = "198112189876"
NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.timezone.utc)
codec = default_codec()


def fastavro_body(name: str, record: dict) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, codec.schema(name).parsed, record)
    return buf.getvalue()


def encoded_body(name: str, record: dict) -> bytes:
    return codec.encode(name, record)[HEADER_LEN:]


@pytest.mark.parametrize("change", [
    lambda s: s.__setitem__("status", "X"), lambda s: s.__delitem__("status"), lambda s: s.update(status="X"),
    lambda s: s.setdefault("new", 1), lambda s: s.pop("status"), lambda s: s.popitem(), lambda s: s.clear(),
    lambda s: s.__ior__({"status": "X"}),
])
def test_a_sealed_item_refuses_every_change_in_place(change):
    item = Sealed(status="PLANNED", amount_ore=100)
    with pytest.raises(TypeError, match="never changed in place"):
        change(item)
    assert item == {"status": "PLANNED", "amount_ore": 100}


def test_copies_are_new_sealed_items_without_the_memo_and_a_change_is_a_plain_dict():
    item = Sealed(status="PLANNED", amount_ore=100)
    item.memo = ("se.tkonto.state.Balance", b"x")
    for twin in (copy.copy(item), copy.deepcopy(item), pickle.loads(pickle.dumps(item))):
        assert type(twin) is Sealed and twin == item and memo_of(twin) is None
    changed = {**item, "status": "EXECUTED"}
    assert type(changed) is dict and item["status"] == "PLANNED"


def test_the_writer_keeps_a_sealed_items_bytes_and_writes_them_again():
    account = new_account(PAYEE)
    register(account, payment(STOCKHOLM, PAYEE, "p1", "PLANNED", 500_00), NOW)
    state = account["payments"][f"{STOCKHOLM.payer_id}:p1"]
    assert type(state) is Sealed and memo_of(state) is None
    body = encoded_body("se.tkonto.state.Account", account)
    assert body == fastavro_body("se.tkonto.state.Account", account)
    name, item_bytes = state.memo
    assert name == "se.tkonto.state.PaymentState" and item_bytes in body
    assert item_bytes == fastavro_body_of_item("se.tkonto.state.Account", "payments", state)
    # proof that the memo is what is written: a planted memo comes out as it is
    state.memo = (name, b"\x00PLANTED")
    assert b"\x00PLANTED" in encoded_body("se.tkonto.state.Account", account)
    # a memo of another record's type is never used
    state.memo = ("se.tkonto.state.Balance", b"\x00PLANTED")
    assert encoded_body("se.tkonto.state.Account", account) == body


def fastavro_body_of_item(schema: str, field: str, item: dict) -> bytes:
    """fastavro's bytes for one map value of ``field`` (as written inside the map)."""
    parsed = codec.schema(schema).parsed
    values = next(f for f in parsed["fields"] if f["name"] == field)["type"]["values"]
    buf = io.BytesIO()
    schemaless_writer(buf, values, item)
    return buf.getvalue()


def test_a_decoded_state_has_sealed_items_with_the_bytes_they_were_read_from():
    account = new_account(PAYEE)
    for pid in ("p1", "p2"):
        register(account, payment(STOCKHOLM, PAYEE, pid, "PLANNED", 300_00), NOW)
    data = codec.encode("se.tkonto.state.Account", account)
    decoded = codec.decode(data, expect="se.tkonto.state.Account")
    assert decoded == account
    for key, state in decoded["payments"].items():
        assert type(state) is Sealed and state.memo[0] == "se.tkonto.state.PaymentState"
        assert state.memo[1] == fastavro_body_of_item("se.tkonto.state.Account", "payments", state)
    assert all(type(b) is Sealed for b in decoded["balances"].values())
    assert codec.encode("se.tkonto.state.Account", decoded) == data


def test_registration_replaces_the_payment_state_and_leaves_the_old_one_as_it_was():
    account = new_account(PAYEE)
    register(account, payment(STOCKHOLM, PAYEE, "p1", "PLANNED", 500_00), NOW)
    key = f"{STOCKHOLM.payer_id}:p1"
    planned, balances = account["payments"][key], dict(account["balances"])
    codec.encode("se.tkonto.state.Account", account)  # memos set
    register(account, payment(STOCKHOLM, PAYEE, "p1", "EXECUTED", 450_00, payout=dt.date(2026, 12, 1)), NOW)
    executed = account["payments"][key]
    assert executed is not planned and type(executed) is Sealed and memo_of(executed) is None
    assert planned["status"] == "PLANNED" and set(planned["applied"]) == {"PLANNED"}
    assert executed["status"] == "EXECUTED" and set(executed["applied"]) == {"PLANNED", "EXECUTED"}
    assert (executed["amount_ore"], executed["month"]) == (450_00, "2026-12")
    assert balances == {"2026-11|2120000142|SOCIAL_ASSISTANCE": {"paid_ore": 0, "upcoming_ore": 500_00}}
    assert account["balances"] == {"2026-12|2120000142|SOCIAL_ASSISTANCE": {"paid_ore": 450_00, "upcoming_ore": 0}}
    assert encoded_body("se.tkonto.state.Account", account) == fastavro_body("se.tkonto.state.Account", account)


def test_rule_states_and_citizen_views_hold_sealed_items():
    enriched = {"payment": payment(STOCKHOLM, PAYEE, "p1", "PLANNED", 100_00), "payer_kind": "MUNICIPALITY",
                "verification": {"matched_as": "PAYEE"}, "enriched_at": NOW}
    state, _ = rules.evaluate_payee(None, enriched, rules.Thresholds())
    assert [type(p) for p in state["payments"]] == [Sealed]
    executed = {**enriched, "payment": payment(STOCKHOLM, PAYEE, "p1", "EXECUTED", 100_00)}
    after, _ = rules.evaluate_payee(state, executed, rules.Thresholds())
    assert state["payments"][0]["status"] == "PLANNED"  # the input state is not changed
    assert type(after["payments"][0]) is Sealed and after["payments"][0]["status"] == "EXECUTED"
    item = {"payer_id": "2120000142", "payment_id": "p1", "sequence": 1, "on_behalf_of": None}
    view = citizen_view.fold(None, item)
    assert [type(i) for i in view["payments"].values()] == [Sealed]


def test_a_long_random_history_is_always_written_as_fastavro_writes_it():
    """An account, written after every event (as a commit would), read back now and then
    (as after a restore): every write equals fastavro's, memos and all."""
    rnd = random.Random(7)
    account = new_account(PAYEE)
    statuses: dict[str, str] = {}
    nexts = {None: ["PLANNED", "EXECUTED"], "PLANNED": ["EXECUTED", "CANCELLED"], "EXECUTED": ["RETURNED", "RECALLED"]}
    written = 0
    for n in range(600):
        pid = f"p{rnd.randrange(200)}"
        choices = nexts.get(statuses.get(pid), [])
        if not choices:
            continue
        step = rnd.choice(choices)
        payer = STOCKHOLM if int(pid[1:]) % 2 else GOTEBORG
        payout = dt.date(2026, 1 + rnd.randrange(12), 1 + rnd.randrange(28))
        outcome = register(account, payment(payer, PAYEE, pid, step, rnd.randrange(1, 2_000_000), payout=payout), NOW)
        if outcome.kind == "REGISTERED":
            statuses[pid] = step
        data = codec.encode("se.tkonto.state.Account", account)
        assert data[HEADER_LEN:] == fastavro_body("se.tkonto.state.Account", account), n
        written += 1
        if n % 50 == 49:
            account = codec.decode(data, expect="se.tkonto.state.Account")
    assert written > 250 and len(account["payments"]) > 100
    sealed = [s for s in account["payments"].values() if memo_of(s) is not None]
    assert len(sealed) == len(account["payments"])  # every item carries its bytes after a write


def test_only_the_state_items_and_the_payment_event_are_sealed():
    assert SEALED_RECORDS == {"se.tkonto.state.PaymentState", "se.tkonto.state.Balance",
                              "se.tkonto.state.TrackedPayment", "se.tkonto.state.CitizenItem",
                              "se.tkonto.PaymentEvent", "se.tkonto.Decision", "se.tkonto.Circumstance"}
    entry = codec.decode(codec.encode("se.tkonto.state.Account", new_account(PAYEE)))
    assert type(entry) is dict


def decision(*secret: bool, whole: bool = False) -> dict:
    return {"decision_id": "d-1", "decision_date": dt.date(2026, 10, 1), "legal_basis": "SoL 4 kap. 1 §",
            "patient_secrecy": whole,
            "circumstances": [{"name": f"c{i}", "value": str(i), "patient_secrecy": s} for i, s in enumerate(secret)]}


def enriched_for_analysis(event: dict, allowed: bool) -> dict:
    from streams.enrichment import enrich, strip_patient_secrecy
    return strip_patient_secrecy(enrich(event, STOCKHOLM, None, None, NOW), allowed)


@pytest.mark.parametrize("event_decision", [None, decision(False, False), decision(), decision(whole=True)])
def test_a_received_payment_event_is_written_again_from_its_own_bytes(event_decision):
    """Nothing to remove for analysis: the enriched record carries the decoded event itself,
    and its payment is the very bytes the payer sent."""
    sent = {**payment(STOCKHOLM, PAYEE, "p1", "PLANNED", 1), "decision": event_decision}
    data = codec.encode("PaymentEvent", sent)
    event = codec.decode(data, expect="PaymentEvent")
    assert type(event) is Sealed and event.memo == ("se.tkonto.PaymentEvent", data[HEADER_LEN:])
    with pytest.raises(TypeError, match="never changed in place"):
        event["amount_ore"] = 2
    if event_decision:
        with pytest.raises(TypeError, match="never changed in place"):
            event["decision"]["patient_secrecy"] = True
    record = enriched_for_analysis(event, allowed=False)
    assert record["payment"] is event
    body = encoded_body("EnrichedPayment", record)
    assert body == fastavro_body("EnrichedPayment", record) and data[HEADER_LEN:] in body


@pytest.mark.parametrize("event_decision, kept", [
    (decision(False, True, False), ["c0", "c2"]), (decision(True), []), (decision(False, whole=True), []),
])
def test_what_patient_secrecy_removes_never_comes_back_from_the_bytes(event_decision, kept):
    sent = {**payment(STOCKHOLM, PAYEE, "p1", "PLANNED", 1), "decision": event_decision}
    event = codec.decode(codec.encode("PaymentEvent", sent), expect="PaymentEvent")
    record = enriched_for_analysis(event, allowed=False)
    assert record["payment"] is not event and type(record["payment"]) is dict
    assert [c["name"] for c in record["payment"]["decision"]["circumstances"]] == kept
    body = encoded_body("EnrichedPayment", record)
    assert body == fastavro_body("EnrichedPayment", record)
    written = codec.decode(codec.encode("EnrichedPayment", record), expect="EnrichedPayment")
    assert [c["name"] for c in written["payment"]["decision"]["circumstances"]] == kept
    assert len(event["decision"]["circumstances"]) == len(event_decision["circumstances"])  # input untouched
    allowed = enriched_for_analysis(event, allowed=True)  # the policy switch on: nothing removed
    assert allowed["payment"] is event
