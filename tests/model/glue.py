"""The model's World with the real Glue operator: ``ResumableGlueJobOperator`` through the amazon
provider's real hook, against moto running as an HTTP server with the kit's driver.

Glue is a discovery-based system: ``StartJobRun`` takes no idempotency token, so the token rides in
the run's arguments (``--resumable-token``) and a retry finds the run with ``GetJobRuns``. Every
request the operator (and the deferred task's trigger) makes is a real botocore call over HTTP to
moto; moto parses it, keeps the job's runs and their arguments, pages ``GetJobRuns`` and answers in
Glue's JSON.

What moto cannot say is how a run progresses in the World's terms. :class:`GlueService` keeps the
World's model of each run (a :class:`~resumable.testing.fake.FakeJob`, exactly as the fake service
keeps it: a run ends after ``polls`` status calls, a cancel may lag or stop slowly, a forgotten run
is gone), and :class:`ModelAwsEmulator` makes moto answer from it:

* a ``GetJobRun`` is one status call (it moves the run on, as the fake's ``status`` does),
  ``GetJobRuns`` one find call and ``BatchStopJobRun`` one cancel call of each run it names; the
  service's scripted outages (``fail_next_calls``) answer them with HTTP 500
  ``InternalServiceException`` (the operator's botocore client does not retry on its own, so one
  failed request is one failed call, as on the fake);
* a run moto creates (``StartJobRun``) becomes a job of the model the moment the request is served:
  the World checks guarantees 1 and 3 then, as it does for the fake;
* run states: PENDING is STARTING, RUNNING RUNNING, STOPPING STOPPING, CANCELLED STOPPED,
  SUCCEEDED SUCCEEDED, FAILED FAILED (with an ErrorMessage);
* a forgotten job (``forget``: expired, deleted) leaves moto too: ``GetJobRun`` answers
  ``EntityNotFoundException`` and ``GetJobRuns`` no longer lists it.

The World asks "who is acting" (which try made this call) from the calling thread; the requests are
served in the emulator's threads, so the operator's calls name their caller (:attr:`GlueService.caller`)
for the length of each call; a request with no caller (the deferred task's trigger, which runs on its
own hook) is the trigger's, as the World already says. The World's disruptions (after the k-th status
call, while a submit's answer is held) run in the operator's thread right after the real call
returned, before the operator sees its answer.

Rules: all of the machine's rules apply. ``idempotent`` is always False here (Glue's StartJobRun has
no token: a repeated submission starts a second run). The job's ``MaxConcurrentRuns`` is set high, so
that Glue's own refusal of a second concurrent run does not hide a second submission from the check of
guarantee 1 (the model holds the code, not Glue's guard, to "at most one active job").
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from resumable.job import JobHandle, JobState, JobStatus
from resumable.operators._aws import is_transient
from resumable.operators.glue import GLUE_JOB_RUN, ResumableGlueJobOperator
from resumable.testing.aws import GLUE_TOKEN_ARGUMENT, AwsEmulator, _Job, _json
from resumable.testing.fake import FakeJob, ServiceUnavailable
from tests.model.world import POLL_INTERVAL, TASK_ID, Attempt, ModelService, TaskInstance, World

#: One HTTP request per call: a 500 is the operator's to retry (``status_retry_attempts``), as a
#: failed call of the fake service is.
NO_BOTO_RETRIES = {"retries": {"total_max_attempts": 1, "mode": "standard"}}
#: The model's run states in Glue's words.
GLUE_STATE = {
    JobState.PENDING: "STARTING",
    JobState.RUNNING: "RUNNING",
    JobState.STOPPING: "STOPPING",
    JobState.CANCELLED: "STOPPED",
    JobState.SUCCEEDED: "SUCCEEDED",
    JobState.FAILED: "FAILED",
}
#: Glue operations that are a status, find or cancel call of the model's service.
MODELLED = frozenset({"GetJobRun", "GetJobRuns", "BatchStopJobRun"})
_jobs = itertools.count(1)
_EMULATOR: ModelAwsEmulator | None = None
_EMULATOR_LOCK = threading.Lock()
_CLIENT: Any = None


def emulator() -> ModelAwsEmulator:
    """The process's one emulator (moto's state is per process); each World resets it."""
    global _EMULATOR
    with _EMULATOR_LOCK:
        made = _EMULATOR
        if made is None:
            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
            made = ModelAwsEmulator(manual_clock=True)
            made.start()
            atexit.register(made.stop)
            _EMULATOR = made
        return made


def _outage() -> tuple[str, list[tuple[str, str]], bytes]:
    payload = json.dumps({"__type": "InternalServiceException", "message": "outage (model)"}).encode()
    return "500 Internal Server Error", [("Content-Type", "application/x-amz-json-1.1")], payload


class ModelAwsEmulator(AwsEmulator):
    """moto with the kit's driver, whose Glue runs progress as the World's service says."""

    #: The service of the World running now (one at a time in a process).
    service: GlueService | None = None

    def _register(self, kind: str, key: str, obj: Any, parent: str = "") -> None:
        new = key not in self._jobs
        super()._register(kind, key, obj, parent)
        if new and kind == "glue" and self.service is not None:
            self.service.run_created(key, str((obj.arguments or {}).get(GLUE_TOKEN_ARGUMENT, "")))

    def _glue_state(self, job: _Job, now: float) -> Any:
        fake = self.service.jobs.get(job.key) if self.service is not None else None
        if fake is None:
            return "STOPPED"  # not the model's (it forgets its runs in moto too): never seen
        if fake.state is JobState.FAILED:
            return "FAILED", "The job run failed (model)"
        return GLUE_STATE.get(fake.state, "RUNNING")

    def _intercept(
        self, service: str, operation: str, environ: dict[str, Any], body: bytes
    ) -> tuple[str, list[tuple[str, str]], bytes] | None:
        svc = self.service
        if service == "glue" and operation in MODELLED and svc is not None:
            try:
                svc.serve(operation, _json(body))
            except ServiceUnavailable:
                return _outage()
            self._sync()  # moto answers with the state the call left the run in
        return super()._intercept(service, operation, environ, body)

    def forget_run(self, job_name: str, run_id: str) -> None:
        """Glue no longer knows the run (expired after 90 days, or the job was deleted and made again)."""
        with self._lock:
            self._jobs.pop(run_id, None)
            from moto.glue.models import glue_backends

            job = glue_backends[self.account_id][self.region].jobs.get(job_name)
            if job is not None:
                job.job_runs[:] = [run for run in job.job_runs if run.job_run_id != run_id]


@dataclass
class GlueService(ModelService):
    """The World's model of the Glue job's runs, kept in step with what moto holds (module docstring)."""

    aws: Any = None
    job_name: str = ""
    #: The attempt whose operator is making a call now (None: the trigger, or the World itself).
    caller: Any = None

    def serve(self, operation: str, params: Mapping[str, Any]) -> None:
        """One Glue request, as the service's call: raises :class:`ServiceUnavailable` in an outage."""
        world = self.world
        acting = world._acting(self.caller) if world is not None and self.caller is not None else None
        with acting or contextlib.nullcontext():
            if operation == "GetJobRun":
                self._status(str(params.get("RunId", "")))
            elif operation == "GetJobRuns":
                self.find("")
            else:
                for run_id in params.get("JobRunIds", []):
                    self.cancel(str(run_id))

    def run_created(self, run_id: str, token: str) -> None:
        """moto created a run: a job of the model (what the fake's submit does when it creates one)."""
        world = self.world
        acting = world._acting(self.caller) if world is not None and self.caller is not None else None
        with acting or contextlib.nullcontext():
            with self._lock:
                self.calls["submit"] += 1
                self.submissions[token] += 1
                outcome = self.outcomes.pop(0) if self.outcomes else self.outcome
                self.jobs[run_id] = FakeJob(run_id, token, self.job_name, outcome, self.polls)
                self.created.append(run_id)
            if world is not None:
                world.job_submitted(run_id)

    def forget(self, job_id: str) -> None:
        super().forget(job_id)
        if self.aws is not None:
            self.aws.forget_run(self.job_name, job_id)

    def fire_hooks(self, which: str) -> None:
        """Run the World's disruptions due after the calls made so far (in the caller's thread)."""
        hooks = self._submit_hooks if which == "submit" else self._hooks
        count = self.calls[which]
        for due in sorted(k for k in list(hooks) if k <= count):
            hook = hooks.pop(due, None)
            if hook is not None:
                hook()

    def submit(self, token: str, name: str) -> str:
        raise NotImplementedError("the Glue model's runs are started by the operator through moto")


class ModelGlueOperator(ResumableGlueJobOperator):
    """The real Glue operator; each call names its attempt to the model and lets the World's
    disruptions happen once the real call returned (module docstring)."""

    job_contract = GLUE_JOB_RUN  # the same contract (ContractOperator asks every subclass to name it)
    model_service: GlueService

    def _calling(self, call: Callable[[], Any]) -> Any:
        svc = self.model_service
        before = svc.caller
        svc.caller = svc.world._actor() if svc.world is not None else None
        try:
            return call()
        finally:
            svc.caller = before

    def submit_job(self, context: Mapping[str, Any], token: str) -> JobHandle:
        handle = self._calling(lambda: super(ModelGlueOperator, self).submit_job(context, token))
        self.model_service.fire_hooks("submit")
        return handle  # type: ignore[no-any-return]

    def get_job_status(self, handle: JobHandle) -> JobStatus:
        status = self._calling(lambda: super(ModelGlueOperator, self).get_job_status(handle))
        self.model_service.fire_hooks("status")
        return status  # type: ignore[no-any-return]

    def cancel_job(self, handle: JobHandle) -> None:
        self._calling(lambda: super(ModelGlueOperator, self).cancel_job(handle))

    def find_job(self, context: Mapping[str, Any], token: str) -> JobHandle | None:
        return self._calling(lambda: super(ModelGlueOperator, self).find_job(context, token))  # type: ignore[no-any-return]

    def job_trigger(self, context: Mapping[str, Any], handle: JobHandle) -> Any:
        trigger = super().job_trigger(context, handle)
        trigger.job_id = handle.job_id  # the World's trigger_fires reads the run it watches here
        return trigger


class GlueWorld(World):
    """A World whose attempts run the real Glue operator against moto (module docstring)."""

    system = "glue"

    def __init__(self, *args: Any, idempotent: bool = False, **options: Any) -> None:
        # Glue's StartJobRun has no idempotency token: a repeated submission starts another run.
        super().__init__(*args, idempotent=False, **options)

    def _make_service(self, **options: Any) -> ModelService:
        return GlueService(**options)

    def _open(self) -> None:
        super()._open()
        aws = emulator()
        aws.reset()
        assert isinstance(self.svc, GlueService)
        aws.service, self.svc.aws = self.svc, aws
        self.svc.job_name = aws.create_glue_job(f"model-etl-{next(_jobs)}", max_concurrent_runs=1000)
        for name, value in aws.airflow_env("aws_default").items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def _make_operator(self, ti: TaskInstance) -> Any:
        assert isinstance(self.svc, GlueService)
        op = ModelGlueOperator(
            task_id=TASK_ID,
            job_name=self.svc.job_name,
            aws_conn_id="aws_default",
            region_name=self.svc.aws.region,
            botocore_config=NO_BOTO_RETRIES,
            poll_interval=POLL_INTERVAL,
            cancel_on_kill=self.cancel_on_kill,
            on_prior_failure=self.on_prior_failure,
            retries=ti.retries,
            deferrable=self.deferrable,
            wait_for_completion=True,
        )
        op.model_service = self.svc
        # The first attempt's hook makes its botocore client from the Airflow connection, as a worker
        # does; later attempts (of every World in this process) reuse it: making one loads Glue's
        # service model again, 0.3 s an attempt, most of a sequence's time. The hook's code is unchanged.
        global _CLIENT
        if _CLIENT is None:
            _CLIENT = op.hook.conn
        else:
            op.hook.__dict__["conn"] = _CLIENT
        return op

    def _expected_error(self, error: BaseException) -> bool:
        # The fake's outage past the operator's retries is a library error (ServiceUnavailable is a
        # TransientJobError); Glue's is the service's own: a transient ClientError (HTTP 500
        # InternalServiceException) that the operator retried status_retry_attempts times and then let
        # fail the try (Retrying(reraise=True)), for Airflow to retry. Any other ClientError is a crash.
        return super()._expected_error(error) or (isinstance(error, ClientError) and is_transient(error))

    def _check_success(self, a: Attempt) -> None:
        # The Glue operator's result is the provider's: the run id (the fake's is {"job_id", "state"}).
        super()._check_success(dataclasses.replace(a, result={"job_id": a.result}))

    def close(self) -> None:
        super().close()
        aws = emulator()
        if aws.service is self.svc:
            aws.service = None
