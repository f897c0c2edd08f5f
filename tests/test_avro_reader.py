"""The compiled Avro readers read exactly what fastavro reads, and defer to it otherwise."""
import io
import random

import pytest
from fastavro import schemaless_reader

from streams.avro_reader import compile_reader, long_at
from streams.codec import HEADER_LEN, CodecError, default_codec
from tests.conftest import STOCKHOLM, payment
from tests.test_avro_writer import LONGS, fastavro_bytes, random_value

SCHEMAS = default_codec().names()


def fastavro_record(name: str, body: bytes):
    return schemaless_reader(io.BytesIO(body), default_codec().schema(name).parsed, None)


def compiled_record(name: str, body: bytes):
    record, end = compile_reader(default_codec().schema(name).parsed)(body, 0)
    return record, end


@pytest.mark.parametrize("name", SCHEMAS)
def test_compiled_reader_reads_what_fastavro_reads_from_random_records(name):
    parsed = default_codec().schema(name).parsed
    rnd = random.Random(name)
    for _ in range(300):
        body = fastavro_bytes(name, random_value(parsed, parsed["__named_schemas"], rnd))
        record, end = compiled_record(name, body)
        assert end == len(body)
        assert record == fastavro_record(name, body)
        assert list(record) == list(fastavro_record(name, body))  # the fields in schema order too


@pytest.mark.parametrize("n", LONGS + [2**28, 1_795_552_273_080, -2**40])
def test_long_at_reads_fastavros_long(n):
    from fastavro import schemaless_writer
    buf = io.BytesIO()
    schemaless_writer(buf, "long", n)
    assert long_at(buf.getvalue(), 0) == (n, len(buf.getvalue()))


def test_the_codec_decodes_a_real_payment_with_the_compiled_reader():
    codec = default_codec()
    event = payment(STOCKHOLM, "198112189876", "p-1", "PLANNED", 512300)
    data = codec.encode("PaymentEvent", event)
    assert compiled_record("PaymentEvent", data[HEADER_LEN:])[0] == event
    assert codec.decode(data, expect="PaymentEvent") == event
    assert codec.decode(data)["event_time"].tzinfo is not None  # aware, in UTC, as fastavro reads it


def test_every_truncation_of_a_record_is_refused_by_both():
    codec = default_codec()
    event = payment(STOCKHOLM, "198112189876", "p-1", "PLANNED", 512300)
    body = codec.encode("PaymentEvent", event)[HEADER_LEN:]
    for cut in range(len(body)):
        with pytest.raises(Exception):
            compiled_record("PaymentEvent", body[:cut])
        with pytest.raises(CodecError) as err:
            codec.decode(codec.encode("PaymentEvent", event)[:HEADER_LEN + cut])
        assert err.value.reason == "UNDECODABLE"


def test_corrupted_bytes_give_fastavros_result_or_its_error():
    """Where the compiled reader refuses (an enum or union index out of range, a negative
    length), the codec's answer is fastavro's: the same record, or UNDECODABLE."""
    codec = default_codec()
    event = payment(STOCKHOLM, "198112189876", "p-1", "PLANNED", 512300)
    data = codec.encode("PaymentEvent", event)
    rnd = random.Random(7)
    refused = 0
    for _ in range(400):
        corrupt = bytearray(data)
        corrupt[rnd.randrange(HEADER_LEN, len(data))] = rnd.randrange(256)
        try:
            expected = fastavro_record("PaymentEvent", bytes(corrupt[HEADER_LEN:]))
        except Exception:
            expected = None
        try:
            compiled_record("PaymentEvent", bytes(corrupt[HEADER_LEN:]))
        except Exception:
            refused += 1
        if expected is None:
            with pytest.raises(CodecError):
                codec.decode(bytes(corrupt))
        else:
            assert codec.decode(bytes(corrupt)) == expected
    assert refused > 0


def test_a_negative_enum_index_is_left_to_fastavro():
    """fastavro reads index -1 as the last symbol (Python indexing); the compiled reader refuses it."""
    codec = default_codec()
    data = codec.encode("PaymentEvent", payment(STOCKHOLM, "198112189876", "p-1", "PLANNED", 512300))
    body = bytearray(data[HEADER_LEN:])
    start = 0
    for _ in range(3):  # event_id, payer_id, payment_id: the strings before event_type
        n, start = long_at(body, start)
        start += n
    body[start] = 0x01  # zig-zag -1
    with pytest.raises(ValueError):
        compiled_record("PaymentEvent", bytes(body))
    assert codec.decode(data[:HEADER_LEN] + bytes(body))["event_type"] == fastavro_record(
        "PaymentEvent", bytes(body))["event_type"] == "RECALLED"
