"""The rarer interleavings of crashes and people's actions, on a real Airflow (issue 11).

Each test drives one DAG run of a crash DAG (resumable/testing/crash_dags.py) into
an interleaving that broke the promise before: a clear after a crash in the submit window, a mark
failed while the submit answer is still on its way, a zombie frozen past both the heartbeat
timeout and its own execution_timeout, a clear whose cancel takes many polls to show. Then it
checks what a user would: the jobs the emulated service saw, the cancels it was asked for, the
job the last try reported, and the final states in Airflow. A failed check shows the resumable
lines of every try's log.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from types import TracebackType

import pytest

from resumable.testing.crash import CrashLab, Run

pytestmark = pytest.mark.e2e

SYSTEMS = ["databricks", "emr_serverless"]
#: Seconds the service holds its answer to a submission: a slow control plane, longer than the 5 s
#: in which Airflow's supervisor escalates a stopped task's SIGTERM to SIGKILL, and much longer.
SUBMIT_HOLDS = [12.0, 60.0]
#: Every system the crash DAGs cover: the ones whose service honours our token (Databricks, EMR
#: Serverless, EMR on EKS), and EMR steps and clusters, found by the token in a name or tag.
ALL_SYSTEMS = ["databricks", "emr_serverless", "emr_steps", "emr_eks", "emr_cluster"]
#: A person's mark failed during a held submit: every system, every hold.
MARK_HELD = [(system, hold) for system in ALL_SYSTEMS for hold in SUBMIT_HOLDS]
#: A clear during a held submit: every hold on the first three; the 12 s hold (past the SIGKILL all
#: the same) on EMR on EKS and clusters, whose stop takes the same path, to keep the tier in budget.
CLEAR_HELD = [(system, hold) for system in ALL_SYSTEMS[:3] for hold in SUBMIT_HOLDS] + [
    (system, SUBMIT_HOLDS[0]) for system in ALL_SYSTEMS[3:]
]
#: Seconds a cancelled job stays TERMINATING / CANCELLING: the rerun starts some seconds after the
#: cancel and then polls it (every 1-2 s) many times before it has stopped.
STOPPING_SECONDS = 20.0
#: The execution_timeout of the crash_<system>_retry_timeout DAGs (RESUMABLE_CRASH_RETRY_TIMEOUT).
RETRY_TIMEOUT = 20.0
STOPPING_STATES = {"TERMINATING", "CANCELLING"}


@pytest.fixture(autouse=True)
def _emulators_back_to_normal(lab: CrashLab) -> Iterator[None]:
    yield
    for system in ALL_SYSTEMS:
        lab.hold_submit(system, 0)
        lab.stop_takes(system, None)
    lab.cancel_lags("databricks", 0)
    lab.throttle_cancels("databricks", 0)
    for system in ALL_SYSTEMS[1:]:
        lab.throttle_cancels(system, 0)


def logs(lab: CrashLab, run: Run) -> str:
    """The resumable lines of every try's log, for the message of a failed check."""
    parts = []
    for try_number in range(1, 6):
        text = lab.task_log(run, try_number)
        if text:
            lines = [line for line in text.splitlines() if "resumable" in line or "Error" in line]
            parts.append(f"--- try {try_number} ---\n" + "\n".join(lines)[-6000:])
    return "\n".join(parts) or "(no task log found)"


class ActiveWatch:
    """Samples the run's jobs in the background: how many were active at once, and when each ended."""

    def __init__(self, lab: CrashLab, run: Run, interval: float = 0.1) -> None:
        self.lab, self.run, self.interval = lab, run, interval
        self.most_active = 0
        self.appeared: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.stopping_since: dict[str, float] = {}
        self.states: dict[str, list[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="active-watch", daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        now = time.monotonic()
        jobs = self.lab.job_ids(self.run)
        active = self.lab.active_jobs(self.run)  # a job created meanwhile is looked at next time
        for job in jobs:
            self.appeared.setdefault(job, now)
            state = self.lab.job_state(self.run, job)
            seen = self.states.setdefault(job, [])
            if not seen or seen[-1] != state:
                seen.append(state)
            if state in STOPPING_STATES:
                self.stopping_since.setdefault(job, now)
            if job not in active:
                self.ended.setdefault(job, now)
        self.most_active = max(self.most_active, len(active))

    def __enter__(self) -> ActiveWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


@pytest.mark.parametrize("system", SYSTEMS)
def test_clear_after_a_crash_in_the_submit_window_without_retries_reattaches(
    lab: CrashLab, system: str
) -> None:
    lab.script(system, 40)
    dag_id = f"crash_{system}_noretry"
    lab.arm("after_submit", dag_id=dag_id, mode="exit")  # the job is created, its id never written
    run = lab.start_run(system, dag_id=dag_id)
    assert lab.finish(run) == "failed"  # no retries: the DAG run fails with the task
    assert lab.task(run)["try_number"] == 1
    lab.disarm()
    assert lab.submitted(run) == 1, logs(lab, run)
    (job,) = lab.job_ids(run)
    assert lab.active_jobs(run) == [job]  # it runs on, nobody watching it

    lab.stack.clear(run.dag_id, run.run_id, ["job"])  # a person clears the failed task
    lab.wait_for_state(run, ("success", "failed"), try_number=2)

    assert lab.finish(run) == "success", logs(lab, run)
    assert lab.task(run)["state"] == "success"
    assert lab.submitted(run) == 1, logs(lab, run)
    assert lab.cancelled(run) == 0, logs(lab, run)
    assert lab.reported_job(run) == job
    assert f"took ownership of job {job}" in lab.task_log(run, 2), logs(lab, run)


@pytest.mark.parametrize(("system", "hold"), MARK_HELD)
def test_marked_failed_while_the_submit_answer_is_held_cancels_the_job(
    lab: CrashLab, system: str, hold: float
) -> None:
    """A slow control plane holds the submit's answer past Airflow's SIGTERM-to-SIGKILL escalation: the
    task process is killed before the job's id reaches it, and the stop is applied all the same."""
    lab.script(system, 600)
    lab.hold_submit(system, hold)
    run = lab.start_run(system)
    lab.wait_until_submitted(run)  # the job exists; its id is still on its way to the worker
    time.sleep(2)
    lab.stack.mark(run.dag_id, run.run_id, "job", "failed")

    assert lab.finish(run) == "failed", logs(lab, run)
    lab.wait_until_cancelled(run, timeout=hold + 60)
    (job,) = lab.job_ids(run)
    lab.wait(lambda: not lab.active_jobs(run), f"job {job} to stop", timeout=60)
    assert lab.task(run)["state"] == "failed"
    assert lab.task(run)["try_number"] == 1
    assert lab.submitted(run) == 1, logs(lab, run)
    assert lab.cancelled_jobs(run) == [job], logs(lab, run)
    log = lab.task_log(run, 1)
    assert "while the submit of token" in log, logs(lab, run)
    # the answer never reached the task: Airflow killed it first
    assert f"submitted job {job}" not in log, logs(lab, run)


@pytest.mark.parametrize(("system", "hold"), CLEAR_HELD)
def test_clear_while_the_submit_answer_is_held_cancels_the_job_and_reruns(
    lab: CrashLab, system: str, hold: float
) -> None:
    """A person clears the running task while a slow control plane holds the submit's answer past
    Airflow's SIGTERM-to-SIGKILL escalation. Airflow gives the cleared task instance a new id, so the
    stopping try cannot write its record; the next try finds the first job by the same token. A clear
    means: stop that job, then run the job again, never two at once."""
    lab.script(system, 600)
    lab.script(system, 8, replace=False)  # the job the cleared task submits again
    lab.hold_submit(system, hold)
    run = lab.start_run(system)
    lab.wait_until_submitted(run)  # the job exists; its id is still on its way to the worker
    time.sleep(2)

    with ActiveWatch(lab, run) as watch:
        lab.stack.clear(run.dag_id, run.run_id, ["job"])
        state = lab.finish(run, timeout=hold * 3 + 240)

    assert state == "success", logs(lab, run)
    # the clear's try reran the job: it did not fail first and leave the rerun to a retry
    assert lab.task(run)["try_number"] == 2, logs(lab, run)
    assert lab.submitted(run) == 2, logs(lab, run)
    first, second = lab.job_ids(run)
    assert lab.cancelled_jobs(run) == [first], logs(lab, run)
    assert lab.reported_job(run) == second, logs(lab, run)
    assert watch.most_active == 1, (watch.states, logs(lab, run))


@pytest.mark.parametrize("system", ALL_SYSTEMS)
def test_execution_timeout_during_a_held_submit_cancels_the_job(lab: CrashLab, system: str) -> None:
    """execution_timeout (12 s) fires while the service holds the submit's answer for 60 s."""
    lab.script(system, 600)
    lab.hold_submit(system, 60)
    run = lab.start_run(system, dag_id=f"crash_{system}_timeout")
    lab.wait_until_submitted(run)

    assert lab.finish(run, timeout=240) == "failed", logs(lab, run)
    lab.wait_until_cancelled(run, timeout=120)
    (job,) = lab.job_ids(run)
    lab.wait(lambda: not lab.active_jobs(run), f"job {job} to stop", timeout=60)
    assert lab.submitted(run) == 1, logs(lab, run)
    assert lab.cancelled_jobs(run) == [job], logs(lab, run)
    assert "execution_timeout fired" in lab.task_log(run, 1), logs(lab, run)


@pytest.mark.parametrize("system", SYSTEMS)
def test_zombie_past_its_execution_timeout_does_not_cancel_its_successors_job(
    lab: CrashLab, system: str
) -> None:
    lab.script(system, 900)  # runs until the test moves the service's clock on
    run = lab.start_run(system, dag_id=f"crash_{system}_retry_timeout")
    lab.wait_until_submitted(run)
    submitted_at = time.monotonic()  # try 1's execution_timeout started before this
    lab.wait_for_state(run, ("running",), try_number=1)
    time.sleep(3)  # well into polling
    zombie = lab.processes(run)
    zombie.signal(signal.SIGSTOP)
    try:
        # past the heartbeat timeout the scheduler fails try 1 and starts try 2, which reattaches
        lab.wait_for_state(run, ("running",), try_number=2)
        polls = lab.status_calls(system)
        lab.wait(lambda: lab.status_calls(system) >= polls + 2, "try 2 to poll the job", timeout=60)
        # and try 1's own execution_timeout has passed while it was frozen
        lab.wait(
            lambda: time.monotonic() > submitted_at + RETRY_TIMEOUT + 2,
            "try 1's execution_timeout to pass",
            timeout=RETRY_TIMEOUT + 5,
        )
    finally:
        zombie.signal(signal.SIGCONT)
    # the zombie thaws while its successor polls: its timeout fires and it is put down
    lab.wait(zombie.ended, "the zombie to exit", timeout=60)
    task = lab.task(run)
    assert (task["state"], task["try_number"]) == ("running", 2), logs(lab, run)
    assert lab.cancelled(run) == 0, logs(lab, run)
    (job,) = lab.job_ids(run)
    assert lab.active_jobs(run) == [job]
    assert "AirflowTaskTimeout" in lab.task_log(run, 1), logs(lab, run)  # its own timeout did fire

    lab.advance(system, 900)  # the job finishes
    assert lab.finish(run) == "success", logs(lab, run)
    assert lab.submitted(run) == 1, logs(lab, run)
    assert lab.cancelled(run) == 0, logs(lab, run)
    assert lab.reported_job(run) == job


#: Seconds a Databricks cancel takes to show (the run still answers RUNNING): a slow control plane,
#: longer than Airflow takes from a clear to the next try's first status read.
CANCEL_LAG_SECONDS = 30.0
#: Seconds the service throttles every cancel: longer than the 5 s Airflow lets a stopped task live.
CANCEL_THROTTLE_SECONDS = 30.0


def cleared_while_running(lab: CrashLab, system: str, dag: str = "noretry", duration: float = 600) -> Run:
    """A DAG run (of the noretry DAG: a failure is final) whose try 1 is polling its job, with the job
    the cleared task submits again scripted."""
    lab.script(system, duration)
    run = lab.start_run(system, dag_id=f"crash_{system}_{dag}")
    lab.wait_until_submitted(run)
    lab.wait_for_state(run, ("running",), try_number=1)
    time.sleep(3)  # well into polling
    lab.script(system, 8, replace=False)  # the job the cleared task submits again
    return run


@pytest.mark.parametrize("dag", ["resumable", "noretry"])
@pytest.mark.parametrize("system", SYSTEMS)
def test_clear_of_a_running_task_whose_cancel_takes_many_polls_reruns_after_it_stopped(
    lab: CrashLab, system: str, dag: str
) -> None:
    lab.stop_takes(system, STOPPING_SECONDS)
    run = cleared_while_running(lab, system, dag, duration=90)

    with ActiveWatch(lab, run) as watch:
        lab.stack.clear(run.dag_id, run.run_id, ["job"])
        lab.wait_until_cancelled(run)
        state = lab.finish(run)

    assert state == "success", logs(lab, run)
    assert lab.submitted(run) == 2, logs(lab, run)
    assert lab.cancelled(run) == 1, logs(lab, run)
    first, second = lab.job_ids(run)
    assert lab.reported_job(run) == second
    # never two jobs at once: the rerun waited until the first had stopped, which took many polls
    assert watch.most_active == 1, (watch.states, logs(lab, run))
    assert first in watch.ended, watch.states
    assert watch.appeared[second] >= watch.ended[first], (watch.appeared, watch.ended)
    assert watch.ended[first] - watch.stopping_since[first] > STOPPING_SECONDS - 2, watch.states
    assert "decided await_stop" in lab.task_log(run, lab.task(run)["try_number"]), logs(lab, run)


def assert_the_clear_reran(lab: CrashLab, run: Run, watch: ActiveWatch, state: str) -> None:
    assert state == "success", logs(lab, run)
    assert lab.submitted(run) == 2, logs(lab, run)
    first, second = lab.job_ids(run)
    assert lab.cancelled_jobs(run) == [first], logs(lab, run)
    assert lab.reported_job(run) == second
    assert watch.most_active == 1, (watch.states, logs(lab, run))
    assert watch.appeared[second] >= watch.ended[first], (watch.appeared, watch.ended)


def test_a_clear_whose_cancel_takes_effect_late_reruns_the_job(lab: CrashLab) -> None:
    """A person clears the running task; Databricks accepts the cancel but the run answers RUNNING for
    30 s more. Airflow's store refuses the cleared try's writes, so the next try finds a plain record
    and a RUNNING job and reattaches; the job then ends CANCELED. That is the clear's cancel: the task
    reruns the job and succeeds (before: the person's clear ended failed)."""
    lab.cancel_lags("databricks", CANCEL_LAG_SECONDS)
    run = cleared_while_running(lab, "databricks")
    with ActiveWatch(lab, run) as watch:
        lab.stack.clear(run.dag_id, run.run_id, ["job"])
        lab.wait_until_cancelled(run)
        state = lab.finish(run)
    assert_the_clear_reran(lab, run, watch, state)
    assert "the clear's stop, not a failure of this lineage" in lab.task_log(run, 2), logs(lab, run)


@pytest.mark.parametrize("system", ALL_SYSTEMS)
def test_a_clear_while_the_service_throttles_cancels_reruns_the_job(lab: CrashLab, system: str) -> None:
    """A person clears the running task while the service throttles every cancel for 30 s: the cleared
    try's cancel cannot land before Airflow kills it, and its stop's follow-up carries the cancel out
    later, after the next try reattached. The clear reruns the job once the old one has stopped."""
    run = cleared_while_running(lab, system)
    lab.throttle_cancels(system, CANCEL_THROTTLE_SECONDS)
    with ActiveWatch(lab, run) as watch:
        lab.stack.clear(run.dag_id, run.run_id, ["job"])
        lab.wait(
            lambda: len(lab.cancelled_jobs(run)) == 1, "the old job's cancel", CANCEL_THROTTLE_SECONDS + 90
        )
        state = lab.finish(run)
    assert_the_clear_reran(lab, run, watch, state)


@pytest.mark.parametrize("system", [*SYSTEMS, "emr_eks"])
def test_a_clear_of_a_deferred_task_reruns_or_keeps_its_job_never_two_at_once(
    lab: CrashLab, system: str
) -> None:
    """What the model checker assumes of a clear of a deferred task (``person_stops_deferred`` and
    ``cleared_trigger_stopped``), on a real Airflow: the clear resets the task instance, its
    ``next_method`` and ``next_kwargs`` but not its trigger; the next try starts as ``execute``. Airflow
    stops the cleared try's trigger at a time of its own (measured: both before and after the next try
    deferred again): stopped while the task is not deferred, the trigger
    cancels the job and the next try reruns it; stopped once it is deferred again, it keeps the job
    and the next try ends with it. Either way one job at a time and the task succeeds on try 2."""
    lab.script(system, 900)  # runs until the test moves the service's clock on
    lab.script(system, 8, replace=False)  # a rerun, if the clear's stop reaches the job
    run = lab.start_run(system, dag_id=f"crash_{system}_deferrable")
    lab.wait_for_state(run, ("deferred",))
    time.sleep(2)  # the trigger watches the job
    with ActiveWatch(lab, run) as watch:
        lab.stack.clear(run.dag_id, run.run_id, ["job"])
        lab.wait_for_state(run, ("deferred",), try_number=2)
        time.sleep(10)  # the cleared try's trigger is stopped meanwhile
        lab.advance(system, 900)  # the first job finishes, if it still runs
        state = lab.finish(run)

    assert state == "success"
    assert lab.task(run)["try_number"] == 2
    assert watch.most_active == 1, watch.states
    jobs = lab.job_ids(run)
    if lab.cancelled(run):
        assert len(jobs) == 2 and lab.cancelled_jobs(run) == [jobs[0]], (jobs, watch.states)
        assert watch.appeared[jobs[1]] >= watch.ended[jobs[0]], (watch.appeared, watch.ended)
    else:
        assert len(jobs) == 1, jobs
    assert lab.reported_job(run) == jobs[-1]


#: Real seconds the service answers every status read with HTTP 500: longer than the clients' own
#: retries (botocore's, the Databricks hook's), so a deferred task's trigger ends with an error event.
OUTAGE_SECONDS = 20.0


@pytest.mark.parametrize(
    ("system", "mode"),
    [
        ("databricks", "resumable"),
        ("databricks", "deferrable"),
        ("emr_serverless", "resumable"),
        ("emr_serverless", "deferrable"),
        ("emr_steps", "resumable"),
        ("emr_eks", "resumable"),
        ("emr_eks", "deferrable"),
        ("emr_cluster", "resumable"),
    ],
)
def test_a_status_outage_longer_than_the_clients_retries_cancels_nothing(
    lab: CrashLab, system: str, mode: str
) -> None:
    """The service answers status reads with 500 for 20 s while the job runs, polled or deferred: the
    job is neither cancelled nor submitted again, and the task succeeds when it ends."""
    lab.script(system, 35)
    run = lab.start_run(system, dag_id=f"crash_{system}_{mode}")
    lab.wait_until_submitted(run)
    seen = lab.status_calls(system)
    lab.wait(lambda: lab.status_calls(system) > seen + 1, "the job to be watched", timeout=90)
    lab.outage(system, OUTAGE_SECONDS)

    assert lab.finish(run, timeout=300) == "success", logs(lab, run)
    assert lab.submitted(run) == 1, logs(lab, run)
    assert lab.cancelled(run) == 0, logs(lab, run)
