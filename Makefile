# nwguard: everyday commands. `make demo` and `make test` work on a fresh Debian 12 as root.
PY := .venv/bin/python

.PHONY: install demo test test-unit test-kernel bench lint golden fuzz

install:
	bash scripts/install.sh

demo: install
	$(PY) -m nwguard_demo

test: install lint
	$(PY) -m pytest -q

test-unit: install
	$(PY) -m pytest -q -m 'not kernel'

test-kernel: install
	$(PY) -m pytest -q -m kernel

# rewrite tests/golden/ after an intended change (tests only compare); review `git diff`
golden: install
	PYTHONPATH=src $(PY) scripts/regen_golden.py

# the differential harness against libvirt 9.0.0 for longer: FUZZ_EXAMPLES filters
FUZZ_EXAMPLES ?= 300
fuzz: install
	NWGUARD_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -m kernel tests/kernel/test_differential.py

bench: install
	$(PY) bench/run_all.py

# ruff (lint and format) and mypy (strict on the pure core): CI runs them through `make test`
lint: install
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench
	$(PY) -m mypy
