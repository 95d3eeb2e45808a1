# Every target does its own setup: a fresh machine needs only Python 3.10-3.13.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__LOAD_EXAMPLES ?= False

.PHONY: demo test test-fast lint typecheck docs clean bench bench-fleet test-tiers test-tiers-integration test-tiers-rest test-e2e test-e2e-old test-e2e-both
PYTEST := pytest -q -p no:cacheprovider

# Every virtualenv is installed with its bytecode compiled (--compile-bytecode): where
# PYTHONDONTWRITEBYTECODE is set (this CI machine sets it), Python never caches what it compiles, and
# every Airflow process of the e2e tier (each task, each DAG file parse) compiled Airflow and its
# providers from source again: 9.7 s to import the task SDK and the BigQuery operator, 3.0 s with it.
$(VENV): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -c constraints.txt -e ".[dev,release]"
	touch $(VENV)

# One virtualenv per older Airflow, each from its own pinned file (`make .venvs/airflow-3.1`);
# .venv is Airflow 3.3. A constraints/airflow-3.X.txt is resolved with uv from pyproject.toml:
#   uv pip compile --universal --python-version 3.10 --no-header --no-annotate pyproject.toml \
#     --extra dev -c <(printf 'apache-airflow==3.X.Y\nsvcs<26.2\nalembic<1.18\n') -o constraints/airflow-3.X.txt
# (3.0 also with fastapi<0.118, the bound 3.1 sets: later FastAPI rejects the 3.0 task SDK's
# requests, whose JSON bodies carry no Content-Type; and pyjwt<2.11: later PyJWT refuses the
# token 3.0's API server signs with no [api_auth] jwt_issuer, so its every request fails.)
# svcs 26.2 detaches its registry when a lifespan closes: Airflow < 3.3's in-process Execution API
# (dag.test) closes it when garbage collected, and its next request fails. alembic 1.18 logs each
# of its plugins, which Airflow < 3.3 prints on the stdout of every command (`config get-value`).
#: The Airflow versions below 3.3 that `make test` runs the unit and integration tiers on, and the
#: ones (the oldest and a middle version) it also runs the `every_airflow` e2e tests on.
OLD_AIRFLOW := 3.0 3.1 3.2
E2E_AIRFLOW := 3.0 3.2
OLD_AIRFLOW_VENVS := $(addprefix .venvs/airflow-,$(OLD_AIRFLOW))

.venvs/airflow-%: pyproject.toml constraints/airflow-%.txt
	$(PYTHON) -m venv $@
	$@/bin/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$@/bin/uv pip install --quiet --compile-bytecode --python $@/bin/python -c constraints/airflow-$*.txt -e ".[dev]"
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

# The benchmarks rewrite their sections of docs/benchmarks.md (chaos: about 15 minutes; the
# reattach storm: about 2).
bench: $(VENV)
	$(BIN)/python bench/overhead.py --write docs/benchmarks.md
	$(BIN)/python bench/chaos.py --write docs/benchmarks.md
	$(BIN)/python bench/storm.py --tasks 500 --rate 30 --write docs/benchmarks.md

# The fleet benchmark (bench/fleet.py): PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379,
# CeleryExecutor with two workers and the triggerer, all killed while every job runs. FLEET_TASKS is
# per contender at scale 1 (the bench's own default is 200; 48 runs in about 21 minutes on 2 cores).
FLEET_TASKS ?= 48
bench-fleet: $(VENV)
	$(BIN)/python bench/fleet.py --tasks $(FLEET_TASKS) --scales 1,2,4 --write docs/benchmarks.md \
		--plot docs/images/fleet.svg

# `make test`: every check, in two phases, each running its parts side by side (their output is
# printed part by part as each ends). Phase 1: ruff, mypy and the strict docs build; every tier but
# the real-Airflow one on Airflow 3.3 (unit, integration, the model checker, the install checks on
# 3.0-3.3); the unit and integration tiers on each of $(OLD_AIRFLOW). Phase 2: the real-Airflow
# tier (tests/e2e) in full on 3.3, beside its every_airflow tests on $(E2E_AIRFLOW), one version
# after the other. The parts wait on services and emulated jobs far more than they compute, which
# is what lets them share this machine's two cores.
# `make test-fast`: phase 1 on Airflow 3.3 only, for iterating.
test: $(VENV) $(OLD_AIRFLOW_VENVS) chromium
	$(MAKE) --no-print-directory -j8 -Otarget lint typecheck docs $(TIERS_PARTS) $(addprefix test-tiers-airflow-,$(OLD_AIRFLOW))
	@$(MAKE) --no-print-directory test-e2e-both

test-fast: test-tiers

# Airflow 3.3: every test but the real-Airflow ones, in two parts that `make test` runs side by side
# (they wait on emulated services and subprocesses far more than they compute): the integration
# tier, and the unit tier with the model checker and the install checks. The integration tiers and
# the older versions' parts list their ten longest tests, to plan the budget by.
TIERS_PARTS := test-tiers-integration test-tiers-rest
test-tiers: $(TIERS_PARTS)
test-tiers-integration: $(VENV)
	$(BIN)/$(PYTEST) --durations=10 -m "not e2e" tests/integration
test-tiers-rest: $(VENV) $(OLD_AIRFLOW_VENVS)
	$(BIN)/$(PYTEST) -m "not e2e" tests/unit tests/model tests/compat

# Airflow 3.X (`make test-tiers-airflow-3.1`): the unit and integration tiers; of the tests marked
# oldest_airflow (the newer AWS systems' rows), those also marked core_row on the oldest of
# $(OLD_AIRFLOW) and none on the others.
test-tiers-airflow-%: .venvs/airflow-%
	.venvs/airflow-$*/bin/$(PYTEST) --durations=10 \
		-m "not e2e and (not oldest_airflow$(if $(filter $*,$(firstword $(OLD_AIRFLOW))), or core_row))" \
		tests/unit tests/integration

# Airflow 3.3: the real-Airflow tier in full (its browser test needs Chromium), in $(E2E_PARTS)
# parts side by side (pytest-xdist): each part is a process with an Airflow and emulators of its
# own and takes the next test as it finishes one; the Celery tests stay together in one part. The 20
# longest tests are listed at the end, to plan the budget by.
# Each Airflow keeps its metadata in a new database on the machine's PostgreSQL.
E2E_PARTS ?= 4
test-e2e: $(VENV) chromium
	$(BIN)/$(PYTEST) -n $(E2E_PARTS) --dist loadgroup --durations=20 -m e2e tests/e2e

# The browser test drives the system's Chromium through Playwright (`playwright install` downloads
# a browser of its own, which this needs no network for): Debian's package, installed when missing.
.PHONY: chromium
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
		{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		  apt-get install -y -qq chromium >/dev/null; } || \
		{ apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; } || \
		echo "Chromium is not installed and could not be (apt-get install chromium as root): the browser test will say so"

# Airflow 3.X (`make test-e2e-airflow-3.0`): the real-Airflow tests marked every_airflow, and on the
# oldest of $(E2E_AIRFLOW) those marked oldest_airflow too (the newer systems' rows).
E2E_OLDEST := $(firstword $(E2E_AIRFLOW))
test-e2e-airflow-%: .venvs/airflow-% chromium
	.venvs/airflow-$*/bin/$(PYTEST) --durations=10 -m "$(if $(filter $*,$(E2E_OLDEST)),every_airflow or oldest_airflow,every_airflow)" tests/e2e

# The real-Airflow tier on 3.3 and the older versions' part side by side, as two processes: under
# make's own -j2 the older versions' sub-makes could hold both job slots, and the 3.3 tier then
# started only when they had finished (measured: 31 minutes later). The older part's output follows
# the 3.3 tier's.
test-e2e-both:
	@log=$$(mktemp); \
	$(MAKE) --no-print-directory test-e2e-old > $$log 2>&1 & old=$$!; \
	$(MAKE) --no-print-directory test-e2e; e2e=$$?; \
	wait $$old; older=$$?; cat $$log; rm -f $$log; \
	test $$e2e = 0 && test $$older = 0

# The every_airflow tests on each of $(E2E_AIRFLOW), one after the other (each boots an Airflow).
# Side by side (six Airflows at once with the 3.3 tier's four parts), a clean-clone run lost an API
# server's port mid-run and 45 tests failed against the wrong or a dead Airflow: see the closing
# note of 2026-12-07 before trying it again.
test-e2e-old: $(addprefix .venvs/airflow-,$(E2E_AIRFLOW))
	@status=0; for version in $(E2E_AIRFLOW); do \
		$(MAKE) --no-print-directory test-e2e-airflow-$$version || status=1; done; exit $$status

clean:
	rm -rf $(VENV) .venvs .airflow .pytest_cache .mypy_cache .ruff_cache site
