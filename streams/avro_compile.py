"""What the compiled Avro writers and readers share: turning a parsed schema into
generated Python source, one function per named record, and executing it once."""
from __future__ import annotations

from typing import Any


class NotCompilable(Exception):
    """The schema uses something the compilers do not handle; fastavro does it."""


class SchemaCompiler:
    """Named records become functions (``record_function``), generated on demand by the
    subclass's ``record``; constants the code needs are passed in by name (``const``)."""

    label = "avro"  # shown in tracebacks: <avro writer se.tkonto.PaymentEvent>

    def __init__(self, named: dict, sealed: frozenset[str] = frozenset()):
        self.named = named
        self.sealed = sealed  # full names of the records read as, and written from, ``Sealed`` items
        self.consts: dict[str, Any] = {}
        self.records: dict[str, str] = {}  # record name -> function name
        self.pending: list[tuple[str, dict]] = []
        self.counter = 0

    def var(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def const(self, value: Any) -> str:
        name = self.var("c")
        self.consts[name] = value
        return name

    def resolve(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema in self.named:
            return self.named[schema]
        return schema

    @staticmethod
    def kind_of(schema: Any) -> tuple[str, str | None]:
        """(type, logical type) of a resolved schema that is not a union."""
        if isinstance(schema, str):
            return schema, None
        return schema["type"], schema.get("logicalType")

    def record_function(self, schema: dict) -> str:
        name = schema["name"]
        if name not in self.records:
            self.records[name] = self.var("rec")
            self.pending.append((self.records[name], schema))
        return self.records[name]

    def value(self, schema: Any, name: str, indent: str, body: list[str]) -> None:
        """Append the statements for one value of ``schema``; ``name`` is a local of the
        generated code (the value to write, or where to put the value read)."""
        schema = self.resolve(schema)
        if isinstance(schema, list):
            self.union(schema, name, indent, body)
        else:
            self.single(schema, *self.kind_of(schema), name, indent, body)

    def single(self, schema: Any, kind: str, logical: str | None, name: str, indent: str, body: list[str]) -> None:
        raise NotImplementedError

    def union(self, branches: list, name: str, indent: str, body: list[str]) -> None:
        raise NotImplementedError

    def record(self, func: str, schema: dict) -> list[str]:
        raise NotImplementedError

    def compile(self, schema: dict, helpers: dict[str, Any]):
        """The function of the top-level record, with every record it uses."""
        if not isinstance(schema, dict) or schema.get("type") != "record":
            raise NotCompilable("top level is not a record")
        top = self.record_function(schema)
        source: list[str] = []
        while self.pending:
            func, record_schema = self.pending.pop()
            source += self.record(func, record_schema)
        namespace: dict[str, Any] = {**helpers, **self.consts}
        exec(compile("\n".join(source), f"<{self.label} {schema['name']}>", "exec"), namespace)
        return namespace[top]


def compiled(compiler: type[SchemaCompiler], parsed: dict, helpers: dict[str, Any],
             sealed: frozenset[str] = frozenset()):
    """The compiled function of a fastavro-parsed record schema, or None when it has
    constructs the compiler leaves to fastavro."""
    try:
        return compiler(parsed.get("__named_schemas", {}), sealed).compile(parsed, helpers)
    except NotCompilable:
        return None
