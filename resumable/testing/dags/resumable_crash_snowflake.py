"""Crash DAGs of the Snowflake SQL API (``SnowflakeSqlApiOperator``, one statement per request): see
:mod:`resumable.testing.crash_dags` for their ids and settings. Defined only where the snowflake
provider is installed (Python 3.11+). The hook builds ``https://`` addresses of Snowflake's own
hosts, which the lab's loopback emulator is not: in the lab's workers only its base address is
changed, to ``RESUMABLE_CRASH_SNOWFLAKE_URL`` for account ``RESUMABLE_CRASH_SNOWFLAKE_ACCOUNT``
(see :func:`resumable.testing.snowflake.route_hook_to`).
"""

from __future__ import annotations

import os
from typing import Any

from resumable.testing.crash_dags import define, installed


def snowflake(contender: str, **extra: Any) -> Any:
    from airflow.providers.snowflake.operators.snowflake import SnowflakeSqlApiOperator

    from resumable.operators.snowflake import ResumableSnowflakeSqlApiOperator

    cls = ResumableSnowflakeSqlApiOperator if contender == "resumable" else SnowflakeSqlApiOperator
    return cls(
        task_id="job",
        sql=f"INSERT INTO sales.daily SELECT '{contender}', * FROM sales.staging",
        statement_count=1,
        poll_interval=1,
        **extra,
    )


if installed("snowflake"):
    _url, _account = (
        os.environ.get("RESUMABLE_CRASH_SNOWFLAKE_URL"),
        os.environ.get("RESUMABLE_CRASH_SNOWFLAKE_ACCOUNT"),
    )
    if _url and _account:
        from resumable.testing.snowflake import route_hook_to

        route_hook_to(_url, _account)
    globals().update(define("snowflake", snowflake))
