"""Builds tkonto's C extensions. Everything else about the package is in pyproject.toml.

* The Avro writer and reader of ``streams/avro_native.py`` (``_avro_native.c``). The module
  carries the SHA-256 of the source it was built from, so that a build older than its
  source is never used (``avro_native``).
* The modules of the per-event path in ``COMPILED``, compiled by Cython from their Python
  source as it is (no Cython syntax, no type declarations): the same code, ~10 % fewer
  instructions per event (docs/performance.md). The build records the SHA-256 of each
  source it compiled in ``_compiled_from.json`` next to the modules, and ``streams``
  imports a module's source instead wherever that record does not match it
  (``streams/__init__.py``).

Both are optional: where they cannot be built (no C compiler, no Cython), the install goes
on without them and the package runs as Python alone."""
import hashlib
import json
import os
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
SOURCE = "streams/_avro_native.c"
digest = hashlib.sha256((HERE / SOURCE).read_bytes()).hexdigest()

#: the modules a payment event goes through (not those with Faust's async handlers: a
#: compiled coroutine function is not a Python function to the libraries that inspect it)
COMPILED = ("account", "analysis", "citizen_view", "codec", "deadletters", "engine", "enrichment", "identity", "ingest",
            "ledger", "metrics", "routing", "rules", "sealed", "state", "validation")
MANIFEST = "_compiled_from.json"


def source_digest(module: str) -> str:
    return hashlib.sha256((HERE / "streams" / f"{module}.py").read_bytes()).hexdigest()


class BuildExt(build_ext):
    """build_ext that records, next to the compiled modules, the source each was built from."""

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:  # the C compiler on every core (an editable install ignores setup's options)
            self.parallel = os.cpu_count() or 1

    def run(self):
        self._built: dict[str, str] = {}
        super().run()  # in place (an editable install): built in a temporary folder, then copied here
        if not self._built:
            return
        folder = HERE / "streams" if self.inplace else Path(self.build_lib) / "streams"
        manifest = folder / MANIFEST
        try:
            recorded = json.loads(manifest.read_text())
        except (OSError, ValueError):
            recorded = {}
        manifest.write_text(json.dumps({**recorded, **self._built}, indent=1, sort_keys=True) + "\n")

    def build_extension(self, ext):
        module = ext.name.rpartition(".")[2]
        digest = source_digest(module) if module in COMPILED else None
        super().build_extension(ext)  # raises when it fails (an optional one is then left out): nothing recorded
        if digest is not None:
            self._built[module] = digest


def compiled_modules() -> list[Extension]:
    try:
        from Cython.Build import cythonize
    except ImportError:  # the package runs as Python alone
        return []
    modules = [Extension(f"streams.{m}", [f"streams/{m}.py"], extra_compile_args=["-O2"], optional=True)
               for m in COMPILED if (HERE / "streams" / f"{m}.py").exists()]
    # annotation_typing off: the annotations stay hints, as in Python (a ``dict`` may be a
    # subclass of dict, such as ``Sealed``)
    return cythonize(modules, quiet=True, nthreads=os.cpu_count() or 1,
                     compiler_directives={"language_level": 3, "annotation_typing": False})


setup(ext_modules=[Extension("streams._avro_native", [SOURCE], define_macros=[("SOURCE_SHA256", f'"{digest}"')],
                             extra_compile_args=["-O2"], optional=True)] + compiled_modules(),
      cmdclass={"build_ext": BuildExt})
