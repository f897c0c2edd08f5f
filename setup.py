"""Builds tkonto's one C extension, the Avro writer and reader of ``streams/avro_native.py``.
Everything else about the package is in pyproject.toml.

Where it cannot be built (no C compiler), the install goes on without it and the codec
uses its Python writers and readers alone. The module carries the SHA-256 of the source it
was built from, so that a build older than its source is never used (``avro_native``)."""
import hashlib
from pathlib import Path

from setuptools import Extension, setup

SOURCE = "streams/_avro_native.c"
digest = hashlib.sha256((Path(__file__).resolve().parent / SOURCE).read_bytes()).hexdigest()

setup(ext_modules=[Extension("streams._avro_native", [SOURCE], define_macros=[("SOURCE_SHA256", f'"{digest}"')],
                             extra_compile_args=["-O2"], optional=True)])
