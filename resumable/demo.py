"""The quick-start demo: the worker dies right after submitting; who submits the job twice?

Runs two DAG runs on a real, embedded Airflow (``dag.test()`` on SQLite) against the in-process
fake job service: one task with ``resumable=False`` (what an ordinary operator does) and one with
the resume protocol. In both, the first attempt dies at the ``after_submit`` fault point, between
"the job was submitted" and "its id was saved". Run it with ``resumable demo``.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime, timedelta

from airflow.sdk import DAG

from resumable.testing.airflow import init_db, run_dag, task_states
from resumable.testing.fake import FakeJobOperator, FakeJobService


def scenario(name: str, resumable: bool) -> dict[str, object]:
    service = FakeJobService(name=name, idempotent=False, polls=3)
    with DAG(f"demo_{name}", schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
        FakeJobOperator(
            task_id="spark_job",
            service=name,
            job_name="nightly-aggregation",
            resumable=resumable,
            retries=1,
            retry_delay=timedelta(0),
            poll_interval=0.05,
        )
    dag_run = run_dag(dag)
    return {
        "operator": "resumable" if resumable else "ordinary (resumable=False)",
        "jobs submitted": service.total_submissions,
        "jobs cancelled": len(service.cancelled),
        "task": task_states(dag_run)["spark_job"],
        "dag run": str(getattr(dag_run.state, "value", dag_run.state)),
    }


def main() -> int:
    logging.disable(logging.INFO)
    os.environ["RESUMABLE_FAULT_POINT"] = "after_submit"
    os.environ["RESUMABLE_FAULT_TRY"] = "1"
    print("Setting up an embedded Airflow (SQLite) ...", flush=True)
    init_db()
    print("Each task's first attempt dies right after it submits its job; Airflow retries it.\n", flush=True)
    rows = [scenario("ordinary", resumable=False), scenario("resumable", resumable=True)]
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(row[c]).ljust(w) for c, w in zip(columns, widths, strict=True)))
    ours = rows[1]
    ok = ours["jobs submitted"] == 1 and ours["task"] == "success"
    print(
        "\nThe ordinary operator lost track of its first job and submitted a second one; the resumable "
        "operator wrote its intent and token before submitting, so the retry found the first job and "
        "submitted nothing."
        if ok
        else "\nFAILED: the resumable operator submitted twice or lost its job."
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
