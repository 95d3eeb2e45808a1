"""DAGs for crash tests on a real Airflow: one job per DAG run, for each system and contender.

Loaded by the DAG processor of :class:`resumable.testing.stack.AirflowStack` (the demo, the e2e
suite and ``bench/chaos.py`` copy this file into its DAGs folder). Connections come from the
environment (``databricks_default`` and ``aws_default`` pointing at the emulators); the EMR
application and cluster ids and the execution role from ``RESUMABLE_CRASH_APPLICATION_ID``,
``RESUMABLE_CRASH_CLUSTER_ID`` and ``RESUMABLE_CRASH_ROLE_ARN``; the Glue jobs are
``<RESUMABLE_CRASH_GLUE_JOB>-<contender>``.

DAG ids: ``crash_<system>_<contender>`` where system is ``databricks``, ``emr_serverless``,
``emr_steps``, ``emr_eks`` (EMR on EKS), ``emr_cluster`` (a transient cluster: it runs for the
scripted seconds, then terminates), ``glue`` (a Glue job's runs) or ``sagemaker_training`` and
contender is ``resumable`` (ours), ``provider`` (the provider's operator as it is) or, for
Databricks, ``provider_nodurable`` (the provider's operator with ``durable=False``);
``crash_<system>_timeout`` (ours, ``execution_timeout`` shorter than the job, no retries),
``crash_<system>_noretry`` (ours, no retries: a failure is final until a person clears it; a DAG
run with conf ``{"hold_until_stopped": true}`` holds its try before ``execute`` until Airflow's stop
reaches it, see :func:`hold_until_stopped`),
``crash_<system>_retry_timeout`` (ours, ``execution_timeout`` of ``RESUMABLE_CRASH_RETRY_TIMEOUT``
seconds, default 20, and the usual retries) and ``crash_databricks_deferrable``,
``crash_emr_serverless_deferrable`` and ``crash_emr_eks_deferrable`` (ours, deferrable). The
task is always ``job``. The EMR on EKS virtual cluster's id comes from
``RESUMABLE_CRASH_VIRTUAL_CLUSTER_ID``.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

ROLE = os.environ.get("RESUMABLE_CRASH_ROLE_ARN", "arn:aws:iam::123456789012:role/emr-job")
RETRIES = int(os.environ.get("RESUMABLE_CRASH_RETRIES", "3"))
RETRY_DELAY = timedelta(seconds=float(os.environ.get("RESUMABLE_CRASH_RETRY_DELAY", "2")))
TIMEOUT = timedelta(seconds=float(os.environ.get("RESUMABLE_CRASH_TIMEOUT", "12")))
RETRY_TIMEOUT = timedelta(seconds=float(os.environ.get("RESUMABLE_CRASH_RETRY_TIMEOUT", "20")))
APPLICATION_ID = os.environ.get("RESUMABLE_CRASH_APPLICATION_ID", "")
CLUSTER_ID = os.environ.get("RESUMABLE_CRASH_CLUSTER_ID", "")
VIRTUAL_CLUSTER_ID = os.environ.get("RESUMABLE_CRASH_VIRTUAL_CLUSTER_ID", "")
GLUE_JOB = os.environ.get("RESUMABLE_CRASH_GLUE_JOB", "crash-etl")
TRAINING_DATA = os.environ.get("RESUMABLE_CRASH_TRAINING_DATA", "s3://training/data/")


def _dag(dag_id: str) -> DAG:
    return DAG(
        dag_id,
        schedule=None,
        start_date=datetime(2025, 1, 1),
        catchup=False,
        max_active_runs=16,
        tags=["resumable-crash"],
        default_args={"retries": RETRIES, "retry_delay": RETRY_DELAY},
    )


def hold_until_stopped(context: Any) -> None:
    """``pre_execute`` of the ``noretry`` DAGs: with conf ``{"hold_until_stopped": true}`` the try
    pushes the XCom ``held``, waits here, before ``execute``, until Airflow's stop has reached the
    operator's ``on_kill`` (at most 120 s), then goes on a second later, as a slow template rendering
    that ends inside Airflow's 5 s between SIGTERM and SIGKILL would."""
    conf = context["dag_run"].conf or {}
    if not conf.get("hold_until_stopped"):
        return
    context["ti"].xcom_push(key="held", value=True)
    context["task"]._stopping.requested.wait(120)
    time.sleep(1)


def databricks(contender: str, **extra: Any) -> Any:
    from airflow.providers.databricks.operators.databricks import DatabricksSubmitRunOperator

    from resumable.operators.databricks import ResumableDatabricksSubmitRunOperator

    kwargs: dict[str, Any] = {
        "task_id": "job",
        "run_name": f"crash-{contender}",
        "tasks": [
            {
                "task_key": "main",
                "spark_python_task": {"python_file": "dbfs:/jobs/aggregate.py"},
                "new_cluster": {"spark_version": "15.4.x-scala2.12", "num_workers": 2},
            }
        ],
        "polling_period_seconds": 1,
        **extra,
    }
    if contender == "resumable":
        return ResumableDatabricksSubmitRunOperator(**kwargs)
    if contender == "provider_nodurable":
        kwargs["durable"] = False
    return DatabricksSubmitRunOperator(**kwargs)


def emr_serverless(contender: str, **extra: Any) -> Any:
    from airflow.providers.amazon.aws.operators.emr import EmrServerlessStartJobOperator

    from resumable.operators.emr_serverless import ResumableEmrServerlessStartJobOperator

    cls = (
        ResumableEmrServerlessStartJobOperator if contender == "resumable" else EmrServerlessStartJobOperator
    )
    return cls(
        task_id="job",
        application_id=APPLICATION_ID,
        execution_role_arn=ROLE,
        job_driver={"sparkSubmit": {"entryPoint": "s3://bucket/etl.py"}},
        configuration_overrides={},
        waiter_delay=1,
        waiter_max_attempts=100_000,
        **extra,
    )


def emr_steps(contender: str, **extra: Any) -> Any:
    from airflow.providers.amazon.aws.operators.emr import EmrAddStepsOperator

    from resumable.operators.emr_steps import ResumableEmrAddStepsOperator

    cls = ResumableEmrAddStepsOperator if contender == "resumable" else EmrAddStepsOperator
    step = {
        "Name": "etl",
        "ActionOnFailure": "CONTINUE",
        "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["spark-submit", "s3://bucket/etl.py"]},
    }
    return cls(
        task_id="job",
        job_flow_id=CLUSTER_ID,
        steps=[step],
        wait_for_completion=True,
        waiter_delay=1,
        waiter_max_attempts=100_000,
        **extra,
    )


def emr_eks(contender: str, **extra: Any) -> Any:
    from airflow.providers.amazon.aws.operators.emr import EmrContainerOperator

    from resumable.operators.emr_eks import ResumableEmrContainerOperator

    cls = ResumableEmrContainerOperator if contender == "resumable" else EmrContainerOperator
    return cls(
        task_id="job",
        name="etl",
        virtual_cluster_id=VIRTUAL_CLUSTER_ID,
        execution_role_arn=ROLE,
        release_label="emr-7.0.0-latest",
        job_driver={"sparkSubmitJobDriver": {"entryPoint": "s3://bucket/etl.py"}},
        poll_interval=1,
        **extra,
    )


def emr_cluster(contender: str, **extra: Any) -> Any:
    from airflow.providers.amazon.aws.operators.emr import EmrCreateJobFlowOperator

    from resumable.operators.emr_cluster import ResumableEmrCreateJobFlowOperator

    cls = ResumableEmrCreateJobFlowOperator if contender == "resumable" else EmrCreateJobFlowOperator
    overrides = {
        "Name": "nightly",
        "ReleaseLabel": "emr-7.0.0",
        "Instances": {
            "InstanceGroups": [
                {"Name": "primary", "InstanceRole": "MASTER", "InstanceType": "m5.xlarge", "InstanceCount": 1}
            ],
            # A transient cluster: it runs its work (the scripted seconds), then terminates.
            "KeepJobFlowAliveWhenNoSteps": False,
        },
        "JobFlowRole": "EMR_EC2_DefaultRole",
        "ServiceRole": "EMR_DefaultRole",
    }
    return cls(
        task_id="job",
        emr_conn_id=None,
        job_flow_overrides=overrides,
        wait_for_completion=True,
        waiter_delay=1,
        waiter_max_attempts=100_000,
        **extra,
    )


def glue(contender: str, **extra: Any) -> Any:
    from airflow.providers.amazon.aws.operators.glue import GlueJobOperator

    from resumable.operators.glue import ResumableGlueJobOperator

    cls = ResumableGlueJobOperator if contender == "resumable" else GlueJobOperator
    return cls(
        task_id="job",
        job_name=f"{GLUE_JOB}-{contender}",  # a job per contender: their runs are told apart
        wait_for_completion=True,
        job_poll_interval=1,
        waiter_delay=1,
        waiter_max_attempts=100_000,
        **extra,
    )


def sagemaker_training(contender: str, **extra: Any) -> Any:
    from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTrainingOperator

    from resumable.operators.sagemaker import ResumableSageMakerTrainingOperator

    cls = ResumableSageMakerTrainingOperator if contender == "resumable" else SageMakerTrainingOperator
    config = {
        "TrainingJobName": f"crash-{contender}",
        "AlgorithmSpecification": {
            "TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/xgboost:1",
            "TrainingInputMode": "File",
        },
        "RoleArn": ROLE,
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": TRAINING_DATA}},
            }
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://training/output/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
    }
    return cls(task_id="job", config=config, print_log=False, check_interval=1, **extra)


BUILDERS = {
    "databricks": databricks,
    "emr_serverless": emr_serverless,
    "emr_steps": emr_steps,
    "emr_eks": emr_eks,
    "emr_cluster": emr_cluster,
    "glue": glue,
    "sagemaker_training": sagemaker_training,
}
CONTENDERS = {
    "databricks": ("resumable", "provider", "provider_nodurable"),
    "emr_serverless": ("resumable", "provider"),
    "emr_steps": ("resumable", "provider"),
    "emr_eks": ("resumable", "provider"),
    "emr_cluster": ("resumable", "provider"),
    "glue": ("resumable", "provider"),
    "sagemaker_training": ("resumable", "provider"),
}

for _system, _build in BUILDERS.items():
    for _contender in CONTENDERS[_system]:
        with _dag(f"crash_{_system}_{_contender}") as _d:
            _build(_contender)
        globals()[_d.dag_id] = _d
    with _dag(f"crash_{_system}_timeout") as _d:
        _build("resumable", execution_timeout=TIMEOUT, retries=0)
    globals()[_d.dag_id] = _d
    with _dag(f"crash_{_system}_noretry") as _d:
        _build("resumable", retries=0, pre_execute=hold_until_stopped)
    globals()[_d.dag_id] = _d
    with _dag(f"crash_{_system}_retry_timeout") as _d:
        _build("resumable", execution_timeout=RETRY_TIMEOUT)
    globals()[_d.dag_id] = _d

for _system in ("databricks", "emr_serverless", "emr_eks"):
    with _dag(f"crash_{_system}_deferrable") as _d:
        BUILDERS[_system]("resumable", deferrable=True)
    globals()[_d.dag_id] = _d
