"""What an attempt costs the state store on Airflow >= 3.3's task state store, counted at the
accessor Airflow hands the task (``dag.test()``, the real Execution API): one read at the start,
the writes of the protocol, and nothing per poll."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from packaging.version import Version

from resumable.records import airflow_version
from resumable.testing.airflow import run_dag, task_states
from resumable.testing.fake import FakeJobOperator, FakeJobService
from tests.helpers import new_dag

found = airflow_version()
pytestmark = pytest.mark.skipif(
    found is None or found.release < Version("3.3").release,
    reason="Airflow < 3.3 has no task state store (its tasks use the sql backend)",
)

CALLS: list[str] = []


class Counting:
    """``context["task_state_store"]``, counting its calls."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name not in ("get", "set", "delete"):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            CALLS.append(name)
            return attr(*args, **kwargs)

        return counted


class CountingOperator(FakeJobOperator):
    def execute(self, context: Any) -> Any:
        context["task_state_store"] = Counting(context["task_state_store"])
        return super().execute(context)


@pytest.mark.parametrize("polls", [0, 12])
def test_a_first_try_writes_twice_and_reads_nothing(airflow_db, monkeypatch, polls) -> None:
    """What Airflow 3.3's own mixin costs: the intent and the job's id, nothing per poll, no outcome."""
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "airflow")
    service = FakeJobService(polls=polls)
    CALLS.clear()
    with new_dag("round_trips") as dag:
        CountingOperator(
            task_id="job", service=service.name, poll_interval=0.01, start_date=datetime(2025, 1, 1)
        )
    assert task_states(run_dag(dag)) == {"job": "success"}
    assert service.calls["status"] == polls + 1
    assert list(CALLS) == ["set", "set"]


def test_a_retry_that_reattaches_reads_once(airflow_db, monkeypatch) -> None:
    """Try 1 dies after writing its job's id; try 2 reads the record and reattaches with no write."""
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "airflow")
    monkeypatch.setenv("RESUMABLE_FAULT_POINT", "after_handle")
    service = FakeJobService(polls=3)
    CALLS.clear()
    with new_dag("round_trips_retry") as dag:
        CountingOperator(
            task_id="job",
            service=service.name,
            poll_interval=0.01,
            retries=1,
            retry_delay=timedelta(0),
            start_date=datetime(2025, 1, 1),
        )
    assert task_states(run_dag(dag)) == {"job": "success"}
    assert service.calls["submit"] == 1
    assert list(CALLS) == ["set", "set", "get"]
