"""Crash survival on a real Airflow: workers killed by signals, people marking and clearing tasks.

Each test starts one DAG run of a crash DAG (see resumable/testing/crash_dags.py),
disturbs it the way the world does, and checks what a user would: how many jobs the emulated
service saw, how many it was asked to cancel, which job the last try reported, and the final
task and DAG run states in Airflow.
"""

from __future__ import annotations

import importlib.util
import signal
import time

import pytest
from packaging.version import Version

from resumable.records import airflow_version
from resumable.testing.crash import CrashLab, Run

pytestmark = pytest.mark.e2e

SYSTEMS = ["databricks", "emr_serverless", "emr_steps"]
#: Those and EMR on EKS, a transient EMR cluster, Glue, SageMaker training and BigQuery; Databricks
#: and EMR Serverless marked to run on every supported Airflow, Glue (found again by discovery, not by
#: an idempotent token), SageMaker training (by its unique name) and BigQuery (by its job id) on the
#: oldest as well
#: (``make test`` runs the ``every_airflow`` tests on the oldest and a middle version too).
MATRIX = [
    pytest.param("databricks", marks=pytest.mark.every_airflow),
    pytest.param("emr_serverless", marks=pytest.mark.every_airflow),
    "emr_steps",
    "emr_eks",
    "emr_cluster",
    pytest.param("glue", marks=pytest.mark.oldest_airflow),
    pytest.param("sagemaker_training", marks=pytest.mark.oldest_airflow),
    # BigQuery (its job id is the token): where the google provider is installed (Python 3.11+)
    pytest.param(
        "bigquery",
        marks=[
            pytest.mark.oldest_airflow,
            pytest.mark.skipif(
                importlib.util.find_spec("airflow.providers.google") is None,
                reason="the google provider is not installed (its job-contract release needs Python 3.11+)",
            ),
        ],
    ),
]
#: The stack runs the Airflow of this interpreter. Airflow 3.0's task supervisor marks a try whose
#: task process died while the supervisor lived "failed", whatever its retries (3.1 retries it).
AIRFLOW_3_0 = (airflow_version() or Version("3.3")) < Version("3.1")
#: From Airflow 3.3 the supervisor passes a SIGTERM on to its task, so that on_kill runs; before,
#: it lets the task run on, and a shutdown reaches the task only by signalling it directly.
SUPERVISOR_FORWARDS_SIGTERM = (airflow_version() or Version("3.3")) >= Version("3.3")
#: The systems with a deferrable crash DAG (``crash_<system>_deferrable``).
DEFERRABLE = ["databricks", "emr_serverless", "emr_eks"]


def running_with_job(lab: CrashLab, system: str, duration: float) -> Run:
    """A DAG run whose first try has submitted its job and is polling it."""
    lab.script(system, duration)
    run = lab.start_run(system)
    lab.wait_until_submitted(run)
    lab.wait_for_state(run, ("running",), try_number=1)
    time.sleep(3)  # well into polling
    return run


@pytest.mark.parametrize("system", MATRIX)
def test_sigkill_while_polling_reattaches(lab: CrashLab, system: str) -> None:
    run = running_with_job(lab, system, duration=30)
    lab.processes(run).signal(signal.SIGKILL)

    assert lab.finish(run) == "success"
    task = lab.task(run)
    assert (task["state"], task["try_number"]) == ("success", 2)
    assert lab.submitted(run) == 1
    assert lab.cancelled(run) == 0
    assert lab.reported_job(run) == lab.job_ids(run)[0]


@pytest.mark.parametrize("system", MATRIX)
def test_exit_between_submit_and_persist_submits_once(lab: CrashLab, system: str) -> None:
    # On 3.0 the job has to outlast Airflow's failure handling and the person's clear (a long job, as
    # the ones worth resuming are): a job that ended before the clear's try looked at it is run again,
    # as a clear of a finished job must be. It is ended once that try has reattached: its log says it
    # took the job over (a status read alone is not that: the Databricks hook reads the run for its
    # page address right after the repeated submit, before the decision's own read).
    lab.script(system, 3600 if AIRFLOW_3_0 else 10)
    lab.arm("after_submit", dag_id=f"crash_{system}_resumable", mode="exit")
    run = lab.start_run(system)

    if AIRFLOW_3_0:  # no retry there: the job is left running, and a person's clear reattaches to it
        assert lab.finish(run) == "failed"
        assert lab.active_jobs(run) == lab.job_ids(run)
        lab.stack.clear(run.dag_id, run.run_id, ["job"])
        lab.wait_for_state(run, ("running", "success"), try_number=2)
        lab.wait(
            lambda: "resumable: took ownership of job" in lab.task_log(run, 2),
            "the clear's try to reattach to the job",
            timeout=120,
        )
        lab.advance(system, 3600)
    assert lab.finish(run) == "success"
    assert lab.task(run)["try_number"] == 2
    assert lab.submitted(run) == 1
    assert lab.reported_job(run) == lab.job_ids(run)[0]


@pytest.mark.parametrize("system", MATRIX)
def test_sigterm_to_the_worker_keeps_the_job(lab: CrashLab, system: str) -> None:
    run = running_with_job(lab, system, duration=25)
    lab.processes(run).signal(signal.SIGTERM, which="supervisor" if SUPERVISOR_FORWARDS_SIGTERM else "task")

    assert lab.finish(run) == "success"
    assert lab.task(run)["try_number"] == 2
    assert lab.submitted(run) == 1
    assert lab.cancelled(run) == 0


@pytest.mark.parametrize("system", ["databricks", "emr_serverless"])
def test_a_scheduler_that_resets_the_running_task_to_no_state_keeps_its_job(
    lab: CrashLab, system: str
) -> None:
    """What the model checker assumes of ``reset_to_no_state_while_running``, on a real Airflow: the
    scheduler dies while the LocalExecutor worker it started runs the task; the next scheduler resets
    the task instance its dead predecessor had running to no state while the old supervisor runs on.
    That supervisor's heartbeat is refused and it stops its task, whose ``on_kill`` finds the task
    instance reset for a new try (no state, queued again, or already running as try 2: nobody asked,
    keep the job); the next try reattaches to it."""
    run = running_with_job(lab, system, duration=600)
    (job,) = lab.job_ids(run)
    old = lab.processes(run)
    lab.stack.restart("scheduler", signal.SIGKILL, tree=False)
    lab.wait_for_state(run, ("running",), try_number=2)
    # the old try is put down at its next heartbeat, which Airflow refuses (its task instance is gone)
    lab.wait(old.ended, "the first try's task process to end", timeout=60)
    assert lab.cancelled(run) == 0
    # on_kill asked Airflow and was told the task is reset for a new try (measured: queued again or
    # running as try 2, under a new task-instance id that the old try's calls cannot reach)
    first = [line for line in lab.task_log(run, 1).splitlines() if "resumable: stopping with job" in line]
    assert first and all("-> keep the job" in line for line in first), lab.task_log(run, 1)[-3000:]

    lab.advance(system, 900)  # the job finishes
    assert lab.finish(run) == "success"
    assert lab.task(run)["try_number"] == 2
    assert lab.submitted(run) == 1
    assert lab.cancelled(run) == 0
    assert lab.reported_job(run) == job


@pytest.mark.parametrize("system", MATRIX)
def test_marked_failed_cancels_the_job(lab: CrashLab, system: str) -> None:
    run = running_with_job(lab, system, duration=60)
    lab.stack.mark(run.dag_id, run.run_id, "job", "failed")

    lab.wait_until_cancelled(run)
    assert lab.finish(run) == "failed"
    assert lab.task(run)["state"] == "failed"
    assert lab.submitted(run) == 1
    assert lab.cancelled(run) == 1


@pytest.mark.skipif(not SUPERVISOR_FORWARDS_SIGTERM, reason="before 3.3 the task runs on after a stop")
@pytest.mark.parametrize("system", SYSTEMS)
def test_a_mark_failed_before_execute_begins_submits_nothing(lab: CrashLab, system: str) -> None:
    """A person marks the task failed while its try is still before ``execute`` (rendering its
    templates, say). Airflow's SIGTERM handler calls ``on_kill`` and lets the task go on: ``execute``
    begins inside the 5 s before the SIGKILL. The stop is that try's: it submits no job that would
    run with its task failed and nobody watching (guarantee 4)."""
    lab.script(system, 60)
    run = lab.start_run(system, dag_id=f"crash_{system}_noretry", conf={"hold_until_stopped": True})
    lab.wait(lambda: _held(lab, run), "the try to hold before execute", 120)
    try1 = lab.processes(run)
    lab.stack.mark(run.dag_id, run.run_id, "job", "failed")

    lab.wait(try1.ended, "the task's process to end", 60)
    assert lab.finish(run) == "failed"
    assert lab.task(run)["state"] == "failed"
    assert lab.submitted(run) == 0


def _held(lab: CrashLab, run: Run) -> bool:
    try:
        return bool(lab.xcom(run, "held"))
    except Exception:  # noqa: BLE001 - not pushed yet (404)
        return False


@pytest.mark.parametrize("system", MATRIX)
def test_a_dag_run_failed_and_deleted_while_its_task_runs_cancels_the_job(lab: CrashLab, system: str) -> None:
    """A person marks the DAG run failed and deletes it at once, while its task polls (Airflow deletes
    only a DAG run that is queued or has ended). The task instance goes with the run (and, from 3.3,
    its records); the supervisor's next heartbeat is refused and it stops the task, whose stop finds
    no task instance in Airflow: no attempt will ever look at the job again, so it is cancelled
    (guarantee 4)."""
    run = running_with_job(lab, system, duration=300)
    try1 = lab.processes(run)
    path = f"dags/{run.dag_id}/dagRuns/{run.run_id}"
    lab.stack.api("PATCH", path, json={"state": "failed"})
    lab.stack.api("DELETE", path)

    lab.wait_until_cancelled(run, timeout=90)
    lab.wait(try1.ended, "the task's process to end", 60)
    lab.wait(lambda: lab.active_jobs(run) == [], "the job to stop", 60)
    assert lab.submitted(run) == 1
    assert lab.cancelled(run) == 1


#: Seconds the service throttles every cancel once a person stopped the task (a busy control plane):
#: far longer than the 5 s Airflow gives a stopped task between SIGTERM and SIGKILL.
CANCEL_THROTTLE_SECONDS = 30.0


@pytest.mark.parametrize("system", SYSTEMS)
def test_marked_failed_while_the_service_throttles_cancels_cancels_the_job(
    lab: CrashLab, system: str
) -> None:
    """A person marks the task failed while the service throttles every cancel for longer than Airflow
    lets the stopped task live: the cancel is carried on after the task process is killed, until the
    service takes it (guarantee 4)."""
    run = running_with_job(lab, system, duration=600)
    lab.throttle_cancels(system, CANCEL_THROTTLE_SECONDS)
    lab.stack.mark(run.dag_id, run.run_id, "job", "failed")

    assert lab.finish(run) == "failed"
    lab.wait_until_cancelled(run, timeout=CANCEL_THROTTLE_SECONDS + 90)
    lab.wait(lambda: lab.active_jobs(run) == [], "the job to stop", 60)
    assert lab.task(run)["state"] == "failed"
    assert lab.submitted(run) == 1
    assert lab.cancelled(run) == 1


@pytest.mark.parametrize("system", SYSTEMS)
def test_clear_of_a_running_task_cancels_and_reruns(lab: CrashLab, system: str) -> None:
    run = running_with_job(lab, system, duration=60)
    lab.script(system, 8, replace=False)  # the job the cleared task submits again
    lab.stack.clear(run.dag_id, run.run_id, ["job"])

    lab.wait_until_cancelled(run)
    assert lab.finish(run) == "success"
    assert lab.submitted(run) == 2
    assert lab.cancelled(run) == 1
    first, second = lab.job_ids(run)
    assert lab.reported_job(run) == second


@pytest.mark.parametrize("system", MATRIX)
def test_clear_of_a_succeeded_task_runs_the_job_again(lab: CrashLab, system: str) -> None:
    lab.script(system, 5, 5)
    run = lab.start_run(system)
    assert lab.finish(run) == "success"
    lab.stack.clear(run.dag_id, run.run_id, ["job"])
    lab.wait_until_submitted(run, count=2)

    assert lab.finish(run) == "success"
    assert lab.submitted(run) == 2
    assert lab.cancelled(run) == 0


@pytest.mark.parametrize("system", MATRIX)
def test_zombie_does_not_cancel_its_successors_job(lab: CrashLab, system: str) -> None:
    run = running_with_job(lab, system, duration=60)
    zombie = lab.processes(run)
    zombie.signal(signal.SIGSTOP)
    try:
        # past the heartbeat timeout the scheduler fails the try and starts the next, which reattaches
        lab.wait_for_state(run, ("running",), try_number=2)
        time.sleep(4)
    finally:
        zombie.signal(signal.SIGCONT)
    # the zombie learns it was replaced and is put down; it must not cancel the job
    lab.wait(zombie.ended, "the zombie to exit", timeout=60)

    assert lab.finish(run) == "success"
    assert lab.submitted(run) == 1
    assert lab.cancelled(run) == 0
    assert lab.reported_job(run) == lab.job_ids(run)[0]


@pytest.mark.parametrize("system", ["databricks", "emr_serverless"])
def test_a_zombie_put_down_after_its_successor_finished_cancels_nothing(lab: CrashLab, system: str) -> None:
    """A frozen try (a paused VM, a stalled node) wakes after the try that replaced it reattached and
    succeeded with the job. Airflow refuses the zombie's heartbeat and SIGTERMs it; its ``on_kill``
    cannot reach its record any more and reads the task instance: ``success``, its successor's
    outcome, not a person's stop. The job has ended: nothing is cancelled."""
    run = running_with_job(lab, system, duration=600)
    zombie = lab.processes(run)
    zombie.signal(signal.SIGSTOP)
    try:
        lab.wait_for_state(run, ("running",), try_number=2)
        lab.advance(system, 900)  # the job finishes while the zombie sleeps
        assert lab.finish(run) == "success"
        # the supervisor wakes first: its heartbeat is refused and it SIGTERMs the frozen task, which
        # then wakes to the signal before it can poll again
        zombie.signal(signal.SIGCONT, which="supervisor")
        lab.wait(
            lambda: "shouldn't be running anymore" in lab.task_log(run, 1),
            "Airflow to refuse the zombie's heartbeat",
            timeout=60,
        )
    finally:
        zombie.signal(signal.SIGCONT)
    lab.wait(zombie.ended, "the zombie to exit", timeout=60)

    assert lab.cancelled(run) == 0, lab.task_log(run, 1)[-3000:]
    assert lab.submitted(run) == 1
    assert (lab.task(run)["state"], lab.task(run)["try_number"]) == ("success", 2)
    stops = [line for line in lab.task_log(run, 1).splitlines() if "resumable: stopping with job" in line]
    assert stops and all("already ended: nothing to cancel" in line for line in stops), stops


@pytest.mark.parametrize("system", SYSTEMS)
def test_execution_timeout_cancels_the_job(lab: CrashLab, system: str) -> None:
    lab.script(system, 120)
    run = lab.start_run(system, dag_id=f"crash_{system}_timeout")

    lab.wait_until_cancelled(run, timeout=90)
    assert lab.finish(run) == "failed"
    assert lab.submitted(run) == 1
    assert lab.cancelled(run) == 1


@pytest.mark.parametrize("system", ["databricks", "emr_serverless"])
def test_triggerer_killed_while_deferred(lab: CrashLab, system: str) -> None:
    lab.script(system, 25)
    run = lab.start_run(system, dag_id=f"crash_{system}_deferrable")
    lab.wait_for_state(run, ("deferred",))
    lab.stack.restart("triggerer", signal.SIGKILL)

    assert lab.finish(run) == "success"
    assert lab.submitted(run) == 1
    assert lab.cancelled(run) == 0


@pytest.mark.parametrize("system", DEFERRABLE)
def test_triggers_moving_between_two_triggerers_keep_the_job(lab: CrashLab, system: str) -> None:
    """Two triggerers, as a highly available deployment runs. Each is stopped in turn (SIGTERM: a
    restart, a scale-in) while the task is deferred, so its trigger is cancelled and taken over by
    the other at least once. Nobody stopped the task: its job runs on, nothing is cancelled, and the
    task ends with the job."""
    lab.script(system, 900)  # runs until the test moves the service's clock on
    lab.stack.restart("triggerer-2")
    try:
        run = lab.start_run(system, dag_id=f"crash_{system}_deferrable")
        lab.wait_for_state(run, ("deferred",))
        time.sleep(3)  # a trigger watches the job
        lab.stack.kill("triggerer", signal.SIGTERM)
        time.sleep(15)  # past the triggerer health threshold: the other one has every trigger now
        assert lab.task(run)["state"] == "deferred"
        lab.stack.restart("triggerer")
        lab.stack.kill("triggerer-2", signal.SIGTERM)
        time.sleep(15)
        assert lab.task(run)["state"] == "deferred"
        assert lab.cancelled(run) == 0

        lab.advance(system, 900)  # the job finishes
        assert lab.finish(run) == "success"
    finally:
        if "triggerer" not in lab.stack.processes:
            lab.stack.restart("triggerer")
        if "triggerer-2" in lab.stack.processes:
            lab.stack.kill("triggerer-2", signal.SIGTERM)
    assert lab.task(run)["try_number"] == 1
    assert lab.submitted(run) == 1
    assert lab.cancelled(run) == 0
    assert lab.reported_job(run) == lab.job_ids(run)[0]


@pytest.mark.parametrize("system", ["databricks", "emr_serverless"])
def test_worker_killed_between_submit_and_defer(lab: CrashLab, system: str) -> None:
    lab.script(system, 10)
    lab.arm("after_submit", dag_id=f"crash_{system}_deferrable", mode="kill")
    run = lab.start_run(system, dag_id=f"crash_{system}_deferrable")

    assert lab.finish(run) == "success"
    assert lab.task(run)["try_number"] == 2
    assert lab.submitted(run) == 1


@pytest.mark.every_airflow
@pytest.mark.parametrize("system", DEFERRABLE)
def test_a_mark_failed_of_a_deferred_task_stops_its_job(lab: CrashLab, system: str) -> None:
    """While deferred, the trigger is all that runs for the task: a person's mark failed reaches it
    (Airflow 3.3 calls its on_kill; before, the triggerer cancels it and the trigger asks the task
    instance's state) and stops the job."""
    lab.script(system, 60)
    run = lab.start_run(system, dag_id=f"crash_{system}_deferrable")
    lab.wait_for_state(run, ("deferred",))
    time.sleep(2)  # the trigger watches the job
    (job,) = lab.job_ids(run)
    lab.stack.mark(run.dag_id, run.run_id, "job", "failed")

    lab.wait_until_cancelled(run, timeout=60)
    assert lab.finish(run) == "failed"
    assert lab.cancelled_jobs(run) == [job]
    assert lab.submitted(run) == 1
    lab.wait(lambda: job not in lab.active_jobs(run), f"job {job} to stop", timeout=60)


@pytest.mark.every_airflow
@pytest.mark.parametrize("system", DEFERRABLE)
def test_a_mark_failed_of_a_deferred_task_while_the_service_throttles_cancels_stops_its_job(
    lab: CrashLab, system: str
) -> None:
    """The trigger's stop is the only one a deferred task gets, and Airflow gives it 30 s
    (``[triggerer] on_kill_timeout``): a service that throttles every cancel for as long still has
    the job cancelled once it takes calls again."""
    lab.script(system, 600)
    run = lab.start_run(system, dag_id=f"crash_{system}_deferrable")
    lab.wait_for_state(run, ("deferred",))
    time.sleep(2)  # the trigger watches the job
    (job,) = lab.job_ids(run)
    lab.throttle_cancels(system, CANCEL_THROTTLE_SECONDS)
    lab.stack.mark(run.dag_id, run.run_id, "job", "failed")

    assert lab.finish(run) == "failed"
    lab.wait_until_cancelled(run, timeout=CANCEL_THROTTLE_SECONDS + 90)
    assert lab.cancelled_jobs(run) == [job]
    assert lab.submitted(run) == 1
    lab.wait(lambda: job not in lab.active_jobs(run), f"job {job} to stop", timeout=60)
