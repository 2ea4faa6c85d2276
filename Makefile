# nwguard: everyday commands. `make demo` and `make test` work on a fresh Debian 12 as root.
PY := .venv/bin/python

.PHONY: install demo test test-unit test-kernel bench lint

install:
	bash scripts/install.sh

demo: install
	$(PY) -m nwguard_demo

test: install
	$(PY) -m pytest -q

test-unit: install
	$(PY) -m pytest -q -m 'not kernel'

test-kernel: install
	$(PY) -m pytest -q -m kernel

bench: install
	$(PY) bench/run_all.py

lint: install
	$(PY) -m ruff check src tests
