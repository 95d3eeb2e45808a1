"""Crash DAGs of the AWS systems through the amazon provider: see :mod:`resumable.testing.crash_dags`
for their ids and settings. Systems ``emr_serverless``, ``emr_steps``, ``emr_eks`` (EMR on EKS),
``emr_cluster`` (a transient cluster: it runs for the scripted seconds, then terminates), ``glue``
(a Glue job's runs) and ``sagemaker_training``; ``crash_emr_serverless_deferrable`` and
``crash_emr_eks_deferrable`` too.

The ``aws_default`` connection comes from the environment (the lab's moto); the EMR application,
cluster and virtual cluster ids and the execution role from ``RESUMABLE_CRASH_APPLICATION_ID``,
``RESUMABLE_CRASH_CLUSTER_ID``, ``RESUMABLE_CRASH_VIRTUAL_CLUSTER_ID`` and
``RESUMABLE_CRASH_ROLE_ARN``; the Glue jobs are ``<RESUMABLE_CRASH_GLUE_JOB>-<contender>``.
"""

from __future__ import annotations

import os
from typing import Any

from resumable.testing.crash_dags import define

ROLE = os.environ.get("RESUMABLE_CRASH_ROLE_ARN", "arn:aws:iam::123456789012:role/emr-job")
APPLICATION_ID = os.environ.get("RESUMABLE_CRASH_APPLICATION_ID", "")
CLUSTER_ID = os.environ.get("RESUMABLE_CRASH_CLUSTER_ID", "")
VIRTUAL_CLUSTER_ID = os.environ.get("RESUMABLE_CRASH_VIRTUAL_CLUSTER_ID", "")
GLUE_JOB = os.environ.get("RESUMABLE_CRASH_GLUE_JOB", "crash-etl")
TRAINING_DATA = os.environ.get("RESUMABLE_CRASH_TRAINING_DATA", "s3://training/data/")


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


for _system, _build in (
    ("emr_serverless", emr_serverless),
    ("emr_steps", emr_steps),
    ("emr_eks", emr_eks),
    ("emr_cluster", emr_cluster),
    ("glue", glue),
    ("sagemaker_training", sagemaker_training),
):
    globals().update(define(_system, _build, deferrable=_system in ("emr_serverless", "emr_eks")))
