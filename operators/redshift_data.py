"""Resumable Amazon Redshift Data: ``RedshiftDataOperator`` that runs one statement per submission.

``ExecuteStatement`` and ``BatchExecuteStatement`` take an idempotency token, ``ClientToken`` (up to 64
characters), but the provider's hook never sends one. Ours is added to the request on the hook's own
client (a botocore ``provide-client-params`` handler), so the provider's submit code runs as it is and
a repeated submission with one token answers with the statement that token started.

The operator is the provider's, made resumable through Airflow 3.3's job contract
(:mod:`resumable.adapter`): its submit, its result (the statement ids, or the rows with
``return_sql_result``) and its ``session_id`` XCom are kept; its own ``durable`` is off.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.providers.amazon.aws.operators.redshift_data import RedshiftDataOperator
from airflow.providers.amazon.aws.triggers.redshift_data import RedshiftDataTrigger
from botocore.exceptions import ClientError

from resumable.adapter import ContractOperator, JobContract
from resumable.errors import ResumableError
from resumable.job import JobHandle, JobState, JobStatus
from resumable.links import ResumableJobLink
from resumable.operators._aws import ResumableAwsMixin, cancel_on_kill_choice, error_code
from resumable.operators.aws_triggers import StopsAwsJob
from resumable.protocol import CancelOnKill

#: Redshift Data statement states.
STATEMENT_STATES = {
    "SUBMITTED": JobState.PENDING,
    "PICKED": JobState.PENDING,
    "STARTED": JobState.RUNNING,
    "FINISHED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "ABORTED": JobState.CANCELLED,
    "NOT_FOUND": JobState.NOT_FOUND,  # the provider's word for a statement the service does not know
}
#: The operations the token is added to.
SUBMIT_EVENTS = tuple(
    f"provide-client-params.redshift-data.{operation}"
    for operation in ("ExecuteStatement", "BatchExecuteStatement")
)
#: The longest ``ClientToken`` Redshift Data takes.
TOKEN_LIMIT = 64


def _put_token(op: Any, context: Mapping[str, Any], token: str) -> None:
    op._resumable_client_token = token
    client = op.hook.conn  # the hook caches its client: the handler stays on the one it uses
    if getattr(client, "_resumable_token_handler", None) is None:

        def add_token(params: dict[str, Any], **kwargs: Any) -> None:
            params.setdefault("ClientToken", op._resumable_client_token)

        for event in SUBMIT_EVENTS:
            client.meta.events.register(event, add_token)
        client._resumable_token_handler = add_token


def _status(op: Any, statement_id: str) -> JobStatus:
    statement = op._describe(op.hook.conn.describe_statement, Id=statement_id)
    if statement is None:
        return JobStatus(JobState.NOT_FOUND, "NOT_FOUND", f"Redshift Data has no statement {statement_id}")
    raw = str(statement.get("Status", ""))
    return JobStatus(op.map_status(raw).state, raw, str(statement.get("Error", ""))).created(
        statement.get("CreatedAt")
    )


def _cancel(op: Any, statement_id: str) -> None:
    try:
        op.hook.conn.cancel_statement(Id=statement_id)
    except ClientError as error:
        # A statement that has ended cannot be cancelled; one that runs on must be.
        if error_code(error) != "ValidationException" or _status(op, statement_id).state.is_active:
            raise


def _announce(op: Any, context: Mapping[str, Any], statement_id: str) -> None:
    op.statement_id = statement_id  # what the provider's on_kill and listeners read


def _url(op: Any, statement_id: str) -> str:
    return op._console("query-history", service="sqlworkbench")  # type: ignore[no-any-return]


REDSHIFT_DATA_STATEMENT = JobContract(
    system="redshift-data",
    put_token=_put_token,
    idempotent=True,
    cancel=_cancel,
    states=STATEMENT_STATES,
    status=_status,
    announce=_announce,
    url=_url,
    token_limit=TOKEN_LIMIT,
    provider_off={"durable": False},
)


class ResumableRedshiftDataTrigger(StopsAwsJob, RedshiftDataTrigger):
    """``RedshiftDataTrigger`` whose statement is cancelled (its own ``cancel_on_kill``) only when a
    person stops the deferred task, on every Airflow version; a triggerer restart or a moved trigger
    keeps it. The stop is asked again while the service throttles it."""

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, fields = super().serialize()  # the provider names its own class: the triggerer would rebuild that
        return f"{type(self).__module__}.{type(self).__qualname__}", fields

    def stop_job(self) -> None:
        answer = self.hook.conn.cancel_statement(Id=self.statement_id)
        if not answer.get("Status"):
            raise ResumableError(f"Redshift Data declined to cancel statement {self.statement_id}")


class ResumableRedshiftDataOperator(ContractOperator, ResumableAwsMixin, RedshiftDataOperator):  # type: ignore[misc]
    """``RedshiftDataOperator`` that runs one statement (or batch) per submission, whatever happens to
    the worker.

    Takes the provider's parameters with their meaning (``sql``, ``database``, ``cluster_identifier`` or
    ``workgroup_name`` or ``session_id``, ``secret_arn``, ``db_user``, ``parameters``,
    ``wait_for_completion``, ``poll_interval``, ``return_sql_result``, ``deferrable``, ...). Our token
    is sent as ``ClientToken``. ``cancel_on_kill=True`` (the provider's default) means "cancel on a
    person's stop", False never cancels; the mixin's "user_stop" / "always" / "never" are accepted
    too. ``durable`` (the provider's own resuming) is accepted and has no effect: the record is ours.
    """

    job_contract = REDSHIFT_DATA_STATEMENT
    operator_extra_links = (*RedshiftDataOperator.operator_extra_links, ResumableJobLink())  # type: ignore[assignment]

    def __init__(self, **kwargs: Any) -> None:
        kwargs["cancel_on_kill"] = cancel_on_kill_choice(kwargs.get("cancel_on_kill", True))
        super().__init__(**kwargs)

    def waits_for_job(self) -> bool:
        return bool(self.wait_for_completion)

    def wait_limit(self) -> float | None:
        return None  # the provider waits as long as the statement runs (Redshift ends it at 24 hours)

    def job_trigger(self, context: Mapping[str, Any], handle: JobHandle) -> ResumableRedshiftDataTrigger:
        return ResumableRedshiftDataTrigger(
            statement_id=handle.job_id,
            task_id=self.task_id,
            poll_interval=self.poll_interval,  # type: ignore[arg-type]  # asyncio.sleep takes a float
            cancel_on_kill=self.cancel_on_kill is not CancelOnKill.NEVER,
            **self._aws_trigger_args(),
        )


__all__ = [
    "REDSHIFT_DATA_STATEMENT",
    "STATEMENT_STATES",
    "ResumableRedshiftDataOperator",
    "ResumableRedshiftDataTrigger",
]
