"""How the resumable triggers read their deferred task instance's state from ``get_task_states``' answer,
and when they stop the job for it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pytest
from airflow.utils.state import TaskInstanceState

from resumable import trigger_stop
from resumable.protocol import DELETED
from resumable.trigger_stop import (
    TRIGGERER_CALLS_ON_KILL,
    UNKNOWN,
    USER_ACTION,
    StopsJobOnAPersonsStop,
    task_state_in,
)


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


class _Slow(_Watching):
    """A trigger whose task instance's state Airflow answers only after ``answer_after`` seconds, and
    whose service refuses the first ``refusals`` stops."""

    def __init__(
        self, state: str, answer_after: float = 0.0, refusals: int = 0, error: type = ConnectionError
    ):
        super().__init__(state)
        self.answer_after, self.refusals, self.error, self.asked = answer_after, refusals, error, 0

    async def _task_state(self) -> str | object:
        await asyncio.sleep(self.answer_after)
        return self.state

    async def stop_for_a_person(self) -> None:
        self.asked += 1
        if self.asked <= self.refusals:
            raise self.error("429 REQUEST_LIMIT_EXCEEDED")
        self.stops += 1

    def stop_worth_retrying(self, error: BaseException) -> bool:
        return isinstance(error, ConnectionError)


@pytest.fixture
def on_kill_timeout_2s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__TRIGGERER__ON_KILL_TIMEOUT", "2")


@pytest.mark.skipif(not TRIGGERER_CALLS_ON_KILL, reason="this Airflow's triggerer never calls on_kill")
def test_an_answer_slower_than_half_the_on_kill_timeout_still_stops_the_job_in_time(
    on_kill_timeout_2s: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Airflow cancels on_kill after ``[triggerer] on_kill_timeout``: the state question may take half."""
    trigger = _Slow("failed", answer_after=60)

    async def as_the_triggerer_calls_it() -> None:
        await asyncio.wait_for(trigger.on_kill(), timeout=2)

    asyncio.run(as_the_triggerer_calls_it())
    assert trigger.stops == 1
    assert "did not tell the task instance's state within 1 s" in caplog.text


@pytest.mark.skipif(not TRIGGERER_CALLS_ON_KILL, reason="this Airflow's triggerer never calls on_kill")
def test_a_slow_answer_that_says_deferred_in_time_keeps_the_job(on_kill_timeout_2s: None) -> None:
    trigger = _Slow("deferred", answer_after=0.5)
    asyncio.run(trigger.on_kill())
    assert trigger.stops == 0


def test_a_throttled_stop_is_asked_again_after_airflow_gave_up_waiting_for_on_kill(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The service refuses the first two stops (1 s and 2 s of backoff); Airflow cancels on_kill after 0.5 s:
    the stop goes on in the triggerer and is taken at the third try."""
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STOP_FOLLOW_UP_SECONDS", "60")
    trigger = _Slow("failed", refusals=2)

    async def as_the_triggerer_does() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(trigger._person_stopped(), timeout=0.5)
        assert trigger.stops == 0
        for _ in range(100):
            if trigger.stops:
                break
            await asyncio.sleep(0.1)

    asyncio.run(as_the_triggerer_does())
    assert (trigger.asked, trigger.stops) == (3, 1)
    assert "the job's stop was taken at try 3" in caplog.text


def test_a_stop_the_service_says_cannot_be_done_is_not_asked_again(caplog: pytest.LogCaptureFixture) -> None:
    trigger = _Slow("failed", refusals=5, error=ValueError)
    asyncio.run(trigger._person_stopped())
    assert (trigger.asked, trigger.stops) == (1, 0)
    assert "gave up stopping the job after 1 tries" in caplog.text


def test_a_stop_refused_past_the_follow_up_budget_gives_up_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STOP_FOLLOW_UP_SECONDS", "2")
    trigger = _Slow("failed", refusals=100)
    asyncio.run(trigger._person_stopped())
    assert trigger.stops == 0
    assert 2 <= trigger.asked <= 3  # at 0 s, 1 s and 3 s (past the budget)
    assert "gave up stopping the job" in caplog.text and "it may still run" in caplog.text


class _Waits:
    async def run(self):
        import time

        from asgiref.sync import sync_to_async

        while True:
            await sync_to_async(time.sleep, thread_sensitive=False)(0.05)
            yield None


class _CountsStops:
    """A trigger's state question answered with ``state``, and its stops counted."""

    def __init__(self, state: str) -> None:
        self.state, self.cancel_on_kill, self.stops = state, True, 0
        self.log = logging.getLogger("test")
        self.task_instance = None

    async def _task_state(self) -> str | object:
        return self.state

    async def stop_for_a_person(self) -> None:
        self.stops += 1


class _ThreadedTrigger(_CountsStops, StopsJobOnAPersonsStop, _Waits):
    """Waits in asgiref's thread calls: a cancel reaches it without its message."""


async def _stopped_by_a_person_as_the_triggerer_does(trigger: Any) -> None:
    """Run the trigger, then cancel it with Airflow 3.3's user-action message, and call its on_kill
    when this Airflow does so and the message reached the triggerer."""

    async def consume() -> None:
        async for _ in trigger.run():
            pass

    task = asyncio.get_running_loop().create_task(consume())
    await asyncio.sleep(0.12)
    task.cancel(USER_ACTION)
    try:
        await task
    except asyncio.CancelledError as cancelled:
        if trigger_stop.TRIGGERER_CALLS_ON_KILL and cancelled.args and cancelled.args[0] == USER_ACTION:
            await trigger.on_kill()


@pytest.mark.parametrize(("state", "stops"), [("failed", 1), ("deferred", 0)])
def test_a_persons_stop_whose_cancel_message_is_lost_in_a_thread_call_still_stops_the_job_once(
    state: str, stops: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow >= 3.3 cancels the trigger with its user-action message and then calls on_kill; a cancel
    that lands in ``sync_to_async`` arrives without the message, and Airflow calls no on_kill."""
    monkeypatch.setattr(trigger_stop, "_in_a_triggerer", lambda: True)  # this test is the triggerer
    trigger = _ThreadedTrigger(state)
    asyncio.run(_stopped_by_a_person_as_the_triggerer_does(trigger))
    assert trigger.stops == stops


class _AsyncioWaits:
    async def run(self):
        while True:
            await asyncio.sleep(0.05)
            yield None


class _AsyncioTrigger(_CountsStops, StopsJobOnAPersonsStop, _AsyncioWaits):
    """Waits in asyncio itself: a cancel reaches it with its message."""


@pytest.mark.parametrize(("state", "stops"), [("failed", 1), ("deferred", 0)])
def test_before_3_3_a_cancelled_trigger_decides_the_stop_whatever_the_cancel_carries(
    state: str, stops: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before Airflow 3.3 no on_kill follows a trigger's cancel, so the trigger decides from the task's
    state however the cancel reached it: with a message (it landed in asyncio's own wait) or without
    (it landed in asgiref's thread call). The stop used to depend on where the cancel landed: a cancel
    that kept a message was read as "on_kill will decide", and nothing did (seen on 3.1 under load)."""
    monkeypatch.setattr(trigger_stop, "TRIGGERER_CALLS_ON_KILL", False)
    trigger = _AsyncioTrigger(state)
    asyncio.run(_stopped_by_a_person_as_the_triggerer_does(trigger))
    assert trigger.stops == stops


class _Counting(_Watching):
    """A trigger with a task instance, whose questions to Airflow are counted."""

    task_instance = object()

    def __init__(self) -> None:
        super().__init__("deferred")
        self.asked = 0

    async def _task_state(self) -> str | object:
        self.asked += 1
        return self.state


@pytest.mark.parametrize("in_a_triggerer", [True, False])
def test_the_first_trigger_of_a_triggerer_process_asks_airflow_once_and_only_there(
    monkeypatch: pytest.MonkeyPatch, in_a_triggerer: bool
) -> None:
    monkeypatch.setattr(trigger_stop, "_ASKED_AIRFLOW", False)
    monkeypatch.setattr(trigger_stop, "_in_a_triggerer", lambda: in_a_triggerer)
    triggers = [_Counting(), _Counting(), _Counting()]

    async def start_all() -> None:
        for trigger in triggers:
            trigger._warm_up()
        await asyncio.gather(*trigger_stop._STOPS)

    asyncio.run(start_all())
    # Airflow 3.3's triggerer builds its Execution API on the first question; before 3.3 a question
    # beside the trigger's own breaks its channel, and dag.test() has nothing to build
    expected = 1 if TRIGGERER_CALLS_ON_KILL and in_a_triggerer else 0
    assert [trigger.asked for trigger in triggers] == [expected, 0, 0]
    assert not trigger_stop._STOPS
