# Every target does its own setup: a fresh machine needs only Python 3.10-3.13.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__LOAD_EXAMPLES ?= False

.PHONY: demo test lint typecheck docs clean bench

$(VENV): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt -e ".[dev]"
	touch $(VENV)

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

test: lint typecheck docs
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .airflow .pytest_cache .mypy_cache .ruff_cache site
