"""The payment category code list (PaymentCategory in schemas/payment_event.avsc).

For each category: the Swedish name shown to citizens, who may be the payee, whether the
benefit depends on residence in Sweden, and who pays it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    code: str
    swedish: str
    organisation_payee: bool  # payee is an organisation (not a person)
    residence_based: bool  # requires residence in Sweden (emigration ends entitlement)
    payer_kinds: tuple[str, ...]  # payer kinds that pay it


_MUNICIPAL = ("MUNICIPALITY",)
_REGION = ("REGION",)
_LOCAL = ("MUNICIPALITY", "REGION")
_STATE = ("STATE_AGENCY",)

CATEGORIES: dict[str, Category] = {
    c.code: c
    for c in [
        Category("SOCIAL_ASSISTANCE", "Ekonomiskt bistånd", False, True, _MUNICIPAL),
        Category("PERSONAL_ASSISTANCE", "Assistansersättning", False, True, _MUNICIPAL + _STATE),
        Category("PATIENT_TRAVEL", "Sjukresor", False, False, _REGION),
        Category("TRAVEL_EXPENSE", "Reseersättning", False, False, _LOCAL),
        Category("ASSOCIATION_GRANT", "Föreningsbidrag", True, False, _LOCAL),
        Category("SCHOOL_PRINCIPAL_GRANT", "Bidrag till huvudman enligt skollagen", True, False, _MUNICIPAL),
        Category("PRIVATE_PROVIDER_PAYMENT", "Ersättning till privat utförare", True, False, _LOCAL),
        Category("SICKNESS_BENEFIT", "Sjukpenning", False, True, _STATE),
        Category("PARENTAL_BENEFIT", "Föräldrapenning", False, True, _STATE),
        Category("UNEMPLOYMENT_BENEFIT", "Arbetslöshetsersättning", False, True, ("UNEMPLOYMENT_FUND",)),
        Category("STUDENT_AID", "Studiemedel", False, False, _STATE),
        Category("PENSION", "Pension", False, False, _STATE),
        Category("HOUSING_ALLOWANCE", "Bostadsbidrag", False, True, _STATE),
        Category("CHILD_ALLOWANCE", "Barnbidrag", False, True, _STATE),
        Category("ACTIVITY_COMPENSATION", "Aktivitetsstöd", False, True, _STATE),
        Category("OTHER", "Övrig utbetalning", False, False, _STATE + _LOCAL + ("UNEMPLOYMENT_FUND",)),
    ]
}

#: Categories only PROPOSAL_3 payers may register (payments to organisations as providers).
PROVIDER_CATEGORIES = frozenset({"SCHOOL_PRINCIPAL_GRANT", "PRIVATE_PROVIDER_PAYMENT"})


def swedish_name(code: str) -> str:
    category = CATEGORIES.get(code)
    return category.swedish if category else code
