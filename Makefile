# The two commands of the README: `make demo` and `make test`. Both do all set-up first.
SHELL := /bin/bash
PYTHON ?= python3
export PYTHONPATH := $(CURDIR)/python
ARGS ?=

.PHONY: setup demo test bench

setup:
	@bash scripts/setup.sh

demo: setup
	$(PYTHON) -m gmmkernels.demo $(ARGS)

bench: setup
	$(PYTHON) -m gmmkernels.bench $(ARGS)

test: setup
	swift test 2>&1 | tail -n 25; exit $${PIPESTATUS[0]}
	$(PYTHON) -m pytest -q python/tests
