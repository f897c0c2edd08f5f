"""The one codec for every tkonto topic: Avro single-object encoding.

Wire format (Avro specification, "Single object encoding"):

    C3 01 | CRC-64-AVRO fingerprint of the writer schema's canonical form (8 bytes, little
    endian) | Avro binary body

Any Avro library can read the topics with the ``.avsc`` files in ``schemas/``, and a reader
can tell which schema version wrote each record. Older versions of a schema live in
``schemas/history/``; a record written with one of them is resolved to the current schema
(new fields take their defaults). An unknown fingerprint is rejected, never guessed.

Records are written by the C writer (``avro_native``) where it is built, and by writers
compiled from the schemas (``avro_writer``) where it is not or for a value it refuses,
byte for byte what fastavro writes. They are read the same way, by the C reader or the
compiled readers (``avro_reader``), where the writer's schema is the current one, giving
what fastavro reads. fastavro is the last fallback of both,
the judge of a record that does not fit and of bytes that do not decode, and resolves
older versions.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import expand_schema, fingerprint, parse_schema, to_parsing_canonical_form

from . import avro_native
from .avro_reader import compile_reader
from .avro_writer import compile_writer
from .settings import REPO_ROOT, Settings

MAGIC = b"\xc3\x01"
HEADER_LEN = 10
SCHEMA_DIR = REPO_ROOT / "schemas"


class CodecError(ValueError):
    """Bytes that are not a record we can read, or a record that does not fit its schema."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class SchemaVersion:
    name: str  # full name, e.g. se.tkonto.PaymentEvent
    fingerprint: bytes  # 8 bytes, little endian, as on the wire
    parsed: Any
    canonical: str
    current: bool


def _fingerprint_bytes(canonical: str) -> bytes:
    return int(fingerprint(canonical, "CRC-64-AVRO"), 16).to_bytes(8, "little")


def _parse_all(paths: list[Path], named: dict) -> list[tuple[Path, Any]]:
    """Parse schema files whose named types may refer to each other, in dependency order."""
    pending = list(paths)
    parsed: list[tuple[Path, Any]] = []
    while pending:
        progressed = False
        for path in list(pending):
            try:
                schema = parse_schema(json.loads(path.read_text()), named)
            except Exception as exc:  # fastavro raises UnknownType for a forward reference
                if type(exc).__name__ == "UnknownType":
                    continue
                raise CodecError("BAD_SCHEMA_FILE", f"{path}: {exc}") from exc
            parsed.append((path, schema))
            pending.remove(path)
            progressed = True
        if not progressed:
            raise CodecError("BAD_SCHEMA_FILE", f"unresolvable named types in {[str(p) for p in pending]}")
    return parsed


def _expanded_form(schema: Any) -> str:
    """The canonical form with every named type written out: equal means same encoding."""
    return to_parsing_canonical_form(expand_schema(schema))


class Codec:
    """Encodes and decodes every record tkonto reads or writes."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR, native: bool = True):
        named: dict = {}
        self.native = native and avro_native.available  # write and read with the C codec first
        self._current: dict[str, SchemaVersion] = {}
        self._by_fingerprint: dict[bytes, SchemaVersion] = {}
        for path, schema in _parse_all(sorted(schema_dir.glob("*.avsc")), named):
            self._add(schema, current=True)
        # Parsed together, every schema carries all 40-odd named types of the directory, and
        # fastavro copies that table on every read and write. Re-parsed standalone, each
        # carries only the types it uses: same canonical form and bytes, ~1-2 µs less a call.
        for name, version in list(self._current.items()):
            try:
                own = parse_schema(self.standalone(name), {})
            except Exception:  # standalone() cannot express this one (a reference before its definition)
                continue
            if _expanded_form(own) != _expanded_form(version.parsed):  # never expected; keep the original then
                continue
            self._current[name] = replace(version, parsed=own)
            if self._by_fingerprint.get(version.fingerprint) is version:
                self._by_fingerprint[version.fingerprint] = self._current[name]
        history = schema_dir / "history"
        if history.is_dir():
            for path in sorted(history.glob("*.avsc")):
                # Each historical version is parsed on its own, with its own named types.
                self._add(parse_schema(json.loads(path.read_text()), {}), current=False)
        # name as callers pass it -> (header, C program or None, compiled writer or None), filled on first use
        self._writers: dict[str, tuple[bytes, Any, Any]] = {}
        # fingerprint of a current version -> (C program or None, compiled reader or None)
        self._readers: dict[bytes, tuple[Any, Any]] = {}
        # ``expect`` as callers pass it -> (the header of its current version, its C program),
        # once one such record was read: ``decode``'s way for them, which checked 1.4 µs a
        # record in Python before the C reader's 1.7 (a header sliced twice, looked up, named)
        self._expected: dict[str, tuple[bytes, Any]] = {}

    def _add(self, schema: Any, current: bool) -> None:
        canonical = to_parsing_canonical_form(schema)
        version = SchemaVersion(schema["name"], _fingerprint_bytes(canonical), schema, canonical, current)
        if current:
            self._current[version.name] = version
        self._by_fingerprint.setdefault(version.fingerprint, version)

    # -- schema facts -----------------------------------------------------------------
    def schema(self, name: str) -> SchemaVersion:
        try:
            return self._current[self._full(name)]
        except KeyError:
            raise CodecError("UNKNOWN_SCHEMA", f"no schema named {name!r} in {SCHEMA_DIR}") from None

    def standalone(self, name: str) -> dict:
        """The schema as one self-contained JSON document (each named type defined once,
        then referenced by name): what another Avro library needs to read a topic."""
        defined: set[str] = set()

        def walk(node):
            if isinstance(node, list):
                return [walk(n) for n in node]
            if not isinstance(node, dict):
                return node
            if node.get("type") in ("record", "enum", "fixed") and "name" in node:
                if node["name"] in defined:
                    return node["name"]
                defined.add(node["name"])
            return {k: walk(v) for k, v in node.items() if not k.startswith("__")}

        return walk(expand_schema(self.schema(name).parsed))

    def names(self) -> list[str]:
        return sorted(self._current)

    @staticmethod
    def _full(name: str) -> str:
        return name if "." in name else f"se.tkonto.{name}"

    # -- encoding ---------------------------------------------------------------------
    def encode(self, name: str, record: dict) -> bytes:
        fast = self._writers.get(name)
        if fast is None:
            version = self.schema(name)
            program = avro_native.program(version.parsed) if self.native else None
            fast = self._writers[name] = (MAGIC + version.fingerprint, program, compile_writer(version.parsed))
        header, program, writer = fast
        if program is not None:
            try:
                return avro_native.write(header, program, record)
            except avro_native.Refused:  # the Python writer decides
                pass
        if writer is not None:
            out = bytearray(header)
            try:
                writer(record, out)
                return bytes(out)
            except Exception:  # fastavro decides: it writes what it accepts, or says what does not fit
                pass
        return self._encode_with_fastavro(name, record)

    def _encode_with_fastavro(self, name: str, record: dict) -> bytes:
        version = self.schema(name)
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(version.fingerprint)
        try:
            schemaless_writer(buf, version.parsed, record)
        except Exception as exc:  # fastavro raises ValueError/TypeError/KeyError for bad records
            raise CodecError("RECORD_DOES_NOT_FIT_SCHEMA", f"{version.name}: {exc}") from exc
        return buf.getvalue()

    # -- decoding ---------------------------------------------------------------------
    def writer_of(self, data: bytes) -> SchemaVersion:
        if not isinstance(data, (bytes, bytearray)) or len(data) < HEADER_LEN:
            raise CodecError("UNDECODABLE", "not an Avro single-object record (too short)")
        if data[:2] != MAGIC:
            raise CodecError(
                "UNDECODABLE",
                f"not an Avro single-object record (starts {bytes(data[:2]).hex()}, expected c301); "
                "publish with tkonto's PayerClient or any Avro single-object encoder",
            )
        version = self._by_fingerprint.get(bytes(data[2:HEADER_LEN]))
        if version is None:
            raise CodecError(
                "UNKNOWN_SCHEMA",
                f"writer schema fingerprint {bytes(data[2:HEADER_LEN]).hex()} is not a known version; "
                "add the schema to schemas/history/ or publish with a current schema",
            )
        return version

    def decode(self, data: bytes, expect: str | None = None) -> dict:
        """Decode one record; with ``expect``, insist that it is of that schema."""
        expected = self._expected.get(expect)
        if expected is not None and type(data) is bytes and data.startswith(expected[0]):
            try:
                return avro_native.read(expected[1], data, HEADER_LEN)
            except avro_native.Refused:  # the way below decides
                pass
        writer = self.writer_of(data)
        if expect is not None and writer.name != self._full(expect):
            raise CodecError("WRONG_SCHEMA", f"expected {self._full(expect)}, got {writer.name}")
        if writer.current:
            readers = self._readers.get(writer.fingerprint)
            if readers is None:
                program = avro_native.reader_program(writer.parsed) if self.native else None
                readers = self._readers[writer.fingerprint] = (program, compile_reader(writer.parsed))
            program, compiled = readers
            if program is not None and expect is not None:
                self._expected[expect] = (MAGIC + writer.fingerprint, program)
            if program is not None:
                try:
                    return avro_native.read(program, data, HEADER_LEN)
                except avro_native.Refused:  # the Python reader decides
                    pass
            if compiled is not None:
                try:
                    return compiled(data, HEADER_LEN)[0]
                except Exception:  # fastavro decides: it reads what it can, or says what is wrong
                    pass
        reader = None if writer.current else self._current.get(writer.name)
        if not writer.current and reader is None:
            raise CodecError("UNKNOWN_SCHEMA", f"{writer.name} has no current version to resolve to")
        try:
            return schemaless_reader(
                io.BytesIO(data[HEADER_LEN:]), writer.parsed, reader.parsed if reader else None
            )
        except Exception as exc:
            raise CodecError("UNDECODABLE", f"{writer.name} body does not decode: {exc}") from exc


_default: Codec | None = None


def default_codec() -> Codec:
    """The process-wide codec (schemas parsed once)."""
    global _default
    if _default is None:
        _default = Codec(native=Settings.from_env().native_codec)
    return _default

