"""A crash lab: the embedded Airflow, the emulators and the crash DAGs, wired together.

Used by ``resumable demo``, the e2e suite and ``bench/chaos.py``::

    with CrashLab() as lab:
        run = lab.start("databricks", "resumable", duration=30)
        lab.wait_until_submitted(run)
        lab.processes(run).signal(signal.SIGKILL)
        assert lab.finish(run) == "success"
        assert lab.submitted(run) == 1

Every count is per DAG run: the emulators are shared, so the lab tells runs apart by the
idempotency token, client token or step name each submission carries, or, for the provider's
operators, which carry none of ours, by what was created while the DAG run was the only one of its
system in flight (:meth:`start` refuses a second one).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resumable import faults
from resumable.testing import bigquery as bq
from resumable.testing import dbt_cloud as dbt
from resumable.testing import snowflake as sf
from resumable.testing.aws import STOP_SECONDS, AwsEmulator, JobScript
from resumable.testing.databricks import CANCEL_SECONDS, DatabricksEmulator, RunScript
from resumable.testing.stack import AirflowStack, StackError, TaskProcesses

#: The crash DAG files, one per provider (see :mod:`resumable.testing.crash_dags`): a task parses only
#: its own DAG's file, so that none imports a provider it does not use.
DAG_FILES = tuple(sorted(Path(__file__).with_name("dags").glob("resumable_crash_*.py")))
DEMO_DAG_FILE = Path(__file__).with_name("dags") / "resumable_demo_dags.py"
SYSTEMS = (
    "databricks",
    "emr_serverless",
    "emr_steps",
    "emr_eks",
    "emr_cluster",
    "glue",
    "sagemaker_training",
    "bigquery",
    "snowflake",
    "dbt_cloud",
)
#: The crash DAGs' Glue jobs are ``<GLUE_JOB>-<contender>``: a job per contender, so that a test or
#: a bench tells their runs apart.
GLUE_JOB = "crash-etl"
_AWS_KIND = {
    "emr_serverless": "serverless",
    "emr_steps": "step",
    "emr_eks": "eks",
    "emr_cluster": "cluster",
    "glue": "glue",
    "sagemaker_training": "training",
}
#: The AWS operations a resumable operator reads a job's status with, per system.
_AWS_STATUS_CALLS = {
    "emr_serverless": ("GetJobRun",),
    "emr_steps": ("DescribeStep", "ListSteps"),
    "emr_eks": ("DescribeJobRun",),
    "emr_cluster": ("DescribeCluster",),
    "glue": ("GetJobRun",),
    "sagemaker_training": ("DescribeTrainingJob",),
}
#: The XCom each crash DAG's task pushes its job's id under, per system.
_RESULT_XCOM = {
    "databricks": "run_id",
    "emr_serverless": "return_value",
    "emr_steps": "return_value",
    "emr_eks": "return_value",
    "emr_cluster": "return_value",
    "glue": "return_value",
    "sagemaker_training": "return_value",
    "bigquery": "return_value",
    "snowflake": "query_ids",
    "dbt_cloud": "return_value",
}


def _ended(outcome: str) -> str:
    """The outcome of a BigQuery, Snowflake or dbt Cloud emulator for the lab's ``"succeed"`` and
    ``"fail"``."""
    ends = {"succeed": "success", "fail": "error"}
    if outcome not in ends:
        raise ValueError(f"these jobs succeed or fail, not {outcome!r}")
    return ends[outcome]


@dataclass(frozen=True)
class _Emulated:
    """How the lab drives and reads a system that has a loopback emulator of its own (the AWS
    systems share moto, driven through :class:`AwsEmulator`)."""

    #: A script of the emulator for a job that runs ``duration`` seconds, then ends with ``outcome``.
    script: Callable[[str, float], Any]
    #: The emulator's attribute that holds the answer to a submission this many seconds.
    hold: str
    #: The arguments of the emulator's ``outage`` that fail status reads, and that throttle cancels.
    status_outage: Mapping[str, Any]
    cancel_throttle: Mapping[str, Any]
    #: The emulator's default seconds a cancelled job stays stopping.
    cancel_seconds: float
    #: The ids of the jobs the emulator created, oldest first; the state it gives one now.
    jobs: Callable[[Any], list[str]]
    state: Callable[[Any, str], str]


_EMULATED = {
    "databricks": _Emulated(
        script=lambda outcome, duration: RunScript(outcome=outcome, duration=duration, pending=1.0),
        hold="submit_delay",
        status_outage={},
        cancel_throttle={"status": 429, "path": "runs/cancel"},
        cancel_seconds=CANCEL_SECONDS,
        jobs=lambda emulator: [str(run) for run in emulator.runs],
        state=lambda emulator, job: str(emulator.run(int(job))["state"]["life_cycle_state"]),
    ),
    "bigquery": _Emulated(
        script=lambda outcome, duration: bq.JobScript(_ended(outcome), duration, queued=1.0),
        hold="insert_delay",
        status_outage={"status": 500, "path": "{id}"},
        cancel_throttle={"status": 403, "path": "cancel"},
        cancel_seconds=bq.CANCEL_SECONDS,
        jobs=lambda emulator: list(emulator.jobs),
        state=lambda emulator, job: str(emulator.state_of(job)),
    ),
    "snowflake": _Emulated(
        script=lambda outcome, duration: sf.StatementScript(_ended(outcome), duration),
        hold="submit_delay",
        status_outage={"status": 500, "path": "{handle}"},
        cancel_throttle={"status": 429, "path": "cancel"},
        cancel_seconds=sf.CANCEL_SECONDS,
        jobs=lambda emulator: list(emulator.handles),
        state=lambda emulator, job: str(emulator.state_of(job)),
    ),
    "dbt_cloud": _Emulated(
        script=lambda outcome, duration: dbt.RunScript(_ended(outcome), duration, queued=1.0),
        hold="trigger_delay",
        status_outage={"status": 500, "path": "runs/{id}/"},
        cancel_throttle={"status": 429, "path": "cancel/"},
        cancel_seconds=dbt.CANCEL_SECONDS,
        jobs=lambda emulator: [str(run) for run in emulator.runs],
        state=lambda emulator, job: str(emulator.status_of(int(job))),
    ),
}
#: Databricks life-cycle states and AWS states after which a job does nothing any more.
_ENDED = frozenset(
    {"TERMINATED", "SKIPPED", "INTERNAL_ERROR", "SUCCESS", "COMPLETED", "FAILED", "CANCELLED", "INTERRUPTED"}
    | {"SUCCEEDED", "STOPPED", "TIMEOUT", "ERROR", "EXPIRED"}  # Glue
    | {"Completed", "Failed", "Stopped"}  # SageMaker
    | {"DONE"}  # BigQuery (a job that succeeded; FAILED and CANCELLED are above)
    | {sf.SUCCEEDED, sf.FAILED, sf.CANCELLED}  # Snowflake
    | {str(dbt.SUCCESS), str(dbt.ERROR), str(dbt.CANCELLED)}  # dbt Cloud's run statuses
)


@dataclass
class Run:
    """One DAG run of a crash DAG, and what the emulators had seen when it started."""

    system: str
    dag_id: str
    run_id: str
    started: float
    before: dict[str, Any]


@dataclass
class CrashLab:
    """Starts the emulators (real time), then Airflow with the crash DAGs pointed at them."""

    executor: str = "LocalExecutor"
    sql_alchemy_conn: str | None = None
    broker_url: str | None = None
    celery_workers: int = 0
    #: Task slots per Celery worker.
    celery_concurrency: int = 4
    #: The scheduler's and executor's limit of task instances running at once.
    parallelism: int = 8
    env: dict[str, str] = field(default_factory=dict)
    keep_home: bool = False
    #: Emulated seconds per real second on both emulators.
    speed: float = 1.0
    #: More DAG files for the DAGs folder (the crash DAGs are always there).
    dag_files: list[Path] = field(default_factory=list)

    databricks: DatabricksEmulator = field(init=False)
    aws: AwsEmulator = field(init=False)
    bigquery: bq.BigQueryEmulator = field(init=False)
    snowflake: sf.SnowflakeEmulator = field(init=False)
    dbt_cloud: dbt.DbtCloudEmulator = field(init=False)
    #: The dbt Cloud job of each contender (``resumable``, ``provider``).
    dbt_cloud_jobs: dict[str, int] = field(init=False)
    stack: AirflowStack = field(init=False)
    fault_file: str = field(init=False)

    def start(self) -> CrashLab:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
        self.databricks = DatabricksEmulator(speed=self.speed).start()
        # An account of its own: the lab's DAGs get the role from it, and emulators that tests start
        # meanwhile keep the default account their fixed role ARNs name.
        self.aws = AwsEmulator(speed=self.speed, own_account=True).start()
        self.bigquery = bq.BigQueryEmulator(speed=self.speed).start()
        self.snowflake = sf.SnowflakeEmulator(speed=self.speed).start()
        self.dbt_cloud = dbt.DbtCloudEmulator(speed=self.speed).start()
        # a dbt Cloud job per contender: dbt Cloud runs one run of a job at a time
        self.dbt_cloud_jobs = {c: self.dbt_cloud.create_job(f"crash-{c}") for c in ("resumable", "provider")}
        self.fault_file = os.path.join(tempfile.mkdtemp(prefix="resumable-faults-"), "fault.json")
        for contender in ("resumable", "provider"):  # as many concurrent runs as the scenarios leave
            self.aws.create_glue_job(f"{GLUE_JOB}-{contender}", max_concurrent_runs=1000)
        env = {
            **self.databricks.airflow_env(),
            **self.aws.airflow_env(),
            **self.bigquery.airflow_env(),
            **self.snowflake.airflow_env(),
            **self.dbt_cloud.airflow_env(),
            # the crash DAGs route the Snowflake and dbt Cloud hooks to these emulators in the workers
            "RESUMABLE_CRASH_SNOWFLAKE_URL": self.snowflake.url,
            "RESUMABLE_CRASH_SNOWFLAKE_ACCOUNT": self.snowflake.account,
            "RESUMABLE_CRASH_DBT_CLOUD_HOST": self.dbt_cloud.host,
            "RESUMABLE_CRASH_DBT_CLOUD_JOBS": json.dumps(self.dbt_cloud_jobs),
            "RESUMABLE_CRASH_APPLICATION_ID": self.aws.create_serverless_application(),
            "RESUMABLE_CRASH_ROLE_ARN": self.aws.role_arn(),
            "RESUMABLE_CRASH_CLUSTER_ID": self.aws.create_cluster(),
            "RESUMABLE_CRASH_VIRTUAL_CLUSTER_ID": self.aws.create_virtual_cluster(),
            "RESUMABLE_CRASH_GLUE_JOB": GLUE_JOB,
            "RESUMABLE_CRASH_TRAINING_DATA": self.aws.create_training_data(),
            "RESUMABLE_FAULT_FILE": self.fault_file,
            **self.env,
        }
        self.stack = AirflowStack(
            dags=[*DAG_FILES, *self.dag_files],
            env=env,
            executor=self.executor,
            sql_alchemy_conn=self.sql_alchemy_conn,
            broker_url=self.broker_url,
            celery_workers=self.celery_workers,
            celery_concurrency=self.celery_concurrency,
            parallelism=self.parallelism,
            keep_home=self.keep_home,
        )
        try:
            self.stack.start()
            # the last DAG each crash DAG file defines
            self.stack.wait_for_dags(f"crash_{system}_retry_timeout" for system in self.systems())
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def systems() -> list[str]:
        """The systems whose crash DAGs this lab has: those whose provider is installed."""
        from resumable.testing import crash_dags  # imports Airflow's task SDK

        return [s for s in SYSTEMS if crash_dags.installed(s)]

    def stop(self) -> None:
        for part in ("stack", "aws", "databricks", "bigquery", "snowflake", "dbt_cloud"):
            if hasattr(self, part):
                getattr(self, part).stop()
        if hasattr(self, "fault_file"):
            faults.disarm(self.fault_file)

    def __enter__(self) -> CrashLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- scripting the jobs and starting DAG runs --------------------------------------------

    def script(self, system: str, *durations: float, outcome: str = "succeed", replace: bool = True) -> None:
        """The next jobs of ``system`` run for these seconds each, then succeed (or fail).

        By default this replaces scripts an earlier scenario queued and did not use.
        """
        own = _EMULATED.get(system)
        if own is None:
            jobs = [JobScript(outcome, duration=d, pending=1.0) for d in durations]
            self.aws.script_next(_AWS_KIND[system], *jobs, replace=replace)
        else:
            scripts = [own.script(outcome, d) for d in durations]
            self._emulator(system).script_next(*scripts, replace=replace)

    def start_run(
        self,
        system: str,
        contender: str = "resumable",
        *,
        dag_id: str | None = None,
        conf: Mapping[str, Any] | None = None,
    ) -> Run:
        """Trigger a DAG run of ``crash_<system>_<contender>`` (or ``dag_id``), with ``conf``."""
        dag_id = dag_id or f"crash_{system}_{contender}"
        before = self.counters(system)
        run_id = self.stack.trigger(dag_id, conf=conf)
        return Run(system, dag_id, run_id, time.monotonic(), before)

    def arm(self, point: str, run: Run | None = None, *, dag_id: str = "", mode: str = "exit") -> None:
        """Make the first try of the DAG's task die at ``point`` (see :mod:`resumable.faults`)."""
        faults.arm(self.fault_file, point, mode=mode, try_number=1, dag=run.dag_id if run else dag_id)

    def disarm(self) -> None:
        faults.disarm(self.fault_file)

    def hold_submit(self, system: str, seconds: float) -> None:
        """From now on the service holds its answer to a submission for ``seconds`` after the job exists.

        A slow control plane: the job runs, the worker has not seen its id yet. ``0`` ends it.
        """
        own = _EMULATED.get(system)
        setattr(self._emulator(system), own.hold if own else "submit_delay", seconds)

    def outage(self, system: str, seconds: float) -> None:
        """For the next ``seconds``, the service answers every status read with HTTP 500."""
        own = _EMULATED.get(system)
        if own is None:
            self.aws.outage(seconds)
        else:
            self._emulator(system).outage(seconds, **own.status_outage)

    def throttle_cancels(self, system: str, seconds: float) -> None:
        """For the next ``seconds``, the service throttles every call that stops a job (HTTP 429
        ``REQUEST_LIMIT_EXCEEDED`` on Databricks, ``ThrottlingException`` on AWS, 403
        ``rateLimitExceeded`` on BigQuery)."""
        own = _EMULATED.get(system)
        if own is None:
            self.aws.throttle_cancels(seconds)
        else:
            self._emulator(system).outage(seconds, **own.cancel_throttle)

    def stop_takes(self, system: str, seconds: float | None) -> None:
        """Jobs cancelled from now on stay stopping (TERMINATING, CANCELLING, CANCEL_PENDING) this long.

        ``None`` restores the emulator's default.
        """
        own = _EMULATED.get(system)
        if own is None:
            self.aws.stop_seconds = STOP_SECONDS if seconds is None else seconds
        else:
            self._emulator(system).cancel_seconds = own.cancel_seconds if seconds is None else seconds

    def cancel_lags(self, system: str, seconds: float) -> None:
        """A cancel of ``system`` takes effect ``seconds`` after the service accepted it: the job answers
        RUNNING until then (Databricks cancels asynchronously). Only the Databricks emulator has it."""
        if system != "databricks":
            raise ValueError(f"cancel_lags is a Databricks emulator setting, not one of {system}")
        self.databricks.cancel_lag = seconds

    def advance(self, system: str, seconds: float) -> None:
        """Move the service's clock forward: every job of ``system`` is ``seconds`` further along."""
        self._emulator(system).advance(seconds)

    def _emulator(self, system: str) -> Any:
        """The emulator that serves ``system`` (moto's :class:`AwsEmulator` for the AWS systems)."""
        return getattr(self, system) if system in _EMULATED else self.aws

    # ---- what a test observes ------------------------------------------------------------------

    def counters(self, system: str) -> dict[str, Any]:
        own = _EMULATED.get(system)
        if own is None:
            created = len(self.aws.job_ids(_AWS_KIND[system]))
            return {"submitted": created, "cancelled": len(self.aws.stats()["cancels"])}
        emulator = self._emulator(system)
        return {"submitted": len(own.jobs(emulator)), "cancelled": len(emulator.cancels)}

    def submitted(self, run: Run) -> int:
        """Jobs created since ``run`` started."""
        return int(self.counters(run.system)["submitted"] - run.before["submitted"])

    def cancelled(self, run: Run) -> int:
        """Jobs cancelled since ``run`` started."""
        return int(self.counters(run.system)["cancelled"] - run.before["cancelled"])

    def cancelled_jobs(self, run: Run) -> list[str]:
        """Ids of ``run``'s jobs that were asked to cancel (each once, however many cancels it got)."""
        cancels = self._emulator(run.system).cancels
        asked = {str(job) for job in cancels}
        return [job for job in self.job_ids(run) if job in asked]

    def job_ids(self, run: Run) -> list[str]:
        """Ids of the jobs created since ``run`` started, oldest first."""
        own = _EMULATED.get(run.system)
        if own is None:
            return self.aws.job_ids(_AWS_KIND[run.system])[run.before["submitted"] :]
        return own.jobs(self._emulator(run.system))[run.before["submitted"] :]

    def job_state(self, run: Run, job_id: str) -> str:
        """The state the service gives the job now (Databricks: its life-cycle state)."""
        own = _EMULATED.get(run.system)
        if own is None:
            return self.aws.state_of(job_id)
        return own.state(self._emulator(run.system), job_id)

    def active_jobs(self, run: Run) -> list[str]:
        """Ids of the jobs created since ``run`` started that have not ended (stopping ones count)."""
        return [job for job in self.job_ids(run) if self.job_state(run, job) not in _ENDED]

    def status_calls(self, system: str) -> int:
        """Status reads the service of ``system`` has answered so far (for every DAG run)."""
        if system in _EMULATED:
            return sum(len(times) for times in self._emulator(system).polls.values())
        return sum(self.aws.calls[name] for name in _AWS_STATUS_CALLS[system])

    def task_log(self, run: Run, try_number: int) -> str:
        """The log of one try of the task, as the worker wrote it ("" before it exists)."""
        assert self.stack.home is not None
        folder = self.stack.home / "logs" / f"dag_id={run.dag_id}" / f"run_id={run.run_id}" / "task_id=job"
        path = folder / f"attempt={try_number}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def task(self, run: Run) -> dict[str, Any]:
        """The task instance ``job`` of the run, as the REST API shows it."""
        return self.stack.task_instance(run.dag_id, run.run_id, "job")

    def xcom(self, run: Run, key: str) -> Any:
        path = f"dags/{run.dag_id}/dagRuns/{run.run_id}/taskInstances/job/xcomEntries/{key}"
        return self.stack.api("GET", path, params={"deserialize": True})["value"]

    def reported_job(self, run: Run) -> str:
        """The job id the run's last try pushed to XCom (the first step id for EMR steps, the training
        job's name of SageMaker's description)."""
        value = self.xcom(run, _RESULT_XCOM[run.system])
        if isinstance(value, dict) and "Training" in value:
            value = value["Training"]["TrainingJobName"]
        return str(value[0] if isinstance(value, list) else value)

    def wait_until_submitted(self, run: Run, count: int = 1, timeout: float = 120) -> None:
        """Wait until ``count`` jobs were created for this run."""
        self.wait_on(run, lambda: self.submitted(run) >= count, f"{count} job(s) of {run.dag_id}", timeout)

    def wait_until_cancelled(self, run: Run, count: int = 1, timeout: float = 60) -> None:
        self.wait_on(
            run, lambda: self.cancelled(run) >= count, f"{count} cancel(s) for {run.dag_id}", timeout
        )

    def wait_on(self, run: Run, check: Any, what: str, timeout: float) -> None:
        """:meth:`wait`, with what the stack shows of ``run`` (its task instance, the processes' last
        log lines) in the error when the wait times out."""
        try:
            self.wait(check, what, timeout)
        except StackError as error:
            raise StackError(f"{error}\n{self.stack.diagnosis(run.dag_id, run.run_id)}") from None

    def wait_for_state(
        self, run: Run, states: tuple[str, ...], try_number: int | None = None
    ) -> dict[str, Any]:
        return self.stack.wait_for_task(run.dag_id, run.run_id, "job", states, try_number=try_number)

    def processes(self, run: Run) -> TaskProcesses:
        """The worker processes running the task now."""
        return self.stack.running_task(run.dag_id, run.run_id, "job")

    def finish(self, run: Run, timeout: float = 300) -> str:
        """Wait for the DAG run to end; returns its state."""
        return self.stack.wait_for_run(run.dag_id, run.run_id, timeout)

    @staticmethod
    def wait(check: Any, what: str, timeout: float, interval: float = 0.2) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise StackError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)
