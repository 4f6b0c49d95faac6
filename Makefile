# The two commands of README.rst: `make run` and `make test`.
# Debian's CPython is built with PGO and LTO; a plain source build (pyenv's
# default) runs the router about 15% slower (docs/benchmarks.rst). The
# distribution's is used when it can make a venv (python3-venv installed).
SYSTEM_PYTHON := /usr/bin/python3
PYTHON ?= $(if $(shell $(SYSTEM_PYTHON) -c 'import ensurepip' 2>/dev/null && echo y),$(SYSTEM_PYTHON),python3)
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= $(CURDIR)/var
PYTEST_ARGS ?=

.PHONY: run test install bench fuzz clean

# Editable: the pipeline runs with its cwd in the data directory, so a copy in
# site-packages would build and deploy with whatever tree was installed last.
$(BIN)/dotcloud-server: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/dotcloud-server

run: install
	$(BIN)/dotcloud-server --data $(DATA) up

test: install
	$(BIN)/python -m pytest -p no:cacheprovider -q $(PYTEST_ARGS)

# About 10^6 cases: FUZZ_EXAMPLES of each of the three fuzz tests (docs/fuzzing.rst).
FUZZ_EXAMPLES ?= 340000
fuzz: install
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -p no:cacheprovider -q \
		--hypothesis-show-statistics tests/fuzz

bench: install
	$(BIN)/python bench/push_bench.py

clean:
	rm -rf $(VENV) build *.egg-info
