"""``on_kill`` rules on a real Airflow: a real SIGTERM reaches the task inside ``dag.test()``.

Only the small adapter that asks Airflow for the task instance's state is replaced here, so each
rule can be tested on its own; the real-Airflow proof of each rule is in the crash-survival suite.
"""

from __future__ import annotations

import os
import signal
import threading
from datetime import timedelta

import pytest
from airflow.sdk import get_current_context

from resumable.state import backend_for
from resumable.supervisor_calls import through_supervisor
from resumable.testing.airflow import run_dag, task_states
from resumable.testing.fake import FakeJobService


class StubProbe:
    """Answers what Airflow would say about the task instance, as a test scripts it."""

    def __init__(self, state: str | None) -> None:
        self.state = state
        self.asked = 0

    def state_of(self, context) -> str | None:
        self.asked += 1
        return self.state


def sigterm() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def build(make_dag, probe: StubProbe, **kwargs):
    dag, svc = make_dag(FakeJobService(polls=1000), retries=0, **kwargs)
    dag.task_dict["job"].task_state_probe = probe
    svc.when_status_called(2, sigterm)
    return dag, svc


@pytest.mark.parametrize(
    ("ti_state", "cancelled"),
    [
        ("failed", True),  # a person marked it failed
        ("success", True),  # a person marked it success
        ("restarting", True),  # a person cleared it while it ran
        ("up_for_retry", False),  # superseded by a newer try
        ("running", False),  # still running for this try: an infrastructure stop
        (None, False),  # Airflow unreachable: keep
    ],
)
def test_sigterm_cancels_only_on_a_persons_stop(make_dag, ti_state, cancelled) -> None:
    probe = StubProbe(ti_state)
    dag, svc = build(make_dag, probe)
    dr = run_dag(dag)
    assert probe.asked == 1
    assert svc.was_cancelled(svc.created[0]) is cancelled
    assert task_states(dr) == {"job": "failed"}  # the attempt stops either way
    assert svc.total_submissions == 1


def test_kept_job_is_reattached_by_the_retry(make_dag) -> None:
    probe = StubProbe("running")
    dag, svc = make_dag(FakeJobService(polls=4), retries=1)
    dag.task_dict["job"].task_state_probe = probe
    svc.when_status_called(2, sigterm)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert svc.total_submissions == 1 and svc.cancelled == []


def test_a_newer_owner_is_never_cancelled_by_a_stopping_attempt(make_dag) -> None:
    probe = StubProbe("failed")
    dag, svc = build(make_dag, probe)

    def newer_try_takes_over_then_sigterm() -> None:
        context = get_current_context()
        backend = backend_for(context)
        from resumable.state import TaskScope

        scope = TaskScope.from_context(context)
        found = backend.get(scope, "resumable.job")
        assert found is not None
        backend.put(scope, "resumable.job", {**found.value, "owner": 7}, found.version)
        sigterm()

    svc.when_status_called(2, newer_try_takes_over_then_sigterm)
    run_dag(dag)
    assert svc.cancelled == []
    assert probe.asked == 0, "fencing decides before Airflow is asked"


def test_polling_stops_without_cancelling_when_a_newer_try_owns_the_record(make_dag, monkeypatch) -> None:
    # The sql backend: its attempts check ownership while they poll. (On the airflow backend a newer
    # try is another task instance, whose writes the API server keeps from reaching this one's.)
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "sql")
    dag, svc = make_dag(FakeJobService(polls=1000), retries=0)

    def newer_try_takes_over() -> None:
        context = get_current_context()
        from resumable.state import TaskScope

        backend, scope = backend_for(context), TaskScope.from_context(context)
        found = backend.get(scope, "resumable.job")
        backend.put(scope, "resumable.job", {**found.value, "owner": 7}, found.version)  # type: ignore[union-attr]

    svc.when_status_called(2, newer_try_takes_over)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "failed"}
    assert svc.calls["status"] == 2, "the superseded attempt must stop polling"
    assert svc.cancelled == []


def test_execution_timeout_cancels_the_job(make_dag) -> None:
    # A job that would end after about 20 s of polling: a timeout that never fired fails the test
    # (the job succeeded), instead of leaving it polling.
    dag, svc = make_dag(
        FakeJobService(polls=400), retries=0, max_poll_interval=0.05, execution_timeout=timedelta(seconds=2)
    )
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "failed"}
    assert svc.cancelled == [svc.created[0]]


def test_cancel_on_kill_never_keeps_the_job_even_when_marked_failed(make_dag) -> None:
    probe = StubProbe("failed")
    dag, svc = build(make_dag, probe, cancel_on_kill="never")
    run_dag(dag)
    assert svc.cancelled == []


def test_cleared_running_task_reruns_even_with_on_prior_failure_fail(make_dag) -> None:
    probe = StubProbe("restarting")
    dag, svc = make_dag(FakeJobService(polls=3), retries=1, on_prior_failure="fail")
    dag.task_dict["job"].task_state_probe = probe
    svc.when_status_called(2, sigterm)
    dr = run_dag(dag)
    assert svc.cancelled == [svc.created[0]]
    assert task_states(dr) == {"job": "success"}
    assert svc.total_submissions == 2


class ChannelProbe(StubProbe):
    """Asks over a one-at-a-time channel, like a task's calls to its supervisor, noting the thread."""

    def __init__(self, state: str | None, channel: threading.Lock) -> None:
        super().__init__(state)
        self.channel = channel
        self.threads: list[str] = []

    def __deepcopy__(self, memo):  # one probe shared by every copy of the operator (3.0's dag.test copies)
        return self

    def state_of(self, context) -> str | None:
        with self.channel:
            self.threads.append(threading.current_thread().name)
            return super().state_of(context)


@pytest.mark.timeout(120, method="thread")  # a regression hangs in the signal handler
def test_sigterm_in_the_middle_of_a_call_to_airflow_is_decided_once_the_call_returns(make_dag) -> None:
    """SIGTERM lands while the task waits for its supervisor's answer. Deciding inside the signal
    handler would wait for that same channel forever (the supervisor then kills the process with
    nothing decided); the decision must happen once the interrupted call returns."""
    channel = threading.Lock()
    probe = ChannelProbe("failed", channel)  # a person marked the task failed
    dag, svc = make_dag(FakeJobService(polls=1000), retries=0)
    dag.task_dict["job"].task_state_probe = probe

    def sigterm_while_waiting_for_the_supervisor() -> None:
        with through_supervisor(), channel:
            sigterm()

    svc.when_status_called(2, sigterm_while_waiting_for_the_supervisor)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "failed"}
    assert svc.cancelled == [svc.created[0]]
    assert probe.threads == ["resumable-on-kill"]
    assert svc.total_submissions == 1
