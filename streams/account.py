"""The transaction account: registration rules, pure and synchronous.

An account (schemas/account.avsc) holds a payee's payments and balances. ``register``
applies one validated payment event and says what happened:

- REGISTERED: a new ledger entry with the next sequence number;
- DUPLICATE: the (payer, payment, event type) was registered before; the account is
  unchanged. When it is the very same event (a redelivery, same event_id) the original
  entry is returned again, identical, so that output lost in a crash can be re-emitted
  (consumers dedupe on entry_id); a re-published copy (new event_id) returns no entry;
- REJECTED: an impossible lifecycle step; the account is unchanged.

Lifecycle: PLANNED -> EXECUTED -> RETURNED | RECALLED, and PLANNED -> CANCELLED. A payment
may also start as EXECUTED (paid without being announced).
"""
from __future__ import annotations

import datetime as dt

from .sealed import Sealed
from .validation import Rejected

TRANSITIONS: dict[str | None, frozenset[str]] = {
    None: frozenset({"PLANNED", "EXECUTED"}),
    "PLANNED": frozenset({"EXECUTED", "CANCELLED"}),
    "EXECUTED": frozenset({"RETURNED", "RECALLED"}),
    "CANCELLED": frozenset(),
    "RETURNED": frozenset(),
    "RECALLED": frozenset(),
}


class Outcome:
    """What ``register`` did. (A plain class: a dataclass's generated ``__init__`` is
    interpreted Python even where this module is compiled.)"""

    __slots__ = ("kind", "entry", "reason", "detail")

    def __init__(self, kind: str, entry: dict | None = None, reason: str | None = None, detail: str | None = None):
        self.kind = kind  # REGISTERED | DUPLICATE | REJECTED
        self.entry = entry
        self.reason = reason
        self.detail = detail

    def __repr__(self) -> str:
        return f"Outcome({self.kind!r}, entry={self.entry!r}, reason={self.reason!r}, detail={self.detail!r})"


def new_account(payee_id: str) -> dict:
    return {"payee_id": payee_id, "sequence": 0, "payments": {}, "balances": {}}


_MONTHS: dict[dt.date, str] = {}  # day -> 'YYYY-MM': payout dates recur across payments
_MONTHS_MAX = 4096  # emptied when it reaches this size


def month_of(day: dt.date) -> str:
    """'YYYY-MM' of a day. Remembered per day: formatting two integers with a width took
    ~2,600 instructions, and every registration asks at least once."""
    text = _MONTHS.get(day)
    if text is None:
        if len(_MONTHS) >= _MONTHS_MAX:
            _MONTHS.clear()
        text = _MONTHS[day] = f"{day.year:04d}-{day.month:02d}"
    return text


def payment_key(event: dict) -> str:
    return f"{event['payer_id']}:{event['payment_id']}"


def _book(account: dict, month: str, payer_id: str, category: str, paid: int, upcoming: int) -> None:
    key = f"{month}|{payer_id}|{category}"
    balances = account["balances"]
    balance = balances.get(key)
    if balance is not None:
        paid += balance["paid_ore"]
        upcoming += balance["upcoming_ore"]
    if paid == 0 and upcoming == 0:
        balances.pop(key, None)
    else:
        balances[key] = Sealed(paid_ore=paid, upcoming_ore=upcoming)


def _deltas(previous: str | None, event_type: str, stored_amount: int, amount: int) -> tuple[int, int]:
    """(paid, upcoming) change in öre for a transition."""
    if event_type == "PLANNED":
        return 0, amount
    if event_type == "EXECUTED":
        return amount, (-stored_amount if previous == "PLANNED" else 0)
    if event_type == "CANCELLED":
        return 0, -stored_amount
    return -stored_amount, 0  # RETURNED, RECALLED


def register(account: dict, event: dict, registered_at: dt.datetime) -> Outcome:
    """Apply one validated PaymentEvent to ``account`` (mutated only when REGISTERED)."""
    key = payment_key(event)
    etype = event["event_type"]
    state = account["payments"].get(key)
    if state is not None and etype in state["applied"]:
        applied = state["applied"][etype]
        if applied["event_id"] != event["event_id"]:
            return Outcome("DUPLICATE")  # a re-published copy: its entry went out with the original
        return Outcome("DUPLICATE", _entry(account["payee_id"], event, applied))
    previous = state["status"] if state else None
    if etype not in TRANSITIONS[previous]:
        if previous is None:
            raise_reason = ("UNKNOWN_PAYMENT", f"{etype} for payment {event['payment_id']} that was never registered; "
                            "publish PLANNED or EXECUTED first")
        else:
            raise_reason = ("INVALID_TRANSITION", f"payment {event['payment_id']} is {previous}; {previous} -> {etype} "
                            "is not a lifecycle step")
        return Outcome("REJECTED", reason=raise_reason[0], detail=raise_reason[1])
    stored_amount = state["amount_ore"] if state else 0
    paid, upcoming = _deltas(previous, etype, stored_amount, event["amount_ore"])
    new_month = month_of(event["payout_date"])
    if state is None:
        state = {"status": etype, "amount_ore": event["amount_ore"], "category": event["category"],
                 "month": new_month, "applied": {}}
    # Upcoming is released on the month it was booked on; paid is booked on the payout month.
    if upcoming:
        _book(account, state["month"] if upcoming < 0 else new_month, event["payer_id"], state["category"], 0, upcoming)
    if paid:
        _book(account, new_month if etype == "EXECUTED" else state["month"], event["payer_id"], state["category"], paid, 0)
    account["sequence"] += 1
    applied = {
        "sequence": account["sequence"],
        "event_id": event["event_id"],
        "previous_status": previous,
        "paid_delta_ore": paid,
        "upcoming_delta_ore": upcoming,
        "registered_at": registered_at,
    }
    # a new PaymentState (Sealed: the account's other payments keep their encoding); built
    # as a dict first: Sealed(state, **changes) took 1.17 µs for an EXECUTED, this 0.87
    changed = {**state, "status": etype, "applied": {**state["applied"], etype: applied}}
    if etype == "EXECUTED":
        changed["amount_ore"] = event["amount_ore"]
        changed["month"] = new_month
    account["payments"][key] = Sealed(changed)
    # positional: building the class with a keyword took 0.48 µs, without 0.28
    return Outcome("REGISTERED", _entry(account["payee_id"], event, applied))


def _entry(payee_id: str, event: dict, applied: dict) -> dict:
    return {
        "entry_id": f"{event['payer_id']}:{event['payment_id']}:{event['event_type']}",
        "payee_id": payee_id,
        "sequence": applied["sequence"],
        "payer_id": event["payer_id"],
        "payment_id": event["payment_id"],
        "event_id": event["event_id"],
        "event_type": event["event_type"],
        "status": event["event_type"],
        "previous_status": applied["previous_status"],
        "representative_id": event.get("representative_id"),
        "bank_account": event["bank_account"],
        "amount_ore": event["amount_ore"],
        "category": event["category"],
        "period_start": event["period_start"],
        "period_end": event["period_end"],
        "payout_date": event["payout_date"],
        "paid_delta_ore": applied["paid_delta_ore"],
        "upcoming_delta_ore": applied["upcoming_delta_ore"],
        "event_time": event["event_time"],
        "registered_at": applied["registered_at"],
    }


def totals(account: dict) -> dict[str, int]:
    """Paid and upcoming over the whole account, in öre."""
    paid = sum(b["paid_ore"] for b in account["balances"].values())
    upcoming = sum(b["upcoming_ore"] for b in account["balances"].values())
    return {"paid_ore": paid, "upcoming_ore": upcoming}


__all__ = ["Outcome", "Rejected", "TRANSITIONS", "new_account", "register", "totals", "payment_key", "month_of"]
