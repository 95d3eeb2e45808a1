"""Asks Airflow, from inside a stopping task, what state its task instance is in now."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from resumable.supervisor_calls import through_supervisor


class TaskStateProbe(Protocol):
    def state_of(self, context: Mapping[str, Any]) -> str | None:
        """The task instance's state, lower case (``"none"`` for no state), or ``None`` if unknown."""


class AirflowTaskStateProbe:
    """Reads the state through the task SDK (``RuntimeTaskInstance.get_task_states``)."""

    def state_of(self, context: Mapping[str, Any]) -> str | None:
        ti = context.get("ti")
        if ti is None:
            return None
        try:
            with through_supervisor():
                states = ti.get_task_states(
                    dag_id=ti.dag_id,
                    map_index=ti.map_index if ti.map_index is not None and ti.map_index >= 0 else None,
                    task_ids=[ti.task_id],
                    run_ids=[ti.run_id],
                )
        except Exception:  # noqa: BLE001 - any failure means "cannot be asked": keep the job
            return None
        by_task = states.get(ti.run_id) or {}
        name = ti.task_id if ti.map_index is None or ti.map_index < 0 else f"{ti.task_id}_{ti.map_index}"
        if name not in by_task:
            return None
        state = by_task[name]
        return "none" if state is None else str(getattr(state, "value", state)).lower()
