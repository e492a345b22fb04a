# The two commands of the README: `make demo` and `make test`. Both set up everything first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint typecheck clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pipelines.session resolve > /dev/null
	touch $(STAMP)

demo: setup
	$(VENV)/bin/backfill demo

test: setup lint typecheck
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check pipelines tests
	$(VENV)/bin/ruff format --check pipelines tests

typecheck: setup
	$(VENV)/bin/mypy pipelines

clean:
	rm -rf $(VENV) backfill-demo .pytest_cache .hypothesis
