"""pytest fixtures for DAG authors' own tests: the emulators, started, stopped and set as Airflow connections.

Enable them in a ``conftest.py`` with ``pytest_plugins = ["resumable.testing.pytest_plugin"]``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from resumable.testing.aws import AwsEmulator
from resumable.testing.databricks import DatabricksEmulator

#: Emulated seconds per real second in the fixtures: a one-hour job takes a minute.
FIXTURE_SPEED = 60.0


@pytest.fixture(scope="session")
def airflow_metadata_db() -> str:
    """Create (or upgrade) the metadata database of ``AIRFLOW_HOME`` once per test session; returns
    AIRFLOW_HOME. ``dag.test()`` (and :func:`resumable.testing.airflow.run_dag`) need one. Point
    AIRFLOW_HOME at a temporary folder in ``conftest.py`` before anything imports Airflow."""
    import os

    from resumable.testing.airflow import init_db

    init_db()
    return os.environ.get("AIRFLOW_HOME", "")


@pytest.fixture
def databricks_emulator() -> Iterator[DatabricksEmulator]:
    """A running Jobs API emulator that is the Airflow connection ``databricks_default`` during the test."""
    with DatabricksEmulator(speed=FIXTURE_SPEED) as emulator, emulator.use_as("databricks_default"):
        yield emulator


@pytest.fixture
def aws_emulator() -> Iterator[AwsEmulator]:
    """moto with the EMR driver, the Airflow connection ``aws_default`` during the test."""
    with AwsEmulator(speed=FIXTURE_SPEED) as emulator, emulator.use_as("aws_default"):
        yield emulator
