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
On 3.3 a cancel whose user-action message got lost (asgiref's ``sync_to_async`` re-raises a bare
``CancelledError``, and the provider hooks await it for connections and boto calls) gets no
``on_kill`` from Airflow: the trigger then decides as before 3.3.

Airflow 3.3 gives ``on_kill`` ``[triggerer] on_kill_timeout`` (30 s) and then cancels it, and the
trigger's stop is the only one a deferred task gets: nobody comes back to a job a person stopped.
So the question to Airflow is bounded (half of that time; a triggerer's first call builds its
in-process Execution API, measured at 4 s on an idle machine, which is why each triggerer process
asks once when its first trigger starts; only on 3.3, whose channel to the supervisor takes calls
side by side), and the stop itself runs as a task of the triggerer's own, shielded from that
timeout: a service that throttles or fails the cancel is asked again, with backoff, for up to
``[resumable] stop_follow_up_seconds``. It ends with the triggerer process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from resumable import follow_up
from resumable._compat import BaseTrigger, conf
from resumable.protocol import DELETED

#: Whether this Airflow's triggerer calls ``on_kill`` when a person acts on a deferred task.
TRIGGERER_CALLS_ON_KILL = callable(getattr(BaseTrigger, "on_kill", None))
#: The message Airflow >= 3.3 cancels a trigger's task with when a person acted on the task.
USER_ACTION = "__airflow_user_action__"
#: A task-instance state that could not be read.
UNKNOWN = object()
#: Seconds before a stop the service did not take is asked again (doubling, up to
#: :data:`resumable.follow_up.MAX_PAUSE_SECONDS`).
STOP_RETRY_FIRST_WAIT = 1.0
#: Airflow's default ``[triggerer] on_kill_timeout``.
ON_KILL_TIMEOUT_SECONDS = 30.0
#: Stops carried on in this triggerer process, and its warm-up (a reference keeps each task alive
#: until it ends).
_STOPS: set[asyncio.Task[Any]] = set()
#: Whether this triggerer process has asked Airflow anything yet (see :meth:`_warm_up`).
_ASKED_AIRFLOW = False


def on_kill_timeout() -> float:
    """``[triggerer] on_kill_timeout``: how long Airflow >= 3.3 lets a trigger's ``on_kill`` run."""
    with contextlib.suppress(Exception):
        return float(conf.getint("triggerer", "on_kill_timeout", fallback=int(ON_KILL_TIMEOUT_SECONDS)))
    return ON_KILL_TIMEOUT_SECONDS


class StopsJobOnAPersonsStop:
    """Trigger mixin (first in the bases): stops the job when a person stops the deferred task.

    :meth:`stop_for_a_person` stops it (it must raise when the service did not take the stop); by
    default it is the provider trigger's own ``on_kill``. :meth:`stop_worth_retrying` says which of
    its errors are asked again. ``cancel_on_kill`` (the operator's rule, carried by the trigger) set to
    ``False`` keeps the job.
    """

    log: Any
    task_instance: Any
    cancel_on_kill: bool = True

    async def stop_for_a_person(self) -> None:
        await super().on_kill()  # type: ignore[misc]

    def stop_worth_retrying(self, error: BaseException) -> bool:
        """Whether a stop that failed with ``error`` is asked again (every error, unless a trigger
        knows better: a job that has already ended answers a cancel with an error on some services)."""
        return True

    async def _person_stopped(self) -> None:
        if not self.cancel_on_kill:
            self.log.info(
                "resumable: the deferred task was stopped by a person; cancel_on_kill keeps the job"
            )
            return
        self.log.warning("resumable: the deferred task was stopped by a person; stopping its job")
        stop = asyncio.get_running_loop().create_task(self._stop_until_taken(follow_up.budget_seconds()))
        _STOPS.add(stop)
        stop.add_done_callback(_STOPS.discard)
        # Shielded: when Airflow's on_kill_timeout (or a triggerer shutting down) cancels this wait, the
        # stop goes on.
        await asyncio.shield(stop)

    async def _stop_until_taken(self, budget: float) -> None:
        """Ask for the stop until the service takes it, for up to ``budget`` seconds."""
        started, tries = time.monotonic(), 0
        retrying = AsyncRetrying(
            retry=retry_if_exception(self.stop_worth_retrying),
            stop=stop_after_delay(budget),
            wait=wait_exponential(multiplier=STOP_RETRY_FIRST_WAIT, max=follow_up.MAX_PAUSE_SECONDS),
            before_sleep=lambda state: self.log.warning(
                "resumable: the job's stop was not taken (%s); asking again in %.0f s (for up to %.0f s)",
                state.outcome.exception() if state.outcome else None,
                state.next_action.sleep if state.next_action else 0,
                budget,
            ),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    tries += 1
                    await self.stop_for_a_person()
        except Exception as error:  # noqa: BLE001 - said in the log: nobody else will stop this job
            self.log.error(
                "resumable: gave up stopping the job after %d tries in %.0f s: %s; it may still run",
                tries,
                time.monotonic() - started,
                error,
            )
            return
        if tries > 1:
            self.log.info(
                "resumable: the job's stop was taken at try %d, after %.0f s",
                tries,
                time.monotonic() - started,
            )

    async def on_kill(self) -> None:
        if TRIGGERER_CALLS_ON_KILL:
            within = on_kill_timeout() / 2
            state = await self._task_state_within(within)
            if state == "deferred":
                # Airflow >= 3.3 calls on_kill for a person's action; a task instance that is still deferred
                # was not stopped (its trigger moved to another triggerer, say): the job is kept.
                self.log.info(
                    "resumable: the trigger stopped but its task is still deferred; keeping the job"
                )
                return
            if state is UNKNOWN:
                self.log.warning(
                    "resumable: Airflow did not tell the task instance's state within %.0f s; it calls "
                    "on_kill when a person acts on the deferred task, so the job is stopped",
                    within,
                )
        await self._person_stopped()

    async def _task_state_within(self, seconds: float) -> str | object:
        """:meth:`_task_state`, or :data:`UNKNOWN` when Airflow has not answered within ``seconds``."""
        try:
            return await asyncio.wait_for(self._task_state(), timeout=seconds)
        except asyncio.TimeoutError:
            return UNKNOWN

    def _needs_warm_up(self) -> bool:
        """Whether this trigger is the first of its triggerer process to ask Airflow (Airflow >= 3.3, in a
        real triggerer): the triggerer's first call builds its in-process Execution API (seconds),
        which a stop should not have to wait for within ``on_kill_timeout``."""
        if not TRIGGERER_CALLS_ON_KILL or _ASKED_AIRFLOW or getattr(self, "task_instance", None) is None:
            # Before 3.3 the triggerer's channel to its supervisor takes one call at a time: a question
            # beside the trigger's own (its connection, say) kills the trigger runner ("Response read out
            # of order"); and nothing there bounds the stop's wait.
            return False
        # dag.test() runs triggers in the task's process, whose channel has nothing to build
        return _in_a_triggerer()

    def _warm_up(self) -> None:
        """Ask Airflow once for this triggerer process, beside the trigger, if :meth:`_needs_warm_up`."""
        global _ASKED_AIRFLOW
        if not self._needs_warm_up():
            return
        _ASKED_AIRFLOW = True
        warm_up = asyncio.get_running_loop().create_task(self._task_state())
        _STOPS.add(warm_up)
        warm_up.add_done_callback(_STOPS.discard)

    async def run(self) -> AsyncIterator[Any]:
        self._warm_up()
        try:
            async for event in super().run():  # type: ignore[misc]
                yield event
        except asyncio.CancelledError as cancelled:
            # Airflow >= 3.3 cancels with USER_ACTION for a person's stop and then calls on_kill. The
            # message is lost when the cancel lands in an await that re-raises a bare CancelledError
            # (asgiref's sync_to_async, which the provider hooks use for connections and boto calls):
            # Airflow then calls no on_kill, so the stop is decided here, as before 3.3.
            # (Not in dag.test(), which cancels its trigger when the task ends and whose channel to Airflow
            # a question from asgiref's thread would then wait on forever.)
            # Before 3.3 no on_kill ever follows, whatever the cancel carries: the stop is decided here.
            on_kill_follows = (
                TRIGGERER_CALLS_ON_KILL and bool(cancelled.args) and cancelled.args[0] == USER_ACTION
            )
            decide = not TRIGGERER_CALLS_ON_KILL or _in_a_triggerer()
            if not on_kill_follows and decide and await self._stopped_by_a_person():
                await self._person_stopped()
            raise

    async def _stopped_by_a_person(self) -> bool:
        """A trigger cancelled without Airflow 3.3's user-action message whose task is no longer
        deferred: a person's stop (before 3.3 every stop comes so; from 3.3 one whose message was lost)."""
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


def _in_a_triggerer() -> bool:
    """Whether this process is a triggerer's trigger runner (its channel to Airflow is the triggerer's)."""
    try:
        from airflow.sdk.execution_time import task_runner
    except ImportError:
        return False
    return type(getattr(task_runner, "SUPERVISOR_COMMS", None)).__name__ == "TriggerCommsDecoder"


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
