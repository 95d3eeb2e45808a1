"""One embedded Airflow (API server, scheduler, DAG processor, triggerer, LocalExecutor) per test
process of the e2e session, with the Databricks emulator and moto behind the crash DAGs.

Its metadata database is a fresh PostgreSQL database on the machine's server, as in the
deployments the package is for. SQLite serialises every writer of the five processes behind one
lock, and under load its API server answers with "Database error"; a machine without PostgreSQL
still runs the tier on SQLite (the session says so), and CI=true requires PostgreSQL.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator

import pytest

from resumable.testing.crash import CrashLab
from resumable.testing.stack import postgres_database

#: RESUMABLE_E2E_KEEP=1 keeps the Airflow home (task logs, process logs) and the database, to read
#: after a failure.
KEEP = bool(os.environ.get("RESUMABLE_E2E_KEEP"))


@pytest.fixture(scope="session")
def lab_database(postgres_reachability: tuple[str, str | None]) -> Iterator[str | None]:
    """The lab's ``sql_alchemy_conn``: a new database on PostgreSQL, or ``None`` (SQLite)."""
    server, problem = postgres_reachability
    if problem is None:
        with postgres_database(server, prefix="resumable_e2e", keep=KEEP) as url:
            yield url
        return
    message = f"PostgreSQL is not reachable ({problem})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI=true runs the e2e tier on PostgreSQL only", pytrace=False)
    warnings.warn(
        f"{message}: the e2e tier runs its Airflow on SQLite, which can answer 'Database error' "
        "under load; start PostgreSQL (or set RESUMABLE_TEST_POSTGRES_URL) to run it as CI does",
        pytest.PytestWarning,
        stacklevel=1,
    )
    yield None


@pytest.fixture(scope="session")
def lab(lab_database: str | None) -> Iterator[CrashLab]:
    with CrashLab(sql_alchemy_conn=lab_database, keep_home=KEEP) as crash_lab:
        yield crash_lab


@pytest.fixture(autouse=True)
def _no_fault_left_armed(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "lab" in request.fixturenames:
        request.getfixturevalue("lab").disarm()


#: The node ids of this directory's tests that pytest-xdist must keep together (``xdist_group``).
GROUPED = ("tests/e2e/test_distributed.py::",)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: object, ids: list[str]) -> None:
    """Under ``--dist loadgroup`` the parts must see the ``xdist_group`` tests grouped (the group's
    name after an ``@`` in the node id). A pytest whose node ids pytest-xdist cannot extend (pytest
    9.2 with pytest-xdist 3.8, pytest-xdist#1386) spreads them over the parts silently, and each part
    would start a Celery stack of its own: stop the run and say so."""
    lost = [nodeid for nodeid in ids if nodeid.startswith(GROUPED) and "@" not in nodeid]
    if lost:
        pytest.exit(
            f"pytest-xdist did not group {len(lost)} test(s) marked xdist_group (first: {lost[0]}) under "
            f"pytest {pytest.__version__} (pytest-xdist#1386): install the pytest pinned in "
            "constraints.txt (make .venv)",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )
