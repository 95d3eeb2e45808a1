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
        backend = SqlBackend(config.sql_alchemy_conn())
    else:
        backend = MemoryBackend()
    backend.check()
    return backend


__all__ = [
    "BACKENDS",
    "MemoryBackend",
    "SqlBackend",
    "StateBackend",
    "TaskScope",
    "Versioned",
    "backend_for",
]
