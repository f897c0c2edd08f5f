"""Avro binary writers compiled from a schema: the hot half of the codec.

fastavro's writer interprets the schema on every call; for a union it tries each branch
against the value, which for a record branch walks the whole record. tkonto's records are
nested records with many optional fields, so a payment-sized record cost 25-40 µs to write.
``compile_writer`` turns a parsed schema into one generated Python function (a few µs):
fields in order, each written with the few byte operations the Avro specification
prescribes (zig-zag varints, length-prefixed UTF-8, block-encoded arrays and maps).

Contract: when a compiled writer returns, its bytes equal fastavro's byte for byte
(``tests/test_avro_writer.py`` checks every schema on generated and real records). It
is strict and never guesses: a value of an unexpected type raises, and the codec then
asks fastavro, which either writes it (an input fastavro accepts but this writer does not
special-case, such as a float in a long field) or raises the error the codec reports. A
schema with a construct this module does not compile (fixed, float, double, an ambiguous
union) gets no compiled writer; fastavro writes it as before.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable

from .avro_compile import NotCompilable, SchemaCompiler, compiled
from .sealed import SEALED_RECORDS, Sealed

Writer = Callable[[dict, bytearray], None]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_EPOCH_NAIVE = dt.datetime(1970, 1, 1)
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


#: the varint of every u < 2**16 (1-3 bytes): most lengths, counts, amounts' neighbours and
#: every date until 2059 need one lookup; and the low 14 bits of a larger u as two bytes
#: with continuation bits (a timestamp takes two of those and one _VARINT lookup)
_VARINT = [bytes((u,)) for u in range(1 << 7)] \
    + [bytes(((u & 0x7F) | 0x80, u >> 7)) for u in range(1 << 7, 1 << 14)] \
    + [bytes(((u & 0x7F) | 0x80, ((u >> 7) & 0x7F) | 0x80, u >> 14)) for u in range(1 << 14, 1 << 16)]
_LOW14 = [bytes(((u & 0x7F) | 0x80, (u >> 7) | 0x80)) for u in range(1 << 14)]


def varint(n: int, out: bytearray) -> None:
    """Append a zig-zag encoded long (Avro int and long)."""
    u = (n << 1) ^ (n >> 63)
    while u >= 65536:
        out += _LOW14[u & 0x3FFF]
        u >>= 14
    out += _VARINT[u]


def utf8(s: str, out: bytearray) -> None:
    """Append an Avro string: its UTF-8 length as a long, then the bytes."""
    b = s.encode()
    n = len(b)
    if n < 64:
        out.append(n << 1)
    else:
        varint(n, out)
    out += b


def raw(b: bytes, out: bytearray) -> None:
    """Append Avro bytes."""
    if type(b) is not bytes and type(b) is not bytearray:
        raise TypeError(f"expected bytes, got {type(b).__name__}")
    varint(len(b), out)
    out += b


def millis(value: Any) -> int:
    """timestamp-millis as fastavro writes it: an aware datetime's instant, a naive one as UTC."""
    if type(value) is int:
        return value
    if not isinstance(value, dt.datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    delta = value - (_EPOCH if value.tzinfo is not None else _EPOCH_NAIVE)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def days(value: Any) -> int:
    """date as fastavro writes it: days since 1970-01-01."""
    if type(value) is int:
        return value
    if not isinstance(value, dt.date):
        raise TypeError(f"expected a date, got {type(value).__name__}")
    return value.toordinal() - _EPOCH_ORDINAL


def boolean(value: Any) -> int:
    if value is True:
        return 1
    if value is False:
        return 0
    raise TypeError(f"expected a boolean, got {type(value).__name__}")


_HELPERS = {"varint": varint, "utf8": utf8, "raw": raw, "millis": millis, "days": days, "boolean": boolean,
            "VARINT": _VARINT, "EPOCH": _EPOCH, "EPOCH_ORDINAL": _EPOCH_ORDINAL}


class _Compiler(SchemaCompiler):
    label = "avro writer"

    # -- code for one value ---------------------------------------------------------------
    def single(self, schema: Any, kind: str, logical: str | None, expr: str, indent: str,
               body: list[str]) -> None:
        """Append statements writing ``expr`` (a local name) as ``schema`` (not a union) to ``out``."""
        if kind in ("long", "int"):
            # the common case inline (an aware datetime, a date, a small non-negative int);
            # the helpers take the rest, and refuse what does not fit
            if logical == "timestamp-millis":
                delta = self.var("d")
                body.append(f"{indent}if type({expr}) is dt.datetime and {expr}.tzinfo is not None:")
                body.append(f"{indent}    {delta} = {expr} - EPOCH")
                body.append(f"{indent}    varint(({delta}.days * 86400 + {delta}.seconds) * 1000 "
                            f"+ {delta}.microseconds // 1000, out)")
                body.append(f"{indent}else: varint(millis({expr}), out)")
            elif logical == "date":
                day = self.var("d")
                body.append(f"{indent}{day} = {expr}.toordinal() - EPOCH_ORDINAL if type({expr}) is dt.date "
                            f"else days({expr})")
                body.append(f"{indent}if 0 <= {day} < 32768: out += VARINT[{day} << 1]")
                body.append(f"{indent}else: varint({day}, out)")
            elif logical is None:
                body.append(f"{indent}if type({expr}) is not int: raise TypeError('expected an int')")
                body.append(f"{indent}if 0 <= {expr} < 32768: out += VARINT[{expr} << 1]")
                body.append(f"{indent}else: varint({expr}, out)")
            else:
                raise NotCompilable(f"logical type {logical}")
        elif kind == "string":  # utf8(), inlined: most fields are short strings
            encoded = self.var("b")
            body.append(f"{indent}{encoded} = {expr}.encode()")
            body.append(f"{indent}if len({encoded}) < 64: out.append(len({encoded}) << 1)")
            body.append(f"{indent}else: varint(len({encoded}), out)")
            body.append(f"{indent}out += {encoded}")
        elif kind == "boolean":
            body.append(f"{indent}out.append(boolean({expr}))")
        elif kind == "null":
            body.append(f"{indent}if {expr} is not None: raise TypeError('expected null')")
        elif kind == "bytes":
            body.append(f"{indent}raw({expr}, out)")
        elif kind == "enum":  # symbol -> its index, encoded
            index = self.const({s: _VARINT[i << 1] for i, s in enumerate(schema["symbols"])})
            body.append(f"{indent}out += {index}[{expr}]")
        elif kind == "record":
            body.append(f"{indent}{self.record_function(schema)}({expr}, out)")
        elif kind == "array":
            item = self.var("i")
            body.append(f"{indent}if type({expr}) is not list: raise TypeError('expected a list')")
            body.append(f"{indent}if {expr}:")
            body.append(f"{indent}    varint(len({expr}), out)")
            body.append(f"{indent}    for {item} in {expr}:")
            self.item(schema["items"], item, indent + "        ", body)
            body.append(f"{indent}out.append(0)")
        elif kind == "map":
            key, item = self.var("k"), self.var("v")
            body.append(f"{indent}if type({expr}) is not dict: raise TypeError('expected a dict')")
            body.append(f"{indent}if {expr}:")
            body.append(f"{indent}    varint(len({expr}), out)")
            body.append(f"{indent}    for {key}, {item} in {expr}.items():")
            body.append(f"{indent}        utf8({key}, out)")
            self.item(schema["values"], item, indent + "        ", body)
            body.append(f"{indent}out.append(0)")
        else:
            raise NotCompilable(f"type {kind}")

    def item(self, schema: Any, expr: str, indent: str, body: list[str]) -> None:
        """An array item or map value: a sealed record with its memo is appended here, without
        a call (a payee's state holds one per payment, and most are unchanged)."""
        resolved = self.resolve(schema)
        if isinstance(resolved, dict) and resolved.get("type") == "record" and resolved["name"] in self.sealed:
            memo = self.var("m")
            body.append(f"{indent}{memo} = getattr({expr}, 'memo', None) if type({expr}) is Sealed else None")
            body.append(f"{indent}if {memo} is not None and {memo}[0] == {self.const(resolved['name'])}: "
                        f"out += {memo}[1]")
            body.append(f"{indent}else: {self.record_function(resolved)}({expr}, out)")
        else:
            self.value(schema, expr, indent, body)

    def union(self, branches: list, expr: str, indent: str, body: list[str]) -> None:
        """A union whose branches a value's Python type tells apart; anything else is not compiled."""
        tests: list[tuple[str, int, Any]] = []
        seen: set[str] = set()
        for index, branch in enumerate(branches):
            resolved = self.resolve(branch)
            kind = resolved if isinstance(resolved, str) else resolved["type"] if isinstance(resolved, dict) else "union"
            logical = resolved.get("logicalType") if isinstance(resolved, dict) else None
            test = {
                ("null", None): f"{expr} is None",
                ("string", None): f"type({expr}) is str",
                ("enum", None): f"type({expr}) is str",
                ("long", None): f"type({expr}) is int",
                ("int", None): f"type({expr}) is int",
                ("boolean", None): f"type({expr}) is bool",
                ("bytes", None): f"type({expr}) is bytes",
                ("record", None): f"type({expr}) is dict or type({expr}) is Sealed",
                ("map", None): f"type({expr}) is dict",
                ("array", None): f"type({expr}) is list",
                ("int", "date"): f"type({expr}) is dt.date",
                ("long", "timestamp-millis"): f"type({expr}) is dt.datetime",
            }.get((kind, logical))
            if test is None or test in seen:
                raise NotCompilable(f"union {branches}")
            seen.add(test)
            tests.append((test, index, branch))
        for n, (test, index, branch) in enumerate(tests):
            body.append(f"{indent}{'if' if n == 0 else 'elif'} {test}:")
            body.append(f"{indent}    out.append({index << 1})")  # branch index < 64: one byte
            if test != f"{expr} is None":
                self.value(branch, expr, indent + "    ", body)
        body.append(f"{indent}else:")
        body.append(f"{indent}    raise TypeError('no union branch fits')")

    def record(self, func: str, schema: dict) -> list[str]:
        body = [f"def {func}(r, out):"]
        sealed = schema["name"] in self.sealed
        if sealed:  # written before and unchanged since (it cannot change): the same bytes again
            name = self.const(schema["name"])
            body += ["    if type(r) is Sealed:",
                     "        memo = getattr(r, 'memo', None)",
                     f"        if memo is not None and memo[0] == {name}: out += memo[1]; return",
                     "        start = len(out)",
                     "    elif type(r) is not dict: raise TypeError('expected a dict')",
                     "    else: start = -1"]
        else:
            body.append("    if type(r) is not dict and not isinstance(r, dict):")  # e.g. Sealed, rules._State
            body.append("        raise TypeError('expected a dict')")
        for field in schema["fields"]:
            local = self.var("f")
            if "default" in field:
                default = self.const(field["default"])
                body.append(f"    {local} = r.get({field['name']!r}, {default})")
            elif isinstance(field["type"], list) and "null" in field["type"]:
                body.append(f"    {local} = r.get({field['name']!r})")
            else:
                body.append(f"    {local} = r[{field['name']!r}]")
            self.value(field["type"], local, "    ", body)
        if sealed:
            body.append(f"    if start >= 0: r.memo = ({name}, bytes(out[start:]))")
        return body


def compile_writer(parsed: dict, sealed: frozenset[str] = SEALED_RECORDS) -> Writer | None:
    """The compiled writer of a fastavro-parsed record schema, or None when it has constructs
    this module leaves to fastavro. A ``Sealed`` value of a record named in ``sealed`` is
    written from its memo when it has one, and otherwise given one."""
    return compiled(_Compiler, parsed, {"dt": dt, "Sealed": Sealed, **_HELPERS}, sealed)
