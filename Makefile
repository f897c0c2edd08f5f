# The two commands of the README: `make demo` and `make test`. Both set everything up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install system demo test bench clean

# setup.py and the C source: the Avro codec in C is built by the install (streams/avro_native.py),
# and so are the modules Cython compiles (setup.py, COMPILED): reinstalled when a source changes
$(BIN)/tkonto: pyproject.toml requirements.lock setup.py streams/_avro_native.c $(wildcard streams/*.py)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[test]'
	touch $@

install: $(BIN)/tkonto

# Debian packages the tests drive for real (Prometheus, headless Chromium); installed when missing.
system:
	bash scripts/system-deps.sh

demo: install
	$(BIN)/tkonto demo

test: install system
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/tkonto bench

clean:
	rm -rf $(VENV) var results .pytest_cache
