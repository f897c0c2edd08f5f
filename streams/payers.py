"""Connected payers: who may publish, on which topic, under which connection scope.

The payer list seeds the worker's subscriptions (one explicit input topic per payer) and
decides scope routing. Its CSV form (``TKONTO_PAYERS_FILE``, ``tkonto ref load payers``):

    payer_id,name,kind,region_code,scope
    2120000142,Stockholms kommun,MUNICIPALITY,0180,PROPOSAL_1
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .identity import IdKind, InvalidIdentity, classify

KINDS = ("STATE_AGENCY", "UNEMPLOYMENT_FUND", "MUNICIPALITY", "REGION")
SCOPES = ("PROPOSAL_1", "PROPOSAL_2", "PROPOSAL_3")
CSV_COLUMNS = ("payer_id", "name", "kind", "region_code", "scope")


class PayerFileError(ValueError):
    """A payer file that cannot be loaded; names the file, line and fix."""


@dataclass(frozen=True)
class Payer:
    payer_id: str
    name: str
    kind: str
    region_code: str
    scope: str

    # Cached (the payer is frozen): the ledger stage asks for them on every payment, and a
    # cached value is then read from the instance without a call.
    @cached_property
    def in_ledger(self) -> bool:
        """Proposals 1 and 3 register payments in the transaction account ledger."""
        return self.scope in ("PROPOSAL_1", "PROPOSAL_3")

    @cached_property
    def in_analysis(self) -> bool:
        """Proposals 1 and 2 hand payments to data analysis."""
        return self.scope in ("PROPOSAL_1", "PROPOSAL_2")

    @cached_property
    def record(self) -> dict:
        """The payer as its flat record (all strings), built once: enrichment reads it on
        every payment. Never changed: ``as_dict`` gives a copy to change."""
        return {"payer_id": self.payer_id, "name": self.name, "kind": self.kind,
                "region_code": self.region_code, "scope": self.scope}

    def as_dict(self) -> dict:
        # as dataclasses.asdict(self) (flat, all strings), without its recursive deep copy
        return dict(self.record)


def check_payer(row: dict) -> Payer:
    """Validate one payer row; raise ValueError naming the bad column."""
    missing = [c for c in CSV_COLUMNS if not (row.get(c) or "").strip()]
    if missing:
        raise ValueError(f"missing value for {', '.join(missing)}")
    payer = Payer(**{c: row[c].strip() for c in CSV_COLUMNS})
    try:
        if classify(payer.payer_id) is not IdKind.ORGANISATION:
            raise InvalidIdentity("is a personal number; a payer is an organisation")
    except InvalidIdentity as exc:
        raise ValueError(f"payer_id {payer.payer_id}: {exc}") from None
    if payer.kind not in KINDS:
        raise ValueError(f"kind {payer.kind!r}: use one of {', '.join(KINDS)}")
    if payer.scope not in SCOPES:
        raise ValueError(f"scope {payer.scope!r}: use one of {', '.join(SCOPES)}")
    if not payer.region_code.isdigit() or len(payer.region_code) not in (2, 4):
        raise ValueError(f"region_code {payer.region_code!r}: use the 2-digit region or 4-digit municipality code")
    return payer


def load_payers(path: str | Path) -> list[Payer]:
    """Load a payer CSV completely or not at all (every bad line is reported)."""
    path = Path(path)
    if not path.is_file():
        raise PayerFileError(f"{path}: no such file; set TKONTO_PAYERS_FILE to a payer CSV (see README)")
    payers: list[Payer] = []
    errors: list[str] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or list(reader.fieldnames) != list(CSV_COLUMNS):
            raise PayerFileError(f"{path}: header must be {','.join(CSV_COLUMNS)} (got {reader.fieldnames})")
        seen: set[str] = set()
        for line, row in enumerate(reader, start=2):
            try:
                payer = check_payer(row)
                if payer.payer_id in seen:
                    raise ValueError(f"payer_id {payer.payer_id} appears twice")
                seen.add(payer.payer_id)
                payers.append(payer)
            except ValueError as exc:
                errors.append(f"{path}:{line}: {exc}")
    if errors:
        raise PayerFileError("; ".join(errors[:20]) + (f" (+{len(errors) - 20} more)" if len(errors) > 20 else ""))
    return payers


def write_payers(path: str | Path, payers: list[Payer]) -> None:
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for payer in payers:
            writer.writerow(payer.as_dict())
