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

    def execute_complete(self, context: Any, *args: Any, **kwargs: Any) -> Any:
        context["task_state_store"] = Counting(context["task_state_store"])
        return super().execute_complete(context, *args, **kwargs)


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


def test_a_deferral_hands_the_record_to_the_resumed_attempt(airflow_db, monkeypatch) -> None:
    """The deferring attempt gives Airflow its record with the deferral (``next_kwargs``, which the
    triggerer keeps beside the event); the resumed attempt takes it and reads nothing. ``dag.test()``
    keeps only the event, so the handover is driven here as Airflow's task runner does it, on the
    accessor of a real task instance's context."""
    from airflow.sdk.exceptions import TaskDeferred

    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "airflow")
    service = FakeJobService(polls=2)
    handed: dict[str, Any] = {}

    class Handing(CountingOperator):
        def execute(self, context: Any) -> Any:
            try:
                return super().execute(context)
            except TaskDeferred as deferred:
                handed.update(deferred.kwargs or {})
                CALLS.append("deferred")
                status = self.get_job_status(self._handle)  # type: ignore[arg-type]
                while status.state.is_active:
                    status = self.get_job_status(self._handle)  # type: ignore[arg-type]
                event = {"job_id": self._handle.job_id, "state": status.state.value}  # type: ignore[union-attr]
                return self.execute_complete(context, event=event, **handed)

    CALLS.clear()
    with new_dag("round_trips_handover") as dag:
        Handing(task_id="job", service=service.name, deferrable=True, start_date=datetime(2025, 1, 1))
    assert task_states(run_dag(dag)) == {"job": "success"}
    assert handed["record"]["phase"] == "submitted" and handed["record_version"] == 2
    assert list(CALLS) == ["set", "set", "deferred"]
