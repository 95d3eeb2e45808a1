"""The state layer: where records and checkpoints live, and how the backend is chosen."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from resumable import config
from resumable.errors import StateBackendError
from resumable.state.base import StateBackend, TaskScope, Versioned
from resumable.state.memory import MemoryBackend
from resumable.state.sql import SqlBackend

BACKENDS = ("auto", "airflow", "sql", "memory")


def backend_for(context: Mapping[str, Any]) -> StateBackend:
    """The backend named by ``[resumable] state_backend`` for this task instance, checked to be usable.

    ``auto`` picks ``airflow`` where the task has Airflow's ``task_state_store`` (Airflow >= 3.3)
    and ``sql`` elsewhere. An unknown name or an unreachable backend raises
    :class:`~resumable.errors.StateBackendError` before anything is submitted.
    """
    name = config.state_backend_name()
    if name not in BACKENDS:
        raise StateBackendError(
            f"[resumable] state_backend is {name!r}, which is not one of {', '.join(BACKENDS)}. "
            "Nothing was submitted. Set AIRFLOW__RESUMABLE__STATE_BACKEND to one of them."
        )
    accessor = context.get("task_state_store")
    if name == "auto":
        name = "airflow" if accessor is not None else "sql"
    backend: StateBackend
    if name == "airflow":
        if accessor is None:
            raise StateBackendError(
                "[resumable] state_backend is 'airflow' but this task has no task_state_store "
                "(it needs Airflow >= 3.3). Nothing was submitted. Use state_backend 'sql' "
                "(or 'auto') on this Airflow."
            )
        from resumable.state.airflow import AirflowStoreBackend

        backend = AirflowStoreBackend(accessor, TaskScope.from_context(context))
    elif name == "sql":
        url = config.sql_alchemy_conn()
        _refuse_sqlite_on_many_machines(url)
        backend = SqlBackend(url)
    else:
        backend = MemoryBackend()
    backend.check()
    return backend


#: Executors whose tasks all run on the scheduler's machine, where one SQLite file is shared.
ONE_MACHINE_EXECUTORS = frozenset({"", "LocalExecutor", "SequentialExecutor"})


def _refuse_sqlite_on_many_machines(url: str) -> None:
    """The ``sql`` backend on a SQLite file under an executor whose workers run on other machines: each
    worker would keep its own file, and a retry on another worker would find no record and submit again."""
    if not url.startswith("sqlite"):
        return
    from resumable._compat import conf_get

    executor = conf_get("core", "executor", "").split(",")[0].strip()
    if executor.rsplit(".", 1)[-1] in ONE_MACHINE_EXECUTORS:
        return
    raise StateBackendError(
        f"The resumable state would be kept in a SQLite file on this worker ({url}), but [core] executor is "
        f"{executor}, whose tasks run on many machines: a retry on another worker would not find this "
        "attempt's record and would submit the job again. Nothing was submitted. Set "
        "AIRFLOW__RESUMABLE__SQL_ALCHEMY_CONN (or [resumable] sql_alchemy_conn) to a PostgreSQL or MySQL "
        "database every worker reaches (Airflow 3.3 and later need none: state_backend 'auto' uses "
        "Airflow's own task state store there)."
    )


__all__ = [
    "BACKENDS",
    "MemoryBackend",
    "SqlBackend",
    "StateBackend",
    "TaskScope",
    "Versioned",
    "backend_for",
]
