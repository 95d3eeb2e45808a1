# Every target does its own setup: a fresh machine needs only Python 3.10-3.13.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__LOAD_EXAMPLES ?= False

.PHONY: demo test test-fast lint typecheck docs clean bench

$(VENV): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt -e ".[dev]"
	touch $(VENV)

# One virtualenv per older Airflow, each from its own pinned file (`make .venvs/airflow-3.1`);
# .venv is Airflow 3.3. A constraints/airflow-3.X.txt is resolved with uv from pyproject.toml:
#   uv pip compile --universal --python-version 3.10 --no-header --no-annotate pyproject.toml \
#     --extra dev -c <(printf 'apache-airflow==3.X.Y\nsvcs<26.2\nalembic<1.18\n') -o constraints/airflow-3.X.txt
# (3.0 also with fastapi<0.118, the bound 3.1 sets: later FastAPI rejects the 3.0 task SDK's
# requests, whose JSON bodies carry no Content-Type.)
# svcs 26.2 detaches its registry when a lifespan closes: Airflow < 3.3's in-process Execution API
# (dag.test) closes it when garbage collected, and its next request fails. alembic 1.18 logs each
# of its plugins, which Airflow < 3.3 prints on the stdout of every command (`config get-value`).
OLD_AIRFLOW_VENVS := .venvs/airflow-3.0 .venvs/airflow-3.1 .venvs/airflow-3.2

.venvs/airflow-%: pyproject.toml constraints/airflow-%.txt
	$(PYTHON) -m venv $@
	$@/bin/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$@/bin/uv pip install --quiet --python $@/bin/python -c constraints/airflow-$*.txt -e ".[dev]"
	touch $@

.PHONY: old-airflow-venvs
old-airflow-venvs: $(OLD_AIRFLOW_VENVS)

demo: $(VENV)
	$(BIN)/python -m resumable demo

lint: $(VENV)
	$(BIN)/ruff check resumable operators tests bench example_dags
	$(BIN)/ruff format --check resumable operators tests bench example_dags

typecheck: $(VENV)
	$(BIN)/mypy

docs: $(VENV)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

# The benchmarks rewrite their sections of docs/benchmarks.md (chaos: about 15 minutes).
bench: $(VENV)
	$(BIN)/python bench/overhead.py --write docs/benchmarks.md
	$(BIN)/python bench/chaos.py --write docs/benchmarks.md

# `make test`: ruff, mypy, the strict docs build, then every tier on Airflow 3.3 (unit, integration,
# the model checker, the install checks on 3.0-3.3, and tests/e2e on a real Airflow).
# `make test-fast` skips the real-Airflow tier (tests/e2e), for iterating.
test: lint typecheck docs $(OLD_AIRFLOW_VENVS)
	$(BIN)/pytest -q -p no:cacheprovider

test-fast: $(VENV) $(OLD_AIRFLOW_VENVS)
	$(BIN)/pytest -q -p no:cacheprovider -m "not e2e"

clean:
	rm -rf $(VENV) .venvs .airflow .pytest_cache .mypy_cache .ruff_cache site
