"""The fraud scenario: a realistic population with every selection rule's pattern injected,
ground-truth labels, near-miss negatives, and precision/recall scoring. Pure, no Kafka.

``fraud_scenario(seed, n_payees)`` builds:

(a) the reference registers (``registers.generate_registers``: payers, bank accounts,
    population), extended with the people and accounts the patterns need;
(b) the payment events in publication order: monthly background traffic of every payee
    (pensions, sickness, unemployment, parental and student benefits, social assistance,
    patient travel, association grants) with realistic lifecycles - PLANNED ten days
    before the payout, EXECUTED on the day, some CANCELLED or RETURNED and re-issued,
    some RECALLED, some events redelivered - which raises no hit by construction;
(c) injected patterns, each with the key a correct hit names (``labels``), and near
    misses that a correct rule must not name (``near_misses``).

Hit keys (``hit_key``): the single payment ``(payer_id, payment_id)`` for ACCOUNT_NOT_HELD,
PAID_AFTER_DEATH, PAID_AFTER_EMIGRATION and ACCOUNT_CHANGE_BEFORE_PAYOUT; the bank account
for SHARED_ACCOUNT; ``(payee_id, window)`` for MULTI_MUNICIPALITY_AID (the month),
OVERLAPPING_BENEFITS (the overlap) and DUPLICATE_PAYMENT (the period).

``replay(scenario)`` runs the events through enrichment and the rules exactly as the
pipeline does (PROPOSAL_1/2 payers only, patient-secrecy data removed), ``score`` gives
per-rule precision and recall, ``format_scores`` the table.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import random
import uuid
from dataclasses import dataclass, field

from . import swedish
from .categories import CATEGORIES
from .enrichment import enrich, name_similarity, strip_patient_secrecy
from .identity import birth_date, make_organisation, make_person, random_person
from .payers import Payer
from .registers import BankAccount, GeneratedRegisters, Holder, Person, _name_variant, generate_registers
from .rules import RULE_IDS, Thresholds, evaluate_account, evaluate_payee
from .simulate import AMOUNTS_SEK

PAYMENT_KEY_RULES = ("ACCOUNT_NOT_HELD", "PAID_AFTER_DEATH", "PAID_AFTER_EMIGRATION", "ACCOUNT_CHANGE_BEFORE_PAYOUT")
WINDOW_KEY_RULES = ("MULTI_MUNICIPALITY_AID", "OVERLAPPING_BENEFITS", "DUPLICATE_PAYMENT")


def _payers() -> dict[str, Payer]:
    """The scenario's connected payers, by role."""
    def org(body: str) -> str:
        return make_organisation(body)

    return {
        "FK": Payer(org("202100552"), "Försäkringskassan", "STATE_AGENCY", "01", "PROPOSAL_1"),
        "PM": Payer(org("202100629"), "Pensionsmyndigheten", "STATE_AGENCY", "01", "PROPOSAL_1"),
        "CSN": Payer(org("202100181"), "Centrala studiestödsnämnden", "STATE_AGENCY", "01", "PROPOSAL_1"),
        "AF": Payer(org("202100211"), "Arbetsförmedlingen", "STATE_AGENCY", "01", "PROPOSAL_1"),
        "FUND_METALL": Payer(org("802002419"), "IF Metalls a-kassa", "UNEMPLOYMENT_FUND", "01", "PROPOSAL_1"),
        "FUND_KOMMUNAL": Payer(org("802007838"), "Kommunals a-kassa", "UNEMPLOYMENT_FUND", "01", "PROPOSAL_2"),
        "STOCKHOLM": Payer(org("212000014"), "Stockholms kommun", "MUNICIPALITY", "0180", "PROPOSAL_1"),
        "GOTEBORG": Payer(org("212000135"), "Göteborgs kommun", "MUNICIPALITY", "1480", "PROPOSAL_1"),
        "UPPSALA": Payer(org("212000300"), "Uppsala kommun", "MUNICIPALITY", "0380", "PROPOSAL_2"),
        "MALMO": Payer(org("212000112"), "Malmö kommun", "MUNICIPALITY", "1280", "PROPOSAL_1"),
        "LINKOPING": Payer(org("212000195"), "Linköpings kommun", "MUNICIPALITY", "0580", "PROPOSAL_2"),
        "OREBRO_P3": Payer(org("212000194"), "Örebro kommun", "MUNICIPALITY", "1880", "PROPOSAL_3"),
        "REGION_STHLM": Payer(org("232100016"), "Region Stockholm", "REGION", "01", "PROPOSAL_1"),
        "REGION_SKANE": Payer(org("232100025"), "Region Skåne", "REGION", "12", "PROPOSAL_2"),
    }


ANALYSED_MUNICIPALITIES = ("STOCKHOLM", "GOTEBORG", "UPPSALA", "MALMO", "LINKOPING")


@dataclass
class Injection:
    rule_id: str
    key: tuple | str
    positive: bool
    what: str


@dataclass
class Scenario:
    seed: int
    start: dt.date
    months: int
    thresholds: Thresholds
    registers: GeneratedRegisters
    events: list[dict]  # PaymentEvent records in publication order (redeliveries included)
    labels: dict[str, set] = field(default_factory=dict)
    near_misses: dict[str, set] = field(default_factory=dict)
    injections: list[Injection] = field(default_factory=list)

    @property
    def payers(self) -> dict[str, Payer]:
        return {p.payer_id: p for p in self.registers.payers}

    @property
    def accounts(self) -> dict[str, BankAccount]:
        return {a.account: a for a in self.registers.accounts}

    @property
    def people(self) -> dict[str, Person]:
        return {p.person_id: p for p in self.registers.people}


def _month(start: dt.date, index: int) -> tuple[dt.date, dt.date]:
    year, month = divmod(start.month - 1 + index, 12)
    first = dt.date(start.year + year, month + 1, 1)
    last = (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    return first, last


def _window(first: dt.date, last: dt.date) -> str:
    return f"{first.isoformat()}..{last.isoformat()}"


@dataclass
class _Stream:
    payer: Payer
    category: str
    months: list[int]
    amount_ore: int
    day: int


class _Builder:
    def __init__(self, seed: int, n_payees: int, start: dt.date, months: int, th: Thresholds):
        self.rng = random.Random(seed)
        self.start, self.months, self.th = start, months, th
        self.end = _month(start, months - 1)[1]
        self.payer = _payers()
        self.registers = generate_registers(self.rng, n_payees, list(self.payer.values()), today=self.end)
        from faker import Faker
        self.fake = Faker("sv_SE")
        self.fake.seed_instance(seed)
        self.people = {p.person_id: p for p in self.registers.people}
        self.accounts = {a.account: a for a in self.registers.accounts}
        self.used_ids = set(self.people) | {h.person_id for a in self.registers.accounts for h in a.holders}
        self.queue: list[tuple[dt.datetime, int, dict]] = []
        self.labels: dict[str, set] = {r: set() for r in RULE_IDS}
        self.near: dict[str, set] = {r: set() for r in RULE_IDS}
        self.injections: list[Injection] = []
        self.counter = 0
        self.long_ago = start - dt.timedelta(days=600)

    # -- people and accounts ---------------------------------------------------------------
    def new_person(self, oldest=1950, youngest=2000, *, coordination=False, name=None, **kw) -> Person:
        while True:
            pid = random_person(self.rng, oldest, youngest)
            if coordination:
                pid = make_person(birth_date(pid), int(pid[8:11]), coordination=True)
            if pid not in self.used_ids:
                break
        self.used_ids.add(pid)
        if name is None:
            female = int(pid[10]) % 2 == 0
            name = f"{self.fake.first_name_female() if female else self.fake.first_name_male()} {self.fake.last_name()}"
        person = Person(pid, name, municipality_code=kw.pop("municipality_code", "0180"), **kw)
        self.people[pid] = person
        return person

    def stranger(self, *payees: Person) -> Person:
        """A person whose name is nothing like the payees' (a money mule)."""
        while True:
            mule = self.new_person(1960, 2004)
            if all(name_similarity(p.name, mule.name) < 0.6 for p in payees):
                return mule
            del self.people[mule.person_id]

    def new_account(self, holders: list[Holder], opened: dt.date, registered: bool = True) -> str:
        while True:
            number = swedish.make_bank_account(self.rng)
            if number not in self.accounts:
                break
        account = BankAccount(number, swedish.bank_name(number) or "Bank", tuple(holders), opened)
        self.accounts[number] = account
        if not registered:  # known to nobody: verification says NOT_POSSIBLE
            self.accounts[number] = None
        return number

    def replace_person(self, person: Person, **changes) -> Person:
        updated = dataclasses.replace(person, **changes)
        self.people[person.person_id] = updated
        return updated

    # -- payments --------------------------------------------------------------------------
    def amount(self, category: str) -> int:
        low, high = AMOUNTS_SEK[category]
        return self.rng.randint(low, high) * 100

    def pay_day(self, payer: Payer) -> int:
        if payer.kind == "STATE_AGENCY":
            return 19 if payer.name.startswith("Pensions") else 25
        if payer.kind == "UNEMPLOYMENT_FUND":
            return 20
        return self.rng.randint(1, 28)

    def stream(self, payer_key: str, category: str, months, amount=None) -> _Stream:
        payer = self.payer[payer_key]
        return _Stream(payer, category, list(months), amount or self.amount(category), self.pay_day(payer))

    def _publish(self, when: dt.datetime, event: dict) -> None:
        self.counter += 1
        self.queue.append((when, self.counter, event))

    def pay(self, payer: Payer, payee_id: str, category: str, first: dt.date, last: dt.date, payout: dt.date,
            amount: int, account: str, representative: str | None = None, lifecycle: str = "plain",
            not_before: dt.datetime | None = None) -> dict:
        """Emit the events of one payment; returns its PLANNED/EXECUTED record."""
        payment_id = f"{payer.payer_id[-4:]}-{uuid.UUID(int=self.rng.getrandbits(128)).hex[:16]}"
        decision = None
        if category == "SICKNESS_BENEFIT":
            decision = {"decision_id": f"D-{payment_id}", "decision_date": first - dt.timedelta(days=5),
                        "legal_basis": "SFB 27 kap.", "patient_secrecy": False,
                        "circumstances": [{"name": "diagnosis_code", "value": "F32.1", "patient_secrecy": True},
                                          {"name": "extent", "value": "1/1", "patient_secrecy": False}]}
        base = {"payer_id": payer.payer_id, "payment_id": payment_id, "payee_id": payee_id,
                "representative_id": representative, "bank_account": account, "amount_ore": amount,
                "currency": "SEK", "category": category, "period_start": first, "period_end": last,
                "payout_date": payout, "decision": decision}
        at = dt.datetime.combine(payout, dt.time(5), tzinfo=dt.timezone.utc)
        planned_at = at - dt.timedelta(days=10) + dt.timedelta(minutes=self.rng.randint(0, 600))
        if not_before is not None and planned_at <= not_before:
            planned_at = not_before + dt.timedelta(minutes=self.rng.randint(1, 600))
        executed_at = max(at + dt.timedelta(minutes=self.rng.randint(0, 120)), planned_at + dt.timedelta(minutes=1))
        steps = {"plain": [("PLANNED", planned_at), ("EXECUTED", executed_at)],
                 "planned_only": [("PLANNED", planned_at)],
                 "executed_only": [("EXECUTED", executed_at)],
                 "cancelled": [("PLANNED", planned_at), ("CANCELLED", executed_at - dt.timedelta(days=3))],
                 "returned": [("PLANNED", planned_at), ("EXECUTED", executed_at),
                              ("RETURNED", executed_at + dt.timedelta(days=3))],
                 "recalled": [("PLANNED", planned_at), ("EXECUTED", executed_at),
                              ("RECALLED", executed_at + dt.timedelta(days=20))]}[lifecycle]
        if steps[-1][0] == "CANCELLED" and steps[-1][1] <= planned_at:
            steps[-1] = ("CANCELLED", planned_at + dt.timedelta(hours=1))
        for event_type, when in steps:
            event = dict(base, event_type=event_type, event_id=str(uuid.UUID(int=self.rng.getrandbits(128))),
                         event_time=when)
            self._publish(when, event)
            if self.rng.random() < 0.01:  # redelivered: the same event again, a little later
                self._publish(when + dt.timedelta(minutes=self.rng.randint(1, 240)), dict(event))
        base["_last_at"] = steps[-1][1]
        return base

    def run_stream(self, person: Person, s: _Stream, account: str, representative: str | None = None,
                   *, background: bool = False, accounts: dict | None = None, amounts: dict | None = None,
                   stop_after_payout: dt.date | None = None) -> list[dict]:
        """Monthly payments of one stream. Background streams get random lifecycles and
        stop as a careful payer would: no payout after the payee's death, no
        residence-based period starting after emigration."""
        made = []
        residence = CATEGORIES[s.category].residence_based
        for m in s.months:
            first, last = _month(self.start, m)
            payout = first.replace(day=min(s.day, last.day))
            if person.deceased_date and (background or stop_after_payout) and payout > person.deceased_date:
                continue
            if stop_after_payout and payout > stop_after_payout:
                continue
            if background and residence and person.emigration_date and first > person.emigration_date:
                continue
            acct = (accounts or {}).get(m, account)
            amount = (amounts or {}).get(m, s.amount_ore)
            lifecycle = "plain"
            if background:
                roll = self.rng.random()
                lifecycle = ("cancelled" if roll < 0.04 else "returned" if roll < 0.06 else
                             "recalled" if roll < 0.07 else "executed_only" if roll < 0.12 else
                             "planned_only" if roll < 0.15 and m == self.months - 1 else "plain")
            p = self.pay(s.payer, person.person_id, s.category, first, last, payout, amount, acct, representative,
                         lifecycle)
            made.append(p)
            if lifecycle in ("cancelled", "returned") and self.rng.random() < 0.6:  # re-issued under a new id
                again = max(payout, p["_last_at"].date() + dt.timedelta(days=2))
                if not (person.deceased_date and again > person.deceased_date):
                    r = self.pay(s.payer, person.person_id, s.category, first, last, again, amount, acct,
                                 representative, "plain", not_before=p["_last_at"])
                    self.near["DUPLICATE_PAYMENT"].add((person.person_id, _window(first, last)))
                    made.append(r)
        return made

    def label(self, rule: str, key, what: str) -> None:
        self.labels[rule].add(key)
        self.injections.append(Injection(rule, key, True, what))

    def miss(self, rule: str, key, what: str) -> None:
        self.near[rule].add(key)
        self.injections.append(Injection(rule, key, False, what))

    def events(self) -> list[dict]:
        return [e for _, _, e in sorted(self.queue, key=lambda item: (item[0], item[1]))]


def _key(p: dict) -> tuple[str, str]:
    return (p["payer_id"], p["payment_id"])


def fraud_scenario(seed: int = 7, n_payees: int = 400, *, start: dt.date = dt.date(2026, 7, 1), months: int = 6,
                   per_pattern: int | None = None, thresholds: Thresholds | None = None) -> Scenario:
    """A population of ``n_payees`` with background traffic over ``months`` months from
    ``start`` and ``per_pattern`` injected cases of each pattern variant (default
    max(2, n_payees // 100)). Deterministic for a given seed."""
    th = thresholds or Thresholds()
    b = _Builder(seed, n_payees, start, months, th)
    rng = b.rng
    per = per_pattern or max(2, n_payees // 100)
    m_last = months - 1
    profiles = {p.person_id: p for p in b.registers.payees}

    # Payees the patterns may use: own or joint account held for years, alive, resident.
    pool = [p for p in b.registers.payees
            if p.scenario in ("own", "joint") and not b.people[p.person_id].deceased_date
            and not b.people[p.person_id].emigration_date
            and b.accounts[p.account].opened < start - dt.timedelta(days=400)]
    rng.shuffle(pool)
    injected: set[str] = set()

    def take() -> tuple[Person, str]:
        if not pool:
            raise ValueError(f"n_payees={n_payees} is too small for {per} cases per pattern; use at least 150")
        profile = pool.pop()
        injected.add(profile.person_id)
        return b.people[profile.person_id], profile.account

    def mid() -> int:
        return rng.randint(1, m_last - 1)

    th_days = th.account_change_days

    # -- ACCOUNT_NOT_HELD ------------------------------------------------------------------
    for _ in range(per):  # one month paid to a stranger's account: NO_MATCH
        person, own = take()
        mule = b.stranger(person)
        acct = b.new_account([Holder(mule.person_id, mule.name, "HOLDER")], b.long_ago)
        m = mid()
        for p in b.run_stream(person, b.stream("FK", "SICKNESS_BENEFIT", range(months)), own, accounts={m: acct}):
            if p["bank_account"] == acct:
                b.label("ACCOUNT_NOT_HELD", _key(p), "one sickness payment to a stranger's account")
    for near in (False, True):  # CLOSE_MATCH above the threshold, and exactly at it
        for _ in range(per):
            person, own = take()
            alias = b.new_person(coordination=True, name=_name_variant(person.name))
            acct = b.new_account([Holder(alias.person_id, alias.name, "HOLDER")], b.long_ago)
            m = mid()
            big = th.close_match_above_ore if near else th.close_match_above_ore + rng.randint(1, 1_500_000)
            for p in b.run_stream(person, b.stream("FK", "SICKNESS_BENEFIT", range(months), 900_000), own,
                                  accounts={m: acct}, amounts={m: big}):
                if p["bank_account"] == acct:
                    if near:
                        b.miss("ACCOUNT_NOT_HELD", _key(p), "CLOSE_MATCH at exactly the threshold")
                    else:
                        b.label("ACCOUNT_NOT_HELD", _key(p), "CLOSE_MATCH above the threshold")

    # -- SHARED_ACCOUNT --------------------------------------------------------------------
    n = th.shared_min_payees
    payer_cycle = [("FK", "SICKNESS_BENEFIT"), ("FUND_METALL", "UNEMPLOYMENT_BENEFIT"), ("PM", "PENSION"),
                   ("FUND_KOMMUNAL", "UNEMPLOYMENT_BENEFIT"), ("FK", "HOUSING_ALLOWANCE")]
    for variant, size in (("mule", n + 1), ("mule_small", n - 1), ("unknown", n)):
        for _ in range(per):
            people = [take() for _ in range(size)]
            if variant == "unknown":
                acct = b.new_account([], b.long_ago, registered=False)
            else:
                mule = b.stranger(*(p for p, _ in people))
                acct = b.new_account([Holder(mule.person_id, mule.name, "HOLDER")], b.long_ago)
            m0 = mid()
            for i, (person, own) in enumerate(people):
                payer_key, category = payer_cycle[i % len(payer_cycle)]
                moved = {m: acct for m in range(m0, months)}
                for p in b.run_stream(person, b.stream(payer_key, category, range(months)), own, accounts=moved):
                    if p["bank_account"] == acct and variant != "unknown":
                        b.label("ACCOUNT_NOT_HELD", _key(p), "paid to a mule account")
            if variant == "mule":
                b.label("SHARED_ACCOUNT", acct, f"{size} payees on a stranger's account from month {m0}")
            elif variant == "unknown":
                b.label("SHARED_ACCOUNT", acct, f"{size} payees on an account unknown to the register")
            else:
                b.miss("SHARED_ACCOUNT", acct, f"{size} payees on one account (threshold {n})")
    for _ in range(per):  # n payees, one payment each, more than the window apart
        acct = b.new_account([], b.long_ago, registered=False)
        for i in range(n):
            person, own = take()
            m_once = min(i * 2, m_last)
            b.run_stream(person, b.stream("FK", "HOUSING_ALLOWANCE", range(months)), own, accounts={m_once: acct})
        b.miss("SHARED_ACCOUNT", acct, f"{n} payees, one payment each two months apart")
    for _ in range(per):  # a trustee's own account receiving n + 2 wards' money (representative excluded)
        trustee = b.new_person(1950, 1985)
        acct = b.new_account([Holder(trustee.person_id, trustee.name, "HOLDER")], b.long_ago)
        for i in range(n + 2):
            ward = b.new_person(1930, 1950)
            payer_key, category = (("PM", "PENSION"), ("FK", "HOUSING_ALLOWANCE"))[i % 2]
            b.run_stream(ward, b.stream(payer_key, category, range(months)), acct, trustee.person_id)
        b.miss("SHARED_ACCOUNT", acct, f"trustee's account with {n + 2} wards")

    # -- PAID_AFTER_DEATH ------------------------------------------------------------------
    for _ in range(per):
        person, own = take()
        m = mid()
        died = _month(start, m)[0] + dt.timedelta(days=9)
        person = b.replace_person(person, deceased_date=died)
        for p in b.run_stream(person, b.stream("PM", "PENSION", range(months)), own):
            if p["payout_date"] > died:
                b.label("PAID_AFTER_DEATH", _key(p), "pension continues after death")
    for gap in (1, 0):  # the last payout the day before death / on the day of death, then none
        for _ in range(per):
            person, own = take()
            s = b.stream("FK", "SICKNESS_BENEFIT", range(months))
            m = mid()
            payout = _month(start, m)[0].replace(day=s.day)
            person = b.replace_person(person, deceased_date=payout + dt.timedelta(days=gap))
            made = b.run_stream(person, s, own, stop_after_payout=payout)
            b.miss("PAID_AFTER_DEATH", _key(made[-1]), f"payout {gap} day(s) before death, none after")

    # -- PAID_AFTER_EMIGRATION -------------------------------------------------------------
    for _ in range(per):
        person, own = take()
        m = mid()
        left = _month(start, m)[0] + dt.timedelta(days=14)
        person = b.replace_person(person, emigration_date=left)
        for p in b.run_stream(person, b.stream("FK", "SICKNESS_BENEFIT", range(months)), own):
            if p["period_start"] > left:
                b.label("PAID_AFTER_EMIGRATION", _key(p), "sickness benefit continues after emigration")
    for _ in range(per):  # pension is not residence-based
        person, own = take()
        left = _month(start, mid())[0] + dt.timedelta(days=3)
        person = b.replace_person(person, emigration_date=left)
        for p in b.run_stream(person, b.stream("PM", "PENSION", range(months)), own):
            if p["period_start"] > left:
                b.miss("PAID_AFTER_EMIGRATION", _key(p), "pension after emigration (not residence-based)")
    for _ in range(per):  # last payment for the month of emigration, paid after it
        person, own = take()
        m = mid()
        first, last = _month(start, m)
        left = first + dt.timedelta(days=19)
        person = b.replace_person(person, emigration_date=left)
        s = b.stream("FK", "HOUSING_ALLOWANCE", range(m + 1))
        s.day = 25
        made = b.run_stream(person, s, own)
        b.miss("PAID_AFTER_EMIGRATION", _key(made[-1]), "period began before emigration, paid after it")

    # -- MULTI_MUNICIPALITY_AID ------------------------------------------------------------
    def two_municipalities():
        a, c = rng.sample(ANALYSED_MUNICIPALITIES, 2)
        return a, c

    for _ in range(per):
        person, own = take()
        home, other = two_municipalities()
        m = rng.randint(1, m_last - 1)
        b.run_stream(person, b.stream(home, "SOCIAL_ASSISTANCE", range(months)), own)
        b.run_stream(person, b.stream(other, "SOCIAL_ASSISTANCE", (m, m + 1)), own)
        for k in (m, m + 1):
            b.label("MULTI_MUNICIPALITY_AID", (person.person_id, _month(start, k)[0].strftime("%Y-%m")),
                    "social assistance from two municipalities for the same month")
    for _ in range(per):  # moved: one municipality until month k, the other from it
        person, own = take()
        home, other = two_municipalities()
        k = mid()
        b.run_stream(person, b.stream(home, "SOCIAL_ASSISTANCE", range(k)), own)
        b.run_stream(person, b.stream(other, "SOCIAL_ASSISTANCE", range(k, months)), own)
        for j in (k - 1, k):
            b.miss("MULTI_MUNICIPALITY_AID", (person.person_id, _month(start, j)[0].strftime("%Y-%m")),
                   "moved: two municipalities in different months")
    for _ in range(per):  # the second municipality is connected under PROPOSAL_3: not analysed
        person, own = take()
        m = mid()
        b.run_stream(person, b.stream(rng.choice(ANALYSED_MUNICIPALITIES), "SOCIAL_ASSISTANCE", range(months)), own)
        b.run_stream(person, b.stream("OREBRO_P3", "SOCIAL_ASSISTANCE", (m,)), own)
        b.miss("MULTI_MUNICIPALITY_AID", (person.person_id, _month(start, m)[0].strftime("%Y-%m")),
               "second municipality is PROPOSAL_3 (never analysed)")
    for _ in range(per):  # the same municipality pays a supplement for a month
        person, own = take()
        home = rng.choice(ANALYSED_MUNICIPALITIES)
        m = mid()
        s = b.stream(home, "SOCIAL_ASSISTANCE", range(months), 800_000)
        b.run_stream(person, s, own)
        b.run_stream(person, _Stream(s.payer, s.category, [m], 150_000, min(s.day + 5, 28)), own)
        month = _month(start, m)
        b.miss("MULTI_MUNICIPALITY_AID", (person.person_id, month[0].strftime("%Y-%m")),
               "supplement from the same municipality")
        b.miss("DUPLICATE_PAYMENT", (person.person_id, _window(*month)), "supplement with another amount")

    # -- OVERLAPPING_BENEFITS --------------------------------------------------------------
    pairs = sorted(tuple(sorted(p)) for p in th.incompatible)
    payer_of = {"SICKNESS_BENEFIT": "FK", "UNEMPLOYMENT_BENEFIT": "FUND_METALL", "ACTIVITY_COMPENSATION": "AF",
                "PARENTAL_BENEFIT": "FK", "HOUSING_ALLOWANCE": "FK", "CHILD_ALLOWANCE": "FK", "PENSION": "PM",
                "STUDENT_AID": "CSN", "SOCIAL_ASSISTANCE": "STOCKHOLM", "PATIENT_TRAVEL": "REGION_STHLM"}
    for i in range(per):
        a, c = pairs[i % len(pairs)]
        person, own = take()
        m = rng.randint(1, m_last - 1)
        b.run_stream(person, b.stream(payer_of.get(a, "FK"), a, range(months)), own)
        b.run_stream(person, b.stream(payer_of.get(c, "FK"), c, (m, m + 1)), own)
        for k in (m, m + 1):
            b.label("OVERLAPPING_BENEFITS", (person.person_id, _window(*_month(start, k))),
                    f"{a} and {c} for the same month")
    for i in range(per):  # one after the other, no overlap
        a, c = pairs[i % len(pairs)]
        person, own = take()
        k = mid()
        b.run_stream(person, b.stream(payer_of.get(a, "FK"), a, range(k)), own)
        b.run_stream(person, b.stream(payer_of.get(c, "FK"), c, range(k, months)), own)
        for j in (k - 1, k):
            b.miss("OVERLAPPING_BENEFITS", (person.person_id, _window(*_month(start, j))),
                   f"{a} then {c}, adjacent periods")
    for _ in range(per):  # a compatible pair for the same months
        person, own = take()
        b.run_stream(person, b.stream("FK", "SICKNESS_BENEFIT", range(months)), own)
        b.run_stream(person, b.stream("FK", "HOUSING_ALLOWANCE", range(months)), own)
        b.miss("OVERLAPPING_BENEFITS", (person.person_id, _window(*_month(start, 0))),
               "sickness benefit with housing allowance (compatible)")

    # -- DUPLICATE_PAYMENT -----------------------------------------------------------------
    for _ in range(per):
        person, own = take()
        s = b.stream(rng.choice(["FK", "STOCKHOLM", "FUND_KOMMUNAL"]), "SICKNESS_BENEFIT", range(months))
        if s.payer.kind == "MUNICIPALITY":
            s.category = "SOCIAL_ASSISTANCE"
        elif s.payer.kind == "UNEMPLOYMENT_FUND":
            s.category = "UNEMPLOYMENT_BENEFIT"
        made = b.run_stream(person, s, own)
        original = made[mid()]
        again = original["payout_date"] + dt.timedelta(days=2)
        b.pay(s.payer, person.person_id, s.category, original["period_start"], original["period_end"], again,
              original["amount_ore"], own, not_before=original["_last_at"])
        b.label("DUPLICATE_PAYMENT", (person.person_id, _window(original["period_start"], original["period_end"])),
                "the same month paid twice under another payment id")
    for lifecycle in ("returned", "cancelled"):  # withdrawn, then re-issued: not a duplicate
        for _ in range(per):
            person, own = take()
            s = b.stream("FK", "PARENTAL_BENEFIT", range(months))
            m = mid()
            first, last = _month(start, m)
            payout = first.replace(day=s.day)
            b.run_stream(person, _Stream(s.payer, s.category, [k for k in range(months) if k != m], s.amount_ore,
                                         s.day), own)
            p = b.pay(s.payer, person.person_id, s.category, first, last, payout, s.amount_ore, own, None, lifecycle)
            b.pay(s.payer, person.person_id, s.category, first, last,
                  max(payout, p["_last_at"].date() + dt.timedelta(days=2)), s.amount_ore, own,
                  not_before=p["_last_at"])
            b.miss("DUPLICATE_PAYMENT", (person.person_id, _window(first, last)), f"{lifecycle}, then re-issued")

    # -- ACCOUNT_CHANGE_BEFORE_PAYOUT ------------------------------------------------------
    def account_change(opened_before: int, amount: int, new_account: bool = True):
        person, own = take()
        s = b.stream("FK", "SICKNESS_BENEFIT", range(months), 1_200_000)
        m = mid()
        payout = _month(start, m)[0].replace(day=s.day)
        opened = payout - dt.timedelta(days=opened_before)
        acct = b.new_account([Holder(person.person_id, person.name, "HOLDER")], opened)
        made = b.run_stream(person, s, own, accounts={k: acct for k in range(m, months)}, amounts={m: amount})
        return person, next(p for p in made if p["bank_account"] == acct)

    for _ in range(per):
        days = rng.randint(0, th_days)
        _, p = account_change(days, th.account_change_above_ore + rng.randint(1, 2_000_000))
        b.label("ACCOUNT_CHANGE_BEFORE_PAYOUT", _key(p), f"new account opened {days} days before a large payout")
    for _ in range(per):
        _, p = account_change(th_days + 1, th.account_change_above_ore + 500_000)
        b.miss("ACCOUNT_CHANGE_BEFORE_PAYOUT", _key(p), "account opened one day too early")
    for _ in range(per):
        _, p = account_change(3, th.account_change_above_ore)
        b.miss("ACCOUNT_CHANGE_BEFORE_PAYOUT", _key(p), "new account, amount exactly the threshold")
    for _ in range(per):
        _, p = account_change(400, th.account_change_above_ore + 500_000)
        b.miss("ACCOUNT_CHANGE_BEFORE_PAYOUT", _key(p), "changed to an account held for a year")

    # -- background ------------------------------------------------------------------------
    _background(b, [p for p in b.registers.payees if p.person_id not in injected], profiles)

    registers = GeneratedRegisters(list(b.people.values()), [a for a in b.accounts.values() if a is not None],
                                   b.registers.payers, b.registers.payees, b.registers.organisations)
    return Scenario(seed, start, months, th, registers, b.events(), b.labels, b.near, b.injections)


def _background(b: _Builder, payees, profiles) -> None:
    """Everyone's ordinary payments: nothing here is a pattern."""
    rng, months = b.rng, b.months
    everyone = range(months)
    home_choices = ANALYSED_MUNICIPALITIES + ("OREBRO_P3",)
    for profile in payees:
        if profile.scenario not in ("own", "joint", "representative", "unknown_account", "closed_account"):
            continue  # the registers' own verification scenarios are not part of this population
        person = b.people[profile.person_id]
        born = birth_date(person.person_id)
        streams: list[_Stream] = []
        if born.year <= 1959:
            streams.append(b.stream("PM", "PENSION", everyone))
            if rng.random() < 0.3:
                streams.append(b.stream("FK", "HOUSING_ALLOWANCE", everyone))
        elif born.year >= 1999:
            streams.append(b.stream("CSN", "STUDENT_AID", everyone))
            if rng.random() < 0.4:
                streams.append(b.stream("FK", "HOUSING_ALLOWANCE", everyone))
        else:
            roll = rng.random()
            k = rng.randint(1, months - 1)
            fund = rng.choice(["FUND_METALL", "FUND_KOMMUNAL"])
            if roll < 0.25:
                streams.append(b.stream("FK", "SICKNESS_BENEFIT", everyone))
            elif roll < 0.45:
                streams.append(b.stream(fund, "UNEMPLOYMENT_BENEFIT", everyone))
            elif roll < 0.55:
                streams += [b.stream(fund, "UNEMPLOYMENT_BENEFIT", range(k)),
                            b.stream("FK", "SICKNESS_BENEFIT", range(k, months))]
            elif roll < 0.70:
                streams += [b.stream("FK", "PARENTAL_BENEFIT", everyone), b.stream("FK", "CHILD_ALLOWANCE", everyone)]
                if streams[-1].amount_ore == streams[-2].amount_ore:
                    streams[-1].amount_ore += 100
            elif roll < 0.85:
                streams.append(b.stream(rng.choice(home_choices), "SOCIAL_ASSISTANCE", everyone))
            elif roll < 0.90:
                a, c = rng.sample(home_choices, 2)
                streams += [b.stream(a, "SOCIAL_ASSISTANCE", range(k)), b.stream(c, "SOCIAL_ASSISTANCE", range(k, months))]
            else:
                streams.append(b.stream("AF", "ACTIVITY_COMPENSATION", everyone))
        if rng.random() < 0.3:
            streams.append(b.stream(rng.choice(["REGION_STHLM", "REGION_SKANE"]), "PATIENT_TRAVEL",
                                    [rng.randint(0, months - 1)]))
        for s in streams:
            made = b.run_stream(person, s, profile.account, profile.representative_id, background=True)
            for p in made:
                if profile.scenario in ("unknown_account", "closed_account"):
                    b.near["ACCOUNT_NOT_HELD"].add(_key(p))
                elif profile.representative_id and not any(
                        h.person_id == person.person_id and h.role == "HOLDER" for h in b.accounts[p["bank_account"]].holders):
                    b.near["ACCOUNT_NOT_HELD"].add(_key(p))  # paid to the representative's own account
                if person.deceased_date and p["payout_date"] <= person.deceased_date:
                    b.near["PAID_AFTER_DEATH"].add(_key(p))
    for org in b.registers.organisations:  # association grants, once or twice
        payer = b.payer[rng.choice(ANALYSED_MUNICIPALITIES)]
        for m in sorted(rng.sample(range(months), rng.randint(1, 2))):
            first, last = _month(b.start, m)
            b.pay(payer, org.person_id, "ASSOCIATION_GRANT", first, last, first.replace(day=rng.randint(1, 28)),
                  b.amount("ASSOCIATION_GRANT"), org.account, None, "plain")


# -- replay and scoring -----------------------------------------------------------------------
def analysis_records(scenario: Scenario):
    """The EnrichedPayment records the analysis topic carries, in publication order:
    PROPOSAL_1/2 payers only, enriched against the scenario's registers one second after
    the payer's event time, patient-secrecy data removed."""
    payers, accounts, people = scenario.payers, scenario.accounts, scenario.people
    for event in scenario.events:
        payer = payers[event["payer_id"]]
        if not payer.in_analysis:
            continue
        enriched = enrich(event, payer, accounts.get(event["bank_account"]), people.get(event["payee_id"]),
                          now=event["event_time"] + dt.timedelta(seconds=1))
        yield strip_patient_secrecy(enriched, False)


@dataclass
class Replay:
    hits: list[dict]
    payee_states: dict[str, dict]
    account_states: dict[str, dict]
    records: int


def replay(scenario: Scenario, thresholds: Thresholds | None = None) -> Replay:
    """Every analysis record through ``evaluate_payee`` and ``evaluate_account``."""
    th = thresholds or scenario.thresholds
    payee_states: dict[str, dict] = {}
    account_states: dict[str, dict] = {}
    hits: list[dict] = []
    count = 0
    for record in analysis_records(scenario):
        count += 1
        payment = record["payment"]
        payee_states[payment["payee_id"]], found = evaluate_payee(payee_states.get(payment["payee_id"]), record, th)
        hits += found
        account_states[payment["bank_account"]], found = evaluate_account(
            account_states.get(payment["bank_account"]), record, th)
        hits += found
    return Replay(hits, payee_states, account_states, count)


def hit_key(hit: dict):
    """What a hit names, comparable with ``Scenario.labels``."""
    rule = hit["rule_id"]
    if rule == "SHARED_ACCOUNT":
        return hit["bank_account"]
    if rule in WINDOW_KEY_RULES:
        return (hit["payee_id"], hit["window"])
    ref = hit["payments"][0]
    return (ref["payer_id"], ref["payment_id"])


@dataclass(frozen=True)
class RuleScore:
    rule_id: str
    labelled: int
    selected: int
    true_positives: int
    false_positives: int
    false_negatives: int
    near_misses_hit: int

    @property
    def precision(self) -> float:
        return self.true_positives / self.selected if self.selected else 1.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.labelled if self.labelled else 1.0


def score(hits: list[dict], scenario: Scenario) -> dict[str, RuleScore]:
    """Per-rule precision and recall over distinct hit keys (hits naming the same key, e.g.
    the PLANNED and EXECUTED of one payment or a redelivery, count once)."""
    selected: dict[str, set] = {r: set() for r in RULE_IDS}
    for hit in hits:
        selected[hit["rule_id"]].add(hit_key(hit))
    result = {}
    for rule in RULE_IDS:
        truth, chosen = scenario.labels.get(rule, set()), selected[rule]
        result[rule] = RuleScore(rule, len(truth), len(chosen), len(truth & chosen), len(chosen - truth),
                                 len(truth - chosen), len(chosen & scenario.near_misses.get(rule, set())))
    return result


def format_scores(scores: dict[str, RuleScore]) -> str:
    lines = [f"{'rule':<30} {'labelled':>8} {'selected':>8} {'TP':>5} {'FP':>5} {'FN':>5} {'near':>5} "
             f"{'precision':>9} {'recall':>7}"]
    for s in scores.values():
        lines.append(f"{s.rule_id:<30} {s.labelled:>8} {s.selected:>8} {s.true_positives:>5} {s.false_positives:>5} "
                     f"{s.false_negatives:>5} {s.near_misses_hit:>5} {s.precision:>9.3f} {s.recall:>7.3f}")
    return "\n".join(lines)
