"""The three reference registers: payer registry, bank account register, population register.

Each register is a compacted topic (Avro schemas ``PayerRecord``, ``BankAccount``,
``Person``) and is loaded from CSV with ``load_csv(kind, path)`` (``tkonto ref load``).
Loading is all or nothing: every bad line is reported as ``file:line: column C: problem;
fix: ...`` and nothing is returned unless the whole file is good.

CSV formats (UTF-8, header row required, columns in any order; docs/registers.md):

payers (streams/payers.py; one row per payer)
    payer_id,name,kind,region_code,scope
accounts (one row per holder; the rows of one account share account, bank_name, opened,
closed - further rows may leave bank_name/opened/closed empty)
    account,bank_name,opened,closed,holder_id,holder_name,role
population (one row per person)
    person_id,name,municipality_code,deceased_date,emigration_date,protected_identity,address

Dates are ISO ``YYYY-MM-DD``; an empty date means none. ``protected_identity`` is ``true``
or ``false`` (empty: false). A person with protected identity must have an empty
``municipality_code`` and ``address``: the register never carries them.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import random
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from . import swedish
from .identity import IdKind, InvalidIdentity, birth_date, classify, make_person, random_organisation, random_person
from .payers import CSV_COLUMNS as PAYER_COLUMNS
from .payers import KINDS as PAYER_KINDS
from .payers import Payer, check_payer, write_payers
from .validation import is_bank_account

REGISTER_KINDS = ("payers", "accounts", "population")
ACCOUNT_COLUMNS = ("account", "bank_name", "opened", "closed", "holder_id", "holder_name", "role")
POPULATION_COLUMNS = (
    "person_id", "name", "municipality_code", "deceased_date", "emigration_date", "protected_identity", "address",
)
COLUMNS = {"payers": PAYER_COLUMNS, "accounts": ACCOUNT_COLUMNS, "population": POPULATION_COLUMNS}
ROLES = ("HOLDER", "POWER_OF_ATTORNEY")
#: The schema of each register's compacted topic.
SCHEMAS = {"payers": "PayerRecord", "accounts": "BankAccount", "population": "Person"}

ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAX_REPORTED = 20


# -- records ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Holder:
    person_id: str
    name: str
    role: str  # HOLDER | POWER_OF_ATTORNEY


@dataclass(frozen=True)
class BankAccount:
    account: str
    bank_name: str
    holders: tuple[Holder, ...]
    opened: dt.date
    closed: dt.date | None = None

    @property
    def key(self) -> str:
        return self.account

    def is_open(self, day: dt.date) -> bool:
        """Open on ``day``: opened on or before it, and not closed before it."""
        return self.opened <= day and (self.closed is None or day <= self.closed)

    def to_record(self) -> dict:
        """The ``BankAccount`` Avro record."""
        return {
            "account": self.account, "bank_name": self.bank_name,
            "holders": [dataclasses.asdict(h) for h in self.holders],
            "opened": self.opened, "closed": self.closed,
        }

    @classmethod
    def from_record(cls, record: dict) -> "BankAccount":
        return cls(record["account"], record["bank_name"], tuple(Holder(**h) for h in record["holders"]),
                   record["opened"], record.get("closed"))


@dataclass(frozen=True)
class Person:
    person_id: str
    name: str
    deceased_date: dt.date | None = None
    emigration_date: dt.date | None = None
    municipality_code: str | None = None
    protected_identity: bool = False
    address: str | None = None

    @property
    def key(self) -> str:
        return self.person_id

    def to_record(self) -> dict:
        """The ``Person`` Avro record (municipality and address never set for protected identity)."""
        record = dataclasses.asdict(self)
        if self.protected_identity:
            record["municipality_code"] = None
            record["address"] = None
        return record

    @classmethod
    def from_record(cls, record: dict) -> "Person":
        return cls(**{f.name: record.get(f.name, f.default) for f in dataclasses.fields(cls)})


def payer_record(payer: Payer, settings=None) -> dict:
    """The ``PayerRecord`` Avro record of a payer; ``input_topic`` from the topic catalogue."""
    from .settings import Settings
    from .topics import Catalogue

    catalogue = Catalogue(settings or Settings.from_env())
    return {**payer.as_dict(), "input_topic": catalogue.payer_input(payer.payer_id).name}


def payer_from_record(record: dict) -> Payer:
    return Payer(**{c: record[c] for c in PAYER_COLUMNS})


def to_record(kind: str, item) -> dict:
    """The Avro record (schema ``SCHEMAS[kind]``) of a loaded register entry."""
    _check_kind(kind)
    return payer_record(item) if kind == "payers" else item.to_record()


def record_key(kind: str, item) -> str:
    """The compacted-topic key of a register entry."""
    _check_kind(kind)
    return item.payer_id if kind == "payers" else item.key


# -- errors -------------------------------------------------------------------------------
@dataclass(frozen=True)
class LineError:
    path: str
    line: int
    column: str
    problem: str
    fix: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" + (f": column {self.column}" if self.column else "")
        return f"{where}: {self.problem}; fix: {self.fix}"


class RegisterFileError(ValueError):
    """A register file that cannot be loaded; nothing of it was loaded. ``errors`` has them all."""

    def __init__(self, errors: Sequence[LineError]):
        self.errors = list(errors)
        shown = "\n".join(str(e) for e in self.errors[:MAX_REPORTED])
        more = len(self.errors) - MAX_REPORTED
        super().__init__(shown + (f"\n(+{more} more)" if more > 0 else ""))


class _Bad(ValueError):
    def __init__(self, column: str, problem: str, fix: str):
        super().__init__(problem)
        self.column, self.problem, self.fix = column, problem, fix


def _check_kind(kind: str) -> None:
    if kind not in REGISTER_KINDS:
        raise ValueError(f"unknown register {kind!r}; use one of {', '.join(REGISTER_KINDS)}")


# -- field parsers ------------------------------------------------------------------------
def _text(row: dict, column: str, what: str) -> str:
    value = (row.get(column) or "").strip()
    if not value:
        raise _Bad(column, "is empty", f"give the {what}")
    return value


def _date(row: dict, column: str, required: bool) -> dt.date | None:
    value = (row.get(column) or "").strip()
    if not value:
        if required:
            raise _Bad(column, "is empty", "give the date as YYYY-MM-DD")
        return None
    if not ISO_DATE.match(value):
        raise _Bad(column, f"{value!r} is not an ISO date", "write the date as YYYY-MM-DD, e.g. 2024-03-31")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise _Bad(column, f"{value!r} is not a real date", "check the month and day") from None


_KIND_NAMES = {IdKind.PERSON: "personal identity", IdKind.COORDINATION: "coordination",
               IdKind.ORGANISATION: "organisation"}


def _identity(row: dict, column: str, allowed: tuple[IdKind, ...]) -> str:
    value = (row.get(column) or "").strip()
    if not value:
        raise _Bad(column, "is empty", "give the identity number (12 digits YYYYMMDDNNNC, or 10 for an organisation)")
    try:
        kind = classify(value)
    except InvalidIdentity as exc:
        raise _Bad(column, f"{value}: {exc}", "write the number as digits only (YYYYMMDDNNNC or NNNNNNNNNN) "
                   "and check it against the source") from None
    if kind not in allowed:
        names = " or ".join(_KIND_NAMES[k] for k in allowed)
        article = "an" if kind is IdKind.ORGANISATION else "a"
        raise _Bad(column, f"{value} is {article} {_KIND_NAMES[kind]} number", f"use a {names} number here")
    return value


def _bool(row: dict, column: str) -> bool:
    value = (row.get(column) or "").strip().lower()
    if value in ("", "false"):
        return False
    if value == "true":
        return True
    raise _Bad(column, f"{value!r} is not true or false", "write true or false (empty means false)")


# -- row checks ---------------------------------------------------------------------------
_PAYER_FIXES = {
    "payer_id": "give the payer's 10-digit organisation number (third digit 2 or more, Luhn check digit)",
    "kind": f"use one of {', '.join(PAYER_KINDS)}",
    "scope": "use PROPOSAL_1 (ledger+analysis), PROPOSAL_2 (analysis only) or PROPOSAL_3 (ledger only)",
    "region_code": "use a real 2-digit county code or 4-digit municipality code (streams/swedish.py)",
    "name": "give the payer's name",
}


def check_payer_row(row: dict) -> Payer:
    """One payer row: streams/payers.py's checks, plus a real county or municipality code."""
    try:
        payer = check_payer(row)
    except ValueError as exc:
        message = str(exc)
        if message.startswith("missing value for "):
            column = message[len("missing value for "):].split(",")[0].strip()
            raise _Bad(column, "is empty", _PAYER_FIXES.get(column, "give a value")) from None
        column = message.split(" ", 1)[0]
        raise _Bad(column, message.split(" ", 1)[1] if column in PAYER_COLUMNS else message,
                   _PAYER_FIXES.get(column, "see docs/registers.md")) from None
    code = payer.region_code
    if not (swedish.is_region_code(code) or swedish.is_municipality_code(code)):
        raise _Bad("region_code", f"{code!r} is not a real county or municipality code", _PAYER_FIXES["region_code"])
    if payer.kind == "MUNICIPALITY" and not swedish.is_municipality_code(code):
        raise _Bad("region_code", f"{code!r} is not a municipality code", "a municipality's code has 4 digits, e.g. 0180")
    if payer.kind == "REGION" and not (swedish.is_region_code(code) or code in swedish.MUNICIPALITY_AS_REGION.values()):
        raise _Bad("region_code", f"{code!r} is not a county code", "a region's code is its county's 2 digits, e.g. 01")
    return payer


def check_person_row(row: dict) -> Person:
    person_id = _identity(row, "person_id", (IdKind.PERSON, IdKind.COORDINATION))
    name = _text(row, "name", "person's name")
    protected = _bool(row, "protected_identity")
    municipality = (row.get("municipality_code") or "").strip() or None
    address = (row.get("address") or "").strip() or None
    if protected and municipality:
        raise _Bad("municipality_code", "is set for a person with protected identity",
                   "leave municipality_code empty: the register never carries it for protected identity")
    if protected and address:
        raise _Bad("address", "is set for a person with protected identity",
                   "leave address empty: the register never carries it for protected identity")
    if municipality is not None and not swedish.is_municipality_code(municipality):
        raise _Bad("municipality_code", f"{municipality!r} is not a Swedish municipality code",
                   "use the 4-digit code, e.g. 0180 for Stockholm (streams/swedish.py)")
    born = birth_date(person_id)
    deceased = _date(row, "deceased_date", required=False)
    emigrated = _date(row, "emigration_date", required=False)
    for column, day in (("deceased_date", deceased), ("emigration_date", emigrated)):
        if day is not None and born is not None and day < born:
            raise _Bad(column, f"{day} is before the birth date {born} in person_id", "check the date and person_id")
    return Person(person_id, name, deceased, emigrated, municipality, protected, address)


def _check_account_row(row: dict) -> tuple[str, str | None, dt.date | None, dt.date | None, Holder]:
    account = _text(row, "account", "account as clearing-number (e.g. 8327-9123456789)")
    if not is_bank_account(account):
        raise _Bad("account", f"{account!r} is not clearing number, '-', account number",
                   "write 4-5 digit clearing, a hyphen and the account digits, e.g. 6000-123456789")
    if swedish.bank_of(account.split("-")[0]) is None:
        raise _Bad("account", f"clearing number {account.split('-')[0]} belongs to no known bank",
                   "check the clearing number (streams/swedish.py CLEARING_RANGES)")
    bank = (row.get("bank_name") or "").strip() or None
    opened = _date(row, "opened", required=False)
    closed = _date(row, "closed", required=False)
    holder_id = _identity(row, "holder_id", (IdKind.PERSON, IdKind.COORDINATION, IdKind.ORGANISATION))
    holder_name = _text(row, "holder_name", "holder's name")
    role = (row.get("role") or "").strip()
    if role not in ROLES:
        raise _Bad("role", f"{role!r} is not a role", "use HOLDER or POWER_OF_ATTORNEY")
    return account, bank, opened, closed, Holder(holder_id, holder_name, role)


# -- loading ------------------------------------------------------------------------------
def _rows(path: Path, columns: Sequence[str], errors: list[LineError]) -> Iterable[tuple[int, dict]]:
    if not path.is_file():
        errors.append(LineError(str(path), 0, "", "no such file", "give the path of a register CSV"))
        return
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in columns if c not in header]
        unknown = [h for h in header if h not in columns]
        if missing or unknown:
            problem = "header " + ("lacks " + ", ".join(missing) if missing else "")
            problem += ("; " if missing and unknown else "") + ("has unknown " + ", ".join(unknown) if unknown else "")
            errors.append(LineError(str(path), 1, ",".join(missing or unknown), problem,
                                    f"make the first line {','.join(columns)}"))
            return
        reader.fieldnames = header
        for line, row in enumerate(reader, start=2):
            if None in row:
                errors.append(LineError(str(path), line, "", f"has {len(header) + len(row[None])} fields, "
                                        f"the header {len(header)}", "quote values that contain commas"))
                continue
            if not any((v or "").strip() for v in row.values()):
                continue  # blank line
            yield line, row


def load_csv(kind: str, path: str | Path) -> list:
    """Load a register CSV completely or not at all.

    Returns ``list[Payer]`` (payers), ``list[BankAccount]`` (accounts) or ``list[Person]``
    (population), in file order. Raises ``RegisterFileError`` listing every bad line.
    """
    _check_kind(kind)
    path = Path(path)
    errors: list[LineError] = []
    name = str(path)

    def bad(line: int, exc: _Bad) -> None:
        errors.append(LineError(name, line, exc.column, exc.problem, exc.fix))

    if kind == "payers":
        result = _load_unique(path, PAYER_COLUMNS, check_payer_row, "payer_id", "payer", errors, bad)
    elif kind == "population":
        result = _load_unique(path, POPULATION_COLUMNS, check_person_row, "person_id", "person", errors, bad)
    else:
        result = _load_accounts(path, errors, bad)
    if errors:
        raise RegisterFileError(errors)
    return result


def _load_unique(path: Path, columns, check, id_field: str, what: str, errors: list, bad) -> list:
    """Rows checked by ``check``, one per ``id_field``: a repeated id is a bad line."""
    items: list = []
    seen: dict[str, int] = {}
    for line, row in _rows(path, columns, errors):
        try:
            item = check(row)
            key = getattr(item, id_field)
            if key in seen:
                raise _Bad(id_field, f"{key} already on line {seen[key]}", f"keep one row per {what}")
            seen[key] = line
            items.append(item)
        except _Bad as exc:
            bad(line, exc)
    return items


@dataclass
class _AccountDraft:
    line: int
    bank: str | None
    opened: dt.date | None
    closed: dt.date | None
    holders: list[Holder] = field(default_factory=list)
    holder_lines: dict[str, int] = field(default_factory=dict)


def _load_accounts(path: Path, errors: list[LineError], bad) -> list[BankAccount]:
    drafts: dict[str, _AccountDraft] = {}
    broken: set[str] = set()
    for line, row in _rows(path, ACCOUNT_COLUMNS, errors):
        try:
            account, bank, opened, closed, holder = _check_account_row(row)
            draft = drafts.get(account)
            if draft is None:
                if bank is None:
                    raise _Bad("bank_name", "is empty on the account's first row", "give the bank's name")
                if opened is None:
                    raise _Bad("opened", "is empty on the account's first row", "give the date as YYYY-MM-DD")
                if closed is not None and closed < opened:
                    raise _Bad("closed", f"{closed} is before opened {opened}", "check both dates")
                draft = drafts[account] = _AccountDraft(line, bank, opened, closed)
            else:
                for column, value, first in (("bank_name", bank, draft.bank), ("opened", opened, draft.opened),
                                             ("closed", closed, draft.closed)):
                    if value is not None and value != first:
                        raise _Bad(column, f"{value} differs from {first} on line {draft.line} (same account)",
                                   f"repeat the value of line {draft.line} or leave it empty")
            if holder.person_id in draft.holder_lines:
                raise _Bad("holder_id", f"{holder.person_id} already listed for {account} on line "
                           f"{draft.holder_lines[holder.person_id]}", "keep one row per holder and account")
            draft.holder_lines[holder.person_id] = line
            draft.holders.append(holder)
        except _Bad as exc:
            bad(line, exc)
            broken.add((row.get("account") or "").strip())
    accounts = []
    for account, draft in drafts.items():
        if account in broken:  # its bad row is reported already; no follow-on error
            continue
        if not any(h.role == "HOLDER" for h in draft.holders):
            bad(draft.line, _Bad("role", f"account {account} has no HOLDER (only power of attorney)",
                                 "add a row with the account's holder and role HOLDER"))
            continue
        accounts.append(BankAccount(account, draft.bank, tuple(draft.holders), draft.opened, draft.closed))
    return accounts


# -- writing ------------------------------------------------------------------------------
def _iso(day: dt.date | None) -> str:
    return day.isoformat() if day else ""


def write_csv(kind: str, path: str | Path, items: Sequence) -> None:
    """Write register entries in the CSV format ``load_csv`` reads."""
    _check_kind(kind)
    if kind == "payers":
        write_payers(path, list(items))
        return
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS[kind])
        for item in items:
            if kind == "accounts":
                for h in item.holders:
                    writer.writerow([item.account, item.bank_name, _iso(item.opened), _iso(item.closed),
                                     h.person_id, h.name, h.role])
            else:
                record = item.to_record()
                writer.writerow([item.person_id, item.name, record["municipality_code"] or "",
                                 _iso(item.deceased_date), _iso(item.emigration_date),
                                 "true" if item.protected_identity else "false", record["address"] or ""])


# -- demo generator -----------------------------------------------------------------------
@dataclass(frozen=True)
class PayeeProfile:
    """A payee of the demo and what its payments carry: the account paid to, the
    representative, and the verification outcome the registers give for them."""
    person_id: str
    name: str
    account: str
    representative_id: str | None
    expected: str  # MATCH | CLOSE_MATCH | NO_MATCH | NOT_POSSIBLE
    scenario: str  # own | joint | representative | close_name | shared_account | unknown_account | closed_account | new_account | organisation


@dataclass
class GeneratedRegisters:
    people: list[Person]
    accounts: list[BankAccount]
    payers: list[Payer]
    payees: list[PayeeProfile]
    organisations: list[PayeeProfile]
    paths: dict[str, Path] = field(default_factory=dict)


#: Share of payees per scenario (the rest: their own account).
SCENARIO_RATES = {
    "representative": 0.04, "close_name": 0.02, "shared_account": 0.02, "unknown_account": 0.01,
    "closed_account": 0.01, "new_account": 0.03,
}
DECEASED_RATE, EMIGRATED_RATE, PROTECTED_RATE, JOINT_RATE = 0.02, 0.02, 0.01, 0.10
_SURNAME_VARIANTS = (("Karlsson", "Carlsson"), ("Eriksson", "Ericsson"), ("Andersson", "Anderson"),
                     ("Nilsson", "Nillson"), ("Johansson", "Johanson"), ("Pettersson", "Petterson"),
                     ("Gustafsson", "Gustavsson"), ("Olsson", "Ohlsson"), ("Persson", "Pehrsson"))


def _name_variant(name: str) -> str:
    for a, b in _SURNAME_VARIANTS:
        if name.endswith(a):
            return name[: -len(a)] + b
        if name.endswith(b):
            return name[: -len(b)] + a
    first, _, rest = name.partition(" ")
    plain = "".join(c for c in unicodedata.normalize("NFKD", first) if not unicodedata.combining(c))
    return f"{plain} {rest}" if plain != first else name  # "Åsa Berg" -> "Asa Berg"; else the same name


def _random_day(rng: random.Random, first: dt.date, last: dt.date) -> dt.date:
    if last <= first:
        return first
    return dt.date.fromordinal(rng.randint(first.toordinal(), last.toordinal()))


def generate_registers(
    rng: random.Random,
    n_payees: int,
    payers: Sequence[Payer],
    out_dir: str | Path | None = None,
    *,
    today: dt.date | None = None,
    n_organisations: int | None = None,
) -> GeneratedRegisters:
    """Realistic, mutually consistent registers for the demo.

    ``n_payees`` people receive payments (plus spouses and representatives in the
    population register); deceased, emigrated and protected people, joint accounts,
    representatives with power of attorney, and the verification scenarios of
    ``SCENARIO_RATES``. People live mostly in the municipalities of ``payers``. Names and
    street addresses from Faker's sv_SE locale; every identity number is Luhn-valid, every
    municipality code real, every account at a real bank's clearing number. With
    ``out_dir``, writes payers.csv, accounts.csv and population.csv there.
    Deterministic for a given ``rng`` state and ``today``.
    """
    from faker import Faker

    today = today or dt.date.today()
    fake = Faker("sv_SE")
    fake.seed_instance(rng.getrandbits(32))
    used_ids: set[str] = set()
    used_accounts: set[str] = set()
    people: list[Person] = []
    accounts: list[BankAccount] = []

    home = [p.region_code for p in payers if p.kind == "MUNICIPALITY" and swedish.is_municipality_code(p.region_code)]
    counties = {p.region_code for p in payers if p.kind == "REGION"}
    in_counties = [c for c in swedish.MUNICIPALITIES if c[:2] in counties]
    all_codes = list(swedish.MUNICIPALITIES)

    def municipality() -> str:
        roll = rng.random()
        if home and roll < 0.6:
            return rng.choice(home)
        if in_counties and roll < 0.75:
            return rng.choice(in_counties)
        return rng.choice(swedish.LARGEST_MUNICIPALITIES) if roll < 0.88 else rng.choice(all_codes)

    def new_id(oldest: int = 1935, youngest: int = 2006, coordination: bool = False) -> str:
        while True:
            pid = random_person(rng, oldest, youngest)
            if coordination:
                born = birth_date(pid)
                pid = make_person(born, int(pid[8:11]), coordination=True)
            if pid not in used_ids:
                used_ids.add(pid)
                return pid

    def new_name(pid: str) -> str:
        female = int(pid[10]) % 2 == 0  # the second-to-last digit is even for women
        first = fake.first_name_female() if female else fake.first_name_male()
        return f"{first} {fake.last_name()}"

    def new_person(pid: str, name: str, *, may_die: bool = True) -> Person:
        protected = rng.random() < PROTECTED_RATE
        code = municipality()
        address = f"{fake.street_name()} {rng.randint(1, 120)}, {rng.randint(100, 984)} {rng.randint(0, 99):02d} {swedish.MUNICIPALITIES[code]}"
        deceased = emigrated = None
        roll = rng.random()
        if may_die and roll < DECEASED_RATE:
            deceased = today - dt.timedelta(days=rng.randint(1, 200))
        elif may_die and roll < DECEASED_RATE + EMIGRATED_RATE:
            emigrated = today - dt.timedelta(days=rng.randint(1, 400))
        person = Person(pid, name, deceased, emigrated, None if protected else code, protected,
                        None if protected else address)
        people.append(person)
        return person

    def new_account(holders: list[Holder], owner: str, *, opened: dt.date | None = None,
                    closed: dt.date | None = None, personkonto: bool = True) -> BankAccount:
        while True:  # a person has at most one personkonto: a clash draws another bank
            number = swedish.make_bank_account(rng, owner_id=owner if personkonto else None)
            if number not in used_accounts:
                used_accounts.add(number)
                break
        if opened is None:
            born = birth_date(owner) if len(owner) == 12 else None
            earliest = max(dt.date(1995, 1, 1), born + dt.timedelta(days=18 * 365) if born else dt.date(1995, 1, 1))
            last = (closed or today) - dt.timedelta(days=90)
            opened = _random_day(rng, min(earliest, last), last)
        account = BankAccount(number, swedish.bank_name(number), tuple(holders), opened, closed)
        accounts.append(account)
        return account

    scenarios = list(SCENARIO_RATES.items())
    shared: BankAccount | None = None  # one stranger's account that several payees are paid to
    payees: list[PayeeProfile] = []
    for _ in range(n_payees):
        pid = new_id()
        person = new_person(pid, new_name(pid))
        roll, scenario = rng.random(), "own"
        for name, rate in scenarios:
            if roll < rate:
                scenario = name
                break
            roll -= rate
        holders = [Holder(pid, person.name, "HOLDER")]
        if rng.random() < JOINT_RATE:
            spouse = new_id()
            holders.append(Holder(spouse, new_person(spouse, new_name(spouse)).name, "HOLDER"))
            scenario = "joint" if scenario == "own" else scenario
        representative = None
        if scenario == "representative":  # guardian/trustee with power of attorney over the payee's account
            representative = new_id(1945, 1990)
            rep = new_person(representative, new_name(representative), may_die=False)
            holders.append(Holder(representative, rep.name, "POWER_OF_ATTORNEY"))
        own = new_account(holders, pid, personkonto=len(holders) == 1)  # a personkonto has one holder
        account, expected = own.account, "MATCH"
        if scenario == "representative" and rng.random() < 0.5:  # paid to the representative's own account
            account = new_account([Holder(representative, rep.name, "HOLDER")], representative).account
        elif scenario == "close_name":  # held under another (coordination) number with a similar name
            alias = new_id(coordination=True)
            account = new_account([Holder(alias, _name_variant(person.name), "HOLDER")], alias).account
            expected = "CLOSE_MATCH"
        elif scenario == "shared_account":
            if shared is None or rng.random() < 0.2:
                stranger = new_id(1960, 2000)
                shared = new_account([Holder(stranger, new_person(stranger, new_name(stranger), may_die=False).name,
                                             "HOLDER")], stranger)
            account, expected = shared.account, "NO_MATCH"
        elif scenario == "unknown_account":
            while True:
                account = swedish.make_bank_account(rng)
                if account not in used_accounts:
                    used_accounts.add(account)
                    break
            expected = "NOT_POSSIBLE"
        elif scenario == "closed_account":
            old = new_account([Holder(pid, person.name, "HOLDER")], pid, personkonto=False,
                              closed=today - dt.timedelta(days=rng.randint(10, 300)))
            account, expected = old.account, "NOT_POSSIBLE"
        elif scenario == "new_account":  # opened days before the payout: "account change just before payout"
            account = new_account([Holder(pid, person.name, "HOLDER")], pid, personkonto=False,
                                  opened=today - dt.timedelta(days=rng.randint(0, 20))).account
        payees.append(PayeeProfile(pid, person.name, account, representative, expected, scenario))

    organisations: list[PayeeProfile] = []
    for _ in range(n_organisations if n_organisations is not None else max(2, n_payees // 50)):
        org = random_organisation(rng, prefix=rng.choice(["802", "556", "559"]))
        while org in used_ids:
            org = random_organisation(rng, prefix=rng.choice(["802", "556", "559"]))
        used_ids.add(org)
        name = fake.company()
        account = new_account([Holder(org, name, "HOLDER")], org).account
        organisations.append(PayeeProfile(org, name, account, None, "MATCH", "organisation"))

    result = GeneratedRegisters(people, accounts, list(payers), payees, organisations)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for kind, items in (("payers", result.payers), ("accounts", accounts), ("population", people)):
            result.paths[kind] = out / f"{kind}.csv"
            write_csv(kind, result.paths[kind], items)
    return result
