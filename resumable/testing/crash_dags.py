"""What the crash DAG files share: their settings, their DAG and :func:`define`, which makes one
system's crash DAGs from a builder of its task.

The crash DAGs live in one DAG file per provider (``resumable/testing/dags/resumable_crash_*.py``):
a task process parses only the file of its own DAG, so a Databricks task does not import the google
provider, and the DAG processor parses each file in a process of its own.

Settings come from the environment the crash lab gives its Airflow (see each DAG file for its
system's); ``RESUMABLE_CRASH_RETRIES`` (default 3) and ``RESUMABLE_CRASH_RETRY_DELAY`` (seconds,
default 2) for every DAG, ``RESUMABLE_CRASH_TIMEOUT`` (default 12) for the ``timeout`` DAGs and
``RESUMABLE_CRASH_RETRY_TIMEOUT`` (default 20) for the ``retry_timeout`` ones.

DAG ids: ``crash_<system>_<contender>`` where contender is ``resumable`` (ours), ``provider`` (the
provider's operator as it is) or, for Databricks, ``provider_nodurable`` (the provider's operator
with ``durable=False``); ``crash_<system>_timeout`` (ours, ``execution_timeout`` shorter than the
job, no retries), ``crash_<system>_noretry`` (ours, no retries: a failure is final until a person
clears it; a DAG run with conf ``{"hold_until_stopped": true}`` holds its try before ``execute``
until Airflow's stop reaches it, see :func:`hold_until_stopped`), ``crash_<system>_retry_timeout``
(ours, ``execution_timeout`` of ``RESUMABLE_CRASH_RETRY_TIMEOUT`` seconds and the usual retries) and,
where the system has a deferrable mode in the lab, ``crash_<system>_deferrable`` (ours, deferrable).
The task is always ``job``.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

RETRIES = int(os.environ.get("RESUMABLE_CRASH_RETRIES", "3"))
RETRY_DELAY = timedelta(seconds=float(os.environ.get("RESUMABLE_CRASH_RETRY_DELAY", "2")))
TIMEOUT = timedelta(seconds=float(os.environ.get("RESUMABLE_CRASH_TIMEOUT", "12")))
RETRY_TIMEOUT = timedelta(seconds=float(os.environ.get("RESUMABLE_CRASH_RETRY_TIMEOUT", "20")))

#: A builder makes the task ``job`` of a contender (``"resumable"``, ``"provider"``, ...) with extra
#: operator arguments, inside the DAG being defined.
Builder = Callable[..., Any]


def crash_dag(dag_id: str) -> DAG:
    return DAG(
        dag_id,
        schedule=None,
        start_date=datetime(2025, 1, 1),
        catchup=False,
        max_active_runs=16,
        tags=["resumable-crash"],
        default_args={"retries": RETRIES, "retry_delay": RETRY_DELAY},
    )


#: The provider each system's crash DAGs need, where it may be missing (the google and snowflake
#: providers need Python 3.11+): its DAG file defines nothing without it.
PROVIDERS = {
    "bigquery": "airflow.providers.google",
    "snowflake": "airflow.providers.snowflake",
    "dbt_cloud": "airflow.providers.dbt.cloud",
}


def installed(system: str) -> bool:
    """Whether the provider of ``system``'s crash DAGs (:data:`PROVIDERS`) can be imported here: a
    DAG file defines its crash DAGs only where its provider is installed."""
    module = PROVIDERS.get(system)
    try:
        return module is None or importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def hold_until_stopped(context: Any) -> None:
    """``pre_execute`` of the ``noretry`` DAGs: with conf ``{"hold_until_stopped": true}`` the try
    pushes the XCom ``held``, waits here, before ``execute``, until Airflow's stop has reached the
    operator's ``on_kill`` (at most 120 s), then goes on a second later, as a slow template rendering
    that ends inside Airflow's 5 s between SIGTERM and SIGKILL would."""
    conf = context["dag_run"].conf or {}
    if not conf.get("hold_until_stopped"):
        return
    context["ti"].xcom_push(key="held", value=True)
    context["task"]._stopping.requested.wait(120)
    time.sleep(1)


def define(
    system: str,
    build: Builder,
    contenders: Iterable[str] = ("resumable", "provider"),
    *,
    deferrable: bool = False,
) -> dict[str, DAG]:
    """The crash DAGs of ``system`` (see the module's docstring), by DAG id: a DAG file puts them in
    its globals, where the DAG processor finds them."""
    dags: dict[str, DAG] = {}

    def one(dag_id: str, contender: str, **extra: Any) -> None:
        with crash_dag(dag_id) as dag:
            build(contender, **extra)
        dags[dag_id] = dag

    for contender in contenders:
        one(f"crash_{system}_{contender}", contender)
    one(f"crash_{system}_timeout", "resumable", execution_timeout=TIMEOUT, retries=0)
    one(f"crash_{system}_noretry", "resumable", retries=0, pre_execute=hold_until_stopped)
    one(f"crash_{system}_retry_timeout", "resumable", execution_timeout=RETRY_TIMEOUT)
    if deferrable:
        one(f"crash_{system}_deferrable", "resumable", deferrable=True)
    return dags
