# One-word entry points. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install demo test lint bench dev

install:
	@command -v bwrap >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q bubblewrap; }
	$(PYTHON) -m pip install -q -e '.[dev]'

demo: install
	farline demo

test: install
	$(PYTHON) -m pytest -q

lint: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

bench: install
	$(PYTHON) bench/loop_overhead.py
	$(PYTHON) bench/tools.py
	$(PYTHON) bench/snapshot.py

dev: install
	farline dev
