"""Scope routing: which topics an accepted payment goes to. Pure; this is the law.

- PROPOSAL_1: ledger + citizen view + analysis.
- PROPOSAL_2: analysis only; never registered, never shown to the citizen.
- PROPOSAL_3: ledger + citizen view; never analysis.
Every accepted payment is enriched (enriched topic). On the analysis side, decision data
under patient secrecy is removed unless ``PATIENT_SECRECY_IN_ANALYSIS`` is on. Enrichment
already keeps municipality and address-like data away from protected persons.
"""
from __future__ import annotations

from .enrichment import strip_patient_secrecy


class Route:
    """One destination of a payment. Built ~4 times per payment: a plain class, whose
    ``__init__`` is compiled with the module (a NamedTuple's ``__new__`` and a dataclass's
    ``__init__`` are generated, interpreted Python)."""

    __slots__ = ("destination", "key", "schema", "record")

    def __init__(self, destination: str, key: str, schema: str, record: dict):
        self.destination = destination  # "enriched" | "citizen" | "analysis"
        self.key = key
        self.schema = schema
        self.record = record

    def __repr__(self) -> str:
        return f"Route({self.destination!r}, {self.key!r}, {self.schema!r}, ...)"


def routes(scope: str, enriched: dict, entry: dict | None, patient_secrecy_in_analysis: bool) -> list[Route]:
    """Where one accepted payment goes. ``entry`` is its ledger entry (None when not registered)."""
    payee = enriched["payment"]["payee_id"]
    shared = strip_patient_secrecy(enriched, patient_secrecy_in_analysis)  # one object: encoded once
    out = [Route("enriched", payee, "EnrichedPayment", shared)]
    if scope in ("PROPOSAL_1", "PROPOSAL_3") and entry is not None:
        viewers = [payee] + ([entry["representative_id"]] if entry.get("representative_id") else [])
        out += [Route("citizen", viewer, "LedgerEntry", entry) for viewer in viewers]
    if scope in ("PROPOSAL_1", "PROPOSAL_2"):
        out.append(Route("analysis", payee, "EnrichedPayment", shared))
    return out
