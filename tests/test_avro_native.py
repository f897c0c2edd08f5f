"""The Avro writer and reader in C write and read exactly what the Python ones and fastavro
do, Sealed memos included, and leave everything else to them."""
import copy
import datetime as dt
import gc
import io
import random
import sys
import tracemalloc

import pytest
from fastavro import schemaless_reader

from streams import avro_native
from streams.avro_reader import compile_reader
from streams.avro_writer import compile_writer
from streams.codec import HEADER_LEN, MAGIC, Codec, CodecError, default_codec
from streams.engine import murmur2
from streams.sealed import SEALED_RECORDS, Sealed, memo_of
from tests.conftest import STOCKHOLM, payment
from tests.test_avro_writer import LONGS, fastavro_bytes, random_value

SCHEMAS = default_codec().names()
codec = default_codec()


def parsed(name: str) -> dict:
    return codec.schema(name).parsed


def native_bytes(name: str, record) -> bytes:
    return avro_native.write(b"", avro_native.program(parsed(name)), record)


def python_bytes(name: str, record) -> bytes:
    out = bytearray()
    compile_writer(parsed(name))(record, out)
    return bytes(out)


def native_record(name: str, body: bytes):
    return avro_native.read(avro_native.reader_program(parsed(name)), body, 0)


def sealed_copy(value, schema, named: dict):
    """``value`` (a random record) with every record named in SEALED_RECORDS made a Sealed,
    as the stages hold them."""
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, list):
        fits = [b for b in schema if _fits(value, b, named)]
        return sealed_copy(value, fits[0], named) if fits else value
    kind = schema if isinstance(schema, str) else schema["type"]
    if kind == "record" and isinstance(value, dict):
        fields = {f["name"]: f["type"] for f in schema["fields"]}
        copied = {k: sealed_copy(v, fields[k], named) if k in fields else v for k, v in value.items()}
        return Sealed(copied) if schema["name"] in SEALED_RECORDS else copied
    if kind == "array" and isinstance(value, list):
        return [sealed_copy(v, schema["items"], named) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: sealed_copy(v, schema["values"], named) for k, v in value.items()}
    return value


def _fits(value, branch, named) -> bool:
    branch = named.get(branch, branch) if isinstance(branch, str) else branch
    kind = branch if isinstance(branch, str) else branch["type"]
    return (kind == "record" and isinstance(value, dict)) or (kind == "map" and isinstance(value, dict)) \
        or (kind == "array" and isinstance(value, list))


def in_utc(value):
    """``value`` with every datetime aware in UTC, the only zone the C writer writes itself
    (the random records have naive ones and other zones too: the Python writer's)."""
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)
    if isinstance(value, dict):
        return {k: in_utc(v) for k, v in value.items()}
    if isinstance(value, list):
        return [in_utc(v) for v in value]
    return value


def memos(value) -> list:
    """Every Sealed memo in ``value``, depth first."""
    found = []
    if isinstance(value, dict):
        if type(value) is Sealed:
            found.append(memo_of(value))
        for v in value.values():
            found += memos(v)
    elif isinstance(value, list):
        for v in value:
            found += memos(v)
    return found


def test_the_c_module_is_built_and_current():
    """make install builds it (a C compiler and the Python headers are on every machine the
    README's commands run on); a build older than its source is never used."""
    assert avro_native.available, avro_native.why_not
    assert codec.native


@pytest.mark.parametrize("name", SCHEMAS)
def test_every_schema_has_a_c_writer_and_reader_program(name):
    assert avro_native.program(parsed(name)) is not None
    assert avro_native.reader_program(parsed(name)) is not None


@pytest.mark.parametrize("name", SCHEMAS)
def test_the_c_writer_writes_fastavros_bytes_and_the_python_writers_memos(name):
    schema = parsed(name)
    rnd = random.Random(name)
    for _ in range(300):
        record = random_value(schema, schema["__named_schemas"], rnd)
        if any(isinstance(v, dt.datetime) and v.tzinfo is not dt.timezone.utc for v in _walk(record)):
            with pytest.raises(avro_native.Refused, match="UTC"):
                native_bytes(name, record)
            record = in_utc(record)
        assert native_bytes(name, record) == fastavro_bytes(name, record), record
        by_c, by_python = (sealed_copy(record, schema, schema["__named_schemas"]) for _ in range(2))
        assert native_bytes(name, by_c) == python_bytes(name, by_python) == fastavro_bytes(name, record)
        assert memos(by_c) == memos(by_python)
        assert native_bytes(name, by_c) == fastavro_bytes(name, record)  # again, from the memos


@pytest.mark.parametrize("name", SCHEMAS)
def test_the_c_reader_reads_what_fastavro_and_the_python_reader_read(name):
    schema = parsed(name)
    rnd = random.Random(name + "read")
    python_reader = compile_reader(schema)
    for _ in range(300):
        body = fastavro_bytes(name, random_value(schema, schema["__named_schemas"], rnd))
        record = native_record(name, body)
        expected = schemaless_reader(io.BytesIO(body), schema, None)
        assert record == expected
        assert list(record) == list(expected)  # the fields in schema order
        by_python = python_reader(body, 0)[0]
        assert memos(record) == memos(by_python)
        assert [type(v) for v in _walk(record)] == [type(v) for v in _walk(by_python)]  # Sealed where sealed


def _walk(value):
    yield value
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)


def test_a_payment_round_trips_through_the_codec_with_its_times_in_utc():
    event = payment(STOCKHOLM, "198112189876", "p-1", "PLANNED", 512300)
    data = codec.encode("PaymentEvent", event)
    assert data[:2] == MAGIC and data[HEADER_LEN:] == fastavro_bytes("PaymentEvent", event)
    decoded = codec.decode(data, expect="PaymentEvent")
    assert decoded == event and type(decoded) is Sealed
    assert decoded["event_time"].tzinfo is dt.timezone.utc
    assert memo_of(decoded) == ("se.tkonto.PaymentEvent", data[HEADER_LEN:])
    assert codec.encode("PaymentEvent", decoded) == data  # written from its memo


def test_decoded_field_names_and_symbols_are_the_interned_strings_the_code_spells():
    """Keys and enum values found by identity: a look-up compares no characters."""
    event = payment(STOCKHOLM, "198112189876", "p-1", "PLANNED", 512300)
    decoded = codec.decode(codec.encode("PaymentEvent", event), expect="PaymentEvent")
    assert decoded == event
    for key in decoded:
        assert key is sys.intern(key), key
    assert decoded["event_type"] is sys.intern("PLANNED")
    assert decoded["category"] is sys.intern(event["category"])


@pytest.mark.parametrize("field, value", [
    ("amount_ore", True),  # fastavro writes a bool as the long 1
    ("amount_ore", 2**64),  # beyond 64 bits: fastavro's error stands
    ("amount_ore", "512300"),
    ("event_time", dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))),  # not UTC
    ("event_time", dt.datetime(2026, 11, 25, 9, 0)),  # naive: as UTC, as fastavro writes it
    ("payout_date", dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.timezone.utc)),  # a datetime in a date field
    ("payout_date", 20_000),  # days since 1970 as an int
    ("event_type", "PAID"),  # not a symbol
    ("representative_id", 7),  # no branch of ["null", "string"] fits
])
def test_what_the_c_writer_refuses_is_the_python_writers_to_write_or_refuse(field, value):
    event = payment(STOCKHOLM, "198112189876", "p-1", "PLANNED", 512300)
    event[field] = value
    if field == "payout_date" and value == 20_000:
        assert native_bytes("PaymentEvent", event) == fastavro_bytes("PaymentEvent", event)
    else:
        with pytest.raises(avro_native.Refused):
            native_bytes("PaymentEvent", event)
    python_codec = Codec(native=False)
    try:
        expected = python_codec.encode("PaymentEvent", event)
    except CodecError as exc:
        with pytest.raises(CodecError) as err:
            codec.encode("PaymentEvent", event)
        assert (err.value.reason, err.value.detail) == (exc.reason, exc.detail)
    else:
        assert codec.encode("PaymentEvent", event) == expected


def test_a_missing_required_field_is_refused_and_stays_a_codec_error():
    event = payment(STOCKHOLM, "198112189876", "p-1", "PLANNED", 512300)
    del event["payee_id"]
    with pytest.raises(avro_native.Refused, match="payee_id"):
        native_bytes("PaymentEvent", event)
    with pytest.raises(CodecError) as err:
        codec.encode("PaymentEvent", event)
    assert err.value.reason == "RECORD_DOES_NOT_FIT_SCHEMA"


def test_a_planted_memo_is_what_the_c_writer_writes_and_another_records_memo_is_not():
    event = Sealed(payment(STOCKHOLM, "198112189876", "p-1", "PLANNED", 512300))
    body = native_bytes("PaymentEvent", event)
    assert memo_of(event) == ("se.tkonto.PaymentEvent", body)
    event.memo = ("se.tkonto.PaymentEvent", b"\x00PLANTED")
    assert native_bytes("PaymentEvent", event) == b"\x00PLANTED"
    event.memo = ("se.tkonto.state.Balance", b"\x00PLANTED")
    assert native_bytes("PaymentEvent", event) == body
    assert memo_of(event) == ("se.tkonto.PaymentEvent", body)


@pytest.mark.parametrize("n", LONGS + [2**28, 1_795_552_273_080, -2**40])
def test_longs_are_written_and_read_as_fastavro_does(n):
    record = payment(STOCKHOLM, "198112189876", "p-1", "PLANNED", n)
    body = native_bytes("PaymentEvent", record)
    assert body == fastavro_bytes("PaymentEvent", record)
    assert native_record("PaymentEvent", body)["amount_ore"] == n


def test_timestamps_and_dates_across_the_range_are_fastavros():
    rnd = random.Random(3)
    for _ in range(2000):
        millis = rnd.randint(-62_135_596_800_000, 253_402_300_799_999)  # year 1 to 9999
        moment = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(milliseconds=millis)
        day = dt.date(1970, 1, 1) + dt.timedelta(days=rnd.randint(-719_162, 2_932_896))
        record = payment(STOCKHOLM, "198112189876", "p-1", "PLANNED", 1)
        record.update(event_time=moment, payout_date=day)
        body = native_bytes("PaymentEvent", record)
        assert body == fastavro_bytes("PaymentEvent", record)
        read = native_record("PaymentEvent", body)
        assert (read["event_time"], read["payout_date"]) == (moment, day)


def test_every_truncation_is_refused_and_the_codec_says_undecodable():
    event = payment(STOCKHOLM, "198112189876", "p-1", "PLANNED", 512300)
    data = codec.encode("PaymentEvent", event)
    for cut in range(HEADER_LEN, len(data)):
        with pytest.raises(avro_native.Refused):
            native_record("PaymentEvent", data[HEADER_LEN:cut])
        with pytest.raises(CodecError) as err:
            codec.decode(data[:cut])
        assert err.value.reason == "UNDECODABLE"


def test_corrupted_bytes_give_what_the_python_codec_gives():
    event = payment(STOCKHOLM, "198112189876", "p-1", "PLANNED", 512300)
    data = codec.encode("PaymentEvent", event)
    python_codec = Codec(native=False)
    rnd = random.Random(11)
    refused = 0
    for _ in range(600):
        corrupt = bytearray(data)
        for _ in range(rnd.choice([1, 2, 3])):
            corrupt[rnd.randrange(HEADER_LEN, len(data))] = rnd.randrange(256)
        corrupt = bytes(corrupt)
        try:
            native_record("PaymentEvent", corrupt[HEADER_LEN:])
        except avro_native.Refused:
            refused += 1
        try:
            expected = python_codec.decode(corrupt)
        except CodecError as exc:
            with pytest.raises(CodecError) as err:
                codec.decode(corrupt)
            assert err.value.reason == exc.reason
        else:
            assert codec.decode(corrupt) == expected
    assert refused > 0


def test_the_c_reader_refuses_a_start_beyond_the_data_and_what_is_not_bytes():
    program = avro_native.reader_program(parsed("PaymentEvent"))
    with pytest.raises(avro_native.Refused):
        avro_native.read(program, b"\x02", 5)
    with pytest.raises(avro_native.Refused):
        avro_native.read(program, bytearray(b"\x02"), 0)


def test_murmur2_in_c_is_kafkas_murmur2():
    rnd = random.Random(5)
    keys = [b"", b"a", b"ab", b"abc", b"abcd", b"198112189876", b"21000-14917"]
    keys += [bytes(rnd.randrange(256) for _ in range(rnd.randrange(40))) for _ in range(2000)]
    assert [avro_native.murmur2(k) for k in keys] == [murmur2(k) for k in keys]
    assert avro_native.murmur2(b"21") == murmur2(b"21")


def test_the_setting_turns_the_c_codec_off_with_the_same_bytes(monkeypatch):
    from streams import codec as codec_module
    monkeypatch.setenv("TKONTO_NATIVE_CODEC", "false")
    monkeypatch.setattr(codec_module, "_default", None)
    python_codec = codec_module.default_codec()
    assert python_codec.native is False
    event = payment(STOCKHOLM, "198112189876", "p-1", "PLANNED", 512300)
    assert python_codec.encode("PaymentEvent", event) == codec.encode("PaymentEvent", event)
    assert python_codec._writers["PaymentEvent"][1] is None  # no C program: the Python writer wrote it


def test_writing_and_reading_leave_no_memory_behind():
    """Every object the C code makes is released: 20,000 round trips of a payment (written
    fresh and from its memo, read, and refused once each) leave < 64 KiB allocated."""
    event = payment(STOCKHOLM, "198112189876", "p-1", "PLANNED", 512300)
    data = codec.encode("PaymentEvent", event)
    bad = dict(event, amount_ore="x")

    def rounds(n):
        for _ in range(n):
            decoded = codec.decode(data)
            codec.encode("PaymentEvent", decoded)
            codec.encode("PaymentEvent", copy.copy(decoded))
            with pytest.raises(avro_native.Refused):
                native_bytes("PaymentEvent", bad)

    rounds(500)  # caches (dates, symbols) filled
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        rounds(20_000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, f"{grown} bytes still allocated"


def test_sealed_items_and_rule_states_are_looked_up_by_dicts_own_slot():
    """A dict subclass made by a class statement reaches dict's lookup through a generic
    method call (~5 times the instructions); ``dict_lookup`` gives it dict's own slot."""
    from streams.rules import _State
    assert avro_native.dict_lookup(Sealed) is False  # done at import
    assert avro_native.dict_lookup(_State) is False

    class Plain(dict):
        pass

    class WithMissing(dict):
        def __missing__(self, key):
            return f"missing {key}"

    for cls in (Plain, WithMissing):
        assert avro_native.dict_lookup(cls) is True
        assert avro_native.dict_lookup(cls) is False
    assert Plain(a=1)["a"] == 1
    with pytest.raises(KeyError, match="b"):
        Plain(a=1)["b"]
    assert WithMissing(a=1)["b"] == "missing b"  # dict's lookup still asks a subclass's __missing__
    sealed = Sealed(a=1)
    assert sealed["a"] == 1
    with pytest.raises(TypeError, match="never changed in place"):
        sealed["a"] = 2


@pytest.mark.parametrize("cls", [int, dict, type("OwnLookup", (dict,), {"__getitem__": lambda self, key: key})])
def test_dict_lookup_refuses_what_is_not_a_class_statements_dict_with_dicts_lookup(cls):
    with pytest.raises(TypeError, match="dict_lookup"):
        avro_native.dict_lookup(cls)


# -- untrack: a store's values out of the cyclic collector -------------------------------
class _Indexed(dict):
    """Like rules._State: a dict subclass with slots of its own."""
    __slots__ = ("at",)


def test_untrack_takes_every_container_of_an_acyclic_value_out_of_the_collector():
    item = Sealed(payment_id="p1", amount_ore=100_00, day=dt.date(2026, 12, 5))
    nested = Sealed(status="EXECUTED", applied={"EXECUTED": {"sequence": 2, "event_id": "e2"}})
    value = {"payee_id": "198112189876", "payments": {"a": item, "b": nested}, "tracked": [Sealed(seq=1)],
             "pair": ("x", 1), "count": 3}
    before = copy.deepcopy(value)
    assert gc.is_tracked(value) and gc.is_tracked(value["payments"]) and gc.is_tracked(item)
    assert avro_native.untrack(value) is True
    containers = [value, value["payments"], item, nested, nested["applied"], value["tracked"],
                  value["tracked"][0], value["pair"]]
    assert [gc.is_tracked(c) for c in containers] == [False] * len(containers)
    assert value == before  # nothing else changed
    gc.collect()  # what the collector no longer sees is still alive and whole
    assert value == before and nested["applied"]["EXECUTED"]["sequence"] == 2

    value["payments"]["c"] = Sealed(payment_id="p3")  # a dict tracks itself again when a container is put in
    assert gc.is_tracked(value["payments"]) and not gc.is_tracked(value)
    assert avro_native.untrack(value) is True and not gc.is_tracked(value["payments"])


def test_untrack_leaves_cycles_and_other_objects_with_the_collector():
    looped: dict = {"n": 1}
    looped["self"] = looped
    chain: list = [1]
    chain.append(chain)
    assert avro_native.untrack(looped) is False and gc.is_tracked(looped)
    assert avro_native.untrack(chain) is False and gc.is_tracked(chain)

    class Other:
        pass

    value = {"other": Other(), "plain": {"a": 1, "b": [Sealed(seq=1)]}}
    assert avro_native.untrack(value) is False
    assert gc.is_tracked(value)  # holds an object of another class
    assert not gc.is_tracked(value["plain"]) and not gc.is_tracked(value["plain"]["b"][0])

    indexed = _Indexed(payments=[Sealed(seq=1), Sealed(seq=2)])
    indexed.at = {("payer", "p1"): 0}
    state = {"state": indexed}
    assert avro_native.untrack(state) is False
    assert gc.is_tracked(state) and gc.is_tracked(indexed)  # a class with slots: stays
    assert not gc.is_tracked(indexed["payments"]) and not any(gc.is_tracked(p) for p in indexed["payments"])
    del looped["self"], chain[1]  # no garbage left behind by the test


def test_untrack_is_bounded_in_depth():
    deep: dict = {"leaf": Sealed(seq=1)}
    for _ in range(12):
        deep = {"down": deep}
    assert avro_native.untrack(deep) is False  # deeper than 8 levels: not walked, and what holds it stays
    inner, levels = deep, [deep]
    for _ in range(12):
        inner = inner["down"]
        levels.append(inner)
    assert all(gc.is_tracked(level) for level in levels) and gc.is_tracked(inner["leaf"])
    assert avro_native.untrack(levels[6]) is True  # 7 levels down to the leaf: within the bound
    assert not any(gc.is_tracked(level) for level in levels[6:]) and not gc.is_tracked(inner["leaf"])
