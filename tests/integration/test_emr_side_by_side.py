"""Side by side with the amazon provider's EMR, Glue, SageMaker, Athena, Redshift Data and Batch
operators: the same moto-backed AWS, the same crash point.

A worker that dies right after the job was created and before the task finished is the crash
every retry must survive. Our operators are asserted to create the job once; the provider
operators' counts are recorded (``record_property``, printed with ``-rA``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest
from airflow.providers.amazon.aws.operators.athena import AthenaOperator
from airflow.providers.amazon.aws.operators.batch import BatchOperator
from airflow.providers.amazon.aws.operators.emr import (
    EmrAddStepsOperator,
    EmrContainerOperator,
    EmrCreateJobFlowOperator,
    EmrServerlessStartJobOperator,
)
from airflow.providers.amazon.aws.operators.glue import GlueJobOperator
from airflow.providers.amazon.aws.operators.redshift_data import RedshiftDataOperator
from airflow.providers.amazon.aws.operators.sagemaker import (
    SageMakerProcessingOperator,
    SageMakerTrainingOperator,
)

from resumable.operators.emr import ResumableEmrContainerOperator, ResumableEmrServerlessStartJobOperator
from resumable.testing.airflow import run_dag, task_states
from resumable.testing.aws import AwsEmulator
from tests.helpers import new_dag
from tests.integration.test_aws_operators import (
    ATHENA_ARGS,
    CLUSTER,
    EKS_DRIVER,
    KINDS,
    REDSHIFT_DATA_ARGS,
    ROLE,
    SPARK_DRIVER,
    SPARK_STEP,
    Kind,
    batch_args,
    make,
    params,
    processing_config,
    training_config,
)


def dies_after_submit(provider: type) -> type:
    """The provider operator, submitting without waiting and dying on its first try right after.

    In a real deployment every try parses the DAG again, so an operator that draws a random token
    in ``__init__`` (EMR Serverless) draws a new one per try; ``dag.test()`` reuses the instance,
    so the token is drawn again here to behave like a fresh worker.
    """

    class DiesAfterSubmit(provider):  # type: ignore[misc,valid-type]
        def execute(self, context: Any) -> Any:
            if hasattr(self, "client_request_token") and provider is EmrServerlessStartJobOperator:
                self.client_request_token = str(uuid4())
            result = super().execute(context)
            if context["ti"].try_number == 1:
                raise RuntimeError("worker lost right after the job was created")
            return result

    DiesAfterSubmit.__name__ = f"{provider.__name__}DiesAfterSubmit"
    return DiesAfterSubmit


def provider_task(kind: Kind, aws: AwsEmulator) -> Callable[[], Any]:
    common = {"task_id": "job", "retries": 1, "retry_delay": timedelta(0)}
    build: dict[str, Callable[[], Any]] = {
        "steps": lambda: dies_after_submit(EmrAddStepsOperator)(
            job_flow_id=aws.create_cluster(), steps=[SPARK_STEP, {**SPARK_STEP, "Name": "report"}], **common
        ),
        "serverless": lambda: dies_after_submit(EmrServerlessStartJobOperator)(
            application_id=aws.create_serverless_application(),
            execution_role_arn=ROLE,
            job_driver=SPARK_DRIVER,
            wait_for_completion=False,
            **common,
        ),
        "eks": lambda: dies_after_submit(EmrContainerOperator)(
            name="etl",
            virtual_cluster_id=aws.create_virtual_cluster(),
            execution_role_arn=ROLE,
            release_label="emr-7.0.0-latest",
            job_driver=EKS_DRIVER,
            wait_for_completion=False,
            **common,
        ),
        "cluster": lambda: dies_after_submit(EmrCreateJobFlowOperator)(
            emr_conn_id=None, job_flow_overrides=CLUSTER, **common
        ),
        "glue": lambda: dies_after_submit(GlueJobOperator)(
            job_name=aws.create_glue_job(), wait_for_completion=False, **common
        ),
        "training": lambda: dies_after_submit(SageMakerTrainingOperator)(
            config=training_config(aws), wait_for_completion=False, print_log=False, **common
        ),
        "processing": lambda: dies_after_submit(SageMakerProcessingOperator)(
            config=processing_config(), wait_for_completion=False, print_log=False, **common
        ),
        "athena": lambda: dies_after_submit(AthenaOperator)(**ATHENA_ARGS, sleep_time=0, **common),
        "redshift_data": lambda: dies_after_submit(RedshiftDataOperator)(
            **REDSHIFT_DATA_ARGS, wait_for_completion=False, **common
        ),
        "batch": lambda: dies_after_submit(BatchOperator)(
            **batch_args(aws), wait_for_completion=False, **common
        ),
    }
    return build[kind.name]


@pytest.mark.parametrize("kind", params(KINDS))
def test_crash_right_after_the_job_was_created(kind, aws, fault, record_property) -> None:
    with new_dag(f"provider_{kind.name}") as dag:
        provider_task(kind, aws)()
    theirs = task_states(run_dag(dag))["job"]
    provider_created = kind.created(aws)
    record_property(f"provider_{kind.name}_created", provider_created)
    record_property(f"provider_{kind.name}_final_state", theirs)

    aws.reset()
    fault("after_submit")
    dag, _ = make(kind, aws, retries=1)
    assert task_states(run_dag(dag)) == {"job": "success"}
    assert kind.created(aws) == kind.per_submission
    print(
        f"{kind.name}: provider created {provider_created} (task {theirs}), "
        f"resumable {kind.created(aws)} for one submission of {kind.per_submission}"
    )


def _fake_parent_job_injection(overrides: Any, context: Any) -> dict[str, Any]:
    """What OpenLineage's injection does, in a form the test can see: a Spark property naming the
    parent task (the OpenLineage provider is not installed here, and the real one is a no-op then)."""
    ti = context["ti"]
    properties = {"spark.openlineage.parentJobName": f"{ti.dag_id}.{ti.task_id}"}
    return {
        **(overrides or {}),
        "applicationConfiguration": [{"classification": "spark-defaults", "properties": properties}],
    }


def _fake_transport_injection(overrides: Any, context: Any) -> dict[str, Any]:
    config = [*(overrides or {}).get("applicationConfiguration", [])]
    config.append(
        {"classification": "spark-defaults", "properties": {"spark.openlineage.transport.type": "http"}}
    )
    return {**(overrides or {}), "applicationConfiguration": config}


MONITORING = {
    "monitoringConfiguration": {
        "s3MonitoringConfiguration": {"logUri": "s3://bucket/logs/"},
        "cloudWatchLoggingConfiguration": {
            "enabled": True,
            "logGroupName": "/emr",
            "logStreamNamePrefix": "etl",
        },
    }
}


@pytest.mark.parametrize("name", ["serverless", "eks"])
def test_sends_and_links_what_the_providers_operator_does(name, aws, monkeypatch) -> None:
    """The provider's operator and ours, with OpenLineage injection and every link switched on, each
    start one job: the service receives the same configuration overrides (OpenLineage's included)
    and the task instances hold the same provider links, pointing at their own job."""
    import airflow.providers.amazon.aws.operators.emr as provider_module
    from airflow.providers.common.compat.openlineage.utils import spark as openlineage_spark

    for module in (provider_module, openlineage_spark):
        monkeypatch.setattr(
            module, "inject_parent_job_information_into_emr_serverless_properties", _fake_parent_job_injection
        )
        monkeypatch.setattr(
            module, "inject_transport_information_into_emr_serverless_properties", _fake_transport_injection
        )
    kind = next(k for k in KINDS if k.name == name)
    options: dict[str, Any] = {
        "execution_role_arn": ROLE,
        "openlineage_inject_parent_job_info": True,
        "openlineage_inject_transport_info": True,
        "wait_for_completion": False,
    }
    if name == "serverless":
        pair: tuple[type, type] = (EmrServerlessStartJobOperator, ResumableEmrServerlessStartJobOperator)
        options |= {
            "application_id": aws.create_serverless_application(),
            "job_driver": SPARK_DRIVER,
            "enable_application_ui_links": True,
            "configuration_overrides": MONITORING,
        }
    else:
        pair = (EmrContainerOperator, ResumableEmrContainerOperator)
        options |= {
            "name": "etl",
            "virtual_cluster_id": aws.create_virtual_cluster(),
            "release_label": "emr-7.0.0-latest",
            "job_driver": EKS_DRIVER,
            "configuration_overrides": {
                "monitoringConfiguration": {"s3MonitoringConfiguration": {"logUri": "s3://b/"}}
            },
        }
    with new_dag(f"parity_{name}") as dag:
        provider_op = pair[0](task_id="provider", **options)
        ours = pair[1](task_id="job", poll_interval=0.02, **options)
    dr = run_dag(dag)
    assert task_states(dr) == {"provider": "success", "job": "success"}
    assert kind.created(aws) == 2

    tis = {ti.task_id: ti for ti in dr.get_task_instances()}
    job_ids = {task: tis[task].xcom_pull(task_ids=task) for task in tis}
    if name == "serverless":
        client = aws.client("emr-serverless")
        sent = {
            task: client.get_job_run(applicationId=op.application_id, jobRunId=job_ids[task])["jobRun"].get(
                "configurationOverrides"
            )
            for task, op in (("provider", provider_op), ("job", ours))
        }
    else:
        client = aws.client("emr-containers")
        sent = {
            task: client.describe_job_run(id=job_ids[task], virtualClusterId=op.virtual_cluster_id)[
                "jobRun"
            ].get("configurationOverrides")
            for task, op in (("provider", provider_op), ("job", ours))
        }
    assert sent["job"] is not None and "applicationConfiguration" in sent["job"], sent
    for overrides in sent.values():  # the parent job names the task that sent it
        for entry in overrides["applicationConfiguration"]:
            entry["properties"].pop("spark.openlineage.parentJobName", None)
    assert sent["job"] == sent["provider"]

    def links(task: str) -> dict[str, str]:
        """The provider links' XComs: what each link persisted, and the URL it rendered."""
        keys = [link.xcom_key for link in provider_op.operator_extra_links]
        keys += [link.key for link in provider_op.operator_extra_links if getattr(link, "key", None)]
        found = {key: tis[task].xcom_pull(task_ids=task, key=key) for key in keys}
        return {key: str(value).replace(str(job_ids[task]), "<job>") for key, value in found.items() if value}

    assert links("job") == links("provider")
    if name == "serverless":  # the links persist_links writes, with the S3 and CloudWatch URLs rendered
        assert {"_link_EmrServerlessS3LogsLink", "_link_EmrServerlessCloudWatchLogsLink"} <= set(links("job"))
        assert {"emr_serverless_dashboard", "emr_serverless_logs"} <= set(links("job")), links("job")
