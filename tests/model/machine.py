"""The model checker: a Hypothesis state machine that drives a :class:`~tests.model.world.World`
through any sequence of attempts and disruptions and checks the guarantees after every step.

Every rule is one method of the World; the machine only draws the arguments and says when a rule
makes sense (a clear of a finished task needs a finished task). ``ResumeMachine.for_backend``
makes the machine for one state backend; ``tests/model/test_resume_model.py`` runs it in CI and
``bench/model_check.py`` runs it for longer.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections import Counter
from typing import Any, ClassVar

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.model.world import CORRUPTIONS, FAULT_POINTS, WHERES, World

#: The job systems a machine can drive (``ResumeMachine.for_backend``'s ``system``).
SYSTEMS = ("fake", "glue")
#: Sequences (examples) and steps run by every machine of this process, for the bench's report.
EXPLORED: Counter[str] = Counter()


def sql_url() -> str:
    """A SQLite file for the sql backend, in memory-backed storage where the machine has it."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    folder = tempfile.mkdtemp(prefix="resumable-model-", dir=base)
    atexit.register(shutil.rmtree, folder, True)
    return "sqlite:///" + os.path.join(folder, "state.db")


def ci_settings(max_examples: int, steps: int) -> settings:
    """A fixed seed, no example database, no deadline; failures are shrunk but not "explained"
    (that phase reruns every variant of the failing sequence and triples the time)."""
    return settings(
        max_examples=max_examples,
        stateful_step_count=steps,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        report_multiple_bugs=False,
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


wheres = st.sampled_from(WHERES)


class ResumeMachine(RuleBasedStateMachine):
    """Any sequence of attempts and disruptions of one task instance; see the World for each rule."""

    backend: ClassVar[str] = "memory"
    sql_url: ClassVar[str | None] = None
    #: Violation kinds not reported (the bench sets it once it has found one, to look for others).
    ignore: ClassVar[frozenset[str]] = frozenset()
    #: The job system the operator talks to: ``fake`` (FakeJobService) or ``glue`` (the real Glue
    #: operator against moto, ``tests/model/glue.py``).
    system: ClassVar[str] = "fake"

    def __init__(self) -> None:
        super().__init__()
        self.world: World | None = None
        EXPLORED["sequences"] += 1

    @classmethod
    def for_backend(
        cls, backend: str, *, ignore: frozenset[str] = frozenset(), system: str = "fake"
    ) -> type[ResumeMachine]:
        if system not in SYSTEMS:
            raise ValueError(f"system must be one of {SYSTEMS}, not {system!r}")
        url = sql_url() if backend == "sql" else None
        prefix = "" if system == "fake" else system.title()
        return type(
            f"{prefix}ResumeOn{backend.title()}",
            (cls,),
            {"backend": backend, "sql_url": url, "ignore": ignore, "system": system},
        )

    @property
    def w(self) -> World:
        assert self.world is not None
        return self.world

    @initialize(
        retries=st.integers(0, 2),
        cancel_on_kill=st.sampled_from(["user_stop", "always", "never"]),
        on_prior_failure=st.sampled_from(["resubmit", "fail"]),
        idempotent=st.sampled_from([True, False]),
        polls=st.integers(1, 3),
        cancel_polls=st.integers(0, 2),
        cancel_lag=st.integers(0, 2),
        deferrable=st.booleans(),
    )
    def a_task(self, **options: Any) -> None:
        world_class = World
        if self.system == "glue":
            from tests.model.glue import GlueWorld  # moto and the amazon provider: only when asked for

            world_class = GlueWorld
        self.world = world_class(self.backend, sql_url=self.sql_url, ignore=self.ignore, **options)

    def teardown(self) -> None:
        if self.world is not None:
            EXPLORED["steps"] += self.world.steps
            self.world.close()

    # ---- attempts ----------------------------------------------------------------------------

    def schedulable(self) -> bool:
        return self.world is not None and self.w.ti.schedulable

    @precondition(schedulable)
    @rule()
    def attempt_runs(self) -> None:
        self.w.attempt_runs()

    @precondition(schedulable)
    @rule(point=st.sampled_from(FAULT_POINTS))
    def attempt_dies_at(self, point: str) -> None:
        self.w.attempt_dies_at(point)

    @precondition(schedulable)
    @rule(where=wheres)
    def evicted(self, where: str | int) -> None:
        self.w.evicted(where)

    @precondition(schedulable)
    @rule(action=st.sampled_from(["mark_failed", "mark_success", "clear"]), where=wheres)
    def person_stops(self, action: str, where: str | int) -> None:
        self.w.person_stops(action, where)

    @precondition(schedulable)
    @rule(action=st.sampled_from(["mark_failed", "mark_success", "clear", "evicted"]))
    def stopped_while_the_submit_answer_is_held(self, action: str) -> None:
        self.w.stopped_while_the_submit_answer_is_held(action)

    @precondition(schedulable)
    @rule(where=wheres, seen=st.sampled_from(["none", "queued"]))
    def reset_to_no_state_while_running(self, where: str | int, seen: str) -> None:
        self.w.reset_to_no_state_while_running(where, seen)

    @precondition(schedulable)
    @rule(action=st.sampled_from(["mark_failed", "mark_success", "clear", "evicted"]))
    def stopped_before_execute(self, action: str) -> None:
        self.w.stopped_before_execute(action)

    @precondition(schedulable)
    @rule(where=wheres)
    def execution_timeout(self, where: str | int) -> None:
        self.w.execution_timeout(where)

    @precondition(schedulable)
    @rule()
    def wait_limit_spent(self) -> None:
        self.w.wait_limit_spent()

    @precondition(schedulable)
    @rule(
        freeze_at=st.integers(1, 2),
        successor=st.sampled_from(["finishes", "at_observe", "while_polling", "none"]),
        thaw=st.sampled_from(["sigterm", "timeout", "resumes"]),
    )
    def zombie(self, freeze_at: int, successor: str, thaw: str) -> None:
        self.w.zombie(freeze_at, successor, thaw)

    # ---- a deferred task ----------------------------------------------------------------------

    def deferred(self) -> bool:
        return self.world is not None and self.w.deferral is not None

    @precondition(deferred)
    @rule(event=st.sampled_from(["outcome", "error", "max_attempts"]))
    def trigger_fires(self, event: str) -> None:
        self.w.trigger_fires(event)

    @precondition(deferred)
    @rule()
    def trigger_moves(self) -> None:
        self.w.trigger_moves()

    @precondition(lambda self: self.world is not None and self.w.cleared_trigger is not None)
    @rule()
    def cleared_trigger_stopped(self) -> None:
        self.w.cleared_trigger_stopped()

    @precondition(deferred)
    @rule(action=st.sampled_from(["mark_failed", "mark_success", "clear"]))
    def person_stops_deferred(self, action: str) -> None:
        self.w.person_stops_deferred(action)

    # ---- between attempts ---------------------------------------------------------------------

    @precondition(lambda self: self.world is not None)
    @rule(count=st.sampled_from([1, 2, 5, 6, 8]))
    def service_errors(self, count: int) -> None:
        self.w.service_errors(count)

    @precondition(lambda self: self.world is not None)
    @rule(op=st.sampled_from(["get", "put"]), nth=st.integers(1, 4), lost_ack=st.booleans())
    def state_store_fails(self, op: str, nth: int, lost_ack: bool) -> None:
        self.w.state_store_fails(op, nth, lost_ack)

    @precondition(lambda self: self.world is not None)
    @rule()
    def next_job_fails(self) -> None:
        self.w.next_job_fails()

    @precondition(lambda self: self.world is not None and self.w.ti.finished)
    @rule()
    def person_clears_finished_task(self) -> None:
        self.w.person_clears_finished_task()

    @precondition(lambda self: self.world is not None)
    @rule(retries=st.integers(0, 3))
    def retries_changed(self, retries: int) -> None:
        self.w.retries_changed(retries)

    @precondition(lambda self: self.world is not None and self.w.ti.finished and not self.w.running_jobs())
    @rule(same_run_after=st.booleans(), record_kept=st.booleans())
    def dag_run_recreated(self, same_run_after: bool, record_kept: bool) -> None:
        self.w.dag_run_recreated(same_run_after, record_kept)

    @precondition(schedulable)
    @rule(where=wheres)
    def dag_run_deleted_while_running(self, where: str | int) -> None:
        self.w.dag_run_deleted_while_running(where)

    @precondition(lambda self: self.world is not None and self.w.has_jobs)
    @rule()
    def job_expires(self) -> None:
        self.w.job_expires()

    @precondition(lambda self: self.world is not None and not self.w.record_corrupt and self.w.may_corrupt)
    @rule(kind=st.sampled_from(sorted(CORRUPTIONS)))
    def record_corrupted(self, kind: str) -> None:
        self.w.record_corrupted(kind)

    @precondition(lambda self: self.world is not None and self.w.record_corrupt)
    @rule()
    def person_deletes_corrupt_record(self) -> None:
        self.w.person_deletes_corrupt_record()

    @invariant()
    def guarantees_hold(self) -> None:
        if self.world is not None:
            self.w.check()
