"""Simulated payers publishing realistic payment lifecycles (demo, tests, benchmark).

Each payment runs PLANNED -> EXECUTED (most), PLANNED -> CANCELLED, and sometimes
EXECUTED -> RETURNED / RECALLED; a share of events is re-delivered (exact duplicates)
and a share is faulty (undecodable, bad check digit, payer mismatch, negative amount), so
the demo shows the dead-letter path too. Deterministic for a given seed.
"""
from __future__ import annotations

import datetime as dt
import random
import uuid
from dataclasses import dataclass, field
from typing import Iterator

from .identity import make_organisation, random_person
from .payers import Payer

# Real state agencies and a few large municipalities/regions (organisation numbers as
# registered; make_organisation recomputes the check digit so every one is valid).
STATE_AGENCIES = [
    ("202100552", "Försäkringskassan"), ("202100629", "Pensionsmyndigheten"),
    ("202100181", "Centrala studiestödsnämnden"), ("202100211", "Arbetsförmedlingen"),
]
UNEMPLOYMENT_FUNDS = [("802403346", "Akademikernas a-kassa"), ("802002419", "IF Metalls a-kassa"),
                      ("802007838", "Kommunals a-kassa")]
MUNICIPALITIES = [
    ("0180", "Stockholms kommun"), ("1480", "Göteborgs kommun"), ("1280", "Malmö kommun"),
    ("0380", "Uppsala kommun"), ("0580", "Linköpings kommun"), ("1880", "Örebro kommun"),
    ("1980", "Västerås kommun"), ("1281", "Lunds kommun"), ("2480", "Umeå kommun"),
    ("0680", "Jönköpings kommun"), ("0581", "Norrköpings kommun"), ("2281", "Sundsvalls kommun"),
]
REGIONS = [("01", "Region Stockholm"), ("14", "Västra Götalandsregionen"), ("12", "Region Skåne"),
           ("03", "Region Uppsala")]

# Monthly amount ranges in SEK per category (realistic orders of magnitude).
AMOUNTS_SEK = {
    "SOCIAL_ASSISTANCE": (3_000, 15_000), "PERSONAL_ASSISTANCE": (20_000, 120_000),
    "PATIENT_TRAVEL": (80, 2_500), "TRAVEL_EXPENSE": (100, 3_000), "ASSOCIATION_GRANT": (5_000, 250_000),
    "SCHOOL_PRINCIPAL_GRANT": (200_000, 4_000_000), "PRIVATE_PROVIDER_PAYMENT": (50_000, 2_000_000),
    "SICKNESS_BENEFIT": (6_000, 30_000), "PARENTAL_BENEFIT": (5_000, 30_000),
    "UNEMPLOYMENT_BENEFIT": (8_000, 28_000), "STUDENT_AID": (3_000, 13_000), "PENSION": (9_000, 32_000),
    "HOUSING_ALLOWANCE": (500, 5_000), "CHILD_ALLOWANCE": (1_250, 5_000), "ACTIVITY_COMPENSATION": (4_000, 15_000),
    "OTHER": (100, 10_000),
}
PERSON_CATEGORIES_BY_KIND = {
    "STATE_AGENCY": ["SICKNESS_BENEFIT", "PARENTAL_BENEFIT", "PENSION", "HOUSING_ALLOWANCE", "CHILD_ALLOWANCE",
                     "STUDENT_AID", "ACTIVITY_COMPENSATION"],
    "UNEMPLOYMENT_FUND": ["UNEMPLOYMENT_BENEFIT"],
    "MUNICIPALITY": ["SOCIAL_ASSISTANCE", "PERSONAL_ASSISTANCE", "TRAVEL_EXPENSE"],
    "REGION": ["PATIENT_TRAVEL", "TRAVEL_EXPENSE"],
}
CLEARING = ["8327", "6000", "5000", "3300", "1200", "9270", "9150", "7000"]


def make_payers(n: int, rng: random.Random) -> list[Payer]:
    """``n`` connected payers: agencies, funds, municipalities and regions, mixed scopes."""
    pool: list[Payer] = []
    for body, name in STATE_AGENCIES:
        pool.append(Payer(make_organisation(body), name, "STATE_AGENCY", "01", "PROPOSAL_1"))
    for body, name in UNEMPLOYMENT_FUNDS:
        pool.append(Payer(make_organisation(body), name, "UNEMPLOYMENT_FUND", "01", "PROPOSAL_1"))
    for i, (code, name) in enumerate(MUNICIPALITIES):
        scope = ("PROPOSAL_1", "PROPOSAL_1", "PROPOSAL_2", "PROPOSAL_3")[i % 4]
        pool.append(Payer(make_organisation(f"2120{int(code):05d}"[:9]), name, "MUNICIPALITY", code, scope))
    for i, (code, name) in enumerate(REGIONS):
        pool.append(Payer(make_organisation(f"2321{int(code):05d}"[:9]), name, "REGION", code,
                          ("PROPOSAL_1", "PROPOSAL_2")[i % 2]))
    # Interleave kinds so that small n still mixes agencies, funds, municipalities, regions.
    order = sorted(range(len(pool)), key=lambda i: (i % 4, i))
    chosen = [pool[i] for i in order][:n]
    while len(chosen) < n:  # more payers than the real pool: further municipalities
        k = len(chosen)
        chosen.append(Payer(make_organisation(f"2120{50000 + k:05d}"), f"Kommun {k}", "MUNICIPALITY",
                            f"{(k % 25) + 1:02d}80", "PROPOSAL_1"))
    return chosen


@dataclass
class Payee:
    person_id: str
    account: str
    representative_id: str | None = None


@dataclass
class Emission:
    """One record to publish: on ``payer``'s topic; ``event`` is None for a raw fault."""
    payer_id: str
    event: dict | None
    raw: bytes | None = None
    kind: str = "normal"  # normal | duplicate | fault:<REASON>
    key: bytes = b""  # the payee: a payer keys its records by payee (see client.PayerClient)

    @property
    def payment_key(self) -> bytes:  # the name older callers use
        return self.key


@dataclass
class Simulation:
    payers: list[Payer]
    payees: list[Payee]
    rng: random.Random
    start: dt.date = field(default_factory=lambda: dt.date.today().replace(day=1))
    duplicate_rate: float = 0.01
    fault_rate: float = 0.005
    #: the generated registers (registers.GeneratedRegisters) the payees were drawn from, to
    #: load where the events are processed; None: random payees that no register knows
    registers: object = None

    @classmethod
    def create(cls, n_payers: int, n_payees: int, seed: int, profiles=None, **kwargs) -> "Simulation":
        """``profiles`` (registers.PayeeProfile) make the payees those of generated registers,
        so that bank account verification gives real outcomes; else payees are random."""
        rng = random.Random(seed)
        payers = make_payers(n_payers, rng)
        if profiles:
            payees = [Payee(p.person_id, p.account, p.representative_id) for p in profiles]
            return cls(payers, payees, rng, **kwargs)
        payees = []
        for _ in range(n_payees):
            account = f"{rng.choice(CLEARING)}-{rng.randint(10**8, 10**10 - 1)}"
            rep = random_person(rng, 1950, 1990) if rng.random() < 0.03 else None
            payees.append(Payee(random_person(rng), account, rep))
        return cls(payers, payees, rng, **kwargs)

    @classmethod
    def with_registers(cls, n_payers: int, n_payees: int, seed: int, today: dt.date | None = None,
                       **kwargs) -> "Simulation":
        """A simulation whose payees are those of registers generated for its payers (kept
        as ``registers``, to load where the events are processed): verification, the
        population checks and the rules then give real outcomes. ``today``: the registers'
        reference day (default: today)."""
        from .registers import generate_registers  # registers are generated only here

        payers = make_payers(n_payers, random.Random(seed))  # the payers ``create`` makes
        registers = generate_registers(random.Random(seed), n_payees, payers, today=today)
        return cls.create(n_payers, n_payees, seed, profiles=registers.payees, registers=registers, **kwargs)

    def _payment(self, payer: Payer, payee: Payee, month: int) -> dict:
        category = self.rng.choice(PERSON_CATEGORIES_BY_KIND[payer.kind])
        low, high = AMOUNTS_SEK[category]
        first = (self.start + dt.timedelta(days=31 * month)).replace(day=1)
        last = (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
        return {
            "event_id": "", "payer_id": payer.payer_id, "payment_id": f"{payer.payer_id[-4:]}-{uuid.UUID(int=self.rng.getrandbits(128)).hex[:16]}",
            "event_type": "PLANNED", "payee_id": payee.person_id, "representative_id": payee.representative_id,
            "bank_account": payee.account, "amount_ore": self.rng.randint(low * 100, high * 100),
            "currency": "SEK", "category": category, "period_start": first, "period_end": last,
            "payout_date": first.replace(day=25), "decision": None,
        }

    def _lifecycle(self, payment: dict) -> list[str]:
        roll = self.rng.random()
        if roll < 0.05:
            return ["PLANNED", "CANCELLED"]
        steps = ["PLANNED", "EXECUTED"] if roll < 0.85 else ["PLANNED"] if roll < 0.93 else ["EXECUTED"]
        if "EXECUTED" in steps and self.rng.random() < 0.03:
            steps.append(self.rng.choice(["RETURNED", "RECALLED"]))
        return steps

    def emissions(self, n_events: int) -> Iterator[Emission]:
        """About ``n_events`` records, each payment's events in lifecycle order."""
        produced = 0
        open_payments: list[list[dict]] = []
        while produced < n_events:
            if not open_payments or (len(open_payments) < 64 and self.rng.random() < 0.6):
                payer = self.rng.choice(self.payers)
                payment = self._payment(payer, self.rng.choice(self.payees), self.rng.randint(0, 5))
                open_payments.append([dict(payment, event_type=t) for t in self._lifecycle(payment)])
            steps = self.rng.choice(open_payments)
            event = steps.pop(0)
            if not steps:
                open_payments.remove(steps)
            event["event_id"] = str(uuid.UUID(int=self.rng.getrandbits(128)))
            key = event["payee_id"].encode()
            if self.rng.random() < self.fault_rate:
                yield self._fault(event)
            else:
                yield Emission(event["payer_id"], event, key=key)
                if self.rng.random() < self.duplicate_rate:
                    produced += 1
                    yield Emission(event["payer_id"], event, kind="duplicate", key=key)
            produced += 1

    def _fault(self, event: dict) -> Emission:
        kind = self.rng.choice(["UNDECODABLE", "INVALID_PAYEE_ID", "PAYER_MISMATCH", "INVALID_AMOUNT"])
        if kind == "UNDECODABLE":
            return Emission(event["payer_id"], None, raw=b'{"payment": "json is not accepted"}', kind=f"fault:{kind}")
        bad = dict(event)
        if kind == "INVALID_PAYEE_ID":
            bad["payee_id"] = bad["payee_id"][:-1] + str((int(bad["payee_id"][-1]) + 1) % 10)
        elif kind == "INVALID_AMOUNT":
            bad["amount_ore"] = -bad["amount_ore"]
        else:  # published on the topic of another payer
            other = next(p for p in self.payers if p.payer_id != event["payer_id"]) if len(self.payers) > 1 else None
            if other is None:
                bad["amount_ore"], kind = 0, "INVALID_AMOUNT"
            else:
                return Emission(other.payer_id, bad, kind=f"fault:{kind}")
        return Emission(event["payer_id"], bad, kind=f"fault:{kind}")
