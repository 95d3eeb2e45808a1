"""The resumable AWS operators on a real Airflow (``dag.test()``), through the amazon provider's real
hooks, against moto running as an HTTP server with the kit's driver.

Every scenario runs for each operator: EMR steps, EMR Serverless, EMR on EKS, cluster creation,
Glue, SageMaker training and processing, Athena, Redshift Data and Batch.
The assertions are what a user checks: how many steps, job runs or clusters AWS created, and how
the task ended.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from resumable.attempt import operator_identity
from resumable.job import JobHandle, JobState
from resumable.operators.athena import ResumableAthenaOperator
from resumable.operators.batch import ResumableBatchOperator
from resumable.operators.emr import (
    ResumableEmrAddStepsOperator,
    ResumableEmrContainerOperator,
    ResumableEmrCreateJobFlowOperator,
    ResumableEmrServerlessStartJobOperator,
)
from resumable.operators.glue import ResumableGlueJobOperator
from resumable.operators.redshift_data import ResumableRedshiftDataOperator
from resumable.operators.sagemaker import (
    ResumableSageMakerProcessingOperator,
    ResumableSageMakerTrainingOperator,
)
from resumable.testing.airflow import clear_and_rerun, run_dag, run_retries, task_states
from resumable.testing.aws import AwsEmulator, JobScript
from tests.helpers import (
    EVERY_TRIGGER_STOP,
    PERSONS_STOP,
    new_dag,
    on_the_retrys_first_look,
    stop_deferred_task,
)

ROLE = "arn:aws:iam::123456789012:role/emr-job"
SPARK_STEP = {
    "Name": "etl",
    "ActionOnFailure": "CONTINUE",
    "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["spark-submit", "s3://bucket/etl.py"]},
}
SPARK_DRIVER = {"sparkSubmit": {"entryPoint": "s3://bucket/etl.py"}}
EKS_DRIVER = {"sparkSubmitJobDriver": {"entryPoint": "s3://bucket/etl.py"}}
CLUSTER = {
    "Name": "nightly",
    "ReleaseLabel": "emr-7.0.0",
    "Instances": {
        "InstanceGroups": [
            {"Name": "primary", "InstanceRole": "MASTER", "InstanceType": "m5.xlarge", "InstanceCount": 1}
        ],
        "KeepJobFlowAliveWhenNoSteps": True,
    },
    "JobFlowRole": "EMR_EC2_DefaultRole",
    "ServiceRole": "EMR_DefaultRole",
}
NO_BOTO_RETRIES = {"retries": {"total_max_attempts": 1, "mode": "standard"}}


@dataclass
class Kind:
    """One operator under test: how to build it and how to count what it created."""

    name: str
    script_kind: str
    build: Callable[[AwsEmulator, dict[str, Any]], Any]
    created: Callable[[AwsEmulator], int]
    per_submission: int = 1


def steps(aws: AwsEmulator, kwargs: dict[str, Any]) -> Any:
    second = {**SPARK_STEP, "Name": "report"}
    return ResumableEmrAddStepsOperator(
        task_id="job",
        job_flow_id=aws.create_cluster(),
        steps=[SPARK_STEP, second],
        wait_for_completion=True,
        **kwargs,
    )


def serverless(aws: AwsEmulator, kwargs: dict[str, Any]) -> Any:
    return ResumableEmrServerlessStartJobOperator(
        task_id="job",
        application_id=aws.create_serverless_application(),
        execution_role_arn=ROLE,
        job_driver=SPARK_DRIVER,
        **kwargs,
    )


def eks(aws: AwsEmulator, kwargs: dict[str, Any]) -> Any:
    return ResumableEmrContainerOperator(
        task_id="job",
        name="etl",
        virtual_cluster_id=aws.create_virtual_cluster(),
        execution_role_arn=ROLE,
        release_label="emr-7.0.0-latest",
        job_driver=EKS_DRIVER,
        **kwargs,
    )


def cluster(aws: AwsEmulator, kwargs: dict[str, Any]) -> Any:
    return ResumableEmrCreateJobFlowOperator(
        task_id="job", emr_conn_id=None, job_flow_overrides=CLUSTER, wait_for_completion=True, **kwargs
    )


def glue(aws: AwsEmulator, kwargs: dict[str, Any]) -> Any:
    return ResumableGlueJobOperator(task_id="job", job_name=aws.create_glue_job(), **kwargs)


def training_config(aws: AwsEmulator) -> dict[str, Any]:
    return {
        "TrainingJobName": "etl-model",
        "AlgorithmSpecification": {
            "TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/xgb:1",
            "TrainingInputMode": "File",
        },
        "RoleArn": ROLE,
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": aws.create_training_data()}
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://training/output/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }


def training(aws: AwsEmulator, kwargs: dict[str, Any]) -> Any:
    config = training_config(aws)
    return ResumableSageMakerTrainingOperator(
        task_id="job", config=config, print_log=False, check_interval=1, **kwargs
    )


def processing_config() -> dict[str, Any]:
    return {
        "ProcessingJobName": "feature-build",
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 10}
        },
        "AppSpecification": {"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/features:1"},
        "RoleArn": ROLE,
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }


def processing(aws: AwsEmulator, kwargs: dict[str, Any]) -> Any:
    return ResumableSageMakerProcessingOperator(
        task_id="job", config=processing_config(), print_log=False, check_interval=1, **kwargs
    )


#: The provider's arguments of the Athena, Redshift Data and Batch tasks (Batch's queue and job
#: definition are the emulator's, added where the task is built).
ATHENA_ARGS = {
    "query": "SELECT count(*) FROM events WHERE day = '2026-12-06'",
    "database": "analytics",
    "output_location": "s3://athena-results/",
}
REDSHIFT_DATA_ARGS = {
    "sql": "INSERT INTO daily SELECT * FROM staging",
    "database": "dev",
    "cluster_identifier": "analytics",
    "db_user": "etl",
}


def batch_args(aws: AwsEmulator) -> dict[str, Any]:
    queue, definition = aws.create_batch_queue()
    return {"job_name": "nightly-etl", "job_queue": queue, "job_definition": definition}


def athena(aws: AwsEmulator, kwargs: dict[str, Any]) -> Any:
    return ResumableAthenaOperator(task_id="job", **ATHENA_ARGS, **kwargs)


def redshift_data(aws: AwsEmulator, kwargs: dict[str, Any]) -> Any:
    return ResumableRedshiftDataOperator(task_id="job", **REDSHIFT_DATA_ARGS, **kwargs)


def batch(aws: AwsEmulator, kwargs: dict[str, Any]) -> Any:
    return ResumableBatchOperator(task_id="job", **batch_args(aws), **kwargs)


KINDS = [
    Kind("steps", "step", steps, lambda aws: sum(aws.steps_created.values()), per_submission=2),
    Kind("serverless", "serverless", serverless, lambda aws: sum(aws.job_runs_created.values())),
    Kind("eks", "eks", eks, lambda aws: sum(aws.job_runs_created.values())),
    Kind("cluster", "cluster", cluster, lambda aws: sum(aws.clusters_created.values())),
    Kind("glue", "glue", glue, lambda aws: sum(aws.glue_runs_created.values())),
    Kind("training", "training", training, lambda aws: sum(aws.training_jobs_created.values())),
    Kind("processing", "processing", processing, lambda aws: sum(aws.processing_jobs_created.values())),
    Kind("athena", "athena", athena, lambda aws: sum(aws.queries_created.values())),
    Kind("redshift_data", "statement", redshift_data, lambda aws: sum(aws.statements_created.values())),
    Kind("batch", "batch", batch, lambda aws: sum(aws.batch_jobs_created.values())),
]


def params(kinds: list[Kind]) -> list[Any]:
    """``kinds`` as pytest parameters: the EMR operators run on every Airflow version; the systems
    after them are marked ``oldest_airflow``: every row on 3.3, and on the oldest version only the
    rows marked ``core_row`` (a fresh run, both crash windows, the deferrable wait: what meets
    Airflow itself; the other rows test the resume protocol, the same code on every version, and the
    older versions' tiers share CI's two cores)."""
    return [
        pytest.param(k, id=k.name, marks=[pytest.mark.oldest_airflow] if KINDS.index(k) >= 4 else [])
        for k in kinds
    ]


@pytest.fixture(params=params(KINDS))
def kind(request) -> Kind:
    return request.param


def make(kind: Kind, aws: AwsEmulator, **kwargs: Any):
    kwargs.setdefault("retries", 2)
    kwargs.setdefault("retry_delay", timedelta(0))
    kwargs.setdefault("poll_interval", 0.02)
    with new_dag(f"emr_{kind.name}") as dag:
        op = kind.build(aws, kwargs)
    return dag, op


@pytest.mark.core_row
def test_fresh_run_creates_once(kind, aws) -> None:
    dag, _ = make(kind, aws)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert kind.created(aws) == kind.per_submission
    (ti,) = dr.get_task_instances()
    url = ti.xcom_pull(task_ids="job", key="resumable_job_url")
    assert url and url.startswith("https://console."), "the Job page link has the job's page"


@pytest.mark.core_row
def test_crash_between_submit_and_persist_creates_nothing_more(kind, aws, fault) -> None:
    fault("after_submit")
    dag, _ = make(kind, aws)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert kind.created(aws) == kind.per_submission, "the retry must find the job, not create another"


@pytest.mark.core_row
def test_crash_while_polling_reattaches(kind, aws, fault) -> None:
    fault("while_polling")
    dag, _ = make(kind, aws)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert kind.created(aws) == kind.per_submission


@pytest.mark.parametrize("kind", KINDS[:4], ids=lambda k: k.name)  # the EMR operators
def test_a_record_written_before_the_module_split_is_the_operators_own(kind, aws, fault, monkeypatch) -> None:
    """Upgrading while a task runs: try 1 writes its record under the name the release before the
    split of ``operators/emr.py`` gave the class; the retry, with the class in its own module,
    reattaches to that job instead of refusing the record."""
    from resumable import attempt

    names: list[str] = []

    def identity(cls: type) -> str:
        names.append(f"resumable.operators.emr.{cls.__qualname__}" if not names else operator_identity(cls))
        return names[-1]

    monkeypatch.setattr(attempt, "operator_identity", identity)
    fault("while_polling")
    dag, op = make(kind, aws)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert kind.created(aws) == kind.per_submission, "the retry must reattach, not create another"
    assert names == [op.former_names[0], f"{type(op).__module__}.{type(op).__qualname__}"]


def test_prior_success_creates_nothing(kind, aws, fault) -> None:
    aws.script_next(kind.script_kind, *[JobScript(duration=0.0, pending=0.0)] * kind.per_submission)
    fault("while_polling")  # the first poll sees the job done, then the worker dies
    dag, _ = make(kind, aws)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert kind.created(aws) == kind.per_submission


def test_clear_after_success_creates_again(kind, aws) -> None:
    dag, _ = make(kind, aws)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    dr = clear_and_rerun(dag, dr)
    assert task_states(dr) == {"job": "success"}
    assert kind.created(aws) == 2 * kind.per_submission


def test_a_clears_try_that_dies_after_submitting_with_the_old_token_leaves_its_job_to_its_retry(
    kind, aws, fault, monkeypatch
) -> None:
    """Both tries die after writing their intent (nothing submitted); a person clears the failed task.
    The clear's first try submits with the record's token, the service creates the job, the try dies
    before it records it, and the job ends at once. Its retry finds the job (by the token) and
    finishes with it instead of running it again."""
    aws.script_next(kind.script_kind, *[JobScript(duration=0.0, pending=0.0)] * kind.per_submission)
    fault("after_intent")
    monkeypatch.setenv("RESUMABLE_FAULT_TRY", "any")
    dag, _ = make(kind, aws, retries=1)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "failed"} and kind.created(aws) == 0

    fault("after_submit")
    monkeypatch.setenv("RESUMABLE_FAULT_TRY", "3")
    dr = clear_and_rerun(dag, dr)
    assert task_states(dr) == {"job": "up_for_retry"} and kind.created(aws) == kind.per_submission
    dr = run_retries(dag, dr)
    assert task_states(dr) == {"job": "success"}
    assert kind.created(aws) == kind.per_submission, "the retry must finish with the job its lineage created"


@pytest.mark.parametrize(
    ("on_prior_failure", "final", "submissions"), [("resubmit", "success", 2), ("fail", "failed", 1)]
)
def test_prior_failure_follows_on_prior_failure(kind, aws, on_prior_failure, final, submissions) -> None:
    aws.script_next(kind.script_kind, *[JobScript(outcome="fail", duration=1.0)] * kind.per_submission)
    dag, _ = make(kind, aws, on_prior_failure=on_prior_failure)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": final}
    assert kind.created(aws) == submissions * kind.per_submission


def test_throttling_storm_during_reattach_is_retried(kind, aws, fault) -> None:
    fault("while_polling")
    dag, op = make(kind, aws, botocore_config=NO_BOTO_RETRIES, status_retry_attempts=8)
    with on_the_retrys_first_look(type(op), lambda: aws.throttle_next(5)):  # five times in a row
        dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert kind.created(aws) == kind.per_submission


def test_steps_on_a_terminated_cluster_are_a_clear_error(aws) -> None:
    cluster_id = aws.create_cluster(state="TERMINATED")
    with new_dag("emr_dead_cluster") as dag:
        ResumableEmrAddStepsOperator(
            task_id="job", job_flow_id=cluster_id, steps=[SPARK_STEP], wait_for_completion=True, retries=0
        )
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "failed"}
    assert sum(aws.steps_created.values()) == 0


def submitted(kind: Kind, aws: AwsEmulator, op: Any) -> JobHandle:
    """Submit through the operator's own code path, outside a DAG run (for status and cancel checks)."""

    class Ti:
        try_number = 1
        task_id = "job"
        pushed: dict[str, Any] = {}

        def xcom_push(self, key: str, value: Any) -> None:  # Glue's submit pushes glue_job_run_id
            self.pushed[key] = value

    return op.submit_job({"ti": Ti(), "dag_run": None}, f"rsm-{'c' * 40}-{kind.name}-1")  # a token's shape


def test_an_unknown_job_is_not_found(kind, aws) -> None:
    _, op = make(kind, aws)
    handle = submitted(kind, aws, op)
    bogus = {
        "steps": JobHandle(
            op.job_system, "s-X", extras={"cluster_id": "j-NOSUCHCLUSTER", "step_ids": ["s-X"]}
        ),
        "serverless": JobHandle(op.job_system, "00nosuchrun0000", extras=handle.extras),
        "eks": JobHandle(op.job_system, "0000000000nosuchrun", extras=handle.extras),
        "cluster": JobHandle(op.job_system, "j-NOSUCHCLUSTER"),
        "glue": JobHandle(op.job_system, "jr_nosuchrun"),
        "training": JobHandle(op.job_system, "no-such-training-job"),
        "processing": JobHandle(op.job_system, "no-such-processing-job"),
        "athena": JobHandle(op.job_system, "00000000-0000-4000-8000-000000000000"),
        "redshift_data": JobHandle(op.job_system, "00000000-0000-4000-8000-000000000000"),
        "batch": JobHandle(op.job_system, "00000000-0000-4000-8000-000000000000"),
    }[kind.name]
    assert op.get_job_status(bogus).state is JobState.NOT_FOUND


def test_cancel_stops_the_job_the_way_the_service_does(kind, aws) -> None:
    aws.script_next(kind.script_kind, *[JobScript(outcome="hang", pending=0.0)] * kind.per_submission)
    _, op = make(kind, aws)
    handle = submitted(kind, aws, op)
    assert op.get_job_status(handle).state.is_active
    op.cancel_job(handle)
    assert aws.cancels, "the service saw the cancel"
    deadline = time.monotonic() + 10
    while op.get_job_status(handle).state.is_active and time.monotonic() < deadline:
        time.sleep(0.02)
    assert op.get_job_status(handle).state is JobState.CANCELLED


def test_the_pytest_plugin_fixture_serves_a_dag_authors_test(airflow_db, aws_emulator, fault) -> None:
    fault("after_submit")
    dag, _ = make(KINDS[1], aws_emulator)
    assert task_states(run_dag(dag)) == {"job": "success"}
    assert sum(aws_emulator.job_runs_created.values()) == 1


def _trigger_delay(kind: Kind) -> dict[str, Any]:
    """One second between the trigger's polls (EMR on EKS and Redshift Data name it ``poll_interval``,
    Athena ``sleep_time``, SageMaker ``check_interval``, which the training kind sets already)."""
    return {
        "eks": {"poll_interval": 1},
        "training": {},
        "processing": {},
        "athena": {"sleep_time": 1},
        "redshift_data": {"poll_interval": 1},
        "batch": {"poll_interval": 1},
    }.get(kind.name, {"waiter_delay": 1})


@pytest.mark.core_row
def test_deferrable_waits_in_the_providers_trigger(kind, aws) -> None:
    """The job runs for seconds (100 emulated at 40x): the task defers, the provider's trigger polls
    it (aiobotocore, on moto over HTTP) until it ends, and the task resumes and succeeds with the one
    job."""
    aws.script_next(kind.script_kind, *[JobScript(duration=100.0, pending=0.0)] * kind.per_submission)
    dag, _ = make(kind, aws, deferrable=True, **_trigger_delay(kind))
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert kind.created(aws) == kind.per_submission
    assert sum(aws.async_calls.values()) > 0, f"the trigger never polled: {aws.stats()['calls']}"


@pytest.mark.core_row
def test_deferrable_records_the_job_before_deferring(kind, aws, fault) -> None:
    """The attempt dies between submit and defer; the retry defers on the job it finds and submits
    nothing new."""
    # long enough to outlive the failed try (on Airflow < 3.3 dag.test() needs seconds for a retry)
    aws.script_next(kind.script_kind, *[JobScript(duration=400.0, pending=0.0)] * kind.per_submission)
    fault("after_submit")
    dag, _ = make(kind, aws, deferrable=True, **_trigger_delay(kind))
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert kind.created(aws) == kind.per_submission
    assert sum(aws.async_calls.values()) > 0, f"the retry did not defer: {aws.stats()['calls']}"


#: Real seconds the service answers every status read with 500: longer than botocore's own retries, so
#: the provider's trigger ends with an error event (``"failure"`` for Serverless, ``"error"`` for the
#: steps, cluster and EKS waiters) while the job runs on.
OUTAGE_SECONDS = 20.0


@pytest.mark.parametrize("kind", [KINDS[0], KINDS[1]], ids=lambda k: k.name)
def test_a_trigger_that_fails_to_watch_a_running_job_does_not_cancel_it(kind, aws) -> None:
    """A network or service blip while deferred: the trigger's status calls fail past botocore's retries
    and it fires an error event. The task looks at the job, finds it running and defers again; the job
    is neither cancelled nor submitted again, and the task succeeds when it ends."""
    aws.script_next(kind.script_kind, *[JobScript(duration=1e6, pending=0.0)] * kind.per_submission)
    dag, _ = make(kind, aws, deferrable=True, **_trigger_delay(kind))
    done = threading.Event()

    def service() -> None:
        while not done.is_set() and sum(aws.async_calls.values()) == 0:
            time.sleep(0.05)  # the trigger watches the job
        aws.outage(OUTAGE_SECONDS)
        time.sleep(OUTAGE_SECONDS)
        seen = sum(aws.async_calls.values())
        while not done.is_set() and sum(aws.async_calls.values()) == seen:
            time.sleep(0.05)  # a trigger watches it again after the outage
        aws.advance(1e6 * kind.per_submission)  # and the job ends (steps run one after the other)

    thread = threading.Thread(target=service, daemon=True)
    thread.start()
    try:
        dr = run_dag(dag)
    finally:
        done.set()
        thread.join()
    assert sum(aws.outage_answers.values()) > 0, "the outage never reached the trigger"
    assert task_states(dr) == {"job": "success"}
    assert kind.created(aws) == kind.per_submission
    assert aws.cancels == [], "a failed trigger is not a reason to cancel a running job"


@pytest.mark.parametrize(("given", "meaning"), [(True, "user_stop"), (False, "never"), ("always", "always")])
def test_the_providers_boolean_cancel_on_kill_keeps_its_meaning(aws, given, meaning) -> None:
    _, op = make(KINDS[1], aws, cancel_on_kill=given)
    assert op.cancel_on_kill.value == meaning


@pytest.mark.parametrize(
    ("given", "meaning"),
    [
        ({}, "user_stop"),
        ({"stop_job_run_on_kill": True}, "user_stop"),
        ({"stop_job_run_on_kill": False}, "never"),
    ],
)
def test_glues_stop_job_run_on_kill_is_read_as_cancel_on_kill(aws, given, meaning) -> None:
    _, op = make(KINDS[4], aws, **given)
    assert op.cancel_on_kill.value == meaning
    assert op.stop_job_run_on_kill is False, "the provider's on_kill must not stop the run behind ours"


@pytest.mark.parametrize("kind", params(KINDS[4:]))  # every system after the EMR ones
@EVERY_TRIGGER_STOP
@PERSONS_STOP
def test_a_deferred_jobs_trigger_stops_it_only_on_a_persons_stop(
    kind, aws, monkeypatch, before_3_3, state, cancelled
) -> None:
    """The trigger the operator defers with, rebuilt from its serialised form as the triggerer does,
    stops the job when a person stopped the task (failed, or cleared to no state) and keeps it when
    the task is still deferred (a triggerer restart or a moved trigger)."""
    aws.script_next(kind.script_kind, JobScript(duration=10_000.0, pending=0.0))
    _, op = make(kind, aws, deferrable=True)
    handle = submitted(kind, aws, op)
    path, kwargs = op.job_trigger({}, handle).serialize()
    stop_deferred_task(path, kwargs, monkeypatch, state=state, before_3_3=before_3_3)
    assert aws.cancels == ([handle.job_id] if cancelled else [])


@pytest.mark.parametrize("kind", [KINDS[1], KINDS[2]], ids=lambda k: k.name)
def test_deferrable_wait_budget_ends_the_task_and_cancels_the_job(kind, aws) -> None:
    """The provider's trigger gives up after waiter_max_attempts while the job still runs: the task
    does not defer again forever; it cancels the job and fails, as the provider's operator does."""
    aws.script_next(kind.script_kind, JobScript(duration=10_000.0, pending=0.0))
    budget = {"max_polling_attempts": 2} if kind.name == "eks" else {"waiter_max_attempts": 2}
    dag, _ = make(kind, aws, deferrable=True, retries=0, **_trigger_delay(kind), **budget)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "failed"}
    assert kind.created(aws) == 1
    assert len(aws.cancels) == 1, f"the job was not cancelled: {aws.stats()}"


@pytest.mark.parametrize("cancel_on_kill", [True, False])
def test_a_persons_stop_of_a_deferred_steps_task_cancels_its_steps(aws, cancel_on_kill) -> None:
    """While deferred, the trigger is all that runs for the task: a person's stop (Airflow calls the
    trigger's on_kill) cancels the steps unless cancel_on_kill says never. The trigger keeps the
    setting through serialisation, as the triggerer rebuilds it."""
    import asyncio
    from importlib import import_module

    from resumable.operators.emr_triggers import ResumableEmrAddStepsTrigger

    aws.script_next("step", JobScript(duration=10_000.0, pending=0.0))
    cluster_id = aws.create_cluster()
    emr = aws.client("emr")
    step_ids = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[SPARK_STEP])["StepIds"]
    trigger = ResumableEmrAddStepsTrigger(
        job_flow_id=cluster_id,
        step_ids=step_ids,
        waiter_delay=1,
        waiter_max_attempts=5,
        aws_conn_id="aws_default",
        cancel_on_kill=cancel_on_kill,
    )
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")
    rebuilt = getattr(import_module(module), name)(**kwargs)
    asyncio.run(rebuilt.on_kill())
    assert aws.cancels == (step_ids if cancel_on_kill else [])


def test_a_persons_stop_of_a_deferred_cluster_task_terminates_the_cluster(aws) -> None:
    import asyncio

    from resumable.operators.emr_triggers import ResumableEmrCreateJobFlowTrigger

    cluster_id = aws.create_cluster()
    trigger = ResumableEmrCreateJobFlowTrigger(
        job_flow_id=cluster_id,
        waiter_delay=1,
        waiter_max_attempts=5,
        aws_conn_id="aws_default",
        cancel_on_kill=True,
    )
    asyncio.run(trigger.on_kill())
    assert aws.cancels == [cluster_id]


def test_deferred_serverless_and_eks_triggers_stop_their_job_on_a_persons_stop_unless_never(aws) -> None:
    from resumable.protocol import CancelOnKill

    for kind in (KINDS[1], KINDS[2]):
        _, op = make(kind, aws)
        for given, expected in (("user_stop", True), ("always", True), ("never", False)):
            op.cancel_on_kill = CancelOnKill(given)
            handle = JobHandle(
                op.job_system,
                "00000000000000000001",
                extras={"application_id": "app", "virtual_cluster_id": "vc"},
            )
            assert op.job_trigger({}, handle).cancel_on_kill is expected


@EVERY_TRIGGER_STOP
@PERSONS_STOP
def test_a_deferred_eks_jobs_trigger_cancels_it_only_on_a_persons_stop(
    aws, monkeypatch, before_3_3, state, cancelled
) -> None:
    """Before Airflow 3.3 the provider's EMR on EKS trigger is only cancelled (its on_kill never runs),
    so a person's stop of the deferred task left the job running; from 3.3 its on_kill ran for any
    call. Ours asks the task instance's state on both: a person's stop cancels, a moved trigger keeps."""

    aws.script_next("eks", JobScript(duration=10_000.0, pending=0.0))
    _, op = make(KINDS[2], aws, deferrable=True, poll_interval=1)
    handle = op.submit_job({}, "tok-eks-1")
    path, kwargs = op.job_trigger({}, handle).serialize()
    assert path.endswith(".ResumableEmrContainerTrigger")
    stop_deferred_task(path, kwargs, monkeypatch, state=state, before_3_3=before_3_3)
    assert aws.cancels == ([handle.job_id] if cancelled else [])


def test_glues_stop_of_a_run_that_has_ended_or_is_unknown_is_no_error(aws) -> None:
    """Glue answers a ``BatchStopJobRun`` of a run that has ended (or that it does not know) with an
    error inside its answer. The operator's cancel and the deferred trigger's stop both read it as
    nothing left to stop: a person's stop of a task whose run just succeeded logs no failed stop."""
    glue_kind = KINDS[4]
    aws.script_next("glue", JobScript(duration=0.0, pending=0.0))
    _, op = make(glue_kind, aws)
    handle = submitted(glue_kind, aws, op)
    assert op.get_job_status(handle).state is JobState.SUCCEEDED
    unknown = JobHandle(op.job_system, "jr_nosuchrun")
    for job in (handle, unknown):
        op.cancel_job(job)
        op.job_trigger({}, job).stop_job()
    assert aws.cancels == [], "an ended run is not stopped"
    assert aws.calls["BatchStopJobRun"] == 4


@pytest.mark.parametrize("name", ["glue", "batch"])  # the systems found by discovery
def test_two_jobs_with_one_token_keep_the_oldest_and_stop_the_other(aws, name) -> None:
    """Discovery reads every job that carries the task's token. Should two ever exist (a listing that
    missed the first, then a second submission), the oldest is the task's and the other, still
    active, is stopped: never two jobs running for one task."""
    kind = next(k for k in KINDS if k.name == name)
    aws.script_next(kind.script_kind, *[JobScript(outcome="hang", pending=0.0)] * 2)
    if name == "glue":  # Glue itself refuses a second concurrent run of a job with the default of 1
        op = ResumableGlueJobOperator(
            task_id="job", job_name=aws.create_glue_job("twins", max_concurrent_runs=2)
        )
    else:
        _, op = make(kind, aws)
    first, second = submitted(kind, aws, op), submitted(kind, aws, op)
    assert first.job_id != second.job_id and kind.created(aws) == 2
    found = op.find_job({}, f"rsm-{'c' * 40}-{kind.name}-1")
    assert found is not None and found.job_id == first.job_id
    assert aws.cancels == [second.job_id]
    assert op.get_job_status(first).state.is_active
