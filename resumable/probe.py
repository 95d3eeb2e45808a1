"""Asks Airflow, from inside a stopping task, what state its task instance is in now."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from resumable._compat import get_task_states
from resumable.protocol import DELETED
from resumable.supervisor_calls import through_supervisor


class TaskStateProbe(Protocol):
    def state_of(self, context: Mapping[str, Any]) -> str | None:
        """The task instance's state, lower case (``"none"`` for no state), :data:`DELETED` when
        Airflow answered without it, or ``None`` if Airflow could not be asked."""


class AirflowTaskStateProbe:
    """Reads the state through the task SDK (``RuntimeTaskInstance.get_task_states``, the same call
    and answer on Airflow 3.0-3.3)."""

    def state_of(self, context: Mapping[str, Any]) -> str | None:
        ti = context.get("ti")
        if ti is None:
            return None
        map_index = ti.map_index if ti.map_index is not None and ti.map_index >= 0 else None
        try:
            with through_supervisor():
                by_task = get_task_states(ti, task_id=ti.task_id, map_index=map_index)
        except Exception:  # noqa: BLE001 - any failure means "cannot be asked": keep the job
            return None
        if by_task is None:
            return None
        name = ti.task_id if map_index is None else f"{ti.task_id}_{map_index}"
        if name not in by_task:
            # Airflow answered for this DAG run and has no row of this task instance: the run was
            # deleted (a task removed from the DAG keeps its row, as "removed").
            return DELETED
        state = by_task[name]
        return "none" if state is None else str(getattr(state, "value", state)).lower()
