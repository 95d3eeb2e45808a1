"""The adapter (:mod:`resumable.adapter`) on a real Airflow (``dag.test()``): a provider-style operator
that implements Airflow 3.3's job contract over the fake job service, made resumable by a declared
:class:`JobContract`. What a user checks: how many jobs the service created, what the task returned,
how it ended; and that a class with no contract is refused."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest
from airflow.sdk import DAG, BaseOperator

from resumable.adapter import ContractOperator, JobContract
from resumable.job import JobState
from resumable.testing.airflow import run_dag, task_states
from resumable.testing.fake import FakeJobService

#: The fake service's states in the provider's words.
WORDS = {
    JobState.PENDING: "QUEUED",
    JobState.RUNNING: "RUNNING",
    JobState.STOPPING: "CANCELLING",
    JobState.SUCCEEDED: "DONE",
    JobState.FAILED: "ERROR",
    JobState.CANCELLED: "CANCELLED",
    JobState.NOT_FOUND: "MISSING",
}


class ServiceJobOperator(BaseOperator):
    """A provider operator as Airflow 3.3's contract has them: it submits with ``request_id`` (a field
    its service dedupes on, when it does) and has a ``durable`` of its own."""

    def __init__(
        self,
        *,
        service: str,
        request_id: str = "",
        durable: bool = True,
        deferrable: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.service, self.request_id, self.durable, self.deferrable = (
            service,
            request_id,
            durable,
            deferrable,
        )

    def submit_job(self, context: Mapping[str, Any]) -> str:
        return FakeJobService.named(self.service).submit(self.request_id or uuid.uuid4().hex, self.task_id)

    def get_job_status(self, external_id: str, context: Mapping[str, Any]) -> str:
        return WORDS[FakeJobService.named(self.service).status(external_id)]

    def is_job_active(self, status: str) -> bool:
        return status in ("QUEUED", "RUNNING", "CANCELLING")

    def is_job_succeeded(self, status: str) -> bool:
        return status == "DONE"

    def get_job_result(self, external_id: str, context: Mapping[str, Any]) -> str:
        return f"result of {external_id}"


def _put(op: Any, context: Mapping[str, Any], token: str) -> None:
    op.request_id = token


def _cancel(op: Any, job_id: str) -> None:
    FakeJobService.named(op.service).cancel(job_id)


def _find(op: Any, context: Mapping[str, Any], token: str) -> str | None:
    return FakeJobService.named(op.service).find(token)


STATES = {word: state for state, word in WORDS.items()}


class ResumableServiceJobOperator(ContractOperator, ServiceJobOperator):
    job_contract = JobContract(
        system="service", put_token=_put, cancel=_cancel, idempotent=True, states=STATES
    )


class ResumableDiscoveredJobOperator(ContractOperator, ServiceJobOperator):
    job_contract = JobContract(
        system="service", put_token=_put, cancel=_cancel, idempotent=False, find_job=_find, states=STATES
    )


def _dag(operator: type, service: FakeJobService, **kwargs: Any) -> tuple[DAG, Any]:
    name = f"adapter{uuid.uuid4().hex[:10]}"
    service.name = name
    FakeJobService._registry[name] = service
    with DAG(name, schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
        op = operator(
            task_id="job", service=name, retries=2, retry_delay=timedelta(0), poll_interval=0.01, **kwargs
        )
    return dag, op


@pytest.mark.parametrize(
    ("operator", "idempotent"),
    [(ResumableServiceJobOperator, True), (ResumableDiscoveredJobOperator, False)],
    ids=["by-token", "by-discovery"],
)
@pytest.mark.parametrize("point", ["after_submit", "while_polling"])
def test_a_crash_leaves_one_job_and_the_providers_result(
    airflow_db, fault, operator, idempotent, point
) -> None:
    fault(point)
    svc = FakeJobService(idempotent=idempotent)
    dag, op = _dag(operator, svc, durable=True)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert len(svc.created) == 1, "the retry must reattach, not submit again"
    ti = dr.get_task_instance("job")
    assert ti.xcom_pull(task_ids="job") == f"result of {svc.created[0]}"
    assert op.durable is False, "the provider's own resuming is off: one record, ours"


def test_a_status_the_contract_does_not_list_is_read_through_the_providers_contract(airflow_db) -> None:
    _, op = _dag(ResumableServiceJobOperator, FakeJobService())
    assert op.map_status("DONE").state is JobState.SUCCEEDED
    assert op.map_status("PAUSED").state is JobState.FAILED  # neither active nor succeeded, says the provider
    assert op.map_status("CANCELLING").state is JobState.STOPPING


def test_a_class_without_a_contract_is_refused() -> None:
    with pytest.raises(TypeError, match="has no job_contract"):

        class Unsaid(ContractOperator, ServiceJobOperator):
            pass


def test_a_provider_class_without_the_job_contract_is_refused() -> None:
    contract = ResumableServiceJobOperator.job_contract
    with pytest.raises(
        TypeError, match=r"does not implement Airflow's job contract \(submit_job, get_job_status"
    ):

        class Plain(ContractOperator, BaseOperator):
            job_contract = contract


def test_deferrable_without_a_trigger_is_refused_before_anything_is_submitted(airflow_db) -> None:
    svc = FakeJobService()
    with pytest.raises(ValueError, match="cannot defer: it has no job_trigger"):
        _dag(ResumableServiceJobOperator, svc, deferrable=True)
    assert svc.created == []


def test_a_contract_without_a_way_back_to_its_job_is_refused() -> None:
    with pytest.raises(TypeError, match="needs find_job"):
        JobContract(system="service", put_token=_put, cancel=_cancel, idempotent=False)
