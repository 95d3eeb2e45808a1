"""Crash DAGs of BigQuery (``BigQueryInsertJobOperator``, a query job): see
:mod:`resumable.testing.crash_dags` for their ids and settings. Defined only where the google
provider is installed (Python 3.11+). The client reaches the lab's emulator through
``BIGQUERY_EMULATOR_HOST`` and an anonymous ``google_cloud_default`` connection, both from the
environment.
"""

from __future__ import annotations

from typing import Any

from resumable.testing.crash_dags import define, installed


def bigquery(contender: str, **extra: Any) -> Any:
    from airflow.providers.google.cloud.operators.bigquery import BigQueryInsertJobOperator

    from resumable.operators.bigquery import ResumableBigQueryInsertJobOperator

    cls = ResumableBigQueryInsertJobOperator if contender == "resumable" else BigQueryInsertJobOperator
    query = {"query": {"query": "INSERT INTO sales.daily SELECT * FROM sales.staging", "useLegacySql": False}}
    return cls(task_id="job", configuration=query, poll_interval=1, **extra)


if installed("bigquery"):
    globals().update(define("bigquery", bigquery))
