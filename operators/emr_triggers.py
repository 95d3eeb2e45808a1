"""The resumable EMR operators' triggers: the provider's, plus a person's stop stopping the job.

While a task is deferred no worker runs its ``on_kill``: the trigger is all that is left of it.
The provider's steps and cluster triggers never stop their job when a person marks the deferred
task failed or success or clears it; these do, with the operator's ``cancel_on_kill`` rule (a
triggerer restart or redistribution is not a person's stop and keeps the job). Airflow >= 3.3
calls a trigger's ``on_kill`` only on a person's action; before 3.3 the trigger is cancelled the
same way for both, so the task instance's state tells them apart (no longer deferred: a person).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from airflow.providers.amazon.aws.triggers.emr import EmrAddStepsTrigger, EmrCreateJobFlowTrigger

from resumable._compat import BaseTrigger

#: Whether this Airflow's triggerer calls ``on_kill`` when a person acts on a deferred task.
TRIGGERER_CALLS_ON_KILL = callable(getattr(BaseTrigger, "on_kill", None))
_USER_ACTION = "__airflow_user_action__"


class _StopsJobOnAPersonsStop:
    """Trigger mixin: ``cancel_on_kill`` stops the job when a person stops the deferred task."""

    log: Any
    task_instance: Any
    serialized_fields: dict[str, Any]

    def __init__(self, *, cancel_on_kill: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cancel_on_kill = cancel_on_kill
        self.serialized_fields["cancel_on_kill"] = cancel_on_kill

    def stop_job(self) -> None:
        raise NotImplementedError

    async def on_kill(self) -> None:
        if TRIGGERER_CALLS_ON_KILL and await self._still_deferred():
            # Airflow >= 3.3 calls on_kill for a person's action; a task instance that is still deferred
            # was not stopped (its trigger moved to another triggerer, say): the job is kept.
            self.log.info(
                "resumable: the trigger was stopped but its task is still deferred; keeping the job"
            )
            return
        if not self.cancel_on_kill:
            self.log.info(
                "resumable: the deferred task was stopped by a person; cancel_on_kill keeps the job"
            )
            return
        self.log.warning("resumable: the deferred task was stopped by a person; stopping its job")
        await asyncio.to_thread(self.stop_job)

    async def run(self) -> AsyncIterator[Any]:
        try:
            async for event in super().run():  # type: ignore[misc]
                yield event
        except asyncio.CancelledError as cancelled:
            by_user = bool(cancelled.args) and cancelled.args[0] == _USER_ACTION
            if not TRIGGERER_CALLS_ON_KILL and not by_user and await self._stopped_by_a_person():
                await self.on_kill()
            raise

    async def _stopped_by_a_person(self) -> bool:
        """Before Airflow 3.3: a cancelled trigger whose task is no longer deferred: a person's stop."""
        state = await self._task_state()
        return state is not _UNKNOWN and state != "deferred"

    async def _still_deferred(self) -> bool:
        return await self._task_state() == "deferred"

    async def _task_state(self) -> str | object:
        """The deferred task instance's state now (``"none"`` for no state: a person cleared it), or
        ``_UNKNOWN`` when Airflow cannot be asked."""
        ti = getattr(self, "task_instance", None)
        if ti is None:
            return _UNKNOWN
        with contextlib.suppress(Exception):  # Airflow unreachable: keep the job, the task reconciles it
            from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

            states = await asyncio.to_thread(
                RuntimeTaskInstance.get_task_states,
                dag_id=ti.dag_id,
                task_ids=[ti.task_id],
                run_ids=[ti.run_id],
                map_index=ti.map_index,
            )
            return task_state_in(states, ti.run_id, ti.task_id, ti.map_index)
        return _UNKNOWN


#: A task-instance state that could not be read.
_UNKNOWN = object()


def task_state_in(states: Any, run_id: str, task_id: str, map_index: int | None) -> str | object:
    """The state of one task instance in ``get_task_states``'s answer (``{run_id: {key: state}}``, where
    the Execution API keys a mapped task instance ``"<task_id>_<map_index>"``), lower case, ``"none"``
    for no state, or ``_UNKNOWN`` when the answer does not name it."""
    key = f"{task_id}_{map_index}" if map_index is not None and map_index >= 0 else task_id
    by_task = (states or {}).get(run_id, {})
    if key not in by_task:
        return _UNKNOWN
    state = by_task[key]
    return "none" if state is None else str(getattr(state, "value", state)).lower()


class ResumableEmrAddStepsTrigger(_StopsJobOnAPersonsStop, EmrAddStepsTrigger):
    """``EmrAddStepsTrigger`` whose steps are cancelled when a person stops the deferred task."""

    def stop_job(self) -> None:
        fields = self.serialized_fields
        self.hook().conn.cancel_steps(ClusterId=fields["job_flow_id"], StepIds=list(fields["step_ids"]))


class ResumableEmrCreateJobFlowTrigger(_StopsJobOnAPersonsStop, EmrCreateJobFlowTrigger):
    """``EmrCreateJobFlowTrigger`` whose cluster is terminated when a person stops the deferred task."""

    def stop_job(self) -> None:
        self.hook().conn.terminate_job_flows(JobFlowIds=[self.serialized_fields["job_flow_id"]])


__all__ = ["ResumableEmrAddStepsTrigger", "ResumableEmrCreateJobFlowTrigger", "TRIGGERER_CALLS_ON_KILL"]
