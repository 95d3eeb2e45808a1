"""One embedded Airflow (API server, scheduler, DAG processor, triggerer, LocalExecutor, SQLite)
for the whole e2e session, with the Databricks emulator and moto behind the crash DAGs."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from resumable.testing.crash import CrashLab


@pytest.fixture(scope="session")
def lab() -> Iterator[CrashLab]:
    # RESUMABLE_E2E_KEEP=1 keeps the Airflow home (task logs, process logs) to read after a failure.
    with CrashLab(keep_home=bool(os.environ.get("RESUMABLE_E2E_KEEP"))) as crash_lab:
        yield crash_lab


@pytest.fixture(autouse=True)
def _no_fault_left_armed(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "lab" in request.fixturenames:
        request.getfixturevalue("lab").disarm()
