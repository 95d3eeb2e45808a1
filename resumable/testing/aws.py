"""moto as a real HTTP server on loopback, plus a driver that makes it behave like the AWS job services
where moto does not.

The driver moves steps, EMR Serverless and EMR on EKS job runs, clusters, Glue job runs, SageMaker
training jobs, Athena queries and Redshift Data statements through their real states on a clock the
test controls, deduplicates idempotency tokens (``clientToken``, Athena's ``ClientRequestToken``,
Redshift Data's ``ClientToken``) as AWS does, implements the stop calls moto lacks (``CancelSteps``,
Glue's ``BatchStopJobRun``, ``StopTrainingJob``), throttles on demand or over a request-rate limit and
counts what was created, cancelled and consumed.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from resumable.testing._base import Emulator

#: The tag a resumable cluster carries; clusters are counted per its value.
TOKEN_TAG = "resumable-token"
KINDS = (
    "step",
    "serverless",
    "eks",
    "cluster",
    "glue",
    "training",
    "processing",
    "athena",
    "statement",
    "batch",
)
#: The Glue job run argument a resumable Glue run carries, whose value is the submission's token.
GLUE_TOKEN_ARGUMENT = "--resumable-token"
#: Services that speak AWS's JSON 1.1 protocol (errors as ``{"__type": ...}`` with HTTP 400).
_JSON_SERVICES = frozenset({"emr", "glue", "sagemaker", "athena", "redshift-data"})
#: Emulated seconds a cancel or a termination takes to finish, unless :attr:`AwsEmulator.stop_seconds`
#: says otherwise.
STOP_SECONDS = 1.0
#: Operations that create a job; :attr:`AwsEmulator.submit_delay` holds their answers.
SUBMIT_OPERATIONS = frozenset(
    {
        "StartJobRun",
        "AddJobFlowSteps",
        "RunJobFlow",
        "CreateTrainingJob",
        "StartQueryExecution",
        "ExecuteStatement",
        "SubmitJob",
        "CreateProcessingJob",
    }
)
#: Operations that read a job's status; :meth:`AwsEmulator.outage` answers them with 500.
STATUS_OPERATIONS = frozenset(
    {
        "GetJobRun",
        "GetJobRuns",
        "DescribeJobRun",
        "DescribeStep",
        "ListSteps",
        "DescribeCluster",
        "DescribeTrainingJob",
        "GetQueryExecution",
        "DescribeStatement",
        "DescribeJobs",
        "ListJobs",
        "DescribeProcessingJob",
    }
)
#: The calls that stop a job: EMR steps, EMR Serverless and EMR on EKS job runs, clusters, Glue job runs,
#: training jobs, Athena queries, Redshift Data statements.
CANCEL_OPERATIONS = frozenset(
    {
        "CancelSteps",
        "CancelJobRun",
        "TerminateJobFlows",
        "BatchStopJobRun",
        "StopTrainingJob",
        "StopQueryExecution",
        "CancelStatement",
        "TerminateJob",
        "CancelJob",
        "StopProcessingJob",
    }
)
#: Per service with an idempotency token in a JSON body: the token's field and the answer's job id field.
_TOKENS = {"athena": ("ClientRequestToken", "QueryExecutionId"), "redshift-data": ("ClientToken", "Id")}
#: Status reads that take the job's id in a JSON body, and the field that carries it.
_POLLED_BY = {
    "GetJobRun": "RunId",
    "GetQueryExecution": "QueryExecutionId",
    "DescribeStatement": "Id",
    "DescribeProcessingJob": "ProcessingJobName",
}
ACCOUNT = "123456789012"
#: moto's services the driver resets whole (their modules under ``moto``); SageMaker keeps its
#: other resources and loses its jobs only.
MOTO_SERVICES = ("emr", "emrserverless", "emrcontainers", "glue", "athena", "redshiftdata", "batch")
#: What the emulator's own fixture requests (:meth:`AwsEmulator.create_cluster` and the like) add to
#: their User-Agent: the rate limit lets them through and does not spend a token on them.
_FIXTURE_AGENT = "resumable-emulator-fixture"
# moto keeps its state per process. Emulators running at the same time act in accounts of their
# own, so that one emulator's reset does not wipe another's clusters; the first is ACCOUNT.
_LIVE_ACCOUNTS: set[str] = set()
_ACCOUNTS_LOCK = threading.Lock()


def _take_account(own: bool) -> str:
    if os.environ.get("MOTO_ACCOUNT_ID"):  # moto itself then ignores the account we ask for
        return os.environ["MOTO_ACCOUNT_ID"]
    with _ACCOUNTS_LOCK:
        n = 1 if own else 0
        while f"{int(ACCOUNT) + n:012d}" in _LIVE_ACCOUNTS:
            n += 1
        account = f"{int(ACCOUNT) + n:012d}"
        _LIVE_ACCOUNTS.add(account)
        return account


@dataclass(frozen=True)
class JobScript:
    """How one step, job run or cluster behaves: seconds waiting, seconds running, then its outcome."""

    outcome: str = "succeed"
    duration: float = 10.0
    pending: float = 1.0

    def __post_init__(self) -> None:
        if self.outcome not in ("succeed", "fail", "hang"):
            raise ValueError(f"outcome must be 'succeed', 'fail' or 'hang', not {self.outcome!r}")


@dataclass(frozen=True)
class _Words:
    """One service's words for a job's life on the clock: its two waiting states (the first and the
    second half of the scripted wait), running, succeeded, failed, stopping and stopped, and the reason
    a failed job gives where the service reports one."""

    waiting: tuple[str, str]
    running: str
    succeeded: str
    failed: str
    stopping: str
    stopped: str
    failure: str = ""


_WORDS = {
    "serverless": _Words(
        ("SUBMITTED", "SCHEDULED"), "RUNNING", "SUCCESS", "FAILED", "CANCELLING", "CANCELLED"
    ),
    "eks": _Words(("PENDING", "SUBMITTED"), "RUNNING", "COMPLETED", "FAILED", "CANCEL_PENDING", "CANCELLED"),
    "glue": _Words(
        ("STARTING", "STARTING"),
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
        "STOPPING",
        "STOPPED",
        "The job run failed: the script said so",
    ),
    # Athena has no stopping state of its own: a stopped query reads RUNNING until CANCELLED.
    "athena": _Words(
        ("QUEUED", "QUEUED"),
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
        "RUNNING",
        "CANCELLED",
        "GENERIC_INTERNAL_ERROR: the script said so",
    ),
    "statement": _Words(
        ("SUBMITTED", "PICKED"),
        "STARTED",
        "FINISHED",
        "FAILED",
        "STARTED",
        "ABORTED",
        "ERROR: the script said so",
    ),
    # Batch has no cancelled state: a terminated job is FAILED, with the reason it was stopped for.
    "batch": _Words(
        ("RUNNABLE", "STARTING"),
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
        "RUNNING",
        "FAILED",
        "Essential container in task exited",
    ),
}
_WORDS["training"] = _WORDS["processing"] = _Words(
    ("InProgress", "InProgress"),
    "InProgress",
    "Completed",
    "Failed",
    "Stopping",
    "Stopped",
    "AlgorithmError: the script said so",
)


@dataclass
class _Job:
    """The kit's view of one moto object: when it was created, its script and when it was stopped."""

    kind: str
    key: str
    obj: Any
    script: JobScript
    created: float
    stop_at: float | None = None
    parent: str = ""
    #: Emulated seconds this job takes to stop once it was cancelled or terminated.
    stop_seconds: float = STOP_SECONDS
    #: Why it was stopped, where the service reports it (an AWS Batch job's ``statusReason``).
    stop_reason: str = ""

    def end(self) -> float | None:
        return (
            None
            if self.script.outcome == "hang"
            else self.created + self.script.pending + self.script.duration
        )


class AwsEmulator(Emulator):
    """moto's server for EMR, EMR Serverless and EMR on EKS on 127.0.0.1, driven like the real services.

    Use it as a context manager (or :meth:`start` / :meth:`stop`); :meth:`use_as` makes it an
    Airflow AWS connection. The clock runs at ``speed`` emulated seconds per real second, or only
    when :meth:`advance` is called with ``manual_clock=True``.

    ``rate_limit_per_second`` turns on the request-rate limit of :meth:`rate_limit` from the start.
    It limits every request to any of the services but the emulator's own fixture requests
    (:meth:`create_cluster` and the like); one over the limit is answered ``ThrottlingException``
    exactly as :meth:`throttle_next` answers it and is counted in :attr:`throttled` (and, like every
    request, in :attr:`calls`).
    """

    default_conn_id = "aws_default"

    def __init__(
        self,
        *,
        speed: float = 1.0,
        manual_clock: bool = False,
        region: str = "us-east-1",
        default_script: JobScript | None = None,
        own_account: bool = False,
        rate_limit_per_second: float | None = None,
    ) -> None:
        super().__init__(speed=speed, manual_clock=manual_clock)
        #: The AWS account this emulator's requests act in, chosen at start: ACCOUNT, unless another
        #: emulator in this process holds it then or ``own_account`` is set (for a long-lived emulator
        #: that must leave ACCOUNT to others). An execution role must name it: :meth:`role_arn`.
        self.account_id = ACCOUNT
        self.own_account = own_account
        self.region = region
        self.default_script = default_script or JobScript()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._clear()
        if rate_limit_per_second is not None:
            self.rate_limit(rate_limit_per_second)

    def _clear(self) -> None:
        self._limit.refill()
        self._jobs: dict[str, _Job] = {}
        self._queues: dict[str, list[JobScript]] = {kind: [] for kind in KINDS}
        self._tokens: dict[tuple[str, str], dict[str, Any]] = {}
        self._throttle: list[str | None] = []
        self._fixed: set[str] = set()
        #: Steps created, per step ``Name``.
        self.steps_created: Counter[str] = Counter()
        #: Serverless and EKS job runs actually created, per ``clientToken``.
        self.job_runs_created: Counter[str] = Counter()
        #: Every Serverless and EKS ``StartJobRun`` request per ``clientToken``, repeats included.
        self.start_requests: Counter[str] = Counter()
        #: Clusters created by ``RunJobFlow``, per value of the ``resumable-token`` tag ("" without it).
        self.clusters_created: Counter[str] = Counter()
        #: Glue job runs created, per value of the ``--resumable-token`` argument ("" without it).
        self.glue_runs_created: Counter[str] = Counter()
        #: SageMaker training jobs created, per name (a repeated name is refused, as SageMaker does).
        self.training_jobs_created: Counter[str] = Counter()
        #: Athena queries created, per ``ClientRequestToken`` ("" without one).
        self.queries_created: Counter[str] = Counter()
        #: Redshift Data statements created, per ``ClientToken`` ("" without one).
        self.statements_created: Counter[str] = Counter()
        #: SageMaker processing jobs created, per name (a repeated name is refused, as SageMaker does).
        self.processing_jobs_created: Counter[str] = Counter()
        #: AWS Batch jobs created, per value of the ``resumable-token`` tag ("" without it).
        self.batch_jobs_created: Counter[str] = Counter()
        #: The token each Athena query or Redshift Data statement was created with, per its id.
        self._token_of: dict[str, str] = {}
        #: Step, job run and cluster ids cancelled or terminated, in order.
        self.cancels: list[str] = []
        #: API calls per operation name, e.g. ``"AddJobFlowSteps"``, ``"GetJobRun"``.
        self.calls: Counter[str] = Counter()
        #: Wall-clock times (``time.time()``) of the status reads per job id: ``GetJobRun`` (Serverless,
        #: EKS, Glue), ``GetQueryExecution`` (Athena), ``DescribeStatement`` (Redshift Data).
        self.polls: dict[str, list[float]] = {}
        #: The part of ``calls`` made by async clients (aiobotocore: the amazon provider's triggers).
        self.async_calls: Counter[str] = Counter()
        #: Calls refused by the rate limit (:meth:`rate_limit`), per operation name; they are counted in
        #: :attr:`calls` too. Calls refused by :meth:`throttle_next` are not counted here.
        self.throttled: Counter[str] = Counter()
        #: Real seconds a StartJobRun, AddJobFlowSteps or RunJobFlow holds its answer after the job
        #: exists: a test can stop or kill the caller in that window, before it has seen the job's id.
        self.submit_delay: float = 0.0
        #: Emulated seconds a job cancelled (or a cluster terminated) from now on stays CANCELLING,
        #: CANCEL_PENDING or TERMINATING before it is CANCELLED or TERMINATED.
        self.stop_seconds: float = STOP_SECONDS
        #: Until this ``time.monotonic()``, status reads are answered with HTTP 500 (:meth:`outage`).
        self._outage_until = 0.0
        self._cancels_throttled_until = 0.0
        #: Status reads answered with 500 during an outage, per operation name.
        self.outage_answers: Counter[str] = Counter()

    # ---- life ---------------------------------------------------------------------------------

    def start(self) -> AwsEmulator:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        _patch_moto_status()
        self.account_id = _take_account(self.own_account)
        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(
            "127.0.0.1", 0, self._middleware(app), True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="aws-emulator", daemon=True)
        self._thread.start()
        self._restart_clock()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._reset_moto()
        with _ACCOUNTS_LOCK:
            _LIVE_ACCOUNTS.discard(self.account_id)

    def role_arn(self, name: str = "emr-job") -> str:
        """An IAM role ARN in this emulator's account (EMR Serverless refuses another account's role)."""
        return f"arn:aws:iam::{self.account_id}:role/{name}"

    def reset(self) -> None:
        """Forget every cluster, application, job run, script, fault and counter.

        The rate limit set by :meth:`rate_limit` is part of how the service is configured, not of
        what happened, so it stays; its bucket is refilled, as after a quiet spell.
        """
        with self._lock:
            self._reset_moto()
            self._clear()

    def _reset_moto(self) -> None:
        from moto.s3.models import s3_backends

        for service in MOTO_SERVICES:
            with contextlib.suppress(KeyError):
                self._backend(service).reset()
        with contextlib.suppress(KeyError):
            sagemaker = self._backend("sagemaker")
            sagemaker.training_jobs.clear()
            sagemaker.processing_jobs.clear()
        with contextlib.suppress(KeyError):
            s3_backends[self.account_id]["global"].reset()

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not running: use it as a context manager or call start()")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def connection(self) -> dict[str, Any]:
        """The Airflow AWS connection (as a dict) that points the amazon provider's hooks here."""
        return {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": self.endpoint_url, "region_name": self.region},
        }

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client for ``service`` pointed at the emulator (``kwargs`` go to ``boto3.client``)."""
        import boto3

        return boto3.client(
            service,
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            **kwargs,
        )

    def _fixture_client(self, service: str) -> Any:
        """A client for the emulator's own fixture requests, which the rate limit lets through."""
        from botocore.config import Config

        return self.client(service, config=Config(user_agent_extra=_FIXTURE_AGENT))

    # ---- clock, fixtures, scripts, faults ------------------------------------------------------

    def script_next(self, kind: str, *scripts: JobScript, replace: bool = False) -> None:
        """The next jobs of ``kind`` ("step", "serverless", "eks", "cluster") behave like these, in order.

        ``replace=True`` first drops scripts queued earlier and not used yet.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        with self._lock:
            if replace:
                self._queues[kind].clear()
            self._queues[kind].extend(scripts)

    def throttle_next(self, n: int, service: str | None = None) -> None:
        """Throttle the next ``n`` calls (to "emr", "emr-serverless" or "emr-containers"; None: any)."""
        with self._lock:
            self._throttle = [service] * n

    def create_cluster(
        self, name: str = "test-cluster", *, state: str = "WAITING", step_concurrency: int = 1
    ) -> str:
        """A cluster that is ``state`` from the start (steps can be added while it is WAITING or RUNNING)."""
        response = self._fixture_client("emr").run_job_flow(
            Name=name,
            ReleaseLabel="emr-7.0.0",
            Instances={
                "InstanceGroups": [
                    {
                        "Name": "primary",
                        "InstanceRole": "MASTER",
                        "InstanceType": "m5.xlarge",
                        "InstanceCount": 1,
                    }
                ],
                "KeepJobFlowAliveWhenNoSteps": True,
            },
            StepConcurrencyLevel=step_concurrency,
            JobFlowRole="EMR_EC2_DefaultRole",
            ServiceRole="EMR_DefaultRole",
        )
        cluster_id = str(response["JobFlowId"])
        with self._lock:
            self._fixed.add(cluster_id)
            if self._jobs.pop(cluster_id, None) is not None:  # a fixture is not what a test counts
                self.clusters_created[""] -= 1
                if self.clusters_created[""] <= 0:
                    del self.clusters_created[""]
            self._cluster(cluster_id).state = state
        return cluster_id

    def create_serverless_application(self, name: str = "app", release_label: str = "emr-7.0.0") -> str:
        """A started EMR Serverless application; returns its id."""
        client = self._fixture_client("emr-serverless")
        app_id = str(
            client.create_application(name=name, releaseLabel=release_label, type="SPARK")["applicationId"]
        )
        client.start_application(applicationId=app_id)
        return app_id

    def create_glue_job(self, name: str = "etl", *, max_concurrent_runs: int = 1) -> str:
        """A Glue job (a script, a role and ``MaxConcurrentRuns``) to start runs of; returns its name."""
        self._fixture_client("glue").create_job(
            Name=name,
            Role=self.role_arn("glue-job"),
            Command={"Name": "glueetl", "ScriptLocation": f"s3://scripts/{name}.py"},
            ExecutionProperty={"MaxConcurrentRuns": max_concurrent_runs},
        )
        return name

    def create_batch_queue(self, name: str = "jobs") -> tuple[str, str]:
        """An AWS Batch job queue on an unmanaged compute environment, and a container job definition
        ``<name>-etl``; returns (queue name, job definition name)."""
        batch, iam = self._fixture_client("batch"), self._fixture_client("iam")
        with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
            iam.create_role(RoleName="batch-service", AssumeRolePolicyDocument="{}")
        environment = batch.create_compute_environment(
            computeEnvironmentName=f"{name}-env",
            type="UNMANAGED",
            state="ENABLED",
            serviceRole=self.role_arn("batch-service"),
        )["computeEnvironmentArn"]
        batch.create_job_queue(
            jobQueueName=name,
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment}],
        )
        definition = f"{name}-etl"
        batch.register_job_definition(
            jobDefinitionName=definition,
            type="container",
            containerProperties={"image": "etl:1", "vcpus": 1, "memory": 512, "command": ["etl"]},
        )
        return name, definition

    def create_training_data(self, bucket: str = "training", key: str = "data/train.csv") -> str:
        """An S3 object for a training job's input channel (the provider checks it exists); returns
        the ``s3://`` prefix it is under."""
        s3 = self._fixture_client("s3")
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key=key, Body=b"x,y\n1,2\n")
        return f"s3://{bucket}/{key.rsplit('/', 1)[0]}/"

    def create_virtual_cluster(self, name: str = "vc") -> str:
        """An EMR on EKS virtual cluster; returns its id."""
        response = self._fixture_client("emr-containers").create_virtual_cluster(
            name=name,
            containerProvider={"id": "eks-cluster", "type": "EKS", "info": {"eksInfo": {"namespace": name}}},
        )
        return str(response["id"])

    # ---- what tests assert ---------------------------------------------------------------------

    def state_of(self, job_id: str) -> str:
        """The current state of a step, job run or cluster, as the API would say it."""
        with self._lock:
            self._sync()
            return str(self._jobs[job_id].obj.state)

    def job_ids(self, kind: str) -> list[str]:
        """Ids of the steps (``"step"``), job runs (``"serverless"``, ``"eks"``) or clusters, oldest first."""
        with self._lock:
            self._sync()
            return [key for key, job in self._jobs.items() if job.kind == kind]

    def jobs_named(self, name: str) -> list[dict[str, Any]]:
        """The steps, job runs and clusters called ``name``, oldest first: id, kind, state, cancelled."""
        with self._lock:
            self._sync()
            return [
                {
                    "id": job.key,
                    "kind": job.kind,
                    "state": str(job.obj.state),
                    "cancelled": job.key in self.cancels,
                }
                for job in self._jobs.values()
                if getattr(job.obj, "name", None) == name
            ]

    def glue_runs(self, job_name: str) -> list[str]:
        """Ids of the runs of the Glue job ``job_name``, oldest first."""
        with self._lock:
            self._sync()
            return [key for key, job in self._jobs.items() if job.kind == "glue" and job.parent == job_name]

    def compute_seconds(self, name: str | None = None, *, job_id: str | None = None) -> float:
        """Emulated seconds all steps, job runs and clusters (called ``name``, or the one ``job_id``,
        if given) spent running."""
        with self._lock:
            now = self.now()
            total = 0.0
            for job in self._jobs.values():
                if name is not None and getattr(job.obj, "name", None) != name:
                    continue
                if job_id is not None and job.key != job_id:
                    continue
                begin = self._begin(job)
                if begin is None:
                    continue
                end = job.end() if job.kind != "step" else self._step_end(job)
                stop = min(x for x in (now, end, job.stop_at) if x is not None)
                total += max(0.0, stop - begin - job.script.pending)
            return total

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "steps_created": dict(self.steps_created),
                "job_runs_created": dict(self.job_runs_created),
                "start_requests": dict(self.start_requests),
                "clusters_created": dict(self.clusters_created),
                "glue_runs_created": dict(self.glue_runs_created),
                "training_jobs_created": dict(self.training_jobs_created),
                "cancels": list(self.cancels),
                "calls": dict(self.calls),
                "async_calls": dict(self.async_calls),
                "throttled": dict(self.throttled),
                "compute_seconds": round(self.compute_seconds(), 3),
            }

    # ---- the driver ----------------------------------------------------------------------------

    def _backend(self, service: str) -> Any:
        """moto's backend of ``service`` (``emr``, ``glue``, ``redshiftdata``...: its module under
        ``moto``) in this emulator's account and region."""
        module = importlib.import_module(f"moto.{service}.models")
        return getattr(module, f"{service}_backends")[self.account_id][self.region]

    def _cluster(self, cluster_id: str) -> Any:
        return self._backend("emr").clusters[cluster_id]

    def _register(self, kind: str, key: str, obj: Any, parent: str = "") -> None:
        if key in self._jobs:
            return
        queue = self._queues[kind]
        script = queue.pop(0) if queue else self.default_script
        self._jobs[key] = _Job(kind, key, obj, script, self.now(), parent=parent)
        if kind in ("serverless", "eks"):  # moto truncates createdAt to midnight; AWS keeps the time
            from moto.core.utils import utcnow

            obj.created_at = obj.updated_at = utcnow()
        if kind == "statement":  # moto keeps whole seconds of local time; AWS keeps milliseconds
            from moto.core.utils import utcnow

            obj.created_at = obj.updated_at = utcnow().isoformat(timespec="milliseconds") + "Z"

    def _discover(self) -> None:
        for cluster_id, cluster in self._backend("emr").clusters.items():
            if cluster_id not in self._fixed and cluster_id not in self._jobs:
                self._register("cluster", cluster_id, cluster)
                self.clusters_created[dict(cluster._tags).get(TOKEN_TAG, "")] += 1
            for step in cluster.steps:
                if step.id not in self._jobs:
                    self._register("step", step.id, step, parent=cluster_id)
                    self.steps_created[step.name] += 1
        for runs in self._backend("emrserverless").job_runs.values():
            for run in runs:
                if run.id not in self._jobs:
                    self._register("serverless", run.id, run)
                    self.job_runs_created[run.client_token] += 1
        for run in self._backend("emrcontainers").job_runs.values():
            if run.id not in self._jobs:
                self._register("eks", run.id, run)
                self.job_runs_created[run.client_token] += 1
        for glue_job in self._backend("glue").jobs.values():
            for run in glue_job.job_runs:
                if run.job_run_id not in self._jobs:
                    self._register("glue", run.job_run_id, run, parent=glue_job.name)
                    self.glue_runs_created[(run.arguments or {}).get(GLUE_TOKEN_ARGUMENT, "")] += 1
        for name, training_job in self._backend("sagemaker").training_jobs.items():
            if name not in self._jobs:
                self._register("training", name, training_job)
                self.training_jobs_created[name] += 1
        for name, processing_job in self._backend("sagemaker").processing_jobs.items():
            if name not in self._jobs:
                self._register("processing", name, processing_job)
                self.processing_jobs_created[name] += 1
        for query_id, query in self._backend("athena").executions.items():
            if query_id not in self._jobs:
                self._register("athena", query_id, query)
                self.queries_created[self._token_of.get(query_id, "")] += 1
        batch = self._backend("batch")
        for batch_id, batch_job in list(batch._jobs.items()):
            if batch_id not in self._jobs:
                self._register("batch", batch_id, batch_job)
                tags = batch.list_tags_for_resource(batch_job.arn)
                self.batch_jobs_created[tags.get(TOKEN_TAG, "")] += 1
        for statement_id, statement in self._backend("redshiftdata").statements.items():
            if statement_id not in self._jobs:
                self._register("statement", statement_id, statement)
                self.statements_created[self._token_of.get(statement_id, "")] += 1

    def _begin(self, job: _Job) -> float | None:
        if job.kind != "step":
            return job.created
        return self._step_begin(job)

    def _steps_of(self, cluster_id: str) -> list[_Job]:
        return sorted(
            (j for j in self._jobs.values() if j.kind == "step" and j.parent == cluster_id),
            key=lambda j: j.created,
        )

    def _step_begin(self, job: _Job) -> float | None:
        """Steps run one at a time, in order: a step starts when the one before it ended."""
        free = 0.0
        for step in self._steps_of(job.parent):
            begin = max(step.created, free)
            if step.key == job.key:
                return begin
            end = self._step_end(step, begin)
            if end is None:
                return None
            free = end
        return None

    def _step_end(self, job: _Job, begin: float | None = None) -> float | None:
        if begin is None:
            begin = self._step_begin(job)
        if begin is None:
            return None
        if job.stop_at is not None and job.stop_at < begin + job.script.pending:
            return max(job.stop_at, begin)  # cancelled while pending: never ran
        natural = None if job.script.outcome == "hang" else begin + job.script.pending + job.script.duration
        if job.stop_at is not None and (natural is None or job.stop_at < natural):
            return job.stop_at + job.stop_seconds
        return natural

    def _sync(self) -> None:
        """Set every moto object's state from the clock."""
        self._discover()
        now = self.now()
        for job in self._jobs.values():
            state = getattr(self, f"_{job.kind}_state", self._plain_state)(job, now)
            if isinstance(state, tuple):
                state, reason = state
                job.obj.resumable_reason = reason
            job.obj.state = state
        for cluster_id, cluster in self._backend("emr").clusters.items():
            if cluster_id in self._fixed and cluster.state in ("WAITING", "RUNNING"):
                active = any(
                    j.obj.state in ("PENDING", "RUNNING", "CANCEL_PENDING")
                    for j in self._steps_of(cluster_id)
                )
                cluster.state = "RUNNING" if active else "WAITING"

    def _phase(self, job: _Job, now: float, begin: float) -> str:
        if now < begin + job.script.pending:
            return "pending"
        end = None if job.script.outcome == "hang" else begin + job.script.pending + job.script.duration
        if end is None or now < end:
            return "running"
        return job.script.outcome

    def _step_state(self, job: _Job, now: float) -> Any:
        cluster = self._cluster(job.parent)
        begin = self._step_begin(job)
        killed_at = getattr(cluster, "resumable_terminated_at", None)
        if job.stop_at is not None and now >= job.stop_at:
            ran = begin is not None and job.stop_at >= begin + job.script.pending
            if not ran:
                return "CANCELLED"
            return "CANCEL_PENDING" if now < job.stop_at + job.stop_seconds else "CANCELLED"
        if begin is None or now < begin:
            state = "PENDING"
        else:
            phase = self._phase(job, now, begin)
            state = {"pending": "PENDING", "running": "RUNNING", "succeed": "COMPLETED", "fail": "FAILED"}[
                phase
            ]
        if killed_at is not None and now >= killed_at and state in ("PENDING", "RUNNING"):
            return "INTERRUPTED" if state == "RUNNING" else "CANCELLED"
        if state == "FAILED":
            return "FAILED", "The step failed: the script said so"
        return state

    def _cluster_state(self, job: _Job, now: float) -> Any:
        if job.stop_at is not None and now >= job.stop_at:
            if now < job.stop_at + job.stop_seconds:
                return "TERMINATING", ""
            return "TERMINATED", "USER_REQUEST"
        if now < job.created + job.script.pending:
            return "STARTING"
        phase = self._phase(job, now, job.created)
        if phase in ("pending", "running"):
            return "BOOTSTRAPPING"
        if phase == "fail":
            return "TERMINATED_WITH_ERRORS", "BOOTSTRAP_FAILURE"
        steps = self._steps_of(job.key)
        active = any(self._step_state(s, now) in ("PENDING", "RUNNING", "CANCEL_PENDING") for s in steps)
        if active:
            return "RUNNING"
        if not job.obj.keep_job_flow_alive_when_no_steps:
            return "TERMINATED", "ALL_STEPS_COMPLETED"
        return "WAITING"

    def _words_state(self, job: _Job, now: float) -> str:
        """The job's state on the clock, in its service's words (:data:`_WORDS`)."""
        words = _WORDS[job.kind]
        if job.stop_at is not None and now >= job.stop_at:
            return words.stopping if now < job.stop_at + job.stop_seconds else words.stopped
        if now < job.created + job.script.pending:
            first, second = words.waiting
            return first if now < job.created + job.script.pending / 2 else second
        phase = self._phase(job, now, job.created)
        return {"running": words.running, "succeed": words.succeeded, "fail": words.failed}[phase]

    def _plain_state(self, job: _Job, now: float) -> Any:
        """:meth:`_words_state`, with the failure's reason where the service gives one."""
        state, words = self._words_state(job, now), _WORDS[job.kind]
        return (state, words.failure) if state == words.failed and words.failure else state

    def _training_state(self, job: _Job, now: float) -> Any:
        state = self._plain_state(job, now)
        job.obj.training_job_status = job.obj.secondary_status = (
            state[0] if isinstance(state, tuple) else state
        )
        return state

    def _processing_state(self, job: _Job, now: float) -> Any:
        state = self._words_state(job, now)
        job.obj.processing_job_status = state
        job.obj.failure_reason = _WORDS["processing"].failure if state == "Failed" else None
        return state

    def _statement_state(self, job: _Job, now: float) -> Any:
        state = self._plain_state(job, now)
        job.obj.status = state[0] if isinstance(state, tuple) else state  # moto answers this attribute
        return state

    def _batch_state(self, job: _Job, now: float) -> Any:
        state = self._words_state(job, now)  # Batch has no cancelled state: a stopped job is FAILED
        stopped = job.stop_at is not None and now >= job.stop_at + job.stop_seconds
        reason = job.stop_reason if stopped else _WORDS["batch"].failure if state == "FAILED" else None
        job.obj.job_stopped_reason = reason
        return (state, reason) if reason else state

    def _stop(self, key: str) -> None:
        job = self._jobs.get(key)
        self.cancels.append(key)
        if job is not None and job.stop_at is None:
            job.stop_at = self.now()
            job.stop_seconds = self.stop_seconds

    # ---- the HTTP side -------------------------------------------------------------------------

    def _middleware(self, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = _Replay(body)
            environ["HTTP_X_MOTO_ACCOUNT_ID"] = self.account_id
            service = _service(environ)
            operation = _operation(service, environ)
            with self._lock:
                self.calls[operation] += 1
                if operation == "DescribeJobs":
                    for job_id in _json(body).get("jobs", []):
                        self.polls.setdefault(str(job_id), []).append(time.time())
                if operation in _POLLED_BY:
                    job_id = (
                        str(_json(body).get(_POLLED_BY[operation], ""))
                        if service in _JSON_SERVICES
                        else environ.get("PATH_INFO", "").rstrip("/").split("/")[-1]
                    )
                    self.polls.setdefault(job_id, []).append(time.time())
                if "aiobotocore" in environ.get("HTTP_USER_AGENT", ""):
                    self.async_calls[operation] += 1
                self._sync()
                answer = self._intercept(service, operation, environ, body)
                if answer is None:
                    captured: dict[str, Any] = {}

                    def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                        captured["status"], captured["headers"] = status, headers
                        return lambda data: None

                    chunks = b"".join(app(environ, capture))
                    if operation in SUBMIT_OPERATIONS and captured["status"].startswith("200"):
                        self._remember_token(service, body, chunks)
                    self._sync()
                    answer = (captured["status"], captured["headers"], chunks)
                delay = self.submit_delay if operation in SUBMIT_OPERATIONS else 0.0
            if delay and answer[0].startswith("200"):
                time.sleep(delay)  # the job exists; the caller does not know its id yet
            status, headers, payload = answer
            start_response(status, headers)
            return [payload]

        return serve

    def outage(self, seconds: float) -> None:
        """For the next ``seconds`` (real time), every status read (GetJobRun, DescribeJobRun,
        DescribeStep, ListSteps, DescribeCluster) is answered with HTTP 500 InternalServerException, for
        every client: a service blip longer than botocore's own retries, with an error code that the
        amazon provider's waiters do not retry either."""
        with self._lock:
            self._outage_until = time.monotonic() + seconds

    def throttle_cancels(self, seconds: float) -> None:
        """For the next ``seconds`` (real time), every call that stops a job (CancelSteps, CancelJobRun,
        TerminateJobFlows) is throttled, as a service under load throttles a burst of calls."""
        with self._lock:
            self._cancels_throttled_until = time.monotonic() + seconds

    def _intercept(
        self, service: str, operation: str, environ: dict[str, Any], body: bytes
    ) -> tuple[str, list[tuple[str, str]], bytes] | None:
        if operation in CANCEL_OPERATIONS and time.monotonic() < self._cancels_throttled_until:
            self.throttled[operation] += 1
            return _throttled(service)
        if operation in STATUS_OPERATIONS and time.monotonic() < self._outage_until:
            self.outage_answers[operation] += 1
            if service in _JSON_SERVICES:
                code = "InternalServiceException" if service == "glue" else "InternalServerException"
                payload = json.dumps({"__type": code, "message": "outage"}).encode()
                return "500 Internal Server Error", [("Content-Type", "application/x-amz-json-1.1")], payload
            return _rest_error(500, "InternalServerException", "Internal server error (outage)")
        if _FIXTURE_AGENT not in environ.get("HTTP_USER_AGENT", "") and not self._limit.take():
            self.throttled[operation] += 1
            return _throttled(service)
        if self._throttle and (self._throttle[0] is None or self._throttle[0] == service):
            self._throttle.pop(0)
            return _throttled(service)
        params = _json(body)
        if service == "emr":
            cluster_id = params.get("ClusterId")
            if cluster_id and cluster_id not in self._backend("emr").clusters:
                return _emr_error("InvalidRequestException", f"Cluster id '{cluster_id}' is not valid.")
            if operation == "CancelSteps":
                return self._cancel_steps(params)
            if operation == "TerminateJobFlows":
                return self._terminate(params.get("JobFlowIds", []))
        if service == "glue":
            return self._glue_call(operation, params)
        if service == "sagemaker":
            return self._sagemaker_call(operation, params)
        if service in ("athena", "redshift-data"):
            return self._query_call(service, operation, params)
        if service == "batch" and operation in ("TerminateJob", "CancelJob"):
            return self._stop_batch_job(operation, params)
        if operation == "StartJobRun":
            token = str(params.get("clientToken", ""))
            self.start_requests[token] += 1
            known = self._tokens.get((service, token))
            if known is not None:
                return "200 OK", [("Content-Type", "application/json")], json.dumps(known).encode()
        if operation == "CancelJobRun":
            job_id = environ.get("PATH_INFO", "").rstrip("/").split("/")[-1]
            job = self._jobs.get(job_id)
            if job is not None and job.obj.state in ("SUCCESS", "FAILED", "CANCELLED", "COMPLETED"):
                return _rest_error(
                    400, "ValidationException", f"Job run {job_id} is not in a cancellable state"
                )
            if job is not None:
                self._stop(job_id)
                answer = {"applicationId": getattr(job.obj, "application_id", ""), "jobRunId": job_id}
                if service == "emr-containers":
                    answer = {"id": job_id, "virtualClusterId": job.obj.virtual_cluster_id}
                return "200 OK", [("Content-Type", "application/json")], json.dumps(answer).encode()
        return None

    def _glue_call(
        self, operation: str, params: dict[str, Any]
    ) -> tuple[str, list[tuple[str, str]], bytes] | None:
        """Glue's answers where moto's differ from the service's: ``BatchStopJobRun`` (moto has none)
        and an unknown job run (``EntityNotFoundException``)."""
        runs = {job.key: job for job in self._jobs.values() if job.kind == "glue"}
        if operation == "GetJobRun" and params.get("RunId") not in runs:
            return _emr_error("EntityNotFoundException", f"Job run {params.get('RunId')} not found")
        if operation != "BatchStopJobRun":
            return None
        stopped, errors = [], []
        for run_id in params.get("JobRunIds", []):
            job = runs.get(run_id)
            if job is None or job.parent != params.get("JobName"):
                errors.append(
                    {
                        "JobName": params.get("JobName"),
                        "JobRunId": run_id,
                        "ErrorDetail": {"ErrorCode": "EntityNotFoundException", "ErrorMessage": "not found"},
                    }
                )
            elif job.obj.state in ("STARTING", "RUNNING", "WAITING"):
                self._stop(run_id)
                stopped.append({"JobName": job.parent, "JobRunId": run_id})
            else:
                errors.append(
                    {
                        "JobName": job.parent,
                        "JobRunId": run_id,
                        "ErrorDetail": {
                            "ErrorCode": "InvalidInputException",
                            "ErrorMessage": f"Job run {run_id} is {job.obj.state}: it cannot be stopped",
                        },
                    }
                )
        payload = json.dumps({"SuccessfulSubmissions": stopped, "Errors": errors}).encode()
        return "200 OK", [("Content-Type", "application/x-amz-json-1.1")], payload

    def _sagemaker_call(
        self, operation: str, params: dict[str, Any]
    ) -> tuple[str, list[tuple[str, str]], bytes] | None:
        """SageMaker's answers where moto's differ from the service's: a training or processing job's
        name is unique (moto overwrites the job), ``StopTrainingJob`` (moto has none) and
        ``StopProcessingJob`` (moto's stops at once) follow the job's state on the clock."""
        kind = next((k for k in ("Training", "Processing") if operation.endswith(f"{k}Job")), None)
        if kind is None:
            return None
        name = str(params.get(f"{kind}JobName", ""))
        arn = f"arn:aws:sagemaker:{self.region}:{self.account_id}:{kind.lower()}-job/{name}"
        jobs = getattr(self._backend("sagemaker"), f"{kind.lower()}_jobs")
        job = self._jobs.get(name)
        if operation == f"Create{kind}Job" and name in jobs:
            return _emr_error(
                "ValidationException",
                f"{kind} job names must be unique within an AWS account and region, and a {kind.lower()} "
                f"job with this name already exists ({arn})",
            )
        if operation == f"Stop{kind}Job":
            if job is None:
                return _emr_error("ValidationException", f"Requested resource not found: {arn}")
            status = getattr(job.obj, f"{kind.lower()}_job_status")
            if status != "InProgress":
                return _emr_error(
                    "ValidationException",
                    f"The request was rejected because the {kind.lower()} job is in status {status}.",
                )
            self._stop(name)
            return "200 OK", [("Content-Type", "application/x-amz-json-1.1")], b"{}"
        return None

    def _query_call(
        self, service: str, operation: str, params: dict[str, Any]
    ) -> tuple[str, list[tuple[str, str]], bytes] | None:
        """Athena's and Redshift Data's answers where moto's differ from the services': a repeated
        token returns the first job (Athena refuses it with another query), an unknown id is
        not found, and the stop calls follow the job's state on the clock."""
        ok = "200 OK", [("Content-Type", "application/x-amz-json-1.1")]
        token_field = _TOKENS[service][0]
        if operation in ("StartQueryExecution", "ExecuteStatement"):
            known = self._tokens.get((service, str(params.get(token_field, ""))))
            if known is None:
                return None
            if service == "athena" and known.get("QueryString") != params.get("QueryString"):
                return _emr_error(
                    "InvalidRequestException",
                    "Idempotent parameters do not match: a query with this ClientRequestToken was started "
                    "with another QueryString",
                )
            return (*ok, json.dumps(known["answer"]).encode())
        job_id = str(params.get("QueryExecutionId" if service == "athena" else "Id", ""))
        job = self._jobs.get(job_id)
        if operation in ("GetQueryExecution", "DescribeStatement", "GetStatementResult") and job is None:
            if service == "athena":
                return _emr_error("InvalidRequestException", f"QueryExecution {job_id} was not found")
            return _emr_error("ResourceNotFoundException", f"Query {job_id} does not exist.")
        if operation == "StopQueryExecution":
            if job is None:
                return _emr_error("InvalidRequestException", f"QueryExecution {job_id} was not found")
            if job.obj.status in ("QUEUED", "RUNNING"):
                self._stop(job_id)
            return (*ok, b"{}")  # Athena answers a stop of an ended query without an error
        if operation == "CancelStatement":
            if job is None:
                return _emr_error("ResourceNotFoundException", f"Query {job_id} does not exist.")
            if job.obj.status not in ("SUBMITTED", "PICKED", "STARTED"):
                return _emr_error(
                    "ValidationException",
                    f"Could not cancel a query that is already in {job.obj.status} state with ID: {job_id}",
                )
            self._stop(job_id)
            return (*ok, json.dumps({"Status": True}).encode())
        return None

    def _stop_batch_job(
        self, operation: str, params: dict[str, Any]
    ) -> tuple[str, list[tuple[str, str]], bytes]:
        """``TerminateJob`` stops a job in any state before its end; ``CancelJob`` only one that has not
        started (``RUNNING`` and later are left alone, as Batch does). Either ends the job ``FAILED``
        with the reason given."""
        job_id, reason = str(params.get("jobId", "")), str(params.get("reason", ""))
        if not job_id or not reason:
            return _rest_error(400, "ClientException", "'jobId' and 'reason' are required fields")
        job = self._jobs.get(job_id)
        state = job.obj.status if job is not None else None
        started = state in ("RUNNING", "SUCCEEDED", "FAILED")
        if (
            job is not None
            and state not in ("SUCCEEDED", "FAILED")
            and not (operation == "CancelJob" and started)
        ):
            if job.stop_at is None:
                job.stop_reason = reason
            self._stop(job_id)
        return "200 OK", [("Content-Type", "application/json")], b"{}"

    def _terminate(self, cluster_ids: list[str]) -> tuple[str, list[tuple[str, str]], bytes]:
        now = self.now()
        for cluster_id in cluster_ids:
            if cluster_id not in self._backend("emr").clusters:
                return _emr_error("InvalidRequestException", f"Cluster id '{cluster_id}' is not valid.")
            self._stop(cluster_id)
            cluster = self._cluster(cluster_id)
            cluster.resumable_terminated_at = now
            if cluster_id in self._fixed:
                cluster.state, cluster.resumable_reason = "TERMINATED", "USER_REQUEST"
        return "200 OK", [("Content-Type", "application/x-amz-json-1.1")], b"{}"

    def _cancel_steps(self, params: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        info = []
        for step_id in params.get("StepIds", []):
            job = self._jobs.get(step_id)
            if job is None or job.obj.state not in ("PENDING", "RUNNING"):
                info.append(
                    {"StepId": step_id, "Status": "FAILED", "Reason": "The step is not PENDING or RUNNING."}
                )
                continue
            self._stop(step_id)
            info.append({"StepId": step_id, "Status": "SUBMITTED", "Reason": ""})
        payload = json.dumps({"CancelStepsInfoList": info}).encode()
        return "200 OK", [("Content-Type", "application/x-amz-json-1.1")], payload

    def _remember_token(self, service: str, body: bytes, answer: bytes) -> None:
        params = _json(body)
        if service in _TOKENS:
            token_field, id_field = _TOKENS[service]
            token, job_id = str(params.get(token_field, "")), str(_json(answer).get(id_field, ""))
            self._token_of[job_id] = token
            if token:
                self._tokens[(service, token)] = {
                    "answer": _json(answer),
                    "QueryString": params.get("QueryString"),
                }
            return
        token = str(params.get("clientToken", ""))
        if token:
            self._tokens[(service, token)] = _json(answer)


class _Replay:
    """A WSGI input stream that gives moto the body the middleware already read."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size is None or size < 0 else self._pos + size
        chunk, self._pos = self._data[self._pos : end], min(end, len(self._data))
        return chunk

    def readline(self, size: int = -1) -> bytes:
        return self.read(size)


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _service(environ: dict[str, Any]) -> str:
    match = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", environ.get("HTTP_AUTHORIZATION", ""))
    name = match.group(1) if match else ""
    return "emr" if name == "elasticmapreduce" else name


_REST = [
    ("POST", r"/v1/submitjob/?$", "SubmitJob"),
    ("POST", r"/v1/describejobs/?$", "DescribeJobs"),
    ("POST", r"/v1/listjobs/?$", "ListJobs"),
    ("POST", r"/v1/terminatejob/?$", "TerminateJob"),
    ("POST", r"/v1/canceljob/?$", "CancelJob"),
    ("POST", r"/applications/[^/]+/jobruns/?$", "StartJobRun"),
    ("GET", r"/applications/[^/]+/jobruns/[^/]+/?$", "GetJobRun"),
    ("DELETE", r"/applications/[^/]+/jobruns/[^/]+/?$", "CancelJobRun"),
    ("GET", r"/applications/[^/]+/jobruns/?$", "ListJobRuns"),
    ("POST", r"/applications/[^/]+/start/?$", "StartApplication"),
    ("GET", r"/applications/[^/]+/?$", "GetApplication"),
    ("POST", r"/applications/?$", "CreateApplication"),
    ("GET", r"/applications/?$", "ListApplications"),
    ("POST", r"/virtualclusters/[^/]+/jobruns/?$", "StartJobRun"),
    ("GET", r"/virtualclusters/[^/]+/jobruns/[^/]+/?$", "DescribeJobRun"),
    ("DELETE", r"/virtualclusters/[^/]+/jobruns/[^/]+/?$", "CancelJobRun"),
    ("GET", r"/virtualclusters/[^/]+/jobruns/?$", "ListJobRuns"),
    ("POST", r"/virtualclusters/?$", "CreateVirtualCluster"),
    ("GET", r"/virtualclusters/?$", "ListVirtualClusters"),
]


def _operation(service: str, environ: dict[str, Any]) -> str:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return str(target.split(".")[-1])
    method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
    for verb, pattern, name in _REST:
        if verb == method and re.search(pattern, path):
            return name
    return f"{method} {path}"


def _throttled(service: str) -> tuple[str, list[tuple[str, str]], bytes]:
    if service in _JSON_SERVICES:
        return _emr_error("ThrottlingException", "Rate exceeded")
    return _rest_error(429, "ThrottlingException", "Rate exceeded")


def _emr_error(code: str, message: str) -> tuple[str, list[tuple[str, str]], bytes]:
    payload = json.dumps({"__type": code, "message": message}).encode()
    return "400 Bad Request", [("Content-Type", "application/x-amz-json-1.1")], payload


_REASONS = {400: "Bad Request", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}


def _rest_error(status: int, code: str, message: str) -> tuple[str, list[tuple[str, str]], bytes]:
    reason = _REASONS.get(status, "Error")
    headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", code)]
    return f"{status} {reason}", headers, json.dumps({"message": message}).encode()


_PATCHED = False


def _patch_moto_status() -> None:
    """Let moto's step, cluster, Glue job run, training job, Athena query and Redshift Data statement
    answers carry the details the real API gives (FailureDetails, Code, ErrorMessage, FailureReason,
    StateChangeReason, Error), and Glue job runs and Athena queries the state the driver gives them."""
    global _PATCHED
    if _PATCHED:
        return
    from moto.athena.models import Execution
    from moto.athena.responses import AthenaResponse
    from moto.emr.models import Cluster, Step
    from moto.glue.models import FakeJobRun
    from moto.redshiftdata.models import Statement
    from moto.sagemaker.models import FakeTrainingJob

    step_status, cluster_status = Step.status, Cluster.status

    def step_with_details(self: Any) -> dict[str, Any]:
        status = dict(step_status.fget(self))  # type: ignore[attr-defined]
        reason = getattr(self, "resumable_reason", None)
        if status["State"] == "FAILED" and reason:
            status["FailureDetails"] = {"Reason": "Unknown Error", "Message": reason}
        return status

    def cluster_with_code(self: Any) -> dict[str, Any]:
        status = dict(cluster_status.fget(self))  # type: ignore[attr-defined]
        code = getattr(self, "resumable_reason", None)
        if code and status["State"] in ("TERMINATED", "TERMINATED_WITH_ERRORS"):
            status["StateChangeReason"] = {"Code": code, "Message": f"Terminated: {code}"}
        return status

    def glue_run_state(self: Any) -> str:
        return str(self.__dict__.get("state") or self._status)

    def glue_run_as_dict(self: Any) -> dict[str, Any]:
        answer = dict(glue_as_dict(self))
        reason = getattr(self, "resumable_reason", None)
        if answer["JobRunState"] == "FAILED" and reason:
            answer["ErrorMessage"] = reason
        return answer

    def training_with_reason(self: Any) -> dict[str, Any]:
        answer = dict(training_response(self))
        reason = getattr(self, "resumable_reason", None)
        if answer.get("TrainingJobStatus") == "Failed" and reason:
            answer["FailureReason"] = reason
        return answer

    def query_state(self: Any) -> str:
        return str(self.__dict__.get("state") or self._status)

    def set_query_state(self: Any, value: str) -> None:
        self._status = value

    def query_with_reason(self: Any) -> str:
        answer = json.loads(query_response(self))
        execution = self.athena_backend.executions.get(answer["QueryExecution"]["QueryExecutionId"])
        reason = getattr(execution, "resumable_reason", None)
        if reason and answer["QueryExecution"]["Status"]["State"] == "FAILED":
            answer["QueryExecution"]["Status"]["StateChangeReason"] = reason
        return json.dumps(answer)

    def statement_with_error(self: Any) -> Iterable[tuple[str, Any]]:
        yield from statement_fields(self)
        reason = getattr(self, "resumable_reason", None)
        if reason and self.status == "FAILED":
            yield "Error", reason

    def batch_status(self: Any) -> str | None:
        return self.__dict__.get("state") or batch_managed_status.fget(self)  # type: ignore[no-any-return]

    def set_batch_status(self: Any, value: str) -> None:
        batch_managed_status.fset(self, value)

    from moto.batch.models import Job as BatchJob
    from moto.core.config import default_user_config

    default_user_config["batch"]["use_docker"] = False  # jobs are driven here, not run in containers
    batch_managed_status: Any = BatchJob.status
    BatchJob.status = property(batch_status, set_batch_status)  # type: ignore[method-assign,assignment]
    query_response = AthenaResponse.get_query_execution
    AthenaResponse.get_query_execution = query_with_reason  # type: ignore[method-assign]
    Execution.status = property(query_state, set_query_state)  # type: ignore[method-assign,assignment]
    Execution.advance = lambda self: None  # type: ignore[method-assign]  # the driver moves it
    statement_fields = Statement.__iter__
    Statement.__iter__ = statement_with_error  # type: ignore[method-assign,assignment]
    training_response = FakeTrainingJob.response_object.fget  # type: ignore[attr-defined]
    FakeTrainingJob.response_object = property(training_with_reason)  # type: ignore[method-assign,assignment]
    glue_as_dict = FakeJobRun.as_dict
    FakeJobRun.status = property(glue_run_state)  # type: ignore[method-assign,assignment]
    FakeJobRun.as_dict = glue_run_as_dict  # type: ignore[method-assign]
    FakeJobRun.advance = lambda self: None  # type: ignore[method-assign]  # the driver moves it
    Step.status = property(step_with_details)  # type: ignore[method-assign,assignment]
    Cluster.status = property(cluster_with_code)  # type: ignore[method-assign,assignment]
    _PATCHED = True


__all__ = ["AwsEmulator", "JobScript"]
