"""The Avro writer and reader in C: programs built from a schema for ``streams/_avro_native.c``.

The generated Python writers (``avro_writer``) spend 8-20 µs a record on dict lookups,
type tests and byte appends, and a payment event makes ~6 records (~40 µs of the ~175 µs a
payment costs the stages); the generated reader ~9 µs for the payment event ingest reads.
The C writer walks a *program*, a tree of tuples made once per schema here, over the same
dicts: ~1-3 µs a record. The C reader walks a program of its own over the bytes.

Contract, the same as the Python writer's and reader's: when the C writer returns, its
bytes equal the Python writer's and fastavro's, byte for byte, ``Sealed`` memos included;
when the C reader returns, its record equals the Python reader's and fastavro's, memos
included (``tests/test_avro_native.py``). They handle the same constructs, and the writer
only the exact types the Python writer special-cases; for anything else (an aware
datetime not in UTC, an int beyond 64 bits, a field missing, bytes that are truncated or
corrupt ...) they raise ``Refused`` and the codec asks the Python writer or reader, whose
result or error stands. A schema with a construct they do not build gets no program (None).

The C module is built when the package is installed (``setup.py``; a C compiler and the
Python headers). Where it is not there, or ``TKONTO_NATIVE_CODEC=false``, the codec uses
the Python writers alone (``available``).
"""
from __future__ import annotations

import hashlib
import logging
import sys
from pathlib import Path
from typing import Any

from .avro_compile import NotCompilable, SchemaCompiler
from .sealed import SEALED_RECORDS, Sealed

log = logging.getLogger(__name__)
SOURCE = Path(__file__).with_name("_avro_native.c")

try:
    from . import _avro_native as _native
except ImportError:  # not built (no C compiler at install time): the Python writers do it all
    _native = None
    why_not = "not built: install the package where a C compiler and the Python headers are (pip install -e .)"
else:
    why_not = ""
    if SOURCE.exists() and getattr(_native, "SOURCE_SHA256", None) != hashlib.sha256(SOURCE.read_bytes()).hexdigest():
        # an editable install whose source changed since the build: never run old C code
        _native = None
        why_not = f"built from an older {SOURCE.name}: rebuild it with pip install -e . (make install)"
        log.warning("the C Avro codec is not used: %s", why_not)

OP_NULL, OP_BOOLEAN, OP_LONG, OP_DATE, OP_TIMESTAMP_MILLIS, OP_STRING, OP_BYTES, OP_ENUM, \
    OP_RECORD, OP_ARRAY, OP_MAP, OP_UNION = range(12)
T_NONE, T_STR, T_INT, T_BOOL, T_BYTES, T_RECORD, T_MAP, T_LIST, T_DATE, T_DATETIME = range(10)
F_REQUIRED, F_OPTIONAL, F_DEFAULT = range(3)

#: (type, logical type) of a union branch -> the test of a value's Python type that picks it
_BRANCH_TESTS = {
    ("null", None): T_NONE, ("string", None): T_STR, ("enum", None): T_STR, ("long", None): T_INT,
    ("int", None): T_INT, ("boolean", None): T_BOOL, ("bytes", None): T_BYTES, ("record", None): T_RECORD,
    ("map", None): T_MAP, ("array", None): T_LIST, ("int", "date"): T_DATE,
    ("long", "timestamp-millis"): T_DATETIME,
}

available = _native is not None
Refused = _native.Refused if _native is not None else ValueError
if _native is not None:
    from .avro_reader import _DATES

    _native.use_sealed(Sealed)
    _native.dict_lookup(Sealed)  # read as fast as a dict: every decoded event and state item is one
    _native.use_dates(_DATES)  # the Python reader's cache of dates: a payee's dates repeat
    write = _native.write
    read = _native.read
    murmur2 = _native.murmur2
    dict_lookup = _native.dict_lookup
    utc_text = _native.utc_text
    untrack = _native.untrack
else:
    def utc_text(value) -> None:
        """Without the C module: None, and the caller formats the datetime in Python."""
        return None

    def dict_lookup(cls: type) -> bool:
        """Without the C module a subclass of dict keeps Python's lookup (slower, the same)."""
        return False

    def untrack(value) -> bool:
        """Without the C module a store's values stay with the cyclic collector (slower, the same)."""
        return False


class _Builder:
    """The writer's program. Field names and enum symbols are interned: the same string
    objects as the names the code spells (``record["payee_id"]``, ``"PLANNED"``), so a
    dict look-up of a decoded record, or of a built one by the writer, finds its key by
    identity, not by comparing the characters (the schemas' JSON gives strings of their own)."""

    def __init__(self, named: dict, sealed: frozenset[str]):
        self.named = named
        self.sealed = sealed
        self.records: dict[str, tuple] = {}

    def resolve(self, schema: Any) -> Any:
        return self.named.get(schema, schema) if isinstance(schema, str) else schema

    def node(self, schema: Any) -> tuple:
        schema = self.resolve(schema)
        if isinstance(schema, list):
            return self.union(schema)
        kind, logical = SchemaCompiler.kind_of(schema)
        if kind in ("long", "int"):
            ops = {None: OP_LONG, "date": OP_DATE, "timestamp-millis": OP_TIMESTAMP_MILLIS}
            if logical not in ops:
                raise NotCompilable(f"logical type {logical}")
            return (ops[logical],)
        simple = {"null": OP_NULL, "boolean": OP_BOOLEAN, "string": OP_STRING, "bytes": OP_BYTES}
        if kind in simple:
            return (simple[kind],)
        if kind == "enum":
            return (OP_ENUM, {sys.intern(symbol): i for i, symbol in enumerate(schema["symbols"])})
        if kind == "record":
            return self.record(schema)
        if kind == "array":
            return (OP_ARRAY, self.node(schema["items"]))
        if kind == "map":
            return (OP_MAP, self.node(schema["values"]))
        raise NotCompilable(f"type {kind}")

    def union(self, branches: list) -> tuple:
        tests = []
        for index, branch in enumerate(branches):
            resolved = self.resolve(branch)
            if isinstance(resolved, list):
                raise NotCompilable(f"union {branches}")
            test = _BRANCH_TESTS.get(SchemaCompiler.kind_of(resolved))
            if test is None or any(t == test for t, _, _ in tests):
                raise NotCompilable(f"union {branches}")
            tests.append((test, index, self.node(branch)))
        return (OP_UNION, tuple(tests))

    def record(self, schema: dict) -> tuple:
        name = schema["name"]
        if name in self.records:
            return self.records[name]
        fields: list[tuple] = []  # filled after the node exists: a record may refer to itself
        node = self.records[name] = (OP_RECORD, fields, name if name in self.sealed else None)
        fields += [self.field(field) for field in schema["fields"]]
        return node

    def field(self, field: dict) -> tuple:
        """(name, how a missing one is read, its default, node), as the Python writer reads it."""
        if "default" in field:
            mode, default = F_DEFAULT, field["default"]
        elif isinstance(field["type"], list) and "null" in field["type"]:
            mode, default = F_OPTIONAL, None
        else:
            mode, default = F_REQUIRED, None
        return sys.intern(field["name"]), mode, default, self.node(field["type"])


class _ReaderBuilder(_Builder):
    """The reader's program: a record's fields are (name, node), enums carry their symbols
    in order, a union its branches in order."""

    def node(self, schema: Any) -> tuple:
        schema = self.resolve(schema)
        if isinstance(schema, list):
            if len(schema) > 63:
                raise NotCompilable("a union of more than 63 branches")
            return (OP_UNION, tuple(self.node(branch) for branch in schema))
        kind, logical = SchemaCompiler.kind_of(schema)
        if logical is not None and kind not in ("long", "int", "record", "enum", "array", "map"):
            raise NotCompilable(f"logical type {logical} on {kind}")
        if kind == "enum":
            return (OP_ENUM, tuple(map(sys.intern, schema["symbols"])))
        return super().node(schema)

    def field(self, field: dict) -> tuple:
        return sys.intern(field["name"]), self.node(field["type"])


def _built(builder: type[_Builder], parsed: dict, sealed: frozenset[str]) -> tuple | None:
    if _native is None or not isinstance(parsed, dict) or parsed.get("type") != "record":
        return None
    try:
        return builder(parsed.get("__named_schemas", {}), sealed).node(parsed)
    except NotCompilable:
        return None


def program(parsed: dict, sealed: frozenset[str] = SEALED_RECORDS) -> tuple | None:
    """The C writer's program for a fastavro-parsed record schema, or None when it has
    constructs the C writer leaves to the Python writer (or the C module is not built)."""
    return _built(_Builder, parsed, sealed)


def reader_program(parsed: dict, sealed: frozenset[str] = SEALED_RECORDS) -> tuple | None:
    """The C reader's program for a fastavro-parsed record schema (read with that schema
    itself, no resolution), or None when it has constructs the C reader leaves to the
    Python reader (or the C module is not built). Records named in ``sealed`` are read as
    ``Sealed`` items that keep the bytes they were read from, as the Python reader does."""
    return _built(_ReaderBuilder, parsed, sealed)
