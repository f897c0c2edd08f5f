"""Enrichment: Verification of Payee, payee status, protected identity, patient secrecy."""
from __future__ import annotations

import datetime as dt

import pytest

from streams.codec import Codec
from streams.enrichment import (
    CLOSE_MATCH_THRESHOLD, enrich, name_similarity, normalise_name, payee_status, shared_for_analysis,
    strip_patient_secrecy,
    verify_account,
)
from streams.identity import make_organisation, make_person
from streams.payers import Payer
from streams.registers import BankAccount, Holder, Person, payer_record
from streams.settings import Settings

PAYEE = make_person(dt.date(1980, 5, 17), 123)
REP = make_person(dt.date(1961, 2, 3), 456)
SPOUSE = make_person(dt.date(1982, 11, 30), 782)
STRANGER = make_person(dt.date(1990, 1, 1), 111)
ALIAS = make_person(dt.date(1980, 5, 17), 321, coordination=True)
ORG = make_organisation("802403346")
PAYER = Payer(make_organisation("212000018"), "Stockholms kommun", "MUNICIPALITY", "0180", "PROPOSAL_1")
PAYOUT = dt.date(2025, 3, 25)
NOW = dt.datetime(2025, 3, 20, 8, 30, tzinfo=dt.timezone.utc)


def account(*holders: tuple[str, str, str], opened=dt.date(2020, 1, 1), closed=None) -> dict:
    return {"account": "8327-1234567890", "bank_name": "Swedbank", "opened": opened, "closed": closed,
            "holders": [{"person_id": i, "name": n, "role": r} for i, n, r in holders]}


def person(**changes) -> dict:
    record = {"person_id": PAYEE, "name": "Anna Karlsson", "deceased_date": None, "emigration_date": None,
              "municipality_code": "0180", "protected_identity": False, "address": "Storgatan 1, 111 22 Stockholm"}
    record.update(changes)
    return record


def event(**changes) -> dict:
    record = {
        "event_id": "e-1", "payer_id": PAYER.payer_id, "payment_id": "p-1", "event_type": "PLANNED",
        "payee_id": PAYEE, "representative_id": None, "bank_account": "8327-1234567890", "amount_ore": 512_300,
        "currency": "SEK", "category": "SOCIAL_ASSISTANCE", "period_start": dt.date(2025, 3, 1),
        "period_end": dt.date(2025, 3, 31), "payout_date": PAYOUT,
        "decision": {
            "decision_id": "d-9", "decision_date": dt.date(2025, 2, 20), "legal_basis": "SoL 4 kap. 1 §",
            "patient_secrecy": False,
            "circumstances": [
                {"name": "household_size", "value": "3", "patient_secrecy": False},
                {"name": "diagnosis_code", "value": "F32.1", "patient_secrecy": True},
                {"name": "income_considered_ore", "value": "1200000", "patient_secrecy": False},
            ],
        },
        "event_time": NOW,
    }
    record.update(changes)
    return record


# -- verification of payee ----------------------------------------------------------------
class TestVerifyAccount:
    def test_unknown_account_is_not_possible(self):
        assert verify_account(None, PAYEE, None, "Anna Karlsson", PAYOUT) == {
            "result": "NOT_POSSIBLE", "holder_name": None, "matched_as": None}

    def test_payee_holder_is_match(self):
        acc = account((PAYEE, "Anna Karlsson", "HOLDER"))
        assert verify_account(acc, PAYEE, None, "Anna Karlsson", PAYOUT) == {
            "result": "MATCH", "holder_name": "Anna Karlsson", "matched_as": "PAYEE"}

    def test_payee_on_joint_account_is_match(self):
        acc = account((SPOUSE, "Erik Karlsson", "HOLDER"), (PAYEE, "Anna Karlsson", "HOLDER"))
        assert verify_account(acc, PAYEE, None, None, PAYOUT) == {
            "result": "MATCH", "holder_name": "Anna Karlsson", "matched_as": "PAYEE"}

    def test_account_closed_before_payout_is_not_possible(self):
        acc = account((PAYEE, "Anna Karlsson", "HOLDER"), closed=PAYOUT - dt.timedelta(days=1))
        assert verify_account(acc, PAYEE, None, "Anna Karlsson", PAYOUT)["result"] == "NOT_POSSIBLE"

    def test_account_closed_on_payout_day_is_still_open_that_day(self):
        acc = account((PAYEE, "Anna Karlsson", "HOLDER"), closed=PAYOUT)
        assert verify_account(acc, PAYEE, None, "Anna Karlsson", PAYOUT)["result"] == "MATCH"

    def test_account_opened_after_payout_is_not_possible(self):
        acc = account((PAYEE, "Anna Karlsson", "HOLDER"), opened=PAYOUT + dt.timedelta(days=1))
        assert verify_account(acc, PAYEE, None, "Anna Karlsson", PAYOUT)["result"] == "NOT_POSSIBLE"

    def test_account_opened_on_payout_day_is_match(self):
        acc = account((PAYEE, "Anna Karlsson", "HOLDER"), opened=PAYOUT)
        assert verify_account(acc, PAYEE, None, "Anna Karlsson", PAYOUT)["result"] == "MATCH"

    def test_representative_with_power_of_attorney_is_match(self):
        acc = account((PAYEE, "Anna Karlsson", "HOLDER"), (REP, "Bo Ek", "POWER_OF_ATTORNEY"))
        other = account((STRANGER, "Lars Berg", "HOLDER"), (REP, "Bo Ek", "POWER_OF_ATTORNEY"))
        assert verify_account(other, PAYEE, REP, "Anna Karlsson", PAYOUT) == {
            "result": "MATCH", "holder_name": "Bo Ek", "matched_as": "REPRESENTATIVE"}
        # the payee's own holding wins over the representative
        assert verify_account(acc, PAYEE, REP, "Anna Karlsson", PAYOUT)["matched_as"] == "PAYEE"

    def test_representative_holder_is_match(self):
        acc = account((REP, "Bo Ek", "HOLDER"))
        assert verify_account(acc, PAYEE, REP, "Anna Karlsson", PAYOUT) == {
            "result": "MATCH", "holder_name": "Bo Ek", "matched_as": "REPRESENTATIVE"}

    def test_representative_not_named_in_payment_does_not_count(self):
        acc = account((REP, "Bo Ek", "HOLDER"))
        assert verify_account(acc, PAYEE, None, "Anna Karlsson", PAYOUT) == {
            "result": "NO_MATCH", "holder_name": None, "matched_as": None}

    def test_representative_named_but_not_on_account_is_no_match(self):
        acc = account((STRANGER, "Lars Berg", "HOLDER"))
        assert verify_account(acc, PAYEE, REP, "Anna Karlsson", PAYOUT)["result"] == "NO_MATCH"

    def test_payee_with_power_of_attorney_only_is_not_a_holder(self):
        acc = account((STRANGER, "Lars Berg", "HOLDER"), (PAYEE, "Anna Karlsson", "POWER_OF_ATTORNEY"))
        assert verify_account(acc, PAYEE, None, "Anna Karlsson", PAYOUT) == {
            "result": "NO_MATCH", "holder_name": None, "matched_as": None}

    def test_similar_holder_name_is_close_match_with_register_name(self):
        acc = account((ALIAS, "Anna Carlsson", "HOLDER"))
        assert verify_account(acc, PAYEE, None, "Anna Karlsson", PAYOUT) == {
            "result": "CLOSE_MATCH", "holder_name": "Anna Carlsson", "matched_as": None}

    def test_same_name_under_another_number_is_close_match(self):
        acc = account((ALIAS, "KARLSSON, Anna", "HOLDER"))
        assert verify_account(acc, PAYEE, None, "Anna Karlsson", PAYOUT) == {
            "result": "CLOSE_MATCH", "holder_name": "KARLSSON, Anna", "matched_as": None}

    def test_most_similar_holder_is_returned(self):
        acc = account((STRANGER, "Anna Carlsson", "HOLDER"), (ALIAS, "Anna Karlson", "HOLDER"))
        assert name_similarity("Anna Karlsson", "Anna Karlson") > name_similarity("Anna Karlsson", "Anna Carlsson")
        assert verify_account(acc, PAYEE, None, "Anna Karlsson", PAYOUT)["holder_name"] == "Anna Karlson"

    def test_dissimilar_name_is_no_match(self):
        acc = account((STRANGER, "Lars Berg", "HOLDER"))
        assert verify_account(acc, PAYEE, None, "Anna Karlsson", PAYOUT) == {
            "result": "NO_MATCH", "holder_name": None, "matched_as": None}

    def test_close_name_with_power_of_attorney_only_is_no_match(self):
        acc = account((STRANGER, "Lars Berg", "HOLDER"), (ALIAS, "Anna Karlsson", "POWER_OF_ATTORNEY"))
        assert verify_account(acc, PAYEE, None, "Anna Karlsson", PAYOUT)["result"] == "NO_MATCH"

    def test_unknown_payee_name_cannot_close_match(self):
        acc = account((ALIAS, "Anna Karlsson", "HOLDER"))
        assert verify_account(acc, PAYEE, None, None, PAYOUT)["result"] == "NO_MATCH"

    def test_closed_account_is_not_possible_even_for_the_payee(self):
        acc = account((PAYEE, "Anna Karlsson", "HOLDER"), closed=dt.date(2024, 12, 31))
        assert verify_account(acc, PAYEE, None, "Anna Karlsson", PAYOUT) == {
            "result": "NOT_POSSIBLE", "holder_name": None, "matched_as": None}

    def test_dataclass_record_accepted(self):
        acc = BankAccount("6000-123456789", "Handelsbanken", (Holder(PAYEE, "Anna Karlsson", "HOLDER"),),
                          dt.date(2019, 4, 1))
        assert verify_account(acc, PAYEE, None, None, PAYOUT)["result"] == "MATCH"


class TestNames:
    def test_normalise(self):
        assert normalise_name("  KARLSSON,  Åsa-Britt ") == "karlsson asa britt"
        assert normalise_name("Zoë O'Brien") == "zoe o brien"

    def test_threshold_boundary(self):
        assert CLOSE_MATCH_THRESHOLD == 0.85
        assert name_similarity("Anna Karlsson", "Anna Karlsson") == 1.0
        assert name_similarity("Åsa Berg", "Asa Berg") == 1.0
        # one letter differs in 13: 2*12/26
        assert name_similarity("Anna Karlsson", "Anna Carlsson") == pytest.approx(24 / 26)
        assert name_similarity("Anna Karlsson", "Karlsson, Anna") == 1.0
        assert name_similarity("John Karlsson", "Carlsson John") == pytest.approx(24 / 26)
        assert name_similarity("Anna Karlsson", "Anna Berg") < CLOSE_MATCH_THRESHOLD
        assert name_similarity("Anna Karlsson", "Anna Maria Karlsson") == pytest.approx(26 / 32)
        assert name_similarity("", "Anna") == 0.0


# -- payee status --------------------------------------------------------------------------
class TestPayeeStatus:
    def test_organisation(self):
        assert payee_status(None, ORG, PAYOUT) == "ORGANISATION"

    def test_unknown(self):
        assert payee_status(None, PAYEE, PAYOUT) == "UNKNOWN"

    def test_alive(self):
        assert payee_status(person(), PAYEE, PAYOUT) == "ALIVE"

    @pytest.mark.parametrize("days, expected", [(-30, "DECEASED"), (0, "DECEASED"), (1, "ALIVE")])
    def test_deceased_relative_to_payout(self, days, expected):
        record = person(deceased_date=PAYOUT + dt.timedelta(days=days))
        assert payee_status(record, PAYEE, PAYOUT) == expected

    @pytest.mark.parametrize("days, expected", [(-200, "EMIGRATED"), (0, "EMIGRATED"), (10, "ALIVE")])
    def test_emigrated_relative_to_payout(self, days, expected):
        record = person(emigration_date=PAYOUT + dt.timedelta(days=days))
        assert payee_status(record, PAYEE, PAYOUT) == expected

    def test_deceased_wins_over_emigrated(self):
        record = person(deceased_date=dt.date(2025, 1, 2), emigration_date=dt.date(2024, 1, 1))
        assert payee_status(record, PAYEE, PAYOUT) == "DECEASED"

    def test_dataclass_person(self):
        assert payee_status(Person(PAYEE, "Anna", emigration_date=dt.date(2020, 1, 1)), PAYEE, PAYOUT) == "EMIGRATED"


# -- enrichment -----------------------------------------------------------------------------
class TestEnrich:
    def test_full_record(self):
        acc = account((PAYEE, "Anna Karlsson", "HOLDER"), opened=dt.date(2025, 3, 10))
        source = event()
        out = enrich(source, PAYER, acc, person(), NOW)
        assert out == {
            "payment": source,
            "payer_name": "Stockholms kommun", "payer_kind": "MUNICIPALITY", "payer_scope": "PROPOSAL_1",
            "verification": {"result": "MATCH", "holder_name": "Anna Karlsson", "matched_as": "PAYEE"},
            "payee_status": "ALIVE", "deceased_date": None, "emigration_date": None,
            "municipality_code": "0180", "protected_identity": False,
            "account_opened": dt.date(2025, 3, 10), "ledger_sequence": None, "enriched_at": NOW,
        }
        assert out["payment"] is not source and out["payment"]["decision"] is not source["decision"]

    def test_payer_record_accepted(self):
        record = payer_record(PAYER, Settings())
        out = enrich(event(), record, None, None, NOW)
        assert (out["payer_name"], out["payer_kind"], out["payer_scope"]) == (
            "Stockholms kommun", "MUNICIPALITY", "PROPOSAL_1")

    def test_unknown_everything(self):
        out = enrich(event(), PAYER, None, None, NOW)
        assert out["verification"] == {"result": "NOT_POSSIBLE", "holder_name": None, "matched_as": None}
        assert (out["payee_status"], out["municipality_code"], out["protected_identity"], out["account_opened"]) == (
            "UNKNOWN", None, False, None)

    def test_deceased_and_emigration_dates_carried(self):
        record = person(deceased_date=dt.date(2025, 2, 1), emigration_date=dt.date(2024, 6, 1))
        out = enrich(event(), PAYER, None, record, NOW)
        assert (out["payee_status"], out["deceased_date"], out["emigration_date"]) == (
            "DECEASED", dt.date(2025, 2, 1), dt.date(2024, 6, 1))

    def test_future_death_dated_but_alive_at_payout(self):
        out = enrich(event(), PAYER, None, person(deceased_date=dt.date(2025, 4, 1)), NOW)
        assert (out["payee_status"], out["deceased_date"]) == ("ALIVE", dt.date(2025, 4, 1))

    def test_organisation_payee(self):
        acc = account((ORG, "Idrottsföreningen Kamraterna", "HOLDER"))
        out = enrich(event(payee_id=ORG, category="ASSOCIATION_GRANT"), PAYER, acc, None, NOW)
        assert out["payee_status"] == "ORGANISATION"
        assert out["verification"]["result"] == "MATCH"

    def test_close_match_uses_population_name(self):
        acc = account((ALIAS, "Anna Carlsson", "HOLDER"))
        out = enrich(event(), PAYER, acc, person(), NOW)
        assert out["verification"] == {"result": "CLOSE_MATCH", "holder_name": "Anna Carlsson", "matched_as": None}

    def test_naive_now_is_utc(self):
        out = enrich(event(), PAYER, None, None, dt.datetime(2025, 3, 20, 8, 30))
        assert out["enriched_at"] == NOW

    def test_codec_round_trip(self):
        codec = Codec()
        acc = account((PAYEE, "Anna Karlsson", "HOLDER"))
        out = enrich(event(representative_id=REP), PAYER, acc, person(), NOW)
        out["ledger_sequence"] = 42
        assert codec.decode(codec.encode("EnrichedPayment", out), expect="EnrichedPayment") == out


class TestProtectedIdentity:
    def protected(self, **changes):
        # a record from an unclean source that still carries municipality and address
        return person(protected_identity=True, municipality_code="1480", address="Hemliga vägen 7, 411 01 Göteborg",
                      **changes)

    def test_municipality_never_present(self):
        out = enrich(event(), PAYER, None, self.protected(), NOW)
        assert out["protected_identity"] is True
        assert out["municipality_code"] is None

    def test_no_address_like_value_anywhere_in_the_record_or_bytes(self):
        acc = account((PAYEE, "Anna Karlsson", "HOLDER"))
        out = enrich(event(), PAYER, acc, self.protected(), NOW)
        assert "Hemliga" not in repr(out) and "1480" not in repr(out) and "Göteborg" not in repr(out)
        data = Codec().encode("EnrichedPayment", out)
        for needle in ("Hemliga", "1480", "Göteborg", "411 01"):
            assert needle.encode() not in data

    def test_payee_match_does_not_repeat_protected_name(self):
        acc = account((PAYEE, "Anna Karlsson", "HOLDER"))
        out = enrich(event(), PAYER, acc, self.protected(), NOW)
        assert out["verification"] == {"result": "MATCH", "holder_name": None, "matched_as": "PAYEE"}
        assert b"Anna Karlsson" not in Codec().encode("EnrichedPayment", out)

    def test_representative_match_keeps_representative_name(self):
        acc = account((REP, "Bo Ek", "HOLDER"))
        out = enrich(event(representative_id=REP), PAYER, acc, self.protected(), NOW)
        assert out["verification"] == {"result": "MATCH", "holder_name": "Bo Ek", "matched_as": "REPRESENTATIVE"}

    def test_protected_status_still_computed(self):
        out = enrich(event(), PAYER, None, self.protected(deceased_date=dt.date(2025, 1, 1)), NOW)
        assert (out["payee_status"], out["municipality_code"]) == ("DECEASED", None)

    def test_dataclass_person_protected(self):
        record = Person(PAYEE, "Anna Karlsson", municipality_code="1480", protected_identity=True, address="x 1")
        out = enrich(event(), PAYER, None, record, NOW)
        assert out["municipality_code"] is None


# -- patient secrecy ----------------------------------------------------------------------
class TestPatientSecrecy:
    def test_flagged_circumstance_removed(self):
        source = event()
        out = strip_patient_secrecy(source, allowed=False)
        assert [c["name"] for c in out["decision"]["circumstances"]] == ["household_size", "income_considered_ore"]
        assert len(source["decision"]["circumstances"]) == 3  # input untouched

    def test_whole_decision_under_secrecy_loses_all_circumstances(self):
        source = event()
        source["decision"]["patient_secrecy"] = True
        out = strip_patient_secrecy(source, allowed=False)
        assert out["decision"] == {"decision_id": "d-9", "decision_date": dt.date(2025, 2, 20),
                                   "legal_basis": "SoL 4 kap. 1 §", "patient_secrecy": True, "circumstances": []}
        assert {k: v for k, v in out.items() if k != "decision"} == {
            k: v for k, v in source.items() if k != "decision"}

    def test_allowed_keeps_everything_as_a_copy(self):
        source = event()
        out = strip_patient_secrecy(source, allowed=True)
        assert out == source and out is not source and out["decision"] is not source["decision"]

    def test_no_decision(self):
        assert strip_patient_secrecy(event(decision=None), allowed=False) == event(decision=None)

    def test_enriched_payment(self):
        enriched = enrich(event(), PAYER, None, None, NOW)
        out = strip_patient_secrecy(enriched, allowed=False)
        assert [c["name"] for c in out["payment"]["decision"]["circumstances"]] == [
            "household_size", "income_considered_ore"]
        assert len(enriched["payment"]["decision"]["circumstances"]) == 3

    def test_shared_for_analysis_is_the_record_itself_only_when_nothing_is_removed(self):
        codec = Codec()
        clean = codec.decode(codec.encode("PaymentEvent", event(decision=None)), expect="PaymentEvent")
        secret = codec.decode(codec.encode("PaymentEvent", event()), expect="PaymentEvent")  # one flagged circumstance
        enriched = enrich(clean, PAYER, None, None, NOW)
        assert shared_for_analysis(enriched, allowed=False) is enriched
        enriched = enrich(secret, PAYER, None, None, NOW)
        assert shared_for_analysis(enriched, allowed=True) is enriched
        out = shared_for_analysis(enriched, allowed=False)
        assert out is not enriched and out == strip_patient_secrecy(enriched, allowed=False)
        assert [c["name"] for c in out["payment"]["decision"]["circumstances"]] == [
            "household_size", "income_considered_ore"]
        assert len(enriched["payment"]["decision"]["circumstances"]) == 3  # input untouched
        built = enrich(event(decision=None), PAYER, None, None, NOW)  # a payment not decoded: copied, as before
        assert shared_for_analysis(built, allowed=False) is not built

    def test_secret_absent_from_encoded_bytes(self):
        codec = Codec()
        source = event()
        assert b"F32.1" in codec.encode("PaymentEvent", source)
        assert b"F32.1" not in codec.encode("PaymentEvent", strip_patient_secrecy(source, allowed=False))
        assert b"diagnosis_code" not in codec.encode(
            "EnrichedPayment", strip_patient_secrecy(enrich(source, PAYER, None, None, NOW), allowed=False))
