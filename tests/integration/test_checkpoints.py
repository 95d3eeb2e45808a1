"""Checkpoint and DoneSet across retries and clears, in tasks run by Airflow (``dag.test()``).

A retry resumes from the last checkpoint; a person's clear reruns from the start, as it does for a
job: the checkpoint belongs to the lineage that wrote it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from airflow.sdk import task

from resumable import Checkpoint, DoneSet
from resumable.testing.airflow import clear_and_rerun, run_dag, task_states
from tests.helpers import new_dag

#: What each try found when it started: (try_number, cursor, files done).
SEEN: list[tuple[int, int, list[str]]] = []


@task(retries=1, retry_delay=timedelta(0))
def load(**context: Any) -> None:
    done = DoneSet(context, "files")
    cursor = Checkpoint(context, "cursor")
    SEEN.append((context["ti"].try_number, cursor.get(default=0), sorted(done)))
    for name in ("a.csv", "b.csv"):
        if name not in done:
            done.add(name)
    cursor.set(100)
    if context["ti"].try_number == 1:
        raise RuntimeError("the worker was lost after loading both files")


@pytest.mark.parametrize("backend", ["auto", "sql"])
def test_a_retry_resumes_from_the_checkpoint_and_a_clear_starts_over(
    airflow_db, monkeypatch, backend
) -> None:
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", backend)
    SEEN.clear()
    with new_dag("checkpoints") as dag:
        load()
    first = run_dag(dag)
    assert task_states(first) == {"load": "success"}
    assert SEEN == [(1, 0, []), (2, 100, ["a.csv", "b.csv"])]

    second = clear_and_rerun(dag, first)
    assert task_states(second) == {"load": "success"}
    assert SEEN[2] == (3, 0, []), f"a clear reruns the task from the start: {SEEN}"
