"""Enrichment of accepted payments from the reference registers: pure functions, no Kafka.

- ``verify_account``: Verification of Payee against the bank account register.
- ``payee_status``: the payee's status in the population register at the payout date.
- ``enrich``: a PaymentEvent plus payer, account and person records -> an EnrichedPayment
  record (schema ``schemas/enriched_payment.avsc``), applying the protected-identity rule.
- ``strip_patient_secrecy``: the copy of an event that may reach analysis.

Records are the Avro record dicts of ``PayerRecord`` / ``BankAccount`` / ``Person`` (as read
from the register topics); the dataclasses of streams/registers.py and streams/payers.py
are accepted too.

Verification outcomes (first that applies):

1. NOT_POSSIBLE - the account is not in the register, or it is not open on the payout date
   (opened after it, or ``closed`` before it; ``closed`` is the account's last open day).
2. MATCH, matched_as PAYEE - the payee is listed as HOLDER.
3. MATCH, matched_as REPRESENTATIVE - the payment names a representative_id, and that
   person is listed as HOLDER or POWER_OF_ATTORNEY.
4. CLOSE_MATCH - no id matches, but the name of a HOLDER is similar to the payee's name
   from the population register: ``name_similarity >= CLOSE_MATCH_THRESHOLD`` (0.85; case,
   accents, punctuation and word order ignored). The most similar holder's register name
   is returned.
5. NO_MATCH - otherwise (also when the payee's name is unknown).
"""
from __future__ import annotations

import datetime as dt
import difflib
import functools
import itertools
import re
import unicodedata

from .identity import ORGANISATION, InvalidIdentity, classify
from .payers import Payer
from .sealed import Sealed

CLOSE_MATCH_THRESHOLD = 0.85
VERIFICATION_RESULTS = ("MATCH", "CLOSE_MATCH", "NO_MATCH", "NOT_POSSIBLE")
PAYEE_STATUSES = ("ALIVE", "DECEASED", "EMIGRATED", "UNKNOWN", "ORGANISATION")


def as_record(item) -> dict | None:
    """A register entry as its Avro record dict (a Payer and the register dataclasses are converted)."""
    if item is None or isinstance(item, dict):
        return item
    if isinstance(item, Payer):
        return item.record
    if hasattr(item, "to_record"):
        return item.to_record()
    raise TypeError(f"not a register record: {type(item).__name__}")


# -- names --------------------------------------------------------------------------------
def normalise_name(name: str) -> str:
    """Case-folded, accents removed (å->a, é->e), punctuation dropped, single spaces."""
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^\w\s]|_", " ", plain).split())


@functools.lru_cache(maxsize=8192)
def name_similarity(a: str, b: str) -> float:
    """difflib's ratio of the two normalised names, in the word order of ``b`` that fits
    ``a`` best (so 'Karlsson, Anna' and 'Anna Karlsson' are 1.0): 1.0 identical, 0.0
    nothing in common. Every order is tried for names of up to 4 words; longer names are
    compared as written and with sorted words.

    Remembered for the last 8,192 pairs: a call costs ~200 µs (up to 24 difflib ratios),
    and a payee's events (PLANNED, then EXECUTED; every month) ask the same pair again."""
    na, nb = normalise_name(a), normalise_name(b)
    if not na or not nb:
        return 0.0
    words = nb.split()
    if sorted(words) == sorted(na.split()):  # the same words: some order (or the sorted pair) is identical
        return 1.0
    if len(words) <= 4:
        pairs = [(na, " ".join(order)) for order in set(itertools.permutations(words))]
    else:
        pairs = [(na, nb), (" ".join(sorted(na.split())), " ".join(sorted(words)))]
    return max(difflib.SequenceMatcher(None, x, y).ratio() for x, y in pairs)


# -- verification of payee ----------------------------------------------------------------
def _result(result: str, holder_name: str | None = None, matched_as: str | None = None) -> dict:
    return {"result": result, "holder_name": holder_name, "matched_as": matched_as}


def account_open_on(account: dict, day: dt.date) -> bool:
    """Opened on or before ``day``, and ``closed`` (its last open day) not before it."""
    closed = account.get("closed")
    return account["opened"] <= day and (closed is None or day <= closed)


def verify_account(
    account_record,
    payee_id: str,
    representative_id: str | None,
    payee_name: str | None,
    payout_date: dt.date,
) -> dict:
    """Verification of Payee for one payment: ``{"result", "holder_name", "matched_as"}``.

    See the module docstring for the rules; ``holder_name`` is the register's name of the
    matched holder (payee, representative, or close-matching holder), None for NO_MATCH
    and NOT_POSSIBLE; ``matched_as`` is PAYEE or REPRESENTATIVE for a MATCH, else None.
    """
    account = as_record(account_record)
    if account is None or not account_open_on(account, payout_date):
        return _result("NOT_POSSIBLE")
    holders = account["holders"]
    for holder in holders:
        if holder["person_id"] == payee_id and holder["role"] == "HOLDER":
            return _result("MATCH", holder["name"], "PAYEE")
    if representative_id:
        for holder in holders:
            if holder["person_id"] == representative_id and holder["role"] in ("HOLDER", "POWER_OF_ATTORNEY"):
                return _result("MATCH", holder["name"], "REPRESENTATIVE")
    if payee_name:
        best, best_score = None, 0.0
        for holder in holders:
            if holder["role"] != "HOLDER":
                continue
            score = name_similarity(payee_name, holder["name"])
            if score > best_score:
                best, best_score = holder, score
        if best is not None and best_score >= CLOSE_MATCH_THRESHOLD:
            return _result("CLOSE_MATCH", best["name"])
    return _result("NO_MATCH")


# -- population register ------------------------------------------------------------------
def is_organisation(payee_id: str) -> bool:
    try:
        return classify(payee_id) is ORGANISATION
    except InvalidIdentity:
        return False


def payee_status(person, payee_id: str, payout_date: dt.date) -> str:
    """ORGANISATION for an organisation number; UNKNOWN when not in the population register;
    DECEASED when the day of death is on or before the payout date; else EMIGRATED when
    the emigration day is on or before it; else ALIVE (a later death or emigration does not
    count: the status is the one on the payout date)."""
    if is_organisation(payee_id):
        return "ORGANISATION"
    record = as_record(person)
    if record is None:
        return "UNKNOWN"
    deceased = record.get("deceased_date")
    if deceased is not None and deceased <= payout_date:
        return "DECEASED"
    emigrated = record.get("emigration_date")
    if emigrated is not None and emigrated <= payout_date:
        return "EMIGRATED"
    return "ALIVE"


# -- enrichment ---------------------------------------------------------------------------
def enrich(payment_event: dict, payer, account_record, person_record, now: dt.datetime) -> dict:
    """The ``EnrichedPayment`` record of an accepted payment event.

    ``payer`` is the payer's registry entry (Payer or PayerRecord); ``account_record`` the
    register entry of ``payment_event["bank_account"]`` or None; ``person_record`` the
    population register entry of the payee or None; ``now`` the enrichment time (aware or
    UTC). The event is never modified: a decoded event (``Sealed``, unchangeable) is
    shared, so its ``payment`` is written from the bytes it was read from; any other dict
    is copied.

    Protected identity: when the payee's person record says protected_identity, the
    municipality of residence is None (whatever the record holds), no address-like value
    is copied, and a MATCH on the payee's own account does not repeat the payee's name.
    """
    payer_rec = as_record(payer)
    person = as_record(person_record)
    account = as_record(account_record)
    payout = payment_event["payout_date"]
    protected = bool(person and person.get("protected_identity"))
    verification = verify_account(
        account, payment_event["payee_id"], payment_event.get("representative_id"),
        person.get("name") if person else None, payout,
    )
    if protected and verification["matched_as"] == "PAYEE":
        verification["holder_name"] = None
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.timezone.utc)
    return {
        "payment": payment_event if type(payment_event) is Sealed else _copy_event(payment_event),
        "payer_name": payer_rec["name"],
        "payer_kind": payer_rec["kind"],
        "payer_scope": payer_rec["scope"],
        "verification": verification,
        "payee_status": payee_status(person, payment_event["payee_id"], payout),
        "deceased_date": person.get("deceased_date") if person else None,
        "emigration_date": person.get("emigration_date") if person else None,
        "municipality_code": None if protected or not person else person.get("municipality_code"),
        "protected_identity": protected,
        "account_opened": account["opened"] if account else None,
        "ledger_sequence": None,
        "enriched_at": now,
    }


# -- patient secrecy ----------------------------------------------------------------------
def _copy_event(event: dict) -> dict:
    """A copy of a PaymentEvent deep enough for this module: only ``decision`` (and its
    list of circumstances) is ever changed, so only that is copied below the top level.
    Much cheaper than copy.deepcopy on the hot path."""
    out = dict(event)
    decision = out.get("decision")
    if decision:
        out["decision"] = {**decision, "circumstances": [dict(c) for c in decision.get("circumstances", [])]}
    return out


def _visible_circumstances(decision: dict) -> list[dict]:
    """The circumstances analysis may see: none when the whole decision is under patient
    secrecy, else those not flagged patient_secrecy."""
    if decision.get("patient_secrecy"):
        return []
    return [c for c in decision.get("circumstances") or () if not c.get("patient_secrecy")]


def _strip_event(event: dict) -> None:
    decision = event.get("decision")
    if decision:
        decision["circumstances"] = _visible_circumstances(decision)


def _under_secrecy(event: dict) -> bool:
    """Whether stripping would remove anything from this PaymentEvent."""
    decision = event.get("decision")
    return bool(decision) and len(_visible_circumstances(decision)) != len(decision.get("circumstances") or ())


def _shared_as_is(event: dict, allowed: bool) -> bool:
    """Whether analysis may be given this PaymentEvent itself: decoded (``Sealed``,
    unchangeable, written from its bytes) and nothing to remove from it."""
    return type(event) is Sealed and (allowed or not _under_secrecy(event))


def _for_analysis(event: dict, allowed: bool) -> dict:
    if _shared_as_is(event, allowed):
        return event
    result = _copy_event(event)
    if not allowed:
        _strip_event(result)
    return result


def shared_for_analysis(enriched: dict, allowed: bool) -> dict:
    """``strip_patient_secrecy`` of an EnrichedPayment, for a caller that only reads and
    encodes the result (the routing, twice per payment): the record itself when there is
    nothing to remove (its payment decoded, ``Sealed``, with nothing under secrecy or
    ``allowed``), without copying it; else the stripped copy."""
    if _shared_as_is(enriched["payment"], allowed):
        return enriched
    return strip_patient_secrecy(enriched, allowed)


def strip_patient_secrecy(payment_event: dict, allowed: bool) -> dict:
    """The event for analysis (the input is never modified): unless ``allowed`` (the policy switch
    ``PATIENT_SECRECY_IN_ANALYSIS``), every circumstance flagged patient_secrecy is removed,
    and when the whole decision is under patient secrecy all its circumstances are removed
    (decision_id, decision_date, legal_basis and the flag stay). Works on a PaymentEvent and
    on an EnrichedPayment (its ``payment``). A copy, except that a decoded PaymentEvent
    (``Sealed``) with nothing to remove is itself the result (or the result's ``payment``)."""
    enriched = "payment" in payment_event and "payee_id" not in payment_event
    if not enriched:
        return _for_analysis(payment_event, allowed)
    result = {**payment_event, "payment": _for_analysis(payment_event["payment"], allowed)}
    for nested in ("verification",):
        if isinstance(result.get(nested), dict):
            result[nested] = dict(result[nested])
    return result
