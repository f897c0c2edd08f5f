"""The compiled Avro writers write exactly what fastavro writes, and defer to it otherwise."""
import datetime as dt
import io
import random

import pytest
from fastavro import schemaless_writer

from streams.avro_reader import compile_reader
from streams.avro_writer import compile_writer
from streams.codec import CodecError, default_codec
from tests.conftest import STOCKHOLM, payment

SCHEMAS = default_codec().names()
TEXTS = ["", "a", "Åsa Öberg", "x" * 63, "y" * 64, "ö" * 40, "€" * 100, "z" * 300]
LONGS = [0, 1, -1, 63, 64, -64, -65, 127, 128, 8191, 8192, 2**31 - 1, -2**31, 2**62, -2**63, 2**63 - 1]


def fastavro_bytes(name: str, record: dict) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, default_codec().schema(name).parsed, record)
    return buf.getvalue()


def compiled_bytes(name: str, record: dict) -> bytes:
    writer = compile_writer(default_codec().schema(name).parsed)
    out = bytearray()
    writer(record, out)
    return bytes(out)


def random_value(schema, named: dict, rnd: random.Random, depth: int = 0):
    """A random value that fits ``schema`` (a fastavro-parsed schema node)."""
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, list):
        return random_value(rnd.choice(schema), named, rnd, depth)
    kind = schema if isinstance(schema, str) else schema["type"]
    logical = None if isinstance(schema, str) else schema.get("logicalType")
    if logical == "date":
        return dt.date(1970, 1, 1) + dt.timedelta(days=rnd.randint(-30_000, 60_000))
    if logical == "timestamp-millis":
        moment = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(
            milliseconds=rnd.randint(-2_000_000_000_000, 4_000_000_000_000))
        zone = rnd.choice([dt.timezone.utc, dt.timezone(dt.timedelta(hours=2)), None])
        return moment.astimezone(zone).replace(tzinfo=None) if zone is None else moment.astimezone(zone)
    if kind == "string":
        return rnd.choice(TEXTS)
    if kind == "long":
        return rnd.choice(LONGS + [rnd.randint(-2**63, 2**63 - 1)])
    if kind == "int":
        return rnd.randint(-2**31, 2**31 - 1)
    if kind == "boolean":
        return rnd.random() < 0.5
    if kind == "null":
        return None
    if kind == "bytes":
        return bytes(rnd.randrange(256) for _ in range(rnd.choice([0, 5, 64, 200])))
    if kind == "enum":
        return rnd.choice(schema["symbols"])
    if kind == "array":
        return [random_value(schema["items"], named, rnd, depth + 1)
                for _ in range(rnd.choice([0, 1, 3, 70]) if depth < 2 else rnd.choice([0, 1]))]
    if kind == "map":
        return {f"k{i}-{rnd.choice(TEXTS)}": random_value(schema["values"], named, rnd, depth + 1)
                for i in range(rnd.choice([0, 1, 4]))}
    if kind == "record":
        record = {}
        for field in schema["fields"]:
            if "default" in field and rnd.random() < 0.2:
                continue  # missing: the writer takes the default
            record[field["name"]] = random_value(field["type"], named, rnd, depth + 1)
        return record
    raise AssertionError(f"no generator for {schema}")


@pytest.mark.parametrize("name", SCHEMAS)
@pytest.mark.parametrize("compile_", [compile_writer, compile_reader], ids=["writer", "reader"])
def test_every_schema_has_a_compiled_writer_and_reader(name, compile_):
    assert compile_(default_codec().schema(name).parsed) is not None


@pytest.mark.parametrize("name", SCHEMAS)
def test_compiled_writer_writes_fastavros_bytes_for_random_records(name):
    parsed = default_codec().schema(name).parsed
    rnd = random.Random(name)
    for _ in range(300):
        record = random_value(parsed, parsed["__named_schemas"], rnd)
        assert compiled_bytes(name, record) == fastavro_bytes(name, record), record


def test_a_dict_subclass_is_written_by_the_compiled_writer_as_fastavro_writes_it():
    """A record may be a dict subclass with attributes of its own (a rule state with its
    indexes, rules._State): fastavro writes its items, and so does the compiled writer."""
    class Indexed(dict):
        __slots__ = ("index",)

    name = "se.tkonto.state.AnalysisState"
    parsed = default_codec().schema(name).parsed
    rnd = random.Random(name)
    for _ in range(50):
        state = Indexed(random_value(parsed, parsed["__named_schemas"], rnd))
        state.index = {}
        assert compiled_bytes(name, state) == fastavro_bytes(name, state), state


def test_codec_output_is_fastavros_for_a_real_payment():
    codec = default_codec()
    event = payment(STOCKHOLM, "198112189876", "p-1", "PLANNED", 512300)
    data = codec.encode("PaymentEvent", event)
    assert data[10:] == fastavro_bytes("PaymentEvent", event)
    assert codec.decode(data) == event


def test_values_the_compiled_writer_does_not_special_case_are_written_by_fastavro():
    codec = default_codec()
    event = payment(STOCKHOLM, "198112189876", "p-1", "PLANNED", 512300)
    event["amount_ore"] = True  # fastavro writes a bool as the long 1; the compiled writer refuses it
    with pytest.raises(TypeError):
        compiled_bytes("PaymentEvent", event)
    assert codec.encode("PaymentEvent", event)[10:] == fastavro_bytes("PaymentEvent", event)
    assert codec.decode(codec.encode("PaymentEvent", event))["amount_ore"] == 1


@pytest.mark.parametrize("field, value", [
    ("amount_ore", "512300"), ("amount_ore", None), ("event_type", "PAID"), ("payee_id", 198112189876),
    ("payout_date", "25 Nov"), ("representative_id", 7), ("event_time", "yesterday"),
])
def test_a_record_that_does_not_fit_is_a_codec_error_naming_the_schema(field, value):
    event = payment(STOCKHOLM, "198112189876", "p-1", "PLANNED", 512300)
    event[field] = value
    with pytest.raises(CodecError) as err:
        default_codec().encode("PaymentEvent", event)
    assert err.value.reason == "RECORD_DOES_NOT_FIT_SCHEMA"
    assert "se.tkonto.PaymentEvent" in err.value.detail


def test_a_missing_required_field_is_a_codec_error():
    event = payment(STOCKHOLM, "198112189876", "p-1", "PLANNED", 512300)
    del event["payee_id"]
    with pytest.raises(CodecError) as err:
        default_codec().encode("PaymentEvent", event)
    assert err.value.reason == "RECORD_DOES_NOT_FIT_SCHEMA"


@pytest.mark.parametrize("n", [0, 1, -1, 63, 64, -64, -65, 8191, 8192, 16383, 16384, 32767, 32768, 65535, 65536,
                               2**21, 2**28 - 1, 2**28, 2**42 + 12345, 1_795_552_273_080, -2**40, 2**63 - 1, -2**63])
def test_varint_at_the_table_boundaries_is_fastavros_long(n):
    from streams.avro_writer import varint
    out = bytearray()
    varint(n, out)
    buf = io.BytesIO()
    schemaless_writer(buf, "long", n)
    assert bytes(out) == buf.getvalue()


def test_every_record_of_a_stage_run_is_written_as_fastavro_writes_it():
    """benchmarks/engine_stages.py --codec: all records the four stages encode, both ways."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, str(root / "benchmarks" / "engine_stages.py"), "--events", "600",
                          "--payees", "150", "--codec"], capture_output=True, text=True, timeout=300, cwd=root)
    assert run.returncode == 0, run.stdout + run.stderr
    table = run.stdout.split("same bytes\n", 1)[1]
    counts = {row[0]: row[-1] for row in (line.split() for line in table.splitlines() if line.strip())}
    assert {"EnrichedPayment", "LedgerEntry", "se.tkonto.state.Account", "se.tkonto.state.AnalysisState",
            "se.tkonto.state.CitizenViewItem"} <= set(counts)
    assert all(same.split("/")[0] == same.split("/")[1] for same in counts.values()), counts
