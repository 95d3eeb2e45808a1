"""The crash lab's settings reach each system's own emulator (no Airflow: the emulators alone).

The e2e tier drives Databricks and BigQuery through the lab on a real Airflow, and the chaos bench
Snowflake and dbt Cloud; this checks each setting of every system's emulator in a second.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from resumable.testing import bigquery, databricks, dbt_cloud, snowflake
from resumable.testing.crash import CrashLab

EMULATORS = {
    "databricks": (databricks.DatabricksEmulator, databricks.CANCEL_SECONDS, "submit_delay"),
    "bigquery": (bigquery.BigQueryEmulator, bigquery.CANCEL_SECONDS, "insert_delay"),
    "snowflake": (snowflake.SnowflakeEmulator, snowflake.CANCEL_SECONDS, "submit_delay"),
    "dbt_cloud": (dbt_cloud.DbtCloudEmulator, dbt_cloud.CANCEL_SECONDS, "trigger_delay"),
}


@pytest.fixture(params=list(EMULATORS))
def lab(request: pytest.FixtureRequest) -> Iterator[tuple[CrashLab, str]]:
    system = request.param
    lab = CrashLab()
    emulator = EMULATORS[system][0]().start()
    setattr(lab, system, emulator)
    try:
        yield lab, system
    finally:
        emulator.stop()


def test_each_setting_reaches_the_systems_own_emulator(lab: tuple[CrashLab, str]) -> None:
    crash_lab, system = lab
    emulator = getattr(crash_lab, system)
    _, default_cancel, hold = EMULATORS[system]

    crash_lab.hold_submit(system, 2.5)
    assert getattr(emulator, hold) == 2.5
    crash_lab.stop_takes(system, 7.0)
    assert emulator.cancel_seconds == 7.0
    crash_lab.stop_takes(system, None)
    assert emulator.cancel_seconds == default_cancel
    crash_lab.outage(system, 0.01)
    crash_lab.throttle_cancels(system, 0.01)
    crash_lab.script(system, 30, 40)
    crash_lab.advance(system, 1)
    assert crash_lab.counters(system) == {"submitted": 0, "cancelled": 0}
    assert crash_lab.status_calls(system) == 0


@pytest.mark.parametrize("system", ["bigquery", "snowflake", "dbt_cloud"])
def test_a_job_that_hangs_is_refused_where_the_emulator_has_none(system: str) -> None:
    with pytest.raises(ValueError, match="succeed or fail, not 'hang'"):
        CrashLab().script(system, 30, outcome="hang")


def test_a_system_whose_provider_is_missing_has_no_crash_dags(monkeypatch: pytest.MonkeyPatch) -> None:
    from resumable.testing import crash_dags

    assert set(CrashLab.systems()) >= {"databricks", "emr_serverless", "dbt_cloud"}
    monkeypatch.setitem(crash_dags.PROVIDERS, "dbt_cloud", "airflow.providers.no_such_provider.cloud")
    assert "dbt_cloud" not in CrashLab.systems()
    assert not crash_dags.installed("dbt_cloud") and crash_dags.installed("databricks")
