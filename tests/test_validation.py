import random
import re

import pytest

from streams.validation import Rejected, check_payment, is_bank_account
from tests.conftest import GOTEBORG, MALMO_P3, STOCKHOLM, payment

PAYEE = "198112189876"


def reason(event, payer=STOCKHOLM):
    with pytest.raises(Rejected) as exc:
        check_payment(event, payer)
    return exc.value.reason


def test_a_valid_payment_passes():
    check_payment(payment(STOCKHOLM, PAYEE, "p1", "PLANNED", 100), STOCKHOLM)


@pytest.mark.parametrize("change, expected", [
    ({"payer_id": GOTEBORG.payer_id}, "PAYER_MISMATCH"),
    ({"payee_id": "198112189875"}, "INVALID_PAYEE_ID"),
    ({"representative_id": "19811218987"}, "INVALID_REPRESENTATIVE_ID"),
    ({"representative_id": PAYEE}, "INVALID_REPRESENTATIVE_ID"),
    ({"amount_ore": 0}, "INVALID_AMOUNT"),
    ({"amount_ore": -100}, "INVALID_AMOUNT"),
    ({"currency": "EUR"}, "UNSUPPORTED_CURRENCY"),
    ({"bank_account": "SE45 5000 0000 0583 9825 7466"}, "INVALID_BANK_ACCOUNT"),
    ({"payment_id": " "}, "MISSING_FIELD"),
    ({"event_id": ""}, "MISSING_FIELD"),
    ({"event_id": "\t\n"}, "MISSING_FIELD"),
    ({"bank_account": "8327-9123456789\n"}, "INVALID_BANK_ACCOUNT"),  # the old pattern's $ let it through
    ({"payee_id": "2120001355"}, "PAYEE_KIND_MISMATCH"),
])
def test_each_rule_rejects_with_its_reason(change, expected):
    assert reason({**payment(STOCKHOLM, PAYEE, "p1", "PLANNED", 100), **change}) == expected


def test_dates_must_be_consistent():
    event = payment(STOCKHOLM, PAYEE, "p1", "PLANNED", 100)
    assert reason({**event, "period_end": event["period_start"].replace(day=1) - __import__("datetime").timedelta(days=1)}) == "INVALID_DATES"
    decision = {"decision_id": "d", "decision_date": event["payout_date"].replace(day=28), "legal_basis": "SoL 4:1",
                "patient_secrecy": False, "circumstances": []}
    assert reason({**event, "decision": decision}) == "INVALID_DATES"


def test_provider_payments_only_under_proposal_3():
    grant = payment(STOCKHOLM, "5560360793", "s1", "EXECUTED", 10_000_00, category="SCHOOL_PRINCIPAL_GRANT")
    assert reason(grant) == "OUT_OF_SCOPE"
    check_payment({**grant, "payer_id": MALMO_P3.payer_id}, MALMO_P3)


def test_unknown_payer_and_details_mask_identity_numbers():
    assert reason(payment(STOCKHOLM, PAYEE, "p1", "PLANNED", 100), payer=None) == "UNKNOWN_PAYER"
    with pytest.raises(Rejected) as exc:
        check_payment(payment(STOCKHOLM, "198112189875", "p1", "PLANNED", 100), STOCKHOLM)
    assert "198112189875" not in exc.value.detail


class _Msg:
    def __init__(self, topic, value):
        self._topic, self._value = topic, value

    def topic(self): return self._topic
    def partition(self): return 0
    def offset(self): return 7
    def key(self): return None
    def value(self): return self._value
    def headers(self): return None


class _Out:
    def __init__(self):
        self.fed, self.written = [], []

    def feed(self, topic, key, value, event, headers=None):
        self.fed.append((topic, key))

    def write(self, topic, key, value, partition=None, headers=None):
        self.written.append((topic, value))


def test_ingest_takes_the_payer_from_its_topic_and_dead_letters_a_topic_of_no_payer(monkeypatch):
    from streams import ingest
    from streams.app import catalogue, codec
    own_topic = catalogue.payer_input(STOCKHOLM.payer_id).name
    monkeypatch.setitem(ingest.payer_of_topic, own_topic, STOCKHOLM)
    monkeypatch.delitem(ingest.payer_of_topic, catalogue.payer_input(GOTEBORG.payer_id).name, raising=False)
    value = codec.encode("PaymentEvent", payment(STOCKHOLM, PAYEE, "p1", "PLANNED", 100))
    out = _Out()
    ingest.ingest(_Msg(own_topic, value), out)
    assert out.fed == [(ingest.payments_topic, PAYEE.encode())] and out.written == []
    ingest.ingest(_Msg(catalogue.payer_input(GOTEBORG.payer_id).name, value), out)  # not connected
    assert len(out.fed) == 1 and [topic for topic, _ in out.written] == [ingest.deadletter_topic]
    letter = codec.decode(out.written[0][1], expect="DeadLetter")
    assert letter["reason"] == "UNKNOWN_PAYER" and letter["original_value"] == value


def test_bank_account_check_is_the_pattern_it_replaced():
    """``is_bank_account`` by hand accepts exactly what ``\\d{4,5}-\\d{1,15}`` matches whole."""
    pattern = re.compile(r"\d{4,5}-\d{1,15}")
    rnd = random.Random(7)
    samples = ["8327-9123456789", "12345-123456789012345", "1234-1", "123-45", "123456-1", "1234-", "-1234",
               "1234-1234567890123456", "1234--5", "1234-5-6", "12a4-5", "1234 -5", "", "-", "１２３４-５"]
    for _ in range(5000):  # mostly the right shape, with lengths around the limits and some noise
        parts = ["".join(rnd.choice("0123456789") for _ in range(rnd.randrange(n))) for n in (8, 18)]
        text = parts[0] + rnd.choice(["-", "-", "-", "", "--", " "]) + parts[1]
        if rnd.random() < 0.2:
            at = rnd.randrange(len(text) + 1)
            text = text[:at] + rnd.choice("a\n٣ -") + text[at:]
        samples.append(text)
    for text in samples:
        assert is_bank_account(text) == bool(pattern.fullmatch(text)), repr(text)
    assert sum(map(is_bank_account, samples)) > 100  # the random samples include accepted ones
