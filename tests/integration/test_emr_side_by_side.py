"""Side by side with the amazon provider's EMR operators: the same moto-backed AWS, the same crash point.

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
from airflow.providers.amazon.aws.operators.emr import (
    EmrAddStepsOperator,
    EmrContainerOperator,
    EmrCreateJobFlowOperator,
    EmrServerlessStartJobOperator,
)

from resumable.testing.airflow import run_dag, task_states
from resumable.testing.aws import AwsEmulator
from tests.helpers import new_dag
from tests.integration.test_emr import CLUSTER, EKS_DRIVER, KINDS, ROLE, SPARK_DRIVER, SPARK_STEP, Kind, make


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
    }
    return build[kind.name]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
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
