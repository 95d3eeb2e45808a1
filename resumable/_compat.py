"""Every Airflow name this package uses that moved between Airflow 3.0, 3.1, 3.2 and 3.3, imported
from wherever the running version keeps it. Airflow 2.x is not supported.

| name | 3.0, 3.1 | 3.2, 3.3 |
|---|---|---|
| ``BaseOperatorMeta`` | ``airflow.sdk.bases.operator`` | same |
| ``AirflowTaskTimeout`` | ``airflow.exceptions`` | ``airflow.sdk.exceptions`` |
| ``Stats`` | ``airflow.stats`` | ``airflow.sdk.observability.stats`` |
| ``conf`` (configuration) | ``airflow.configuration`` | ``airflow.sdk.configuration`` |
| ``DagBag`` | ``airflow.models.dagbag`` | ``airflow.dag_processing.dagbag`` |
| ``BaseTrigger``, ``TriggerEvent`` | ``airflow.triggers.base`` | same |

The task SDK's call for the task instances' states (``RuntimeTaskInstance.get_task_states``, a
``GetTaskStates`` request through the supervisor) has the same signature and the same answer on
3.0-3.3: ``{run_id: {task_id or f"{task_id}_{map_index}": state}}``.

Each name is imported on first use (module ``__getattr__``), never when this module is imported:
importing ``resumable`` (which Airflow does when it reads the provider's entry point, in the middle
of loading its own configuration) must not pull in Airflow's task machinery.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the types as the newest Airflow has them
    from airflow.dag_processing.dagbag import DagBag as DagBag
    from airflow.sdk.bases.operator import BaseOperatorMeta as BaseOperatorMeta
    from airflow.sdk.configuration import conf as conf
    from airflow.sdk.exceptions import AirflowTaskTimeout as AirflowTaskTimeout
    from airflow.sdk.observability.stats import Stats as Stats
    from airflow.triggers.base import BaseTrigger as BaseTrigger
    from airflow.triggers.base import TriggerEvent as TriggerEvent

#: name -> the modules that may hold it, newest Airflow first.
_WHERE: dict[str, tuple[str, ...]] = {
    "BaseOperatorMeta": ("airflow.sdk.bases.operator",),
    "AirflowTaskTimeout": ("airflow.sdk.exceptions", "airflow.exceptions"),
    "Stats": ("airflow.sdk.observability.stats", "airflow.stats"),
    "conf": ("airflow.sdk.configuration", "airflow.configuration"),
    "DagBag": ("airflow.dag_processing.dagbag", "airflow.models.dagbag"),
    "BaseTrigger": ("airflow.triggers.base",),
    "TriggerEvent": ("airflow.triggers.base",),
}


def _find(name: str) -> Any:
    errors: list[str] = []
    for module_name in _WHERE[name]:
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            errors.append(f"{module_name}: {error}")
            continue
        if hasattr(module, name):
            return getattr(module, name)
        errors.append(f"{module_name} has no {name}")
    raise ImportError(f"cannot import {name} from this Airflow ({'; '.join(errors)})", name=name)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = _find(name)
    globals()[name] = value  # found once per process
    return value


def stats_incr(name: str, tags: dict[str, str]) -> None:
    """Count an event with Airflow's metrics; a metrics outage never fails a task."""
    with contextlib.suppress(Exception):  # metrics are best effort by design
        __getattr__("Stats").incr(name, tags=tags)


def conf_get(section: str, key: str, fallback: str) -> str:
    """An option of Airflow's configuration (``[section] key``), or ``fallback``."""
    value = __getattr__("conf").get(section, key, fallback=fallback)
    return fallback if value is None else str(value)


def get_task_states(ti: Any, *, task_id: str, map_index: int | None) -> dict[str, Any] | None:
    """The states Airflow has for ``task_id`` (and ``map_index``) in ``ti``'s DAG run, keyed as the
    Execution API keys them (``task_id``, or ``f"{task_id}_{map_index}"`` for a mapped one); ``None``
    when this task instance cannot ask (no task SDK runtime behind it)."""
    ask = getattr(ti, "get_task_states", None)
    if ask is None:
        return None
    states = ask(
        dag_id=ti.dag_id,
        map_index=map_index if map_index is not None and map_index >= 0 else None,
        task_ids=[task_id],
        run_ids=[ti.run_id],
    )
    return dict(states.get(ti.run_id) or {})


def write_parsed_dags(bundle_name: str, dags: list[Any], session: Any) -> None:
    """Write ``dags`` (DAG objects) to the metadata database as the DAG processor does after it
    parsed them from ``bundle_name``. For tests and ``dag.test()``: Airflow only runs DAGs it
    finds serialized there. Airflow 3.0 has no ``LazyDeserializedDAG.from_dag`` and no
    ``parse_duration`` argument."""
    import inspect

    from airflow.dag_processing import collection
    from airflow.serialization import serialized_objects

    lazy: Any = serialized_objects.LazyDeserializedDAG
    update: Any = collection.update_dag_parsing_results_in_db
    if hasattr(lazy, "from_dag"):  # Airflow >= 3.1
        serialized = [lazy.from_dag(dag) for dag in dags]
    else:
        to_dict: Any = serialized_objects.SerializedDAG.to_dict  # type: ignore[attr-defined]
        serialized = []
        for dag in dags:
            data = to_dict(dag)
            # a DAG not loaded from a bundle has no relative_fileloc; 3.0's DagBag uses fileloc then
            data["dag"].setdefault("relative_fileloc", dag.relative_fileloc or dag.fileloc)
            serialized.append(lazy(data=data))
    if "parse_duration" in inspect.signature(update).parameters:
        update(bundle_name, None, serialized, {}, None, set(), session=session, files_parsed=set())
    else:  # Airflow 3.0
        update(bundle_name, None, serialized, {}, set(), session=session)


def run_task_as_dag_test(ti: Any, task: Any, *, run_triggerer: bool = False) -> Any:
    """Run one task instance the way ``dag.test()`` does (``airflow.sdk.definitions.dag._run_task``:
    it takes the task as an argument from 3.1 on, and reads ``ti.task`` on 3.0)."""
    import inspect

    from airflow.sdk.definitions import dag as sdk_dag

    run: Any = sdk_dag._run_task
    if "task" in inspect.signature(run).parameters:
        return run(ti=ti, task=task, run_triggerer=run_triggerer)
    ti.task = task
    return run(ti=ti, run_triggerer=run_triggerer)


def cache_in_process_execution_api() -> None:
    """Make ``dag.test()`` on Airflow < 3.3 build its in-process Execution API once per process,
    as Airflow 3.3 does (``functools.lru_cache`` on ``supervisor.in_process_api_server``).

    Before 3.3 every task run builds a new FastAPI app (about 4 s each, which shifts any timing a
    test relies on) and drops it while its transport is still in use: when the garbage collector
    finalises it, its lifespan closes, and with svcs >= 26.2 the app loses its service registry,
    so the next request fails with ``'State' object has no attribute 'svcs_registry'``.
    A no-op on 3.3 and later. For tests and ``dag.test()`` only: call it before running DAGs.
    """
    import functools

    from airflow.sdk.execution_time import supervisor

    current = supervisor.in_process_api_server
    if hasattr(current, "cache_info"):  # Airflow >= 3.3, or already done
        return
    supervisor.in_process_api_server = functools.lru_cache(maxsize=1)(current)  # type: ignore[assignment]


__all__ = [
    "AirflowTaskTimeout",
    "cache_in_process_execution_api",
    "BaseOperatorMeta",
    "BaseTrigger",
    "DagBag",
    "Stats",
    "TriggerEvent",
    "conf",
    "conf_get",
    "get_task_states",
    "run_task_as_dag_test",
    "stats_incr",
    "write_parsed_dags",
]
