"""The citizen view: what one person sees of their public payments. Pure and synchronous.

Fed by the citizen-view topic (ledger entries of PROPOSAL_1/3 payers, once per viewer:
the payee, and the representative when a payment goes to one on the payee's behalf).

- ``citizen_item`` turns a ledger entry into a CitizenItem: only what the viewer may see
  (no decision data, no balances internals, the bank account as its last four digits);
- ``fold`` applies an item to the viewer's stored view, idempotently and order-safely
  (one record per payer_id:payment_id, the highest ledger ``sequence`` wins);
- ``payments_response`` builds the ``GET /api/v1/me/payments`` answer from a stored view
  (history, upcoming, cancelled, totals, the last 12 months, paging), validating the
  query parameters (``ViewError``, HTTP 400).

Every value in an item and a response is JSON-ready: dates as ``YYYY-MM-DD``, instants as
ISO 8601 UTC, money as integer öre plus a Swedish-formatted string (``1 234,50 kr``).
The contract is described in docs/citizen.md.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from .avro_native import utc_text
from .categories import swedish_name
from .sealed import Sealed

NBSP = "\u00a0"

HISTORY_STATUSES = ("EXECUTED", "RETURNED", "RECALLED")
UPCOMING_STATUSES = ("PLANNED",)
CANCELLED_STATUSES = ("CANCELLED",)
STATUSES = HISTORY_STATUSES + UPCOMING_STATUSES + CANCELLED_STATUSES

STATUS_TEXT = {
    "PLANNED": "Planerad",
    "EXECUTED": "Utbetald",
    "RETURNED": "Återbetald till utbetalaren",
    "RECALLED": "Återkallad",
    "CANCELLED": "Makulerad",
}
#: Shown for a PLANNED payment whose payout date has passed without a confirmed payout.
LATE_TEXT = "Planerad, ej bekräftad"

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MONTHS_SHOWN = 12

#: Fields of a CitizenItem, in order.
ITEM_FIELDS = ("payer_id", "payer_name", "payment_id", "entry_id", "sequence", "status", "category",
               "amount_ore", "payout_date", "period_start", "period_end", "on_behalf_of",
               "bank_account_hint", "event_time", "registered_at")

#: Query parameters of GET /api/v1/me/payments.
QUERY_PARAMS = ("from", "to", "page", "page_size")


class ViewError(ValueError):
    """A request the view cannot answer: ``status`` 400 with a message for the client."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status
        self.message = message


# -- formatting ---------------------------------------------------------------------------
def format_sek(ore: int) -> str:
    """Swedish money format: 123450 -> '1 234,50 kr' (non-breaking spaces)."""
    if isinstance(ore, bool) or not isinstance(ore, int):
        raise TypeError(f"amounts are whole öre (int), not {type(ore).__name__}")
    sign = "-" if ore < 0 else ""
    kronor, rest = divmod(abs(ore), 100)
    groups = f"{kronor:,}".replace(",", NBSP)
    return f"{sign}{groups},{rest:02d}{NBSP}kr"


_DATES: dict = {}  # date -> 'YYYY-MM-DD': payout and period dates recur across payments
_CACHED_MAX = 4096  # emptied when it reaches this size


def _iso_date(value) -> str:
    if type(value) is dt.date:  # the common case, first: this runs three times per item
        text = _DATES.get(value)
        if text is None:
            if len(_DATES) >= _CACHED_MAX:
                _DATES.clear()
            text = _DATES[value] = value.isoformat()
        return text
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return dt.date.fromisoformat(str(value)).isoformat()


def _iso_instant(value) -> str:
    text = utc_text(value)  # in C: a datetime in UTC, as decoded (this runs twice per item)
    if text is not None:
        return text
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # epoch millis
        value = dt.datetime.fromtimestamp(value / 1000, dt.timezone.utc)
    elif isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def bank_account_hint(account: str | None) -> str:
    """Only the last four digits of a bank account: '8327-9123456789' -> '****6789'."""
    tail = account[-4:] if account else ""
    if len(tail) == 4 and tail.isdigit():  # the usual form: ends in four digits
        return "****" + tail
    digits = "".join(ch for ch in (account or "") if ch.isdigit())
    if len(digits) < 4:
        return "****"
    return "****" + digits[-4:]


# -- items ----------------------------------------------------------------------------------
def citizen_item(ledger_entry: dict, payer_name: str, viewer_id: str) -> dict:
    """The person-visible subset of a ledger entry, for ``viewer_id`` (payee or representative).

    Raises ValueError when the viewer is neither the entry's payee nor its representative:
    such an item must never reach a person's view.
    """
    payee = ledger_entry["payee_id"]
    representative = ledger_entry.get("representative_id")
    if viewer_id == payee:
        on_behalf_of = None
    elif representative and viewer_id == representative:
        on_behalf_of = payee
    else:
        raise ValueError(f"entry {ledger_entry.get('entry_id')!r} is not visible to this viewer: "
                         "it is neither the payee nor the representative")
    status = ledger_entry["status"]
    if status not in STATUSES:
        raise ValueError(f"unknown payment status {status!r}")
    return {
        "payer_id": ledger_entry["payer_id"],
        "payer_name": payer_name or ledger_entry["payer_id"],
        "payment_id": ledger_entry["payment_id"],
        "entry_id": ledger_entry["entry_id"],
        "sequence": int(ledger_entry["sequence"]),
        "status": status,
        "category": ledger_entry["category"],
        "amount_ore": int(ledger_entry["amount_ore"]),
        "payout_date": _iso_date(ledger_entry["payout_date"]),
        "period_start": _iso_date(ledger_entry["period_start"]),
        "period_end": _iso_date(ledger_entry["period_end"]),
        "on_behalf_of": on_behalf_of,
        "bank_account_hint": bank_account_hint(ledger_entry.get("bank_account")),
        "event_time": _iso_instant(ledger_entry["event_time"]),
        "registered_at": _iso_instant(ledger_entry["registered_at"]),
    }


def item_key(item: dict) -> str:
    """One record per payment and payee: a representative of two payees never sees one
    payment overwrite another if a payer reuses a payment id across payees."""
    own = f"{item['payer_id']}:{item['payment_id']}"
    return f"{own}@{item['on_behalf_of']}" if item.get("on_behalf_of") else own


def new_state() -> dict:
    return {"payments": {}}


def fold(state: dict | None, item: dict, key: str | None = None) -> dict:
    """Apply one CitizenItem to a person's stored view; returns the (new) state.

    One record per payer_id:payment_id. The item with the highest ledger ``sequence``
    wins: a redelivered item (same sequence) changes nothing, an older one (arriving
    late) never overwrites a newer one. The input state is not mutated. ``key``: the
    item's ``item_key``, when the caller has it.
    """
    state = new_state() if state is None else state
    if key is None:
        key = item_key(item)
    current = state["payments"].get(key)
    if current is not None and current["sequence"] >= item["sequence"]:
        return state
    payments = dict(state["payments"])
    payments[key] = Sealed(item)  # the view's other items keep their encoding
    return {**state, "payments": payments}


# -- query parameters -----------------------------------------------------------------------
def _parse_date(name: str, value) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        raise ViewError(f"'{name}' must be a date YYYY-MM-DD, not a timestamp")
    if isinstance(value, dt.date):
        return value
    text = str(value)
    try:
        if len(text) != 10:
            raise ValueError
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ViewError(f"'{name}' must be a date YYYY-MM-DD, got {text[:40]!r}") from None


def _parse_int(name: str, value, default: int, minimum: int, maximum: int | None = None) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise ViewError(f"'{name}' must be a whole number")
    if isinstance(value, int):
        number = value
    else:
        text = str(value)
        if not text.isascii() or not text.isdigit() or len(text) > 9:
            raise ViewError(f"'{name}' must be a whole number, got {text[:40]!r}")
        number = int(text)
    if number < minimum:
        raise ViewError(f"'{name}' must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ViewError(f"'{name}' must be at most {maximum}, got {number}")
    return number


def query_args(query: Mapping[str, str], ignore: tuple[str, ...] = ()) -> dict:
    """Keyword arguments for ``payments_response`` from a request's query parameters.

    Accepts ``from``, ``to``, ``page``, ``page_size``; anything else (except names in
    ``ignore``, e.g. the page's ``token``) is a ViewError, as is a repeated parameter
    given as a list with more than one value.
    """
    unknown = sorted(k for k in query if k not in QUERY_PARAMS and k not in ignore)
    if unknown:
        raise ViewError(f"unknown query parameter {unknown[0][:40]!r}; use {', '.join(QUERY_PARAMS)}")
    args = {}
    for name, kwarg in (("from", "date_from"), ("to", "date_to"), ("page", "page"), ("page_size", "page_size")):
        if name not in query:
            continue
        value = query[name]
        if isinstance(value, (list, tuple)):
            if len(value) != 1:
                raise ViewError(f"'{name}' given more than once")
            value = value[0]
        args[kwarg] = value
    return args


# -- the response --------------------------------------------------------------------------
def _months_back(today: dt.date, count: int) -> list[str]:
    year, month = today.year, today.month
    months = []
    for _ in range(count):
        months.append(f"{year:04d}-{month:02d}")
        month -= 1
        if month == 0:
            year, month = year - 1, 12
    return months[::-1]


def _present(item: dict, today: dt.date) -> dict:
    out = {k: item[k] for k in ITEM_FIELDS}
    out["category_name"] = swedish_name(item["category"])
    out["amount_sek"] = format_sek(item["amount_ore"])
    late = item["status"] == "PLANNED" and item["payout_date"] < today.isoformat()
    out["late"] = late
    out["status_text"] = LATE_TEXT if late else STATUS_TEXT[item["status"]]
    return out


def payments_response(state: dict | None, today: dt.date, date_from=None, date_to=None,
                      page=1, page_size=DEFAULT_PAGE_SIZE) -> dict:
    """The answer to ``GET /api/v1/me/payments`` for one person's stored view.

    ``date_from``/``date_to`` (dates or 'YYYY-MM-DD', inclusive) filter the three lists
    by payout date; ``page``/``page_size`` page the history. Totals and the monthly
    chart are over the whole view, unfiltered. Bad parameters raise ViewError (400).
    """
    start = _parse_date("from", date_from)
    end = _parse_date("to", date_to)
    if start and end and start > end:
        raise ViewError(f"'from' ({start.isoformat()}) is after 'to' ({end.isoformat()})")
    page = _parse_int("page", page, 1, 1)
    page_size = _parse_int("page_size", page_size, DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)

    items = list((state or new_state())["payments"].values())
    paid = sum(i["amount_ore"] for i in items if i["status"] == "EXECUTED")
    upcoming = sum(i["amount_ore"] for i in items if i["status"] == "PLANNED")
    months = _months_back(today, MONTHS_SHOWN)
    per_month = dict.fromkeys(months, 0)
    for i in items:
        if i["status"] == "EXECUTED" and i["payout_date"][:7] in per_month:
            per_month[i["payout_date"][:7]] += i["amount_ore"]

    lo = start.isoformat() if start else "0000-00-00"
    hi = end.isoformat() if end else "9999-99-99"
    shown = [i for i in items if lo <= i["payout_date"] <= hi]

    def newest_first(i):
        return (i["payout_date"], i["registered_at"], i["payer_id"], i["payment_id"])

    history = sorted((i for i in shown if i["status"] in HISTORY_STATUSES), key=newest_first, reverse=True)
    upcoming_items = sorted((i for i in shown if i["status"] in UPCOMING_STATUSES), key=newest_first)
    cancelled = sorted((i for i in shown if i["status"] in CANCELLED_STATUSES), key=newest_first, reverse=True)

    total_items = len(history)
    total_pages = max(1, -(-total_items // page_size))
    first = (page - 1) * page_size
    return {
        "today": today.isoformat(),
        "filter": {"from": start.isoformat() if start else None, "to": end.isoformat() if end else None},
        "history": [_present(i, today) for i in history[first:first + page_size]],
        "upcoming": [_present(i, today) for i in upcoming_items],
        "cancelled": [_present(i, today) for i in cancelled],
        "totals": {"paid_ore": paid, "paid_sek": format_sek(paid),
                   "upcoming_ore": upcoming, "upcoming_sek": format_sek(upcoming)},
        "monthly": [{"month": m, "paid_ore": per_month[m], "paid_sek": format_sek(per_month[m])} for m in months],
        "paging": {"page": page, "page_size": page_size, "total_items": total_items, "total_pages": total_pages},
    }


__all__ = ["ViewError", "citizen_item", "fold", "payments_response", "query_args", "format_sek",
           "bank_account_hint", "item_key", "new_state", "STATUS_TEXT", "ITEM_FIELDS"]
