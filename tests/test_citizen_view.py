import datetime as dt

import pytest

from streams.account import new_account, register
from streams.citizen_view import (ViewError, bank_account_hint, citizen_item, fold, format_sek, payments_response,
                                  query_args)
from tests.conftest import FK, GOTEBORG, STOCKHOLM, payment

PAYEE = "198112189876"
REPRESENTATIVE = "197001011233"
STRANGER = "199001012385"
NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.timezone.utc)
TODAY = dt.date(2026, 11, 25)
NAMES = {STOCKHOLM.payer_id: STOCKHOLM.name, GOTEBORG.payer_id: GOTEBORG.name, FK.payer_id: FK.name}


def entries(*events, payee=PAYEE):
    """Real ledger entries: the events registered on one account, in order."""
    account = new_account(payee)
    out = []
    for i, event in enumerate(events):
        outcome = register(account, event, NOW + dt.timedelta(seconds=i))
        assert outcome.kind == "REGISTERED", outcome
        out.append(outcome.entry)
    return out


def view(*ledger_entries, viewer=PAYEE):
    state = None
    for entry in ledger_entries:
        state = fold(state, citizen_item(entry, NAMES[entry["payer_id"]], viewer))
    return state


def test_format_sek_swedish_grouping_with_non_breaking_spaces():
    assert format_sek(123450) == "1\u00a0234,50\u00a0kr"
    assert format_sek(0) == "0,00\u00a0kr"
    assert format_sek(5) == "0,05\u00a0kr"
    assert format_sek(123456789_01) == "123\u00a0456\u00a0789,01\u00a0kr"
    assert format_sek(-100) == "-1,00\u00a0kr"
    with pytest.raises(TypeError):
        format_sek(12.5)


def test_bank_account_hint_keeps_only_the_last_four_digits():
    assert bank_account_hint("8327-9123456789") == "****6789"
    assert bank_account_hint("123") == "****"
    assert bank_account_hint(None) == "****"
    assert bank_account_hint("8327-91234567 8 9") == "****6789"  # digits, wherever they are
    assert bank_account_hint("12-34") == "****1234"


def test_citizen_item_is_exactly_the_visible_subset():
    [entry] = entries(payment(STOCKHOLM, PAYEE, "p1", "EXECUTED", 1234_50))
    item = citizen_item(entry, "Stockholms kommun", PAYEE)
    assert item == {
        "payer_id": "2120000142", "payer_name": "Stockholms kommun", "payment_id": "p1",
        "entry_id": "2120000142:p1:EXECUTED", "sequence": 1, "status": "EXECUTED",
        "category": "SOCIAL_ASSISTANCE", "amount_ore": 1234_50, "payout_date": "2026-11-25",
        "period_start": "2026-11-01", "period_end": "2026-11-30", "on_behalf_of": None,
        "bank_account_hint": "****6789", "event_time": "2026-11-24T08:00:00.000Z",
        "registered_at": "2026-11-25T09:00:00.000Z",
    }
    assert "9123456789" not in repr(item)


def test_representative_sees_the_payee_it_acts_for_and_strangers_see_nothing():
    [entry] = entries(payment(FK, PAYEE, "fk1", "PLANNED", 900_00, category="SICKNESS_BENEFIT",
                              representative_id=REPRESENTATIVE))
    assert citizen_item(entry, "Försäkringskassan", PAYEE)["on_behalf_of"] is None
    rep_item = citizen_item(entry, "Försäkringskassan", REPRESENTATIVE)
    assert rep_item["on_behalf_of"] == PAYEE and rep_item["entry_id"] == "2021005521:fk1:PLANNED"
    with pytest.raises(ValueError, match="not visible to this viewer") as info:
        citizen_item(entry, "Försäkringskassan", STRANGER)
    assert PAYEE not in str(info.value) and STRANGER not in str(info.value)


def test_citizen_item_accepts_json_forms_of_dates_and_instants():
    [entry] = entries(payment(STOCKHOLM, PAYEE, "p1", "EXECUTED", 100_00))
    as_json = {**entry, "payout_date": "2026-11-25", "period_start": "2026-11-01", "period_end": "2026-11-30",
               "event_time": int(entry["event_time"].timestamp() * 1000), "registered_at": "2026-11-25T09:00:00Z"}
    assert citizen_item(as_json, "Stockholms kommun", PAYEE) == citizen_item(entry, "Stockholms kommun", PAYEE)


def test_fold_keeps_latest_status_and_is_idempotent():
    planned, executed = entries(payment(STOCKHOLM, PAYEE, "p1", "PLANNED", 500_00),
                                payment(STOCKHOLM, PAYEE, "p1", "EXECUTED", 500_00))
    state = view(planned, executed)
    assert list(state["payments"]) == ["2120000142:p1"]
    assert state["payments"]["2120000142:p1"]["status"] == "EXECUTED"
    assert state["payments"]["2120000142:p1"]["sequence"] == 2
    again = fold(state, citizen_item(executed, "Stockholms kommun", PAYEE))
    assert again == state
    twice = fold(fold(None, citizen_item(planned, "Stockholms kommun", PAYEE)),
                 citizen_item(planned, "Stockholms kommun", PAYEE))
    assert twice == fold(None, citizen_item(planned, "Stockholms kommun", PAYEE))


def test_fold_out_of_order_never_lets_an_older_sequence_win():
    planned, executed, returned = entries(payment(STOCKHOLM, PAYEE, "p1", "PLANNED", 500_00),
                                          payment(STOCKHOLM, PAYEE, "p1", "EXECUTED", 500_00),
                                          payment(STOCKHOLM, PAYEE, "p1", "RETURNED", 500_00))
    in_order = view(planned, executed, returned)
    shuffled = view(returned, planned, executed)
    assert shuffled == in_order
    assert shuffled["payments"]["2120000142:p1"]["status"] == "RETURNED"


def test_fold_does_not_mutate_its_input():
    planned, executed = entries(payment(STOCKHOLM, PAYEE, "p1", "PLANNED", 500_00),
                                payment(STOCKHOLM, PAYEE, "p1", "EXECUTED", 500_00))
    state = view(planned)
    snapshot = repr(state)
    fold(state, citizen_item(executed, "Stockholms kommun", PAYEE))
    assert repr(state) == snapshot


def sample_state():
    """A person with: two paid, one returned, one recalled, two planned (one late), one cancelled."""
    ledger = entries(
        payment(STOCKHOLM, PAYEE, "s-sep", "EXECUTED", 4_500_00, payout=dt.date(2026, 9, 25)),
        payment(STOCKHOLM, PAYEE, "s-oct", "PLANNED", 4_500_00, payout=dt.date(2026, 10, 23)),
        payment(STOCKHOLM, PAYEE, "s-oct", "EXECUTED", 4_600_00, payout=dt.date(2026, 10, 23)),
        payment(FK, PAYEE, "fk-oct", "EXECUTED", 12_345_67, category="SICKNESS_BENEFIT", payout=dt.date(2026, 10, 20)),
        payment(FK, PAYEE, "fk-jun", "EXECUTED", 999_00, category="SICKNESS_BENEFIT", payout=dt.date(2026, 6, 18)),
        payment(FK, PAYEE, "fk-jun", "RECALLED", 999_00, category="SICKNESS_BENEFIT", payout=dt.date(2026, 6, 18)),
        payment(GOTEBORG, PAYEE, "g-trv", "EXECUTED", 250_00, category="TRAVEL_EXPENSE", payout=dt.date(2025, 11, 3)),
        payment(GOTEBORG, PAYEE, "g-trv", "RETURNED", 250_00, category="TRAVEL_EXPENSE", payout=dt.date(2025, 11, 3)),
        payment(GOTEBORG, PAYEE, "g-old", "EXECUTED", 300_00, category="TRAVEL_EXPENSE", payout=dt.date(2025, 10, 31)),
        payment(STOCKHOLM, PAYEE, "s-nov", "PLANNED", 4_600_00, payout=dt.date(2026, 11, 25)),
        payment(FK, PAYEE, "fk-late", "PLANNED", 1_000_00, category="SICKNESS_BENEFIT", payout=dt.date(2026, 11, 20)),
        payment(FK, PAYEE, "fk-dec", "PLANNED", 2_000_00, category="SICKNESS_BENEFIT", payout=dt.date(2026, 12, 18)),
        payment(FK, PAYEE, "fk-dec", "CANCELLED", 2_000_00, category="SICKNESS_BENEFIT", payout=dt.date(2026, 12, 18)),
    )
    return view(*ledger)


def ids(items):
    return [i["payment_id"] for i in items]


def test_response_lists_totals_and_monthly_exactly():
    r = payments_response(sample_state(), TODAY)
    assert ids(r["history"]) == ["s-oct", "fk-oct", "s-sep", "fk-jun", "g-trv", "g-old"]
    assert [i["status"] for i in r["history"]] == ["EXECUTED", "EXECUTED", "EXECUTED", "RECALLED", "RETURNED",
                                                   "EXECUTED"]
    assert ids(r["upcoming"]) == ["fk-late", "s-nov"]  # soonest first; the late one stays until confirmed
    assert [(i["late"], i["status_text"]) for i in r["upcoming"]] == [
        (True, "Planerad, ej bekräftad"), (False, "Planerad")]
    assert ids(r["cancelled"]) == ["fk-dec"]
    # paid: 4 500,00 + 4 600,00 (executed amount wins) + 12 345,67 + 300,00; returned/recalled count nothing
    assert r["totals"] == {"paid_ore": 21_745_67, "paid_sek": "21\u00a0745,67\u00a0kr",
                           "upcoming_ore": 5_600_00, "upcoming_sek": "5\u00a0600,00\u00a0kr"}
    assert [m["month"] for m in r["monthly"]] == [
        "2025-12", "2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2026-06", "2026-07", "2026-08",
        "2026-09", "2026-10", "2026-11"]
    assert {m["month"]: m["paid_ore"] for m in r["monthly"] if m["paid_ore"]} == {
        "2026-09": 4_500_00, "2026-10": 16_945_67}
    assert r["monthly"][10]["paid_sek"] == "16\u00a0945,67\u00a0kr"
    assert r["paging"] == {"page": 1, "page_size": 50, "total_items": 6, "total_pages": 1}
    assert r["filter"] == {"from": None, "to": None} and r["today"] == "2026-11-25"


def test_response_item_shape():
    r = payments_response(sample_state(), TODAY)
    first = r["history"][0]
    assert first == {
        "payer_id": "2120000142", "payer_name": "Stockholms kommun", "payment_id": "s-oct",
        "entry_id": "2120000142:s-oct:EXECUTED", "sequence": 3, "status": "EXECUTED",
        "category": "SOCIAL_ASSISTANCE", "amount_ore": 4_600_00, "payout_date": "2026-10-23",
        "period_start": "2026-10-01", "period_end": "2026-10-31", "on_behalf_of": None,
        "bank_account_hint": "****6789", "event_time": "2026-11-24T08:00:00.000Z",
        "registered_at": "2026-11-25T09:00:02.000Z", "category_name": "Ekonomiskt bistånd",
        "amount_sek": "4\u00a0600,00\u00a0kr", "late": False, "status_text": "Utbetald",
    }
    assert r["history"][3]["status_text"] == "Återkallad"
    assert r["history"][4]["status_text"] == "Återbetald till utbetalaren"
    assert r["cancelled"][0]["status_text"] == "Makulerad"


def test_date_filter_applies_to_lists_not_to_totals():
    r = payments_response(sample_state(), TODAY, date_from="2026-10-01", date_to="2026-11-24")
    assert ids(r["history"]) == ["s-oct", "fk-oct"]
    assert ids(r["upcoming"]) == ["fk-late"]
    assert r["cancelled"] == []
    assert r["totals"]["paid_ore"] == 21_745_67 and r["totals"]["upcoming_ore"] == 5_600_00
    assert r["filter"] == {"from": "2026-10-01", "to": "2026-11-24"}
    inclusive = payments_response(sample_state(), TODAY, date_from=dt.date(2026, 10, 23), date_to=dt.date(2026, 10, 23))
    assert ids(inclusive["history"]) == ["s-oct"]
    only_to = payments_response(sample_state(), TODAY, date_to="2025-12-31")
    assert ids(only_to["history"]) == ["g-trv", "g-old"]


def test_paging_the_history():
    pages = [payments_response(sample_state(), TODAY, page=p, page_size=4) for p in (1, 2, 3)]
    assert [ids(p["history"]) for p in pages] == [["s-oct", "fk-oct", "s-sep", "fk-jun"], ["g-trv", "g-old"], []]
    assert pages[1]["paging"] == {"page": 2, "page_size": 4, "total_items": 6, "total_pages": 2}
    assert ids(pages[2]["upcoming"]) == ["fk-late", "s-nov"]  # upcoming is never paged
    as_strings = payments_response(sample_state(), TODAY, page="2", page_size="4")
    assert as_strings == pages[1]


def test_empty_view():
    r = payments_response(None, TODAY)
    assert (r["history"], r["upcoming"], r["cancelled"]) == ([], [], [])
    assert r["totals"] == {"paid_ore": 0, "paid_sek": "0,00\u00a0kr", "upcoming_ore": 0, "upcoming_sek": "0,00\u00a0kr"}
    assert len(r["monthly"]) == 12 and all(m["paid_ore"] == 0 for m in r["monthly"])
    assert r["paging"] == {"page": 1, "page_size": 50, "total_items": 0, "total_pages": 1}


def test_monthly_wraps_the_year():
    r = payments_response(None, dt.date(2026, 3, 1))
    assert r["monthly"][0]["month"] == "2025-04" and r["monthly"][-1]["month"] == "2026-03"


def test_representative_view_lists_payments_received_on_behalf():
    own = entries(payment(STOCKHOLM, REPRESENTATIVE, "own", "EXECUTED", 100_00, payout=dt.date(2026, 11, 2)),
                  payee=REPRESENTATIVE)
    theirs = entries(payment(FK, PAYEE, "fk1", "EXECUTED", 900_00, category="SICKNESS_BENEFIT",
                             representative_id=REPRESENTATIVE, payout=dt.date(2026, 11, 3)))
    state = view(*own, *theirs, viewer=REPRESENTATIVE)
    r = payments_response(state, TODAY)
    assert [(i["payment_id"], i["on_behalf_of"]) for i in r["history"]] == [("fk1", PAYEE), ("own", None)]
    assert r["totals"]["paid_ore"] == 1_000_00


@pytest.mark.parametrize("kwargs, message", [
    ({"date_from": "2026-13-01"}, "'from' must be a date YYYY-MM-DD, got '2026-13-01'"),
    ({"date_to": "yesterday"}, "'to' must be a date YYYY-MM-DD, got 'yesterday'"),
    ({"date_from": "20261101"}, "'from' must be a date YYYY-MM-DD, got '20261101'"),
    ({"date_from": "2026-11-02", "date_to": "2026-11-01"}, "'from' (2026-11-02) is after 'to' (2026-11-01)"),
    ({"page": "0"}, "'page' must be at least 1, got 0"),
    ({"page": "-1"}, "'page' must be a whole number, got '-1'"),
    ({"page": "1.5"}, "'page' must be a whole number, got '1.5'"),
    ({"page_size": "201"}, "'page_size' must be at most 200, got 201"),
    ({"page_size": 0}, "'page_size' must be at least 1, got 0"),
    ({"page_size": "ten"}, "'page_size' must be a whole number, got 'ten'"),
])
def test_bad_params_are_400(kwargs, message):
    with pytest.raises(ViewError) as info:
        payments_response(sample_state(), TODAY, **kwargs)
    assert (info.value.status, info.value.message) == (400, message)


def test_query_args_from_request_parameters():
    assert query_args({"from": "2026-01-01", "to": "2026-02-01", "page": "2", "page_size": "10"}) == {
        "date_from": "2026-01-01", "date_to": "2026-02-01", "page": "2", "page_size": "10"}
    assert query_args({"page": ["3"], "token": "t"}, ignore=("token",)) == {"page": "3"}
    with pytest.raises(ViewError, match="unknown query parameter 'person'"):
        query_args({"person": PAYEE})
    with pytest.raises(ViewError, match="'page' given more than once"):
        query_args({"page": ["1", "2"]})
    r = payments_response(sample_state(), TODAY, **query_args({"page": "1", "page_size": "2"}))
    assert ids(r["history"]) == ["s-oct", "fk-oct"]


def test_docs_example_is_what_the_code_answers():
    import json
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "citizen.md").read_text()
    documented = json.loads(re.search(r"```json\n(.*?)\n```", text, flags=re.S).group(1))
    state = view(*entries(
        payment(STOCKHOLM, PAYEE, "2026-10-4471", "EXECUTED", 4_600_00, payout=dt.date(2026, 10, 23)),
        payment(FK, PAYEE, "fk-88120", "PLANNED", 12_345_67, category="SICKNESS_BENEFIT", payout=dt.date(2026, 12, 18))))
    answer = payments_response(state, TODAY, page_size=20)
    assert len(answer["monthly"]) == 12
    answer["monthly"] = answer["monthly"][-3:]  # the doc shows the last three months
    assert documented == answer


def test_a_representative_of_two_payees_keeps_both_payments_with_the_same_payment_id():
    import datetime as dt
    from streams.citizen_view import citizen_item, fold
    from streams.identity import make_person
    rep, kid1, kid2 = (make_person(dt.date(1980 + i, 1, 1), i) for i in range(3))
    base = {"payer_id": "2120000142", "payment_id": "same", "entry_id": "x", "sequence": 1, "status": "EXECUTED",
            "category": "SOCIAL_ASSISTANCE", "amount_ore": 100, "payout_date": dt.date(2026, 11, 25),
            "period_start": dt.date(2026, 11, 1), "period_end": dt.date(2026, 11, 30), "bank_account": "8327-1234",
            "representative_id": rep, "event_time": dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc),
            "registered_at": dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)}
    state = fold(None, citizen_item({**base, "payee_id": kid1}, "Stockholm", rep))
    state = fold(state, citizen_item({**base, "payee_id": kid2, "amount_ore": 200}, "Stockholm", rep))
    assert sorted((p["on_behalf_of"], p["amount_ore"]) for p in state["payments"].values()) == sorted(
        [(kid1, 100), (kid2, 200)])


@pytest.mark.parametrize("instant", [
    dt.datetime(2026, 12, 4, 13, 30, 13, 123000, tzinfo=dt.timezone.utc),
    dt.datetime(2026, 12, 4, 13, 30, 13, 0, tzinfo=dt.timezone.utc),
    dt.datetime(2026, 12, 4, 23, 59, 59, 999999, tzinfo=dt.timezone.utc),  # milliseconds truncated, not rounded
    dt.datetime(1969, 12, 31, 23, 59, 59, 1000, tzinfo=dt.timezone.utc),  # before the epoch
    dt.datetime(1960, 5, 5, 1, 2, 3, 456789, tzinfo=dt.timezone.utc),
    dt.datetime(9, 1, 2, 3, 4, 5, 6000, tzinfo=dt.timezone.utc),  # a year of one digit: four, as isoformat
])
def test_instants_are_iso_utc_milliseconds_in_c_and_in_python(instant):
    from streams import avro_native, citizen_view
    expected = instant.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert citizen_view._iso_instant(instant) == expected
    assert avro_native.utc_text(instant) == expected  # the C module (test_the_c_module_is_built_and_current)
    # what the C module does not take, Python formats: another zone, naive (taken as UTC), epoch millis
    other = instant.astimezone(dt.timezone(dt.timedelta(hours=2)))
    assert avro_native.utc_text(other) is None
    assert citizen_view._iso_instant(other) == expected
    assert avro_native.utc_text(instant.replace(tzinfo=None)) is None
    assert citizen_view._iso_instant(instant.replace(tzinfo=None)) == expected
    assert avro_native.utc_text(instant.date()) is None and avro_native.utc_text("2026-12-04") is None


def test_the_date_cache_is_bounded():
    from streams import citizen_view
    for i in range(citizen_view._CACHED_MAX + 10):
        d = dt.date(2000, 1, 1) + dt.timedelta(days=i)
        assert citizen_view._iso_date(d) == d.isoformat()
    assert len(citizen_view._DATES) <= citizen_view._CACHED_MAX
