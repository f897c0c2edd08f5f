"""tkonto: the transaction account system's worker, tools and benchmarks.

The modules of the per-event path are also compiled by Cython at install (``setup.py``,
``COMPILED``): the same source, run as C. Python would import a compiled module before its
source, so a compiled module is used only when the build recorded the very source there
is now (``_compiled_from.json``, next to the modules). A module whose source changed
since the build, or every module with ``TKONTO_COMPILED=false``, is imported from its
source (``compiled_modules`` says which is which; the worker logs it at start).
"""
from __future__ import annotations

import hashlib
import json
import sys
from importlib.util import spec_from_file_location
from pathlib import Path

from .settings import Settings, SettingsError  # not compiled: imported before the finder below

_HERE = Path(__file__).resolve().parent
MANIFEST = "_compiled_from.json"

#: module name -> "compiled", or why its source is imported instead
_state: dict[str, str] = {}


def _built_modules() -> list[str]:
    """Modules with a compiled build next to their source (not ``_avro_native``: C source,
    checked by ``avro_native``)."""
    builds = {p.name.split(".", 1)[0] for p in _HERE.glob("*.so")} - {"_avro_native"}
    return sorted(builds & {p.stem for p in _HERE.glob("*.py")})


def _decide() -> set[str]:
    """Fill ``_state``; returns the modules whose source must be imported instead of their build."""
    built = _built_modules()
    if not built:
        return set()
    try:
        compiled = Settings.flag("compiled")
    except SettingsError:  # the worker's settings report it, naming the variable
        compiled = True
    if not compiled:
        _state.update(dict.fromkeys(built, "source (TKONTO_COMPILED=false)"))
        return set(built)
    try:
        recorded = json.loads((_HERE / MANIFEST).read_text())
    except (OSError, ValueError):
        recorded = {}
    for name in built:
        digest = hashlib.sha256((_HERE / f"{name}.py").read_bytes()).hexdigest()
        _state[name] = "compiled" if recorded.get(name) == digest else \
            "source (changed since the build: rebuild with .venv/bin/pip install -e . --no-deps)"
    return {name for name, how in _state.items() if how != "compiled"}


class _SourceFirst:
    """A finder ahead of the others for the modules whose build must not be used."""

    def __init__(self, names: set[str]):
        self.names = names

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package == __name__ and name in self.names:
            return spec_from_file_location(fullname, _HERE / f"{name}.py")
        return None


_source_first = _decide()
if _source_first:
    sys.meta_path.insert(0, _SourceFirst(_source_first))


def compiled_modules() -> dict[str, str]:
    """Each module with a compiled build: "compiled", or why its source is used."""
    return dict(_state)
