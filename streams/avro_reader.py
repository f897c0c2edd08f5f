"""Avro binary readers compiled from a schema: the decoding half of ``avro_writer``.

Every payment event is decoded once, at ingest, and fastavro's ``schemaless_reader``
took ~13 µs for one (it interprets the schema on every call and converts each date and
timestamp through a generic logical-type hook). ``compile_reader`` turns a parsed schema
into generated Python functions that read the fields in order from the bytes, with the
common one-byte varints inline: ~9 µs through the codec, its header checks included.

Contract: when a compiled reader returns, its record equals what fastavro reads from the
same bytes (``tests/test_avro_reader.py`` checks every schema on generated and real
records, and truncated and corrupted ones). It is strict and never guesses: on anything
unexpected (a truncated record, a negative length, an enum or union index out of range)
it raises, and the codec then asks fastavro, whose result or error stands. It reads only
with the writer's own schema (no schema resolution: a record written with an older
version goes to fastavro); a schema with a construct this module does not compile
(fixed, float, double, a logical type other than date and timestamp-millis) gets no
compiled reader.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable

from .avro_compile import NotCompilable, SchemaCompiler, compiled
from .sealed import SEALED_RECORDS, Sealed

#: (data, position) -> (record, position after it)
Reader = Callable[[bytes, int], tuple[dict, int]]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_DATES: dict[int, dt.date] = {}  # days since 1970 -> the date: payout and period days repeat


def long_at(b: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint (Avro int and long) at ``pos``: (value, position after it)."""
    x = b[pos]
    if x < 0x80:
        return (x >> 1) ^ -(x & 1), pos + 1
    y = b[pos + 1]
    if y < 0x80:  # two bytes: e.g. a length of 64-8,191
        n = (x & 0x7F) | (y << 7)
        return (n >> 1) ^ -(n & 1), pos + 2
    z = b[pos + 2]
    if z < 0x80:  # three bytes: every date of this era, amounts up to 10,485 kronor
        n = (x & 0x7F) | ((y & 0x7F) << 7) | (z << 14)
        return (n >> 1) ^ -(n & 1), pos + 3
    pos += 1
    n = x & 0x7F
    shift = 7
    while x & 0x80:
        x = b[pos]
        pos += 1
        n |= (x & 0x7F) << shift
        shift += 7
        if shift > 70:
            raise ValueError("varint longer than 10 bytes")
    return (n >> 1) ^ -(n & 1), pos


def size_at(b: bytes, pos: int) -> tuple[int, int]:
    """A length (strings, bytes): a long that must not be negative."""
    n, pos = long_at(b, pos)
    if n < 0:
        raise ValueError(f"negative length {n}")
    return n, pos


def date_of(days: int) -> dt.date:
    day = _DATES.get(days)
    if day is None:
        day = dt.date.fromordinal(days + _EPOCH_ORDINAL)
        if len(_DATES) < 100_000:  # ~270 years of days: bounded whatever the input
            _DATES[days] = day
    return day


def timestamp_of(millis: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(0, 0, millis * 1000)  # as fastavro reads it (positional: no keyword to parse)


_HELPERS = {"long_at": long_at, "size_at": size_at, "date_of": date_of, "timestamp_of": timestamp_of,
            "DATES": _DATES}


class _Compiler(SchemaCompiler):
    label = "avro reader"

    # -- code for one value ---------------------------------------------------------------
    def long(self, target: str, indent: str, body: list[str]) -> None:
        """``target = `` the long at ``pos``; the one-byte case inline."""
        x = self.var("x")
        body.append(f"{indent}{x} = b[pos]")
        body.append(f"{indent}if {x} < 128: {target} = ({x} >> 1) ^ -({x} & 1); pos += 1")
        body.append(f"{indent}else: {target}, pos = long_at(b, pos)")

    def sized(self, target: str, indent: str, body: list[str], text: bool) -> None:
        """``target = `` the string or bytes at ``pos``."""
        n, x, end = self.var("n"), self.var("x"), self.var("e")
        body.append(f"{indent}{x} = b[pos]")
        body.append(f"{indent}if {x} < 128 and not {x} & 1: {n} = {x} >> 1; pos += 1")
        body.append(f"{indent}else: {n}, pos = size_at(b, pos)")
        body.append(f"{indent}{end} = pos + {n}")
        body.append(f"{indent}if {end} > len(b): raise EOFError('truncated')")
        body.append(f"{indent}{target} = b[pos:{end}]{'.decode()' if text else ''}; pos = {end}")

    def single(self, schema: Any, kind: str, logical: str | None, target: str, indent: str,
               body: list[str]) -> None:
        """Append statements reading a value of ``schema`` (not a union) at ``pos`` into ``target``."""
        if kind in ("long", "int"):
            if logical is None:
                self.long(target, indent, body)
            elif logical == "date":
                days = self.var("d")
                self.long(days, indent, body)
                body.append(f"{indent}{target} = DATES.get({days}) or date_of({days})")
            elif logical == "timestamp-millis":
                millis = self.var("m")
                self.long(millis, indent, body)
                body.append(f"{indent}{target} = timestamp_of({millis})")
            else:
                raise NotCompilable(f"logical type {logical}")
        elif logical is not None and kind not in ("record", "enum", "array", "map"):
            raise NotCompilable(f"logical type {logical} on {kind}")
        elif kind == "string":
            self.sized(target, indent, body, text=True)
        elif kind == "bytes":
            self.sized(target, indent, body, text=False)
        elif kind == "boolean":
            body.append(f"{indent}{target} = b[pos] != 0; pos += 1")
        elif kind == "null":
            body.append(f"{indent}{target} = None")
        elif kind == "enum":
            symbols, index = self.const(tuple(schema["symbols"])), self.var("i")
            self.long(index, indent, body)
            body.append(f"{indent}if not 0 <= {index} < {len(schema['symbols'])}: raise ValueError('enum index')")
            body.append(f"{indent}{target} = {symbols}[{index}]")
        elif kind == "record":
            body.append(f"{indent}{target}, pos = {self.record_function(schema)}(b, pos)")
        elif kind in ("array", "map"):
            self.blocks(schema, kind, target, indent, body)
        else:
            raise NotCompilable(f"type {kind}")

    def blocks(self, schema: dict, kind: str, target: str, indent: str, body: list[str]) -> None:
        """Arrays and maps: blocks of items, a block with a negative count has its size first."""
        items, count, item, skipped = self.var("a"), self.var("k"), self.var("v"), self.var("s")
        body.append(f"{indent}{items} = {'[]' if kind == 'array' else '{}'}")
        body.append(f"{indent}while True:")
        inner = indent + "    "
        body.append(f"{inner}{count}, pos = long_at(b, pos)")
        body.append(f"{inner}if {count} == 0: break")
        body.append(f"{inner}if {count} < 0: {count} = -{count}; {skipped}, pos = long_at(b, pos)")
        body.append(f"{inner}for _ in range({count}):")
        loop = inner + "    "
        if kind == "array":
            self.value(schema["items"], item, loop, body)
            body.append(f"{loop}{items}.append({item})")
        else:
            key = self.var("key")
            self.sized(key, loop, body, text=True)
            self.value(schema["values"], item, loop, body)
            body.append(f"{loop}{items}[{key}] = {item}")
        body.append(f"{indent}{target} = {items}")

    def union(self, branches: list, target: str, indent: str, body: list[str]) -> None:
        if len(branches) > 63:
            raise NotCompilable("a union of more than 63 branches")
        index = self.var("u")
        body.append(f"{indent}{index} = b[pos]; pos += 1")  # zig-zag 2i: one byte for i < 64
        for i, branch in enumerate(branches):
            body.append(f"{indent}{'if' if i == 0 else 'elif'} {index} == {i << 1}:")
            self.value(branch, target, indent + "    ", body)
        body.append(f"{indent}else: raise ValueError('union index')")

    def record(self, func: str, schema: dict) -> list[str]:
        body = [f"def {func}(b, pos):"]
        sealed = schema["name"] in self.sealed
        if sealed:
            body.append("    start = pos")
        fields = []
        for field in schema["fields"]:
            local = self.var("f")
            self.value(field["type"], local, "    ", body)
            fields.append(f"{field['name']!r}: {local}")
        if sealed:  # with the bytes it was read from: written from them while it is unchanged
            body.append(f"    r = Sealed({{{', '.join(fields)}}})")
            body.append(f"    r.memo = ({self.const(schema['name'])}, bytes(b[start:pos]))")
            body.append("    return r, pos")
        else:
            body.append(f"    return {{{', '.join(fields)}}}, pos")
        return body


def compile_reader(parsed: dict, sealed: frozenset[str] = SEALED_RECORDS) -> Reader | None:
    """The compiled reader of a fastavro-parsed record schema, or None when it has
    constructs this module leaves to fastavro. Records named in ``sealed`` are read as
    ``Sealed`` items that keep the bytes they were read from."""
    return compiled(_Compiler, parsed, {"Sealed": Sealed, **_HELPERS}, sealed)
