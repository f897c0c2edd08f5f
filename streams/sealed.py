"""Sealed records: state items that are never changed in place, so they can keep their
own Avro encoding.

A payee's account, rule state and citizen view go to the changelog whole, at every
commit that changed them, and they grow with the payee's history. With ~50 payments a
payee, encoding them was ~40 % of the pipeline's work (``benchmarks/engine_stages.py
--payees 300``), although one event changes one item of each. So the items (a payment's
state and a balance in the account, a tracked payment in a rule state, an item of a
citizen view) are ``Sealed`` dicts:

* a change makes a new item (``Sealed({**old, "status": new})``); changing one in place
  raises ``TypeError``, so no stale encoding can ever be written;
* the compiled writer keeps the bytes it wrote an item as (``memo``, with the record's
  name) and appends them again at the next commit; the compiled reader gives an item the
  bytes it was read from (after a restore, or a read from RocksDB).

The payment event a payer sent is sealed too (with its decision and circumstances): the
ledger stage writes it again inside every enriched and analysis record, and a decoded
event that nothing changed (no circumstance under patient secrecy to remove, see
``enrichment.strip_patient_secrecy``) is written from the bytes it was read from.

Only the records named in ``SEALED_RECORDS`` are read as ``Sealed`` and written from
their memo; anywhere else a ``Sealed`` is written like a dict. A list inside a sealed
record (a decision's circumstances) is a plain list: code that must change one works on a
copy (``enrichment._copy_event``).
"""
from __future__ import annotations

#: the state items that the stages replace instead of changing (streams/account.py,
#: streams/rules.py, streams/citizen_view.py), and the received payment event
SEALED_RECORDS = frozenset({
    "se.tkonto.state.PaymentState", "se.tkonto.state.Balance",
    "se.tkonto.state.TrackedPayment", "se.tkonto.state.CitizenItem",
    "se.tkonto.PaymentEvent", "se.tkonto.Decision", "se.tkonto.Circumstance",
})


def _refuse(self, *args, **kwargs):
    raise TypeError("a Sealed record is never changed in place (its encoding is kept): "
                    "make a new one, e.g. Sealed({**old, 'status': new})")


class Sealed(dict):
    """A dict that refuses changes and remembers its Avro encoding (``memo``: the record's
    full name and the bytes; unset until it is first written or read, see ``memo_of``).

    No ``__getattr__`` for an unset memo: a class with one has every attribute looked up
    through it, which made ``.get`` and ``.items`` on a Sealed three times slower."""

    __slots__ = ("memo",)  # no __init__ of its own: a Sealed is built at dict's speed

    __setitem__ = __delitem__ = __ior__ = update = setdefault = pop = popitem = clear = _refuse

    def __reduce__(self):  # copy, deepcopy and pickle: a new Sealed of the same items, no memo
        return Sealed, (dict(self),)

    def __repr__(self) -> str:
        return f"Sealed({dict.__repr__(self)})"


def memo_of(record: dict) -> tuple[str, bytes] | None:
    """The record's kept encoding, or None (a plain dict, or a Sealed not yet written)."""
    return getattr(record, "memo", None)
