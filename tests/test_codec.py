import datetime as dt
import io
import json

import avro.io
import avro.schema
import pytest

from streams.codec import MAGIC, SCHEMA_DIR, Codec, CodecError, default_codec
from tests.conftest import STOCKHOLM, payment


def test_round_trip_and_single_object_header():
    codec = default_codec()
    event = payment(STOCKHOLM, "198112189876", "p-1", "PLANNED", 512300)
    data = codec.encode("PaymentEvent", event)
    assert data[:2] == MAGIC
    assert data[2:10] == codec.schema("PaymentEvent").fingerprint
    assert codec.decode(data, expect="PaymentEvent") == event


def test_fingerprint_is_crc64_avro_of_canonical_form():
    # The spec's fingerprint of the schema "int" (little endian on the wire) is 8f5c393f1ad57572.
    from fastavro.schema import fingerprint
    assert fingerprint('"int"', "CRC-64-AVRO") == "8f5c393f1ad57572"


def test_reference_avro_library_reads_our_records_and_we_read_its():
    codec = default_codec()
    version = codec.schema("LedgerEntry")
    schema = avro.schema.parse(json.dumps(codec.standalone("LedgerEntry")))
    entry = {
        "entry_id": "2120000142:p-1:PLANNED", "payee_id": "198112189876", "sequence": 1, "payer_id": "2120000142",
        "payment_id": "p-1", "event_id": "e1", "event_type": "PLANNED", "status": "PLANNED", "previous_status": None,
        "representative_id": None, "bank_account": "8327-9123456789", "amount_ore": 512300,
        "category": "SOCIAL_ASSISTANCE", "period_start": dt.date(2026, 11, 1), "period_end": dt.date(2026, 11, 30),
        "payout_date": dt.date(2026, 11, 25), "paid_delta_ore": 0, "upcoming_delta_ore": 512300,
        "event_time": dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.timezone.utc),
        "registered_at": dt.datetime(2026, 11, 24, 8, 0, 1, tzinfo=dt.timezone.utc),
    }
    ours = codec.encode("LedgerEntry", entry)
    read = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(ours[10:])))
    assert read["amount_ore"] == 512300 and read["payee_id"] == "198112189876"
    assert read["payout_date"] == dt.date(2026, 11, 25)
    buf = io.BytesIO()
    avro.io.DatumWriter(schema).write(read, avro.io.BinaryEncoder(buf))
    theirs = MAGIC + version.fingerprint + buf.getvalue()
    assert codec.decode(theirs, expect="LedgerEntry") == entry


def test_unknown_fingerprint_and_garbage_are_rejected():
    codec = default_codec()
    with pytest.raises(CodecError) as exc:
        codec.decode(MAGIC + b"\x00" * 8 + b"\x02")
    assert exc.value.reason == "UNKNOWN_SCHEMA"
    with pytest.raises(CodecError) as exc:
        codec.decode(b'{"json": true}')
    assert exc.value.reason == "UNDECODABLE"
    with pytest.raises(CodecError) as exc:
        codec.decode(codec.encode("DeadLetter", {
            "reason": "X", "detail": "", "stage": "ingest", "source_topic": "t", "source_partition": 0,
            "source_offset": 0, "rejected_at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)}), expect="PaymentEvent")
    assert exc.value.reason == "WRONG_SCHEMA"


def test_decode_of_an_expected_schema_checks_as_much_after_its_first_record():
    """``decode(data, expect=...)`` reads records of the expected schema's current version
    straight after the first one (``Codec._expected``): the others still get their errors."""
    codec = default_codec()
    data = codec.encode("PaymentEvent", payment(STOCKHOLM, "198112189876", "p1", "PLANNED", 12_300))
    first = codec.decode(data, expect="PaymentEvent")
    assert "PaymentEvent" in codec._expected  # the way taken from now on
    again = codec.decode(data, expect="PaymentEvent")
    assert again == first and again is not first and again["amount_ore"] == 12_300
    letter = codec.encode("DeadLetter", {
        "reason": "X", "detail": "", "stage": "ingest", "source_topic": "t", "source_partition": 0,
        "source_offset": 0, "rejected_at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)})
    for bad, reason in ((letter, "WRONG_SCHEMA"), (data[:-3], "UNDECODABLE"), (data[:12], "UNDECODABLE"),
                        (b"\xc3", "UNDECODABLE"), (MAGIC + b"\x00" * 8 + data[10:], "UNKNOWN_SCHEMA")):
        with pytest.raises(CodecError) as exc:
            codec.decode(bad, expect="PaymentEvent")
        assert exc.value.reason == reason
    with pytest.raises(CodecError) as exc:
        codec.decode(bytearray(data[:-3]), expect="PaymentEvent")  # not bytes: the checked way
    assert exc.value.reason == "UNDECODABLE"
    assert codec.decode(bytearray(data), expect="PaymentEvent") == first


def test_old_schema_version_resolves_to_current_with_defaults(tmp_path):
    """Schema evolution: a record written with an older version gets the new field's default."""
    current = json.loads((SCHEMA_DIR / "dead_letter.avsc").read_text())
    old = dict(current, fields=[f for f in current["fields"] if f["name"] != "event_id"])
    schemas = tmp_path / "schemas"
    (schemas / "history").mkdir(parents=True)
    (schemas / "dead_letter.avsc").write_text(json.dumps(current))
    (schemas / "history" / "dead_letter.v1.avsc").write_text(json.dumps(old))
    codec = Codec(schemas)
    old_only = Codec(schemas / "history")  # a writer that only knows v1
    record = {"reason": "X", "detail": "d", "stage": "ingest", "source_topic": "t", "source_partition": 1,
              "source_offset": 2, "payer_id": None, "original_key": None, "original_value": b"\x01",
              "rejected_at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)}
    data = old_only.encode("DeadLetter", record)
    decoded = codec.decode(data)
    assert decoded["event_id"] is None and decoded["original_value"] == b"\x01"


def test_a_record_that_does_not_fit_names_the_schema():
    with pytest.raises(CodecError, match="PaymentEvent"):
        default_codec().encode("PaymentEvent", {"event_id": "x"})


def test_each_schema_is_parsed_with_only_its_own_named_types_and_encodes_as_before():
    # Parsed together, every schema carried the directory's whole named-type table (copied by
    # fastavro on each call); each is re-parsed standalone, with the same encoding.
    from fastavro import schemaless_writer
    from streams.codec import _parse_all

    codec = default_codec()
    joint = {path.name: parsed for path, parsed in _parse_all(sorted(SCHEMA_DIR.glob("*.avsc")), {})}
    event = payment(STOCKHOLM, "198112189876", "p-1", "PLANNED", 512300)
    assert len(codec.schema("PaymentEvent").parsed["__named_schemas"]) < len(joint)
    buf = io.BytesIO()
    schemaless_writer(buf, joint["payment_event.avsc"], event)
    assert codec.encode("PaymentEvent", event)[10:] == buf.getvalue()
    for name in codec.names():  # the fingerprints are those of the files' canonical forms, as before
        version = codec.schema(name)
        assert codec.writer_of(MAGIC + version.fingerprint + b"\x00") is version
