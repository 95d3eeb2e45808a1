"""Crash DAGs of dbt Cloud (``DbtCloudRunJobOperator``, a dbt Cloud job's run): see
:mod:`resumable.testing.crash_dags` for their ids and settings. Defined only where the dbt-cloud
provider is installed. Each contender triggers runs of a job of its own (dbt Cloud runs one run of a
job at a time), its id from ``RESUMABLE_CRASH_DBT_CLOUD_JOBS`` (a JSON object by contender). The
hook builds ``https://`` addresses of dbt Cloud's own hosts, which the lab's loopback emulator is
not: in the lab's workers only its base address is changed, to ``RESUMABLE_CRASH_DBT_CLOUD_HOST``
(see :func:`resumable.testing.dbt_cloud.route_hook_to`).
"""

from __future__ import annotations

import json
import os
from typing import Any

from resumable.testing.crash_dags import define, installed

JOBS = json.loads(os.environ.get("RESUMABLE_CRASH_DBT_CLOUD_JOBS") or "{}")


def dbt_cloud(contender: str, **extra: Any) -> Any:
    from airflow.providers.dbt.cloud.operators.dbt import DbtCloudRunJobOperator

    from resumable.operators.dbt_cloud import ResumableDbtCloudRunJobOperator

    cls = ResumableDbtCloudRunJobOperator if contender == "resumable" else DbtCloudRunJobOperator
    return cls(task_id="job", job_id=int(JOBS.get(contender, 1)), check_interval=1, timeout=86400, **extra)


if installed("dbt_cloud"):
    if host := os.environ.get("RESUMABLE_CRASH_DBT_CLOUD_HOST"):
        from resumable.testing.dbt_cloud import route_hook_to

        route_hook_to(host)
    globals().update(define("dbt_cloud", dbt_cloud))
