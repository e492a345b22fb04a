# The two commands of the README: `make demo` and `make test`. Both set up everything first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Airflow pins clash with ours, so the DAG is parsed by real Airflow in a venv of its own.
AIRFLOW_VENV ?= .venv-airflow
AIRFLOW_VERSION ?= 3.1.3

.PHONY: setup airflow pushgateway demo test soak bench lint typecheck clean

# The JVM's class-data archive for local sessions (pipelines/class_archive.py): made once per
# JDK and class path, a few seconds off every later start.
setup: $(STAMP)
	@$(PY) -m pipelines.class_archive

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@echo 'resolving Delta and hadoop-aws from Maven Central (once; log in $(VENV)/resolve.log)'
	@$(PY) -m pipelines.session resolve > $(VENV)/resolve.log 2>&1 || (cat $(VENV)/resolve.log; exit 1)
	touch $(STAMP)

demo: setup
	$(VENV)/bin/backfill demo

$(AIRFLOW_VENV)/.installed:
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install --quiet "apache-airflow==$(AIRFLOW_VERSION)"
	touch $@

airflow: $(AIRFLOW_VENV)/.installed

# The Pushgateway the metrics tests push to: Debian's package unpacked into the venv, so no
# service is installed or started (the tests start it on a free loopback port).
PUSHGATEWAY := $(VENV)/bin/prometheus-pushgateway
$(PUSHGATEWAY): | $(STAMP)
	rm -rf $(VENV)/debs && mkdir -p $(VENV)/debs
	cd $(VENV)/debs && (apt-get download prometheus-pushgateway 2>/dev/null || \
		(apt-get update -qq && apt-get download prometheus-pushgateway))
	dpkg-deb -x $(VENV)/debs/prometheus-pushgateway_*.deb $(VENV)/debs/root
	cp $(VENV)/debs/root/usr/bin/prometheus-pushgateway $@
	rm -rf $(VENV)/debs

pushgateway: $(PUSHGATEWAY)

# The set-up steps in parallel (the Airflow venv installs while the class archive is made),
# then two pytest workers (pytest-xdist), each with its own Spark session; a test's figures
# are summed.
test:
	$(MAKE) -j3 --output-sync=target setup airflow pushgateway lint typecheck
	$(PY) -m pytest -n 2 --dist worksteal --durations=30

# The long runs: the reliability suite with 20 kills and ten times the generated hostile
# input, ten times the hypothesis-drawn logs and nights of the balance and snapshot folds,
# and the tests marked `soak` (both folds' demos from the source tree, a run killed after its
# quarantine commit, the bench's nightly contender), which `make test` skips.
soak: setup
	BACKFILL_SOAK=1 $(PY) -m pytest tests/test_reliability.py tests/test_incremental.py \
		tests/test_snapshot_reference.py tests/test_properties.py tests/test_demo.py \
		tests/test_benchmark.py

lint: setup
	$(VENV)/bin/ruff check pipelines tests benchmarks
	$(VENV)/bin/ruff format --check pipelines tests benchmarks

typecheck: setup
	$(VENV)/bin/mypy pipelines

# Measures, writes benchmarks/results.json and renders docs/performance.md from it;
# `$(PY) -m benchmarks.render` renders the page again without measuring.
bench: setup
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) backfill-demo build .pytest_cache .hypothesis
