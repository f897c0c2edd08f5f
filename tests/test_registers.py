"""Reference registers: Swedish code lists, CSV loading (all or nothing), generator, schemas."""
from __future__ import annotations

import collections
import datetime as dt
import random
import re
from pathlib import Path

import pytest

from streams import swedish
from streams.codec import Codec
from streams.enrichment import verify_account
from streams.identity import IdKind, classify, is_valid, make_organisation, make_person
from streams.payers import Payer
from streams.registers import (
    ACCOUNT_COLUMNS, POPULATION_COLUMNS, SCHEMAS, BankAccount, Holder, Person, RegisterFileError,
    generate_registers, load_csv, payer_from_record, payer_record, record_key, to_record, write_csv,
)
from streams.settings import Settings

P1 = make_person(dt.date(1980, 5, 17), 123)
P2 = make_person(dt.date(1975, 12, 1), 456)
P3 = make_person(dt.date(2001, 2, 28), 789)
C1 = make_person(dt.date(1990, 7, 7), 321, coordination=True)
ORG = make_organisation("802403346")
BAD = P1[:-1] + str((int(P1[-1]) + 1) % 10)  # wrong check digit
ACCOUNT_RE = re.compile(r"^\d{4,5}-\d{1,15}$")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(kind: str, path: Path) -> list[str]:
    with pytest.raises(RegisterFileError) as info:
        load_csv(kind, path)
    return [str(e) for e in info.value.errors]


# -- code lists ---------------------------------------------------------------------------
class TestSwedish:
    def test_regions(self):
        assert len(swedish.REGIONS) == 21
        assert swedish.REGIONS["01"] == "Stockholms län" and swedish.REGIONS["25"] == "Norrbottens län"
        assert set(swedish.REGION_BODIES) == set(swedish.REGIONS)
        regions_proper = [c for c in swedish.REGION_BODIES if c not in swedish.MUNICIPALITY_AS_REGION]
        assert len(regions_proper) == 20
        assert swedish.MUNICIPALITY_AS_REGION == {"09": "0980"} and swedish.MUNICIPALITIES["0980"] == "Gotland"

    def test_all_290_municipalities(self):
        assert len(swedish.MUNICIPALITIES) == 290
        assert {c[:2] for c in swedish.MUNICIPALITIES} == set(swedish.REGIONS)
        assert all(re.fullmatch(r"\d{4}", c) for c in swedish.MUNICIPALITIES)
        per_county = collections.Counter(c[:2] for c in swedish.MUNICIPALITIES)
        assert (per_county["01"], per_county["12"], per_county["14"], per_county["09"]) == (26, 33, 49, 1)

    @pytest.mark.parametrize("code, name", [
        ("0180", "Stockholm"), ("1480", "Göteborg"), ("1280", "Malmö"), ("0380", "Uppsala"),
        ("0580", "Linköping"), ("1980", "Västerås"), ("1880", "Örebro"), ("1283", "Helsingborg"),
        ("2480", "Umeå"), ("2584", "Kiruna"), ("0114", "Upplands Väsby"), ("2361", "Härjedalen"),
    ])
    def test_known_municipalities(self, code, name):
        assert swedish.municipality_name(code) == name
        assert swedish.region_of(code) == code[:2]

    def test_body_names(self):
        assert swedish.municipality_body_name("0180") == "Stockholms kommun"
        assert swedish.municipality_body_name("0380") == "Uppsala kommun"
        assert swedish.municipality_body_name("1490") == "Borås kommun"
        assert swedish.municipality_body_name("0980") == "Region Gotland"

    @pytest.mark.parametrize("clearing, bank", [
        ("7000", "Swedbank"), ("7999", "Swedbank"), ("8327", "Swedbank"), ("83279", "Swedbank"),
        ("6000", "Handelsbanken"), ("6999", "Handelsbanken"), ("5000", "SEB"), ("5999", "SEB"),
        ("1100", "Nordea"), ("1400", "Nordea"), ("2099", "Nordea"), ("3000", "Nordea"), ("3399", "Nordea"),
        ("3410", "Nordea"), ("4999", "Nordea"), ("3300", "Nordea (personkonto)"), ("1200", "Danske Bank"),
        ("1399", "Danske Bank"), ("9270", "ICA Banken"), ("9279", "ICA Banken"), ("3400", "Länsförsäkringar Bank"),
        ("9020", "Länsförsäkringar Bank"), ("9069", "Länsförsäkringar Bank"), ("9150", "Skandiabanken"),
        ("9169", "Skandiabanken"), ("9570", "Sparbanken Syd"), ("9550", "Avanza Bank"),
    ])
    def test_clearing_numbers(self, clearing, bank):
        assert swedish.bank_of(clearing).bank == bank

    @pytest.mark.parametrize("clearing", ["0999", "1000", "2100", "9000", "9999", "abcd"])
    def test_unknown_clearing(self, clearing):
        assert swedish.bank_of(clearing) is None

    def test_ranges_do_not_overlap(self):
        ranges = sorted(swedish.CLEARING_RANGES, key=lambda r: r.first)
        for a, b in zip(ranges, ranges[1:]):
            assert a.first <= a.last < b.first

    def test_generated_accounts(self):
        rng = random.Random(3)
        accounts = [swedish.make_bank_account(rng) for _ in range(500)]
        assert all(ACCOUNT_RE.match(a) and len(a.split("-")[0]) == 4 for a in accounts)
        assert all(swedish.account_check_ok(a) for a in accounts)
        banks = collections.Counter(swedish.bank_name(a) for a in accounts)
        assert {"Swedbank", "Handelsbanken", "SEB", "Nordea"} <= set(banks)
        assert banks["Swedbank"] > banks["ICA Banken"]

    def test_account_check_digit(self):
        rng = random.Random(5)
        for bank in ("Swedbank", "Handelsbanken", "SEB", "Nordea", "Danske Bank", "Sparbanken Syd", "Avanza Bank"):
            account = swedish.make_bank_account(rng, bank=bank)
            assert swedish.bank_name(account) == bank and swedish.account_check_ok(account)
            wrong = account[:-1] + str((int(account[-1]) + 1) % 10)
            assert not swedish.account_check_ok(wrong)
        assert not swedish.account_check_ok("0999-1234567")

    def test_nordea_personkonto_is_the_personal_number(self):
        rng = random.Random(1)
        while True:
            account = swedish.make_bank_account(rng, bank="Nordea (personkonto)", owner_id=P1)
            if account.startswith("3300"):
                break
        assert account == f"3300-{P1[2:]}" and swedish.account_check_ok(account)
        other = swedish.make_bank_account(random.Random(1), bank="Nordea (personkonto)")
        assert swedish.bank_name(other) == "Nordea"  # no person: an ordinary Nordea account

    def test_unknown_bank_name(self):
        with pytest.raises(ValueError, match="unknown bank"):
            swedish.make_bank_account(random.Random(1), bank="Bank of Nowhere")


# -- CSV loading --------------------------------------------------------------------------
POPULATION_OK = (
    "person_id,name,municipality_code,deceased_date,emigration_date,protected_identity,address\n"
    f"{P1},Anna Karlsson,0180,,,false,\"Storgatan 1, 111 22 Stockholm\"\n"
    f"{P2},Bo Ek,1480,2025-01-31,,false,\n"
    f"{P3},Cecilia Lind,,,,true,\n"
    f"{C1},Dragan Petrović,,,2024-06-01,,\n"
)
ACCOUNTS_OK = (
    "account,bank_name,opened,closed,holder_id,holder_name,role\n"
    f"8327-1234567890,Swedbank,2019-04-01,,{P1},Anna Karlsson,HOLDER\n"
    f"8327-1234567890,Swedbank,2019-04-01,,{P2},Bo Ek,POWER_OF_ATTORNEY\n"
    f"6000-123456789,Handelsbanken,2010-01-15,2024-12-31,{P2},Bo Ek,HOLDER\n"
    f"6000-123456789,,,,{P3},Cecilia Lind,HOLDER\n"
    f"5000-1234567,SEB,2021-09-09,,{ORG},Idrottsföreningen Kamraterna,HOLDER\n"
)
PAYERS_OK = (
    "payer_id,name,kind,region_code,scope\n"
    f"{make_organisation('212000018')},Stockholms kommun,MUNICIPALITY,0180,PROPOSAL_1\n"
    f"{make_organisation('232100001')},Region Stockholm,REGION,01,PROPOSAL_2\n"
    f"{make_organisation('212000088')},Region Gotland,REGION,0980,PROPOSAL_3\n"
    f"{make_organisation('202100552')},Försäkringskassan,STATE_AGENCY,01,PROPOSAL_1\n"
)


class TestLoadPopulation:
    def test_good_file(self, tmp_path):
        people = load_csv("population", write(tmp_path, "pop.csv", POPULATION_OK))
        assert people == [
            Person(P1, "Anna Karlsson", None, None, "0180", False, "Storgatan 1, 111 22 Stockholm"),
            Person(P2, "Bo Ek", dt.date(2025, 1, 31), None, "1480", False, None),
            Person(P3, "Cecilia Lind", None, None, None, True, None),
            Person(C1, "Dragan Petrović", None, dt.date(2024, 6, 1), None, False, None),
        ]

    def test_bom_and_blank_lines(self, tmp_path):
        path = tmp_path / "pop.csv"
        path.write_text("\ufeff" + POPULATION_OK + "\n,,,,,,\n", encoding="utf-8")
        assert len(load_csv("population", path)) == 4

    @pytest.mark.parametrize("row, column, fix", [
        (f"{BAD},X,0180,,,false,", "person_id", "digits only"),
        (f"{ORG},X,0180,,,false,", "person_id", "use a personal identity or coordination number"),
        (f"{P1},,0180,,,false,", "name", "person's name"),
        (f"{P1},X,0199,,,false,", "municipality_code", "4-digit code"),
        (f"{P1},X,0180,2025-02-30,,false,", "deceased_date", "check the month and day"),
        (f"{P1},X,0180,,1/6/2024,false,", "emigration_date", "YYYY-MM-DD"),
        (f"{P1},X,0180,,,20240601,", "protected_identity", "true or false"),
        (f"{P1},X,0180,,,ja,", "protected_identity", "true or false"),
        (f"{P1},X,0180,,,true,", "municipality_code", "never carries it"),
        (f"{P1},X,,,,true,Storgatan 1", "address", "never carries it"),
        (f"{P1},X,0180,1979-01-01,,false,", "deceased_date", "before the birth date"),
    ])
    def test_bad_row_names_line_column_fix(self, tmp_path, row, column, fix):
        path = write(tmp_path, "pop.csv", POPULATION_OK + row + "\n")
        errors = errors_of("population", path)  # a P1 row is also a duplicate: the field error is reported
        assert len(errors) == 1
        assert errors[0].startswith(f"{path}:6: column {column}: ")
        assert fix in errors[0]

    def test_duplicate_person(self, tmp_path):
        path = write(tmp_path, "pop.csv", POPULATION_OK + f"{P2},Bo Ek,1480,,,false,\n")
        assert errors_of("population", path) == [
            f"{path}:6: column person_id: {P2} already on line 3; fix: keep one row per person"]

    def test_every_bad_line_reported_and_nothing_loaded(self, tmp_path):
        lines = POPULATION_OK.splitlines()
        lines[1] = lines[1].replace(",0180,", ",9999,")
        lines[3] = lines[3].replace(",true,", ",maybe,")
        path = write(tmp_path, "pop.csv", "\n".join(lines) + "\n")
        errors = errors_of("population", path)
        assert [e.split(": fix")[0].split(": ")[0:2] for e in errors] == [
            [f"{path}:2", "column municipality_code"], [f"{path}:4", "column protected_identity"]]

    def test_error_is_structured(self, tmp_path):
        path = write(tmp_path, "pop.csv", POPULATION_OK.replace(",1480,", ",14800,"))
        with pytest.raises(RegisterFileError) as info:
            load_csv("population", path)
        (error,) = info.value.errors
        assert (error.path, error.line, error.column) == (str(path), 3, "municipality_code")
        assert str(info.value) == str(error)

    def test_header(self, tmp_path):
        path = write(tmp_path, "pop.csv", "person_id,name,kommun\n" + f"{P1},X,0180\n")
        (error,) = errors_of("population", path)
        assert error.startswith(f"{path}:1: column ")
        assert "lacks municipality_code, deceased_date, emigration_date, protected_identity, address" in error
        assert "has unknown kommun" in error
        assert error.endswith("fix: make the first line " + ",".join(POPULATION_COLUMNS))

    def test_columns_in_any_order(self, tmp_path):
        path = write(tmp_path, "pop.csv", "name,person_id,address,protected_identity,emigration_date,"
                     f"deceased_date,municipality_code\nAnna,{P1},,false,,,0180\n")
        assert load_csv("population", path) == [Person(P1, "Anna", municipality_code="0180")]

    def test_too_many_fields(self, tmp_path):
        path = write(tmp_path, "pop.csv", POPULATION_OK + f"{P1},Anna,0180,,,false,Storgatan 1, Stockholm\n")
        (error,) = errors_of("population", path)
        assert error.startswith(f"{path}:6: has 8 fields, the header 7")

    def test_missing_file(self, tmp_path):
        (error,) = errors_of("population", tmp_path / "nope.csv")
        assert error == f"{tmp_path / 'nope.csv'}:0: no such file; fix: give the path of a register CSV"

    def test_unknown_kind(self, tmp_path):
        with pytest.raises(ValueError, match="unknown register 'people'"):
            load_csv("people", tmp_path / "x.csv")


class TestLoadAccounts:
    def test_good_file_grouped_by_account(self, tmp_path):
        accounts = load_csv("accounts", write(tmp_path, "acc.csv", ACCOUNTS_OK))
        assert accounts == [
            BankAccount("8327-1234567890", "Swedbank",
                        (Holder(P1, "Anna Karlsson", "HOLDER"), Holder(P2, "Bo Ek", "POWER_OF_ATTORNEY")),
                        dt.date(2019, 4, 1), None),
            BankAccount("6000-123456789", "Handelsbanken",
                        (Holder(P2, "Bo Ek", "HOLDER"), Holder(P3, "Cecilia Lind", "HOLDER")),
                        dt.date(2010, 1, 15), dt.date(2024, 12, 31)),
            BankAccount("5000-1234567", "SEB", (Holder(ORG, "Idrottsföreningen Kamraterna", "HOLDER"),),
                        dt.date(2021, 9, 9), None),
        ]

    def test_is_open(self):
        acc = BankAccount("5000-1234567", "SEB", (), dt.date(2020, 1, 1), dt.date(2020, 12, 31))
        assert [acc.is_open(d) for d in (dt.date(2019, 12, 31), dt.date(2020, 1, 1), dt.date(2020, 12, 31),
                                         dt.date(2021, 1, 1))] == [False, True, True, False]

    @pytest.mark.parametrize("row, column, fix", [
        (f"83271234567890,Swedbank,2019-04-01,,{P1},A,HOLDER", "account", "a hyphen"),
        (f"0999-1234567,Okänd,2019-04-01,,{P1},A,HOLDER", "account", "check the clearing number"),
        (f"5001-1234567,,2019-04-01,,{P1},A,HOLDER", "bank_name", "bank's name"),
        (f"5001-1234567,SEB,,,{P1},A,HOLDER", "opened", "YYYY-MM-DD"),
        (f"5001-1234567,SEB,2019-04-31,,{P1},A,HOLDER", "opened", "check the month and day"),
        (f"5001-1234567,SEB,2019-04-01,2019-03-01,{P1},A,HOLDER", "closed", "check both dates"),
        (f"5001-1234567,SEB,2019-04-01,,{BAD},A,HOLDER", "holder_id", "digits only"),
        (f"5001-1234567,SEB,2019-04-01,,{P1},,HOLDER", "holder_name", "holder's name"),
        (f"5001-1234567,SEB,2019-04-01,,{P1},A,OWNER", "role", "HOLDER or POWER_OF_ATTORNEY"),
        (f"5001-1234567,SEB,2019-04-01,,{P1},A,POWER_OF_ATTORNEY", "role", "add a row with the account's holder"),
        (f"8327-1234567890,Swedbank,2019-05-01,,{P3},C,HOLDER", "opened", "repeat the value of line 2"),
        (f"8327-1234567890,Sparbanken,,,{P3},C,HOLDER", "bank_name", "repeat the value of line 2"),
        (f"8327-1234567890,,,2025-01-01,{P3},C,HOLDER", "closed", "repeat the value of line 2"),
        (f"8327-1234567890,,,,{P1},Anna Karlsson,HOLDER", "holder_id", "one row per holder"),
    ])
    def test_bad_row_names_line_column_fix(self, tmp_path, row, column, fix):
        path = write(tmp_path, "acc.csv", ACCOUNTS_OK + row + "\n")
        errors = errors_of("accounts", path)
        assert len(errors) == 1
        assert errors[0].startswith(f"{path}:7: column {column}: ")
        assert fix in errors[0]

    def test_coordination_holder_accepted(self, tmp_path):
        path = write(tmp_path, "acc.csv", ACCOUNTS_OK + f"9270-1234567,ICA Banken,2023-01-01,,{C1},D,HOLDER\n")
        assert load_csv("accounts", path)[-1].holders == (Holder(C1, "D", "HOLDER"),)

    def test_all_or_nothing(self, tmp_path):
        path = write(tmp_path, "acc.csv", ACCOUNTS_OK.replace(",HOLDER\n", ",holder\n", 1)
                     + f"9270-1234567,ICA Banken,2023-01-01,,{BAD},D,HOLDER\n")
        errors = errors_of("accounts", path)
        assert [e.split(": ")[0] + ": " + e.split(": ")[1] for e in errors] == [
            f"{path}:2: column role", f"{path}:7: column holder_id"]


class TestLoadPayers:
    def test_good_file(self, tmp_path):
        payers = load_csv("payers", write(tmp_path, "payers.csv", PAYERS_OK))
        assert [(p.name, p.kind, p.region_code, p.scope) for p in payers] == [
            ("Stockholms kommun", "MUNICIPALITY", "0180", "PROPOSAL_1"),
            ("Region Stockholm", "REGION", "01", "PROPOSAL_2"),
            ("Region Gotland", "REGION", "0980", "PROPOSAL_3"),
            ("Försäkringskassan", "STATE_AGENCY", "01", "PROPOSAL_1"),
        ]
        assert all(isinstance(p, Payer) for p in payers)

    @pytest.mark.parametrize("row, column, fix", [
        (f"{BAD[2:]},X,MUNICIPALITY,0180,PROPOSAL_1", "payer_id", "organisation number"),
        (f"{P1},X,MUNICIPALITY,0180,PROPOSAL_1", "payer_id", "organisation number"),
        (f"{make_organisation('212000999')},X,TOWN,0180,PROPOSAL_1", "kind", "MUNICIPALITY"),
        (f"{make_organisation('212000999')},X,MUNICIPALITY,0180,PROPOSAL_4", "scope", "PROPOSAL_2 (analysis only)"),
        (f"{make_organisation('212000999')},X,MUNICIPALITY,0199,PROPOSAL_1", "region_code", "real"),
        (f"{make_organisation('212000999')},X,MUNICIPALITY,02,PROPOSAL_1", "region_code", "real"),
        (f"{make_organisation('212000999')},X,MUNICIPALITY,01,PROPOSAL_1", "region_code", "4 digits"),
        (f"{make_organisation('212000999')},X,REGION,0180,PROPOSAL_1", "region_code", "county's 2 digits"),
        (f"{make_organisation('212000999')},,REGION,01,PROPOSAL_1", "name", "payer's name"),
        (f"{make_organisation('212000018')},Dubblett,MUNICIPALITY,0180,PROPOSAL_1", "payer_id", "one row per payer"),
    ])
    def test_bad_row_names_line_column_fix(self, tmp_path, row, column, fix):
        path = write(tmp_path, "payers.csv", PAYERS_OK + row + "\n")
        errors = errors_of("payers", path)
        assert len(errors) == 1
        assert errors[0].startswith(f"{path}:6: column {column}: ")
        assert fix in errors[0]

    def test_payer_record(self):
        payer = Payer(make_organisation("212000018"), "Stockholms kommun", "MUNICIPALITY", "0180", "PROPOSAL_1")
        record = payer_record(payer, Settings(topic_prefix="tk"))
        assert record == {**payer.as_dict(), "input_topic": f"tk.in.{payer.payer_id}"}
        assert payer_from_record(record) == payer
        assert record_key("payers", payer) == payer.payer_id


# -- round trips --------------------------------------------------------------------------
class TestRoundTrips:
    @pytest.mark.parametrize("kind, text", [("population", POPULATION_OK), ("accounts", ACCOUNTS_OK),
                                            ("payers", PAYERS_OK)])
    def test_write_then_load(self, tmp_path, kind, text):
        items = load_csv(kind, write(tmp_path, "in.csv", text))
        write_csv(kind, tmp_path / "out.csv", items)
        assert load_csv(kind, tmp_path / "out.csv") == items

    def test_account_rows_written_one_per_holder(self, tmp_path):
        items = load_csv("accounts", write(tmp_path, "in.csv", ACCOUNTS_OK))
        write_csv("accounts", tmp_path / "out.csv", items)
        lines = (tmp_path / "out.csv").read_text(encoding="utf-8").splitlines()
        assert lines[0] == ",".join(ACCOUNT_COLUMNS) and len(lines) == 6

    @pytest.mark.parametrize("kind, text", [("population", POPULATION_OK), ("accounts", ACCOUNTS_OK),
                                            ("payers", PAYERS_OK)])
    def test_codec_round_trip(self, tmp_path, kind, text):
        codec = Codec()
        for item in load_csv(kind, write(tmp_path, "in.csv", text)):
            record = to_record(kind, item) if kind != "payers" else payer_record(item, Settings())
            decoded = codec.decode(codec.encode(SCHEMAS[kind], record), expect=SCHEMAS[kind])
            assert decoded == record
            if kind == "accounts":
                assert BankAccount.from_record(decoded) == item
            elif kind == "population":
                assert Person.from_record(decoded) == item
            else:
                assert payer_from_record(decoded) == item

    def test_protected_person_record_never_carries_municipality_or_address(self):
        person = Person(P3, "Cecilia Lind", municipality_code="0180", protected_identity=True, address="Gata 1")
        record = person.to_record()
        assert (record["municipality_code"], record["address"]) == (None, None)
        data = Codec().encode("Person", record)
        assert b"0180" not in data and b"Gata 1" not in data

    def test_every_schema_field_documented(self):
        codec = Codec()

        def check(schema):
            if isinstance(schema, dict) and schema.get("type") == "record":
                assert schema.get("doc"), schema["name"]
                for f in schema["fields"]:
                    assert f.get("doc"), f"{schema['name']}.{f['name']}"
                    check(f["type"])
            elif isinstance(schema, dict) and schema.get("type") == "array":
                check(schema["items"])
            elif isinstance(schema, list):
                for s in schema:
                    check(s)

        import json
        for name in ("payer_record", "bank_account", "person", "enriched_payment"):
            check(json.loads((Path(__file__).resolve().parent.parent / "schemas" / f"{name}.avsc").read_text()))
        assert {"se.tkonto.PayerRecord", "se.tkonto.BankAccount", "se.tkonto.Person",
                "se.tkonto.EnrichedPayment"} <= set(codec.names())


# -- generator ----------------------------------------------------------------------------
TODAY = dt.date(2025, 6, 1)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    payers = [
        Payer(make_organisation("212000018"), "Stockholms kommun", "MUNICIPALITY", "0180", "PROPOSAL_1"),
        Payer(make_organisation("212000140"), "Göteborgs kommun", "MUNICIPALITY", "1480", "PROPOSAL_2"),
        Payer(make_organisation("232100001"), "Region Skåne", "REGION", "12", "PROPOSAL_1"),
    ]
    out = tmp_path_factory.mktemp("registers")
    return generate_registers(random.Random(11), 800, payers, out, today=TODAY)


class TestGenerator:
    def test_only_valid_identity_numbers(self, generated):
        assert all(classify(p.person_id) in (IdKind.PERSON, IdKind.COORDINATION) for p in generated.people)
        assert all(is_valid(h.person_id) for a in generated.accounts for h in a.holders)
        assert all(classify(o.person_id) is IdKind.ORGANISATION for o in generated.organisations)
        assert len({p.person_id for p in generated.people}) == len(generated.people)

    def test_only_real_codes_and_banks(self, generated):
        codes = {p.municipality_code for p in generated.people if p.municipality_code}
        assert codes <= set(swedish.MUNICIPALITIES)
        assert {"0180", "1480"} <= codes
        assert any(c.startswith("12") for c in codes)
        for account in generated.accounts:
            assert ACCOUNT_RE.match(account.account) and swedish.account_check_ok(account.account)
            assert account.bank_name == swedish.bank_name(account.account)
        assert len({a.account for a in generated.accounts}) == len(generated.accounts)

    def test_people_mix(self, generated):
        people = generated.people
        assert sum(p.deceased_date is not None for p in people) >= 5
        assert sum(p.emigration_date is not None for p in people) >= 5
        protected = [p for p in people if p.protected_identity]
        assert protected and all(p.municipality_code is None and p.address is None for p in protected)
        assert all(p.address and p.address.endswith(swedish.MUNICIPALITIES[p.municipality_code])
                   for p in people if not p.protected_identity)
        assert all(d < TODAY for p in people for d in (p.deceased_date, p.emigration_date) if d)

    def test_accounts_consistent_with_people(self, generated):
        people = {p.person_id for p in generated.people}
        orgs = {o.person_id for o in generated.organisations}
        for account in generated.accounts:
            assert any(h.role == "HOLDER" for h in account.holders)
            # coordination numbers belong to people not registered in Sweden (not in the population register)
            assert all(h.person_id in people or h.person_id in orgs or classify(h.person_id) is IdKind.COORDINATION
                       for h in account.holders)
            assert account.closed is None or account.opened <= account.closed
        assert any(h.role == "POWER_OF_ATTORNEY" for a in generated.accounts for h in a.holders)
        assert any(sum(h.role == "HOLDER" for h in a.holders) == 2 for a in generated.accounts)

    def test_expected_verification_outcomes(self, generated):
        accounts = {a.account: a for a in generated.accounts}
        names = {p.person_id: p.name for p in generated.people}
        seen = collections.Counter()
        for payee in generated.payees + generated.organisations:
            outcome = verify_account(accounts.get(payee.account), payee.person_id, payee.representative_id,
                                     names.get(payee.person_id), TODAY)
            assert outcome["result"] == payee.expected, payee
            seen[payee.expected] += 1
        assert set(seen) == {"MATCH", "CLOSE_MATCH", "NO_MATCH", "NOT_POSSIBLE"}
        scenarios = collections.Counter(p.scenario for p in generated.payees)
        assert {"own", "joint", "representative", "close_name", "shared_account", "unknown_account",
                "closed_account", "new_account"} <= set(scenarios)
        shared = collections.Counter(p.account for p in generated.payees if p.scenario == "shared_account")
        assert max(shared.values()) >= 2  # one account receiving several people's payments
        assert all(accounts[p.account].opened >= TODAY - dt.timedelta(days=20)
                   for p in generated.payees if p.scenario == "new_account")

    def test_csv_files_load(self, generated):
        assert load_csv("population", generated.paths["population"]) == generated.people
        assert load_csv("accounts", generated.paths["accounts"]) == generated.accounts
        assert load_csv("payers", generated.paths["payers"]) == generated.payers

    def test_deterministic(self, generated):
        again = generate_registers(random.Random(11), 800, generated.payers, today=TODAY)
        assert again.people == generated.people and again.accounts == generated.accounts
        assert again.payees == generated.payees and again.paths == {}


def test_docs_examples_load(tmp_path):
    """The CSV examples in docs/registers.md are valid register files."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "registers.md").read_text(encoding="utf-8")
    kinds = {"payer_id,": "payers", "account,": "accounts", "person_id,": "population"}
    loaded = {}
    for block in re.findall(r"```\n(.*?)```", text, re.S):
        kind = next((k for head, k in kinds.items() if block.startswith(head)), None)
        if kind:
            loaded[kind] = load_csv(kind, write(tmp_path, f"{kind}.csv", block))
    assert {k: len(v) for k, v in loaded.items()} == {"payers": 2, "accounts": 2, "population": 3}


def test_the_current_payer_is_made_once_per_registry_record_and_follows_a_new_record(monkeypatch):
    from streams.reference import current_payer, registers
    from streams.registers import payer_record
    seed = Payer("2120000142", "Stockholms kommun", "MUNICIPALITY", "0180", "PROPOSAL_2")
    monkeypatch.setitem(registers.data, "payers", {})
    registers.data["payers"]["2120000142"] = payer_record(seed)
    first = current_payer("2120000142")
    assert first == seed and not first.in_ledger and first.in_analysis
    assert current_payer("2120000142") is first  # the same record: the same Payer
    registers.data["payers"]["2120000142"] = payer_record(Payer(*[*seed.record.values()][:4], "PROPOSAL_1"))
    changed = current_payer("2120000142")
    assert changed.scope == "PROPOSAL_1" and changed.in_ledger  # a new record applies at once
    assert first.scope == "PROPOSAL_2" and not first.in_ledger


def test_a_payers_record_is_built_once_and_as_dict_is_a_copy_to_change():
    payer = Payer("2120000142", "Stockholms kommun", "MUNICIPALITY", "0180", "PROPOSAL_3")
    assert payer.record is payer.record
    assert payer.record == {"payer_id": "2120000142", "name": "Stockholms kommun", "kind": "MUNICIPALITY",
                            "region_code": "0180", "scope": "PROPOSAL_3"}
    copy = payer.as_dict()
    copy["scope"] = "PROPOSAL_1"
    assert payer.record["scope"] == "PROPOSAL_3" and payer.in_ledger and not payer.in_analysis


def test_a_simulation_with_registers_has_the_registers_payees_and_payers():
    from streams.simulate import Simulation, make_payers
    day = dt.date(2026, 11, 1)
    sim = Simulation.with_registers(12, 200, 7, today=day, start=day)
    again = generate_registers(random.Random(7), 200, make_payers(12, random.Random(7)), today=day)
    assert sim.payers == make_payers(12, random.Random(7)) == list(sim.registers.payers)
    assert [p.person_id for p in sim.registers.payees] == [p.person_id for p in again.payees]
    assert [(p.person_id, p.account) for p in sim.payees] == [(p.person_id, p.account) for p in sim.registers.payees]
