"""Run a DAG defined in test code with ``dag.test()``, with no DAG file and no scheduler.

Airflow's ``dag.test()`` only runs DAGs it finds serialized in the metadata database; these
helpers write the DAG there first. Call them after AIRFLOW_HOME points at an initialised database
(``airflow db migrate``, or :func:`init_db`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from resumable import _compat


def init_db() -> None:
    """Create (or upgrade) the metadata database AIRFLOW_HOME points at."""
    from airflow.utils.db import initdb

    initdb()


def register_dag(dag: Any) -> None:
    """Write ``dag`` to the metadata database as if the DAG processor had parsed it."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.utils.session import create_session

    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
        session.flush()
        _compat.write_parsed_dags("dags-folder", [dag], session)


def run_dag(dag: Any, logical_date: datetime | None = None, **kwargs: Any) -> Any:
    """Register ``dag`` and run it once with ``dag.test()``; returns the DagRun.

    Running it again with the same ``logical_date`` is what a person's "clear" does: Airflow clears
    the task instances (raising their ``max_tries``) and runs them again in the same DAG run.
    """
    _compat.cache_in_process_execution_api()
    register_dag(dag)
    if logical_date is not None:
        kwargs.setdefault("run_after", logical_date)
        kwargs["logical_date"] = logical_date
    return dag.test(**kwargs)


def task_states(dag_run: Any) -> dict[str, str | None]:
    """``{task_id: state}`` of a finished DAG run (``task_id[map_index]`` for mapped tasks)."""
    result: dict[str, str | None] = {}
    for ti in dag_run.get_task_instances():
        name = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
        result[name] = None if ti.state is None else str(getattr(ti.state, "value", ti.state))
    return result


def clear_and_rerun(
    dag: Any, dag_run: Any, task_ids: list[str] | None = None, *, run_on_latest_version: bool = False
) -> Any:
    """Clear finished task instances the way a person does in the UI, then run each once more.

    Unlike calling ``dag.test()`` again (which deletes the DAG run and creates a new one), this
    keeps the DAG run, its task state and its history: Airflow's own clear raises ``max_tries``,
    which is what a resumable task sees as a new lineage. Returns the refreshed DagRun.
    ``run_on_latest_version=True`` registers ``dag`` as it is now (say, with other ``retries``)
    and clears onto that version, as the UI's "run on latest version" does.
    """
    import inspect

    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import clear_task_instances
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.merge(dag_run)
        tis = [ti for ti in run.get_task_instances(session=session) if not task_ids or ti.task_id in task_ids]
        kwargs: dict[str, Any] = {}
        if run_on_latest_version:
            register_dag(dag)
            if "run_on_latest_version" in inspect.signature(clear_task_instances).parameters:
                kwargs["run_on_latest_version"] = True
        clear_task_instances(tis, session, **kwargs)
    with create_session() as session:
        run = session.merge(dag_run)
        tis = [ti for ti in run.get_task_instances(session=session) if not task_ids or ti.task_id in task_ids]
        for ti in tis:
            ti.try_number += 1  # what the scheduler does when it schedules a cleared task instance
            ti.refresh_from_task(dag.task_dict[ti.task_id])
        session.flush()
        for ti in tis:
            session.expunge(ti)
    _compat.cache_in_process_execution_api()
    for ti in tis:
        _compat.run_task_as_dag_test(ti, dag.task_dict[ti.task_id], run_triggerer=True)
    with create_session() as session:
        query = select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == dag_run.run_id)
        return session.scalars(query).one()


def run_retries(dag: Any, dag_run: Any) -> Any:
    """Run every task instance of ``dag_run`` that waits for its retry (``up_for_retry``) once more, as
    the scheduler does once the retry delay has passed, until none waits (after :func:`clear_and_rerun`,
    which runs each cleared task instance once). Returns the refreshed DagRun."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    query = select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == dag_run.run_id)
    while True:
        with create_session() as session:
            run = session.scalars(query).one()
            tis = [ti for ti in run.get_task_instances(session=session) if ti.state == "up_for_retry"]
            if not tis:
                return run
            for ti in tis:
                ti.try_number += 1
                ti.refresh_from_task(dag.task_dict[ti.task_id])
            session.flush()
            for ti in tis:
                session.expunge(ti)
        for ti in tis:
            _compat.run_task_as_dag_test(ti, dag.task_dict[ti.task_id], run_triggerer=True)
