"""Scope routing: which topics an accepted payment goes to. Pure; this is the law.

- PROPOSAL_1: ledger + citizen view + analysis.
- PROPOSAL_2: analysis only; never registered, never shown to the citizen.
- PROPOSAL_3: ledger + citizen view; never analysis.
Every accepted payment is enriched (enriched topic). On the analysis side, decision data
under patient secrecy is removed unless ``PATIENT_SECRECY_IN_ANALYSIS`` is on. Enrichment
already keeps municipality and address-like data away from protected persons.
"""
from __future__ import annotations

from .enrichment import shared_for_analysis


#: One destination of a payment: (destination, key, schema, record), where destination is
#: "enriched", "citizen" or "analysis", key the record's key (a payee or viewer id), schema
#: the record's schema and record the record itself. A plain tuple: built ~4 times per
#: payment and unpacked at once; a class of four slots cost ~1,800 instructions to build
#: and seven attribute look-ups to read.
Route = tuple[str, str, str, dict]


def routes(scope: str, enriched: dict, entry: dict | None, patient_secrecy_in_analysis: bool) -> list[Route]:
    """Where one accepted payment goes. ``entry`` is its ledger entry (None when not registered)."""
    payee = enriched["payment"]["payee_id"]
    shared = shared_for_analysis(enriched, patient_secrecy_in_analysis)  # one object: encoded once
    out = [("enriched", payee, "EnrichedPayment", shared)]
    if scope in ("PROPOSAL_1", "PROPOSAL_3") and entry is not None:
        out.append(("citizen", payee, "LedgerEntry", entry))
        representative = entry.get("representative_id")
        if representative:
            out.append(("citizen", representative, "LedgerEntry", entry))
    if scope in ("PROPOSAL_1", "PROPOSAL_2"):
        out.append(("analysis", payee, "EnrichedPayment", shared))
    return out
