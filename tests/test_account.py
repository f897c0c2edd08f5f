import datetime as dt

import pytest

from streams.account import new_account, register, totals
from tests.conftest import GOTEBORG, STOCKHOLM, payment

PAYEE = "198112189876"
NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.timezone.utc)


def apply(account, *events):
    return [register(account, e, NOW) for e in events]


def test_plan_then_execute_moves_upcoming_to_paid():
    acc = new_account(PAYEE)
    out = apply(acc, payment(STOCKHOLM, PAYEE, "p1", "PLANNED", 500_00), payment(STOCKHOLM, PAYEE, "p1", "EXECUTED", 500_00))
    assert [o.kind for o in out] == ["REGISTERED", "REGISTERED"]
    assert [o.entry["sequence"] for o in out] == [1, 2]
    assert (out[1].entry["previous_status"], out[1].entry["paid_delta_ore"], out[1].entry["upcoming_delta_ore"]) == (
        "PLANNED", 500_00, -500_00)
    assert totals(acc) == {"paid_ore": 500_00, "upcoming_ore": 0}
    assert acc["balances"] == {"2026-11|2120000142|SOCIAL_ASSISTANCE": {"paid_ore": 500_00, "upcoming_ore": 0}}


def test_redelivery_changes_nothing_and_returns_the_identical_entry():
    acc = new_account(PAYEE)
    event = payment(STOCKHOLM, PAYEE, "p1", "EXECUTED", 700_00)
    first = register(acc, event, NOW)
    snapshot = repr(acc)
    again = register(acc, event, NOW + dt.timedelta(hours=1))
    assert again.kind == "DUPLICATE" and again.entry == first.entry
    assert repr(acc) == snapshot
    republished = register(acc, {**event, "event_id": "another-id"}, NOW)
    assert republished.kind == "DUPLICATE" and republished.entry is None
    assert repr(acc) == snapshot


@pytest.mark.parametrize("steps, rejected, reason", [
    (["EXECUTED", "PLANNED"], "PLANNED", "INVALID_TRANSITION"),
    (["PLANNED", "CANCELLED", "EXECUTED"], "EXECUTED", "INVALID_TRANSITION"),
    (["PLANNED", "RETURNED"], "RETURNED", "INVALID_TRANSITION"),
    (["RECALLED"], "RECALLED", "UNKNOWN_PAYMENT"),
    (["CANCELLED"], "CANCELLED", "UNKNOWN_PAYMENT"),
    (["EXECUTED", "RETURNED", "RECALLED"], "RECALLED", "INVALID_TRANSITION"),
])
def test_impossible_steps_are_rejected_and_not_applied(steps, rejected, reason):
    acc = new_account(PAYEE)
    outcomes = apply(acc, *[payment(STOCKHOLM, PAYEE, "p1", s, 100_00) for s in steps])
    assert outcomes[-1].kind == "REJECTED" and outcomes[-1].reason == reason
    assert all(o.kind == "REGISTERED" for o in outcomes[:-1])
    assert acc["sequence"] == len(steps) - 1


def test_returns_recalls_and_cancellations_book_the_right_balances():
    acc = new_account(PAYEE)
    apply(acc,
          payment(STOCKHOLM, PAYEE, "a", "PLANNED", 100_00), payment(STOCKHOLM, PAYEE, "a", "CANCELLED", 100_00),
          payment(STOCKHOLM, PAYEE, "b", "EXECUTED", 200_00), payment(STOCKHOLM, PAYEE, "b", "RETURNED", 200_00),
          payment(GOTEBORG, PAYEE, "c", "PLANNED", 300_00, payout=dt.date(2026, 12, 23)),
          payment(GOTEBORG, PAYEE, "d", "EXECUTED", 400_00, category="TRAVEL_EXPENSE"),
          payment(GOTEBORG, PAYEE, "d", "RECALLED", 400_00, category="TRAVEL_EXPENSE"),
          payment(GOTEBORG, PAYEE, "e", "EXECUTED", 50_00))
    assert totals(acc) == {"paid_ore": 50_00, "upcoming_ore": 300_00}
    assert acc["balances"] == {
        "2026-12|2120001355|SOCIAL_ASSISTANCE": {"paid_ore": 0, "upcoming_ore": 300_00},
        "2026-11|2120001355|SOCIAL_ASSISTANCE": {"paid_ore": 50_00, "upcoming_ore": 0},
    }
    assert acc["sequence"] == 8


def test_executed_amount_may_differ_from_planned():
    acc = new_account(PAYEE)
    apply(acc, payment(STOCKHOLM, PAYEE, "p", "PLANNED", 100_00), payment(STOCKHOLM, PAYEE, "p", "EXECUTED", 90_00),
          payment(STOCKHOLM, PAYEE, "p", "RETURNED", 90_00))
    assert totals(acc) == {"paid_ore": 0, "upcoming_ore": 0}


def test_month_of_gives_year_and_month_and_its_memory_stays_bounded(monkeypatch):
    from streams import account
    monkeypatch.setattr(account, "_MONTHS", {})
    monkeypatch.setattr(account, "_MONTHS_MAX", 3)
    assert account.month_of(dt.date(2026, 1, 31)) == "2026-01"
    assert account.month_of(dt.date(2026, 1, 31)) == "2026-01"  # remembered
    assert account.month_of(dt.date(999, 12, 1)) == "0999-12"
    assert account.month_of(dt.date(2026, 11, 5)) == "2026-11"
    assert account.month_of(dt.date(2027, 2, 28)) == "2027-02"  # the memory was full: emptied first
    assert len(account._MONTHS) == 1
