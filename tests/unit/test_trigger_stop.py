"""How the resumable triggers read their deferred task instance's state from ``get_task_states``' answer,
and when they stop the job for it."""

from __future__ import annotations

import asyncio
import logging

import pytest
from airflow.utils.state import TaskInstanceState

from resumable.protocol import DELETED
from resumable.trigger_stop import TRIGGERER_CALLS_ON_KILL, UNKNOWN, StopsJobOnAPersonsStop, task_state_in


def test_a_mapped_task_instance_is_found_under_the_key_the_execution_api_gives_it() -> None:
    answer = {"run": {"job_0": TaskInstanceState.DEFERRED, "job_3": TaskInstanceState.FAILED}}
    assert task_state_in(answer, "run", "job", 3) == "failed"
    assert task_state_in(answer, "run", "job", 0) == "deferred"


def test_an_unmapped_task_instance_is_found_under_its_task_id() -> None:
    assert task_state_in({"run": {"job": TaskInstanceState.SUCCESS}}, "run", "job", -1) == "success"
    assert task_state_in({"run": {"job": "deferred"}}, "run", "job", None) == "deferred"


def test_no_state_is_a_state_a_missing_task_instance_was_deleted_and_no_answer_is_unknown() -> None:
    assert task_state_in({"run": {"job": None}}, "run", "job", -1) == "none"  # cleared while deferred
    # Airflow answered without the task instance: a person deleted its DAG run
    assert task_state_in({"run": {}}, "run", "job", -1) == DELETED
    assert task_state_in({}, "run", "job", 2) == DELETED
    assert task_state_in({"run": {"job_1": "deferred"}}, "run", "job", 2) == DELETED
    assert task_state_in(None, "run", "job", -1) is UNKNOWN


class _Watching(StopsJobOnAPersonsStop):
    """A trigger that watches one job: its state in Airflow is given, its stops are counted."""

    def __init__(self, state: str, cancel_on_kill: bool = True) -> None:
        self.state, self.cancel_on_kill, self.stops = state, cancel_on_kill, 0
        self.log = logging.getLogger("test")

    async def _task_state(self) -> str | object:
        return self.state

    async def stop_for_a_person(self) -> None:
        self.stops += 1


@pytest.mark.skipif(not TRIGGERER_CALLS_ON_KILL, reason="this Airflow's triggerer never calls on_kill")
@pytest.mark.parametrize(
    ("state", "cancel_on_kill", "stops"),
    [("failed", True, 1), ("none", True, 1), (DELETED, True, 1), ("deferred", True, 0), ("failed", False, 0)],
)
def test_on_kill_stops_the_job_for_a_persons_stop_unless_cancel_on_kill_keeps_it(
    state: str, cancel_on_kill: bool, stops: int
) -> None:
    trigger = _Watching(state, cancel_on_kill)
    asyncio.run(trigger.on_kill())
    assert trigger.stops == stops
