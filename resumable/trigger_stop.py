"""A person's stop of a deferred task, seen by its trigger.

While a task is deferred no worker runs its ``on_kill``: the trigger is all that is left of it.
Airflow >= 3.3 calls a trigger's ``on_kill`` when a person acts on the deferred task (mark failed
or success, clear); before 3.3 it only cancels the trigger, the same way it does when a triggerer
restarts or hands its triggers to another one. :class:`StopsJobOnAPersonsStop` tells the two apart
by the task instance's state: still ``deferred`` means the trigger moved (keep the job); anything
else (``failed``, ``success``, no state after a clear, no task instance at all because a person
deleted the DAG run) means a person stopped the task (stop the job). Airflow that cannot be asked
keeps the job: the task reconciles it. Measured: a mark failed
stops the job on Airflow 3.3 and 3.2; on 3.0 it does not (docs/concepts.md, Deferred tasks).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async

from resumable._compat import BaseTrigger
from resumable.protocol import DELETED

#: Whether this Airflow's triggerer calls ``on_kill`` when a person acts on a deferred task.
TRIGGERER_CALLS_ON_KILL = callable(getattr(BaseTrigger, "on_kill", None))
#: The message Airflow >= 3.3 cancels a trigger's task with when a person acted on the task.
USER_ACTION = "__airflow_user_action__"
#: A task-instance state that could not be read.
UNKNOWN = object()


class StopsJobOnAPersonsStop:
    """Trigger mixin (first in the bases): stops the job when a person stops the deferred task.

    :meth:`stop_for_a_person` stops it; by default it is the provider trigger's own ``on_kill``.
    ``cancel_on_kill`` (the operator's rule, carried by the trigger) set to ``False`` keeps the job.
    """

    log: Any
    task_instance: Any
    cancel_on_kill: bool = True

    async def stop_for_a_person(self) -> None:
        await super().on_kill()  # type: ignore[misc]

    async def _person_stopped(self) -> None:
        if not self.cancel_on_kill:
            self.log.info(
                "resumable: the deferred task was stopped by a person; cancel_on_kill keeps the job"
            )
            return
        self.log.warning("resumable: the deferred task was stopped by a person; stopping its job")
        await self.stop_for_a_person()

    async def on_kill(self) -> None:
        if TRIGGERER_CALLS_ON_KILL and await self._task_state() == "deferred":
            # Airflow >= 3.3 calls on_kill for a person's action; a task instance that is still deferred
            # was not stopped (its trigger moved to another triggerer, say): the job is kept.
            self.log.info("resumable: the trigger stopped but its task is still deferred; keeping the job")
            return
        await self._person_stopped()

    async def run(self) -> AsyncIterator[Any]:
        try:
            async for event in super().run():  # type: ignore[misc]
                yield event
        except asyncio.CancelledError as cancelled:
            by_user = bool(cancelled.args) and cancelled.args[0] == USER_ACTION
            if not TRIGGERER_CALLS_ON_KILL and not by_user and await self._stopped_by_a_person():
                await self._person_stopped()
            raise

    async def _stopped_by_a_person(self) -> bool:
        """Before Airflow 3.3: a cancelled trigger whose task is no longer deferred: a person's stop."""
        state = await self._task_state()
        return state is not UNKNOWN and state != "deferred"

    async def _task_state(self) -> str | object:
        """The deferred task instance's state now (``"none"`` for no state: a person cleared it;
        ``"deleted"`` when Airflow has no such task instance any more), or :data:`UNKNOWN` when
        Airflow cannot be asked."""
        ti = getattr(self, "task_instance", None)
        if ti is None:
            return UNKNOWN
        with contextlib.suppress(Exception):  # Airflow unreachable: keep the job, the task reconciles it
            from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

            # asgiref's thread, not asyncio's: before 3.2 the triggerer's channel to its supervisor answers
            # a call from another thread only where asgiref tells it the trigger's event loop.
            states = await sync_to_async(RuntimeTaskInstance.get_task_states, thread_sensitive=False)(
                dag_id=ti.dag_id,
                task_ids=[ti.task_id],
                run_ids=[ti.run_id],
                map_index=ti.map_index,
            )
            return task_state_in(states, ti.run_id, ti.task_id, ti.map_index)
        return UNKNOWN


def task_state_in(states: Any, run_id: str, task_id: str, map_index: int | None) -> str | object:
    """The state of one task instance in ``get_task_states``'s answer (``{run_id: {key: state}}``, where
    the Execution API keys a mapped task instance ``"<task_id>_<map_index>"``), lower case, ``"none"``
    for no state, :data:`~resumable.protocol.DELETED` when an answer came without it (its DAG run was
    deleted), or :data:`UNKNOWN` when there is no answer."""
    if states is None:
        return UNKNOWN
    key = f"{task_id}_{map_index}" if map_index is not None and map_index >= 0 else task_id
    by_task = states.get(run_id) or {}
    if key not in by_task:
        return DELETED
    state = by_task[key]
    return "none" if state is None else str(getattr(state, "value", state)).lower()
