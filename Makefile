# The two commands of the README: `make demo` and `make test`. Both do all set-up first.
SHELL := /bin/bash
PYTHON ?= python3
export PYTHONPATH := $(CURDIR)/python:$(CURDIR)
ARGS ?=

.PHONY: setup demo test bench wheel docs

setup:
	@bash scripts/setup.sh

demo: setup
	$(PYTHON) -m benchmarks.demo $(ARGS)

bench: setup
	$(PYTHON) -m benchmarks $(ARGS)

test: setup
	bash scripts/swift-test.sh
	$(PYTHON) -m pytest -q python/tests

wheel: setup
	bash scripts/wheel.sh

docs: setup
	$(PYTHON) -m sphinx -W --keep-going -q -b html docs docs/_build/html
