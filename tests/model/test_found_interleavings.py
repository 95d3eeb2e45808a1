"""Interleavings the model checker found, each replayed by hand as a short, plain sequence.

Every test runs on the ``memory``, ``sql`` and ``airflow`` backends (the ``world`` fixture), but
for one whose steps count one backend's reads and writes. A step that breaks one of the guarantees
of ``docs/concepts.md`` raises :class:`~tests.model.world.GuaranteeViolated`, which names it.

The first group replays issue 11's scenarios. All but the last broke a guarantee on the core of
commit 8bfb366, where the model checker was written (the last passes there too: the memory and
sql backends fence a zombie by its record); all pass on the fixed core, and stay as regression
tests. The second group was found by the model checker on the core while it was being fixed
(commit 47918c2 and the work after it) and was fixed in commit 8eff28f; the docstrings say how
the core went wrong there. The third group was found on 8eff28f and fails until the core
handles it.
"""

from __future__ import annotations

import pytest

# ---- issue 11's scenarios (broke guarantees on 8bfb366; pass now) ------------------------------


def test_a_clear_after_a_crash_in_the_submit_window_reattaches_instead_of_submitting_again(world) -> None:
    """retries=0; the worker dies after submit, before the handle is written; a person clears the
    failed task; the next try must find the first job, not start a second beside it (guarantee 1)."""
    w = world(retries=0)
    w.attempt_dies_at("after_submit")
    w.person_clears_finished_task()
    w.attempt_runs()
    assert w.svc.total_submissions == 1


def test_a_mark_failed_while_the_submit_is_in_flight_cancels_the_job(world) -> None:
    """A person marks the task failed while the submit's answer is held: once the job's id arrives,
    the stop applies and the job is cancelled (guarantee 4)."""
    w = world(retries=0)
    w.person_stops("mark_failed", "submit")
    # asked by the stop's follow-up (which does not wait for the answer) and again once the id arrived
    assert set(w.svc.cancelled) == set(w.svc.created)


def test_a_clear_of_a_running_task_whose_cancel_takes_polls_reruns_only_after_it_stopped(world) -> None:
    """A clear of the running task cancels its job, which is STOPPING for two status calls: the cancel
    request is not recorded as the job's outcome (guarantee 5), and the rerun waits for the job to
    stop instead of running beside it (guarantee 1)."""
    w = world(retries=0, cancel_polls=2)
    w.person_stops("clear", 1)
    w.attempt_runs()
    assert w.ti.state == "success" and w.svc.total_submissions == 2


def test_a_clear_after_retries_were_lowered_reruns_the_job(world) -> None:
    """retries 1 -> 0 between the success and the clear gives the clear the lineage the first run had
    (max_tries = try_number + retries = 1): the clear must still run the job again (guarantee 3)."""
    w = world(retries=1)
    w.attempt_runs()
    w.retries_changed(0)
    w.person_clears_finished_task()
    w.attempt_runs()
    assert w.svc.total_submissions == 2


def test_a_dag_run_created_again_with_the_same_run_id_runs_the_job(world) -> None:
    """The DAG run is deleted and triggered again with the same run_id: the new run must not finish
    with the deleted run's job (guarantee 3)."""
    w = world(retries=1)
    w.attempt_runs()
    w.dag_run_recreated(same_run_after=False)
    w.attempt_runs()
    assert w.svc.total_submissions == 2


def test_a_backfilled_dag_run_with_the_same_run_after_runs_the_job(world) -> None:
    """The same with a backfill, which keeps the run's run_after: only its start date tells it apart."""
    w = world(retries=1)
    w.attempt_runs()
    w.dag_run_recreated(same_run_after=True)
    w.attempt_runs()
    assert w.svc.total_submissions == 2


def test_a_zombie_timed_out_while_its_successor_polls_never_cancels(world) -> None:
    """A try freezes while polling; its retry reattaches and polls; the zombie's own execution_timeout
    fires as it thaws: a replaced try never cancels (guarantee 2)."""
    w = world(retries=1, polls=3)
    w.zombie(freeze_at=1, successor="while_polling", thaw="timeout")
    assert w.svc.cancelled == [] and w.ti.state == "success"


# ---- found by the model checker on 47918c2 and after; fixed in 8eff28f --------------------------


def test_a_zombie_timed_out_before_its_retry_started_never_cancels(world) -> None:
    """A try freezes while polling; Airflow fails it and schedules the retry (up_for_retry); the
    zombie thaws by its own execution_timeout before the retry starts. It still owns the record, but
    Airflow has replaced it: it must keep the job for the retry, not cancel it (guarantee 2).
    The kill rules cancelled on a timeout whenever the record was still the attempt's."""
    w = world(retries=1, polls=1)
    w.zombie(freeze_at=1, successor="none", thaw="timeout")


def test_a_zombie_timed_out_while_its_successor_reads_the_record_never_cancels(world) -> None:
    """A try freezes while polling; its retry starts and has read the record and the job's status but
    not yet taken the job over when the zombie thaws by its own execution_timeout. The record still
    names the zombie, Airflow runs the newer try: the zombie must not cancel (guarantee 2). It
    cancelled the job its successor was about to reattach to (issue 11's item 5 on these backends)."""
    w = world(retries=1, polls=2)
    w.zombie(freeze_at=1, successor="at_observe", thaw="timeout")


def test_a_zombie_put_down_before_its_retry_started_never_cancels_even_with_cancel_on_kill_always(
    world,
) -> None:
    """The same zombie, put down by SIGTERM, with cancel_on_kill='always': "a replaced attempt never
    cancels, whatever fired" (guarantee 2), but the kill rules apply 'always' whenever the record is
    still the attempt's, without asking Airflow whether a retry has taken over."""
    w = world(retries=1, polls=1, cancel_on_kill="always")
    w.zombie(freeze_at=1, successor="none", thaw="sigterm")


def test_a_final_timeout_cancels_the_job_even_when_the_record_cannot_be_read(world) -> None:
    """retries=0; execution_timeout fires while the submit's answer is held, and the state store
    fails the read on_kill makes to check ownership: the try is the current one in Airflow
    ("running"), its time is spent and no retry will look at the job, yet the job is kept
    (guarantee 4). An unreadable record turned the timeout into "Airflow's view decides",
    and "running" means "keep"."""
    w = world(retries=0, polls=1)
    w.state_store_fails("get", nth=2)
    w.execution_timeout("submit")


def test_a_stop_during_the_rerun_after_a_slow_cancel_cancels_the_rerun(world) -> None:
    """A person clears the running task; its job takes a status call to stop (cancel_polls=1). The
    next try waits for it to stop, then submits the rerun, and a person marks it failed while that
    submit's answer is held: the stop is applied to the job that was awaited (already cancelled),
    not to the new one, which is left running with the task failed (guarantee 4)."""
    w = world(retries=0, polls=1, cancel_polls=1)
    w.person_stops("clear", 1)
    w.person_stops("mark_failed", "submit")


def test_a_clear_reruns_the_job_when_retries_changed_before_the_first_try(world) -> None:
    """The DAG run is created with retries=2 (max_tries=2); the DAG file changes retries to 1 before
    the task runs (an unversioned bundle runs the latest file). The try succeeds and writes
    retries=1; a clear gives max_tries = 1 + 1 = 2, the lineage the first try had, and since
    retries did not change after the record was written, the clear is taken for a retry and
    finishes with the old job instead of running it again (guarantee 3)."""
    w = world(retries=2, polls=1)
    w.retries_changed(1)
    w.attempt_runs()
    w.person_clears_finished_task()
    w.attempt_runs()


def test_a_clear_reruns_the_job_when_retries_changed_between_the_clear_and_the_next_try(world) -> None:
    """retries=2: the first try (max_tries=2) succeeds; retries is lowered to 1 and the task cleared
    (max_tries = 1 + 1 = 2, the old lineage again); then the DAG file raises retries to 2 before the
    next try runs. Telling the clear apart by "try_number == max_tries - retries + 1" uses today's
    retries, not the clear's, so the clear is taken for a retry and finishes with the old job
    (guarantee 3)."""
    w = world(retries=2, polls=1)
    w.attempt_runs()
    w.retries_changed(1)
    w.person_clears_finished_task()
    w.retries_changed(2)
    w.attempt_runs()


def test_a_backfilled_dag_run_whose_record_went_with_the_deleted_run_runs_the_job(world) -> None:
    """The DAG run is deleted (its record with it: Airflow's task state store deletes records with
    the run, the sql backend's purge too) and backfilled with the same run_id and run_after. The
    new run's first submission computes the deleted run's token, so an idempotent service hands
    back the deleted run's finished job, and the task succeeds without running (guarantee 3)."""
    w = world(retries=1, polls=1)
    w.attempt_runs()
    w.dag_run_recreated(same_run_after=True, record_kept=False)
    w.attempt_runs()


# ---- found by the model checker on 8eff28f; each fails until the core handles it --------------


def test_a_backfilled_dag_run_whose_first_try_died_early_still_runs_the_job(world) -> None:
    """The DAG run succeeded, was deleted (its record kept, as the sql backend keeps it) and
    backfilled with the same run_id and run_after. The backfill's first try dies before it writes
    anything; its retry reads the deleted run's DONE record. A record is taken for another run's
    only when its owner is at least this try, and "written before this run started" is not asked
    otherwise, so try 2 finishes with the deleted run's job instead of running it (guarantee 3)."""
    w = world(retries=1, polls=1)
    w.attempt_runs()
    w.dag_run_recreated(same_run_after=True, record_kept=True)
    w.attempt_dies_at("before_intent")
    w.attempt_runs()


def test_a_stop_after_a_person_deleted_the_record_cancels_the_new_job_not_the_old_one(world) -> None:
    """A service without idempotent submit (the job is found by its token, like EMR steps). Try 1
    dies after submit; the record is damaged; a person cancels the job and deletes the record, as
    the error says. Try 2 submits with the same token as the deleted record's (same lineage,
    seq 1: the docs' "Tokens" want a new token for every new submission), then its execution_timeout fires
    while the submit's answer is held: the stop looks the job up by token, finds the old cancelled
    one, and leaves the new one running with the task failed (guarantee 4)."""
    w = world(retries=1, polls=1, idempotent=False)
    w.attempt_dies_at("after_submit")
    w.record_corrupted("no_handle")
    w.person_deletes_corrupt_record()
    w.execution_timeout("submit")


def test_a_zombie_stops_its_job_when_its_successor_failed_for_good_without_taking_it_over(world) -> None:
    """Found in a CI run: try 1 of a re-created DAG run freezes while polling; try 2 fails for good
    at its first state read (the store fails), so it never takes the job over, and the task is
    failed. When try 1 thaws by SIGTERM it still owns the record, and Airflow says the task failed:
    stopping the job is right (a final failure asked, and no other attempt will ever look at it,
    guarantee 4); the model first counted that as a replaced try's cancel."""
    w = world(retries=1, polls=2)
    w.state_store_fails("get", nth=1)
    w.attempt_runs()
    w.attempt_runs()
    w.state_store_fails("get", nth=3)
    w.dag_run_recreated(record_kept=False, same_run_after=False)
    w.zombie(freeze_at=2, successor="finishes", thaw="sigterm")


@pytest.mark.parametrize("world", ["memory", "sql"], indirect=True)  # counts those backends' reads
def test_a_mark_failed_while_the_retry_looks_at_the_job_and_the_store_fails_cancels_the_job(world) -> None:
    """Found by a long run (seed 11): in a DAG run created again with the same run_id, try 1
    submits and fails (the store refused a write); a person marks try 2 failed during its first
    status call, before it took the job over, and the store refuses a write again. The stop was
    remembered as "before the job's id was known" and never applied, and with a failing store the
    "cancel asked for" write raised before the cancel: job 1002 ran on with no attempt to look at
    it (guarantee 4). A stop that comes while an attempt looks at a running job is about that job,
    and a store that cannot record the cancel does not keep it from being sent."""
    w = world(retries=1, polls=2)
    w.attempt_runs()
    w.dag_run_recreated(record_kept=False, same_run_after=False)
    w.state_store_fails("get", nth=2)
    w.state_store_fails("put", nth=4)
    w.attempt_runs()
    w.person_stops("mark_failed", 1)
    assert w.svc.cancelled == ["1002"]


@pytest.mark.parametrize("refused", [2, 3], ids=["the-stop", "the-job-id"])
def test_a_mark_failed_while_the_submit_is_in_flight_cancels_the_job_when_its_id_cannot_be_written(
    world, refused
) -> None:
    """Found by the model checker on the airflow backend (where a first try writes only its intent
    and its job's id): a person marks the task failed while the submit's answer is held, and the
    store then refuses the write of the job's id. The stop waited for the id, the failed write raised
    before it was decided, and the job ran on with the task failed (guarantee 4). The writes after the
    intent: the stop (written by on_kill before the id is known), then the job's id; either is refused."""
    w = world(retries=0)
    w.state_store_fails("put", nth=refused)
    w.person_stops("mark_failed", "submit")
    assert w.svc.created == ["1001"]
    assert set(w.svc.cancelled) == {"1001"}


def test_a_retry_after_an_eviction_while_its_clear_looked_at_the_reused_tokens_job_does_not_rerun(
    world,
) -> None:
    """Found by the model checker on the airflow backend: after a clear, try 5 finds the earlier
    lineage's intent, submits with its token (the service makes the job) and is evicted while it looks
    at that job. It kept the job but not the record's lineage, so its retry read the job as one of the
    lineage the clear ended and ran it again although it had succeeded (guarantee 3)."""
    w = world(retries=1, polls=1)
    w.evicted("submit")
    w.job_expires()
    w.evicted("submit")
    w.job_expires()
    w.person_clears_finished_task()
    w.evicted("submit")
    w.job_expires()
    w.evicted(1)
    w.person_clears_finished_task()
    w.evicted(1)
    w.evicted("submit")


def test_a_clear_after_a_stop_during_a_held_submit_whose_job_expired_does_not_count_its_token_job_as_usable(
    world,
) -> None:
    """Found by a long run (seed 11, airflow backend): a person marks try 1 failed while its submit's
    answer is held (the follow-up cancels the job), the job expires, and a person clears the task.
    Try 2 submits with the stopped token (the service makes a new job of it) and freezes; try 3 finds
    that job ended and runs the task again. A job of a token a person stopped is not one the clear
    may use, so try 3 is right; and try 2, had it gone on, records the job under its own lineage
    only while the job is active."""
    w = world(retries=1, polls=1)
    w.stopped_while_the_submit_answer_is_held("mark_failed")
    w.job_expires()
    w.person_clears_finished_task()
    w.zombie(freeze_at=1, successor="finishes", thaw="sigterm")
    assert w.ti.state == "success"


def test_a_timeout_during_the_submit_whose_stop_write_loses_its_answer_still_cancels_the_job(world) -> None:
    """Found by a long run (seed 11, airflow backend): execution_timeout fires while the submit's answer
    is held; the stop is written before the job is looked for, that write commits but its answer is
    lost, and the write with the job's id then met a newer version, taken for a newer try's: the job
    was not cancelled (guarantee 4). The attempt reads the record again and finds it still its own."""
    w = world(retries=0, polls=1)
    w.attempt_runs()
    w.person_clears_finished_task()
    w.state_store_fails("put", nth=2, lost_ack=True)
    w.execution_timeout("submit")
    assert len(w.svc.created) == 2
    assert w.svc.created[1] in w.svc.cancelled


def test_a_zombie_of_a_recreated_dag_run_never_cancels_the_job_its_successor_submitted(world) -> None:
    """Found by the model checker in CI (sql backend, cancel_on_kill='always'): try 1 of a DAG run
    created again with the same run_id freezes while it looks at the earlier run's job; try 2 takes
    over and submits its own job; try 1 thaws by SIGTERM, reads the record again and finds try 2's job
    running. Ownership was told by comparing the stored record with the one just read, so try 1 took
    itself for the owner and cancelled try 2's job (guarantee 2). A record of a newer try is never
    this attempt's, and an attempt that stands down applies no stop."""
    w = world(retries=0, cancel_on_kill="always", polls=2)
    w.attempt_runs()
    w.dag_run_recreated(record_kept=False, same_run_after=False)
    w.evicted("submit")
    w.dag_run_recreated(record_kept=True, same_run_after=False)
    w.zombie(freeze_at=1, successor="while_polling", thaw="sigterm")


# ---- a DAG run deleted while its task runs (issue 19) ------------------------------------------


@pytest.mark.parametrize("where", ["submit", 1])
def test_a_dag_run_deleted_while_its_task_runs_cancels_the_job(world, where) -> None:
    """A person marks the DAG run failed and deletes it while the try submits or polls: the stop finds
    no task instance in Airflow (on the airflow backend no record either) and, before the fix, kept
    the job with nobody ever to look at it again (guarantee 4). The run_id triggered again runs a
    job of its own."""
    w = world(retries=1)
    w.dag_run_deleted_while_running(where)
    assert w.svc.created and set(w.svc.cancelled) == set(w.svc.created)
    w.attempt_runs()
    assert w.ti.state == "success" and w.svc.total_submissions == 2


# ---- a stop before ``execute`` begins (issue 19: Airflow's SIGTERM handler comes first) ----------


def test_a_mark_failed_before_execute_begins_submits_nothing(world) -> None:
    """On 3.3 the SIGTERM handler calls ``on_kill`` and the task goes on into ``execute``: the stop is
    this attempt's, so it submits no job that would then run with its task failed (guarantee 4)."""
    w = world(retries=0)
    w.stopped_before_execute("mark_failed")
    assert w.svc.total_submissions == 0
    assert w.ti.state == "failed"


def test_an_eviction_before_execute_begins_keeps_the_job_for_the_next_try(world) -> None:
    """A try evicted before ``execute`` finds the job its predecessor left running: an eviction keeps
    it (guarantee 2), the try submits nothing, and the next try reattaches (guarantee 1)."""
    w = world(retries=2)
    w.attempt_dies_at("while_polling")
    w.stopped_before_execute("evicted")
    w.attempt_runs()
    assert w.svc.total_submissions == 1 and not w.svc.cancelled
    assert w.ti.state == "success"


def test_a_task_reset_to_no_state_while_it_runs_keeps_its_job(world) -> None:
    """The scheduler resets the running task instance to no state while its supervisor runs on, which
    then stops the task: no person asked, so the job is kept (guarantee 2) and the next try
    reattaches to it (guarantee 1)."""
    w = world(retries=2)
    w.reset_to_no_state_while_running(1)
    w.attempt_runs()
    assert w.svc.total_submissions == 1 and not w.svc.cancelled
    assert w.ti.state == "success"


def test_a_stop_before_execute_whose_record_read_fails_still_stops_the_job(world) -> None:
    """Found by the model checker once a stop before ``execute`` was a rule: the job of try 1 (kept by
    its eviction, no retries) still runs when a person clears the failed task and then marks the new
    try failed before its ``execute``. The new try's first read of the record fails once: it gave up
    and the job ran on with nobody to look at it (guarantee 4). A stopped attempt reads again."""
    w = world(retries=0)
    w.evicted("submit")
    w.state_store_fails("get", 1, lost_ack=False)
    w.person_clears_finished_task()
    w.next_job_fails()
    w.stopped_before_execute("mark_failed")
    assert not w.running_jobs()


def test_a_stop_before_execute_while_the_service_fails_still_stops_the_job(world) -> None:
    """Found by the model checker: try 1's job runs on after its task instance was reset to no state;
    the service then fails every call for a while, and a person marks try 2 failed before its
    ``execute``. Try 2 could not read the job's status and ended without deciding the stop: the job
    ran on (guarantee 4). The stop is now decided on the job the record names, status or not."""
    w = world(retries=0)
    w.reset_to_no_state_while_running("submit")
    w.service_errors(6)
    w.stopped_before_execute("mark_failed")
    assert not w.running_jobs()


def test_a_stop_before_execute_cancels_the_job_a_crash_after_submit_left(world) -> None:
    """Found by the model checker (in CI): try 1 dies after its submit, before the job's id is
    written; a person marks try 2 failed before its ``execute``. Try 2 finds the job by its token,
    and the person's stop must cancel it (guarantee 4)."""
    w = world(retries=1)
    w.attempt_dies_at("after_submit")
    w.stopped_before_execute("mark_failed")
    assert not w.running_jobs()


def test_a_stop_before_execute_whose_claim_on_the_record_fails_still_stops_the_job(world) -> None:
    """Found by the model checker: try 1's job runs on after a store read failed it (no retries); a
    person clears the task, the store fails the next write, and the person marks try 2 failed before
    its ``execute``. Try 2's claim on the record failed and it ended without deciding the stop: the
    job ran on (guarantee 4). The stop is now decided on the job the record names."""
    w = world(retries=0)
    w.state_store_fails("get", 2, lost_ack=False)
    w.attempt_runs()
    w.person_clears_finished_task()
    w.state_store_fails("put", 1, lost_ack=False)
    w.stopped_before_execute("mark_failed")
    assert not w.running_jobs()


# ---- issue 19, item 3: a clear of a running task on Airflow's store -----------------------------


def test_a_clear_whose_cancel_takes_effect_after_the_next_try_reattached_reruns_the_job(world) -> None:
    """A person clears the running task (retries=0). The cleared try asks for the cancel, but the
    service takes it asynchronously: the job answers RUNNING for two more status calls (Databricks
    "may still be running when this request completes"). On Airflow's store the cleared try cannot
    record why it cancelled, so the next try reattaches to the job, which then ends CANCELLED. That is
    the clear's cancel, not this lineage's failure: the clear reruns the job (guarantee 3); before,
    the person's clear ended failed."""
    w = world(retries=0, cancel_lag=2)
    w.person_stops("clear", 1)
    w.attempt_runs()
    assert w.ti.state == "success", w.ti.state
    assert w.svc.total_submissions == 2


def test_a_clear_whose_job_took_polls_to_stop_reruns_it_even_with_on_prior_failure_fail(world) -> None:
    """A person clears the running task; its job is STOPPING for two status calls. The next try waits
    for it with its own try number on the record, which stays the cleared lineage's (Airflow raised the
    DAG run's clear counter and left max_tries alone): the clear reruns the job instead of applying
    on_prior_failure='fail' to the cancelled one as if it were this lineage's failure."""
    w = world(retries=0, cancel_polls=2, on_prior_failure="fail")
    w.person_stops("clear", 1)
    w.attempt_runs()
    assert w.ti.state == "success", w.ti.state
    assert w.svc.total_submissions == 2


def test_a_clear_before_execute_after_an_earlier_try_left_its_job_leaves_no_job_unlooked_at(world) -> None:
    """Found by the model checker: the scheduler resets try 1 to no state while its submit is in flight
    (its job is kept for the next try); a person clears try 2 before its ``execute`` begins. On
    Airflow's store try 2 is refused its record from the start (its task instance has a new id) and
    cannot learn the job; try 3 finds it running and reattaches (the decision table's new-lineage row),
    so the job is looked at and runs once. On the other backends try 2 reads the record and its clear
    cancels the job, and try 3 reruns it."""
    w = world(retries=0, polls=1)
    w.reset_to_no_state_while_running("submit")
    w.stopped_before_execute("clear")
    w.attempt_runs()
    assert w.ti.state == "success", w.ti.state
    assert w.svc.total_submissions == (1 if w.backend_name == "airflow" else 2)


@pytest.mark.parametrize("store_fails", [False, True])
def test_a_stop_before_execute_after_a_submit_whose_answer_never_came_stops_the_tokens_job(
    world, store_fails: bool
) -> None:
    """Found by the model checker: try 1 is evicted while its submit's answer is held (its job exists,
    its id never reached the record: ``submitting``); a person marks try 2 failed before its
    ``execute``. With the store failing try 2's first write (its claim on the record, or on Airflow's
    store its intent to submit again with the token), try 2 ended without stopping the token's job
    (guarantee 4). The stop now learns the token's job without that write and stops it."""
    w = world(retries=1, polls=1)
    if store_fails:
        w.state_store_fails("put", 2, lost_ack=False)
    w.stopped_while_the_submit_answer_is_held("evicted")
    w.stopped_before_execute("mark_failed")
    assert not w.running_jobs()
    assert w.svc.total_submissions == 1


# ---- issue 19, item 2: a deferred task's trigger, the triggerer, and people -------------------------


def test_a_trigger_that_moves_or_ends_with_an_error_keeps_the_job_and_the_task_waits_on(world) -> None:
    """The triggerer running the trigger stops and another takes it (on 3.3 the trigger's ``on_kill``
    runs; before, its task is cancelled): the task is still deferred, so the job is kept. Then a
    status call fails past the client's retries and the trigger sends an error event: the job is
    looked at and the task defers again (guarantee 2). The next trigger sees the job to its end."""
    w = world(retries=0, polls=3, deferrable=True)
    w.attempt_runs()
    assert w.ti.state == "deferred"
    w.trigger_moves()
    w.trigger_fires("error")
    assert w.ti.state == "deferred", w.ti.state
    w.trigger_fires("outcome")
    assert w.ti.state == "success", w.ti.state
    assert w.svc.total_submissions == 1 and not w.svc.cancelled


def test_a_trigger_whose_wait_reached_its_limit_cancels_the_job(world) -> None:
    w = world(retries=0, polls=3, deferrable=True)
    w.attempt_runs()
    w.trigger_fires("max_attempts")
    assert w.svc.cancelled and w.ti.state == "failed"


@pytest.mark.parametrize("action", ["mark_failed", "mark_success"])
def test_a_persons_stop_of_a_deferred_task_stops_its_job(world, action: str) -> None:
    w = world(retries=0, polls=3, deferrable=True)
    w.attempt_runs()
    w.person_stops_deferred(action)
    assert w.svc.cancelled and not w.running_jobs()


@pytest.mark.parametrize("stopped", ["before_the_next_try", "once_deferred_again", "after_the_next_try"])
def test_a_clear_of_a_deferred_task_reruns_or_keeps_the_job_as_its_trigger_is_stopped(world, stopped) -> None:
    """A person clears a deferred task. The next try starts as ``execute``; Airflow stops the cleared
    try's trigger at a time of its own. Stopped while the task is not deferred, the trigger takes it
    for the person's stop and cancels the job: the next try reruns it (also when it had reattached to
    it already). Stopped once the next try deferred again, it keeps the job, which that try goes on
    with. Either way one job at a time, and the task succeeds."""
    w = world(retries=0, polls=3, deferrable=True)
    w.attempt_runs()
    w.person_stops_deferred("clear")
    if stopped == "before_the_next_try":
        w.cleared_trigger_stopped()
    w.attempt_runs()
    if stopped == "once_deferred_again":
        w.cleared_trigger_stopped()
    w.trigger_fires("outcome")
    if stopped == "after_the_next_try":
        w.cleared_trigger_stopped()
    assert w.ti.state == "success", w.ti.state
    assert w.svc.total_submissions == (2 if stopped == "before_the_next_try" else 1)


def test_a_stop_before_execute_whose_claim_committed_but_lost_its_answer_still_stops_the_job(world) -> None:
    """Found by the model checker: an eviction leaves try 1's job running; a person marks try 2 failed
    before its ``execute``. Try 2's claim on the record (owner = try 2) commits, but its answer is
    lost: the stop read the record, found try 2 as the owner where it expected try 1, took that for a
    newer try and kept the job (guarantee 4). A record naming this try is this attempt's own write."""
    w = world(retries=1, polls=1)
    w.state_store_fails("put", 3, lost_ack=True)
    w.evicted("submit")
    w.stopped_before_execute("mark_failed")
    assert not w.running_jobs()


def test_a_clear_of_a_deferred_task_whose_cancel_lands_after_the_next_try_deferred_reruns_the_job(
    world,
) -> None:
    """As above, with the trigger stopped before the next try ran but the cancel taking effect only
    later: the next try reattaches to the job, which it took over from the lineage before the clear,
    and defers; the job then ends cancelled, and the resumed try reruns it instead of failing."""
    w = world(retries=0, polls=3, deferrable=True, cancel_lag=2)
    w.attempt_runs()
    w.person_stops_deferred("clear")
    w.cleared_trigger_stopped()
    w.attempt_runs()
    assert w.ti.state == "deferred", w.ti.state
    w.trigger_fires("outcome")  # the first job: cancelled; the rerun defers
    w.trigger_fires("outcome")
    assert w.ti.state == "success", w.ti.state
    assert w.svc.total_submissions == 2


def test_a_job_a_clears_same_token_submit_created_is_not_run_again_by_its_retry(world) -> None:
    """Both tries of lineage 1 die after writing their intent (nothing was submitted); a person clears
    the failed task. Try 3 submits with the record's token, as the decision table says (the token's
    job may exist), and the service creates job 1001; try 3 freezes before it looks at it, and its
    retry finds a record of lineage 1 naming a SUCCEEDED job: "a clear means rerun" runs it again in
    lineage 3. An idempotent service does not say whether a repeated token's job is new, and
    Databricks has no find_job to ask first. Fixed: the intent says who reuses the token and since when
    (``Record.reuse``), and a job created after it is that lineage's."""
    w = world(retries=1, polls=1)
    w.attempt_dies_at("after_intent")
    w.attempt_dies_at("after_intent")
    w.person_clears_finished_task()
    w.zombie(freeze_at=1, successor="finishes", thaw="sigterm")


def test_a_stop_before_execute_cancels_the_job_it_took_over_when_the_takeover_answer_was_lost(world) -> None:
    """Found by a long run (seed 67) on the memory and sql backends: after clears, try 4 (lineage 3) is
    marked failed before ``execute`` begins. It finds lineage 2's running job 1002, takes it over for
    its lineage (the write commits, its answer is lost) and decides the stop: its ownership check read
    the stored record, saw lineage 3 where its own view still said 2, and took itself for a replaced
    attempt ("a newer try owns the job now"): the job ran on with the task failed (guarantee 4). A
    stored record with this try's number, lineage and token is this attempt's own lost write."""
    w = world(retries=0)
    w.evicted("submit")
    w.person_clears_finished_task()
    w.evicted("submit")
    w.state_store_fails("put", nth=1)
    w.person_clears_finished_task()
    w.state_store_fails("put", nth=4, lost_ack=True)
    w.evicted("submit")
    w.person_clears_finished_task()
    w.stopped_before_execute("mark_failed")
    assert w.svc.cancelled[-1:] == [w.svc.created[-1]], (w.svc.created, w.svc.cancelled)


def test_a_clear_after_a_stop_before_execute_does_not_cancel_the_job_it_creates_with_the_old_token(
    world,
) -> None:
    """Found by a long run (seed 73) on the airflow backend, on a service that does not honour tokens:
    try 2 (lineage 1) finds lineage 0's intent (no job) and is marked failed before it submits; the
    record keeps the stop with lineage 0's token, for a job of that token that may still turn up. A
    person clears the task: try 3 (lineage 2) submits with that token, as the decision table says, and
    the service creates job 1002. The stop it inherited then read as asked of job 1002: try 3
    cancelled its own healthy job and submitted a third (guarantee 2). The inherited stop is about a job
    of the token created before this lineage's intent; a job created after it is this lineage's."""
    w = world(retries=0, idempotent=False, polls=1)
    w.execution_timeout("submit")
    w.dag_run_recreated(record_kept=False, same_run_after=False)
    w.attempt_dies_at("after_intent")
    w.person_clears_finished_task()
    w.stopped_before_execute("mark_failed")
    w.person_clears_finished_task()
    w.attempt_runs()
    assert w.ti.state == "success", w.ti.state
    assert w.svc.cancelled == ["1001"], (w.svc.created, w.svc.cancelled)
