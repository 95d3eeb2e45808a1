"""Resumable EMR cluster creation: ``EmrCreateJobFlowOperator`` that creates one cluster per submission.

The service takes no token for a new cluster: ours is a tag of the cluster (``resumable-token``), and a
retry finds the cluster by it instead of creating another.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from airflow.providers.amazon.aws.links.emr import EmrClusterLink
from airflow.providers.amazon.aws.operators.emr import EmrCreateJobFlowOperator
from airflow.providers.amazon.aws.utils.waiter import WAITER_POLICY_NAME_MAPPING, WaitPolicy

from resumable.job import JobHandle, JobState, JobStatus
from resumable.links import ResumableJobLink
from resumable.operators._aws import ResumableAwsMixin
from resumable.operators.emr_triggers import ResumableEmrCreateJobFlowTrigger

#: The tag a resumable cluster carries, whose value is the submission's token.
TOKEN_TAG = "resumable-token"

ALL_CLUSTER_STATES = [
    "STARTING",
    "BOOTSTRAPPING",
    "RUNNING",
    "WAITING",
    "TERMINATING",
    "TERMINATED",
    "TERMINATED_WITH_ERRORS",
]


class ResumableEmrCreateJobFlowOperator(ResumableAwsMixin, EmrCreateJobFlowOperator):  # type: ignore[misc]
    """``EmrCreateJobFlowOperator`` that creates one cluster per submission, found again after a crash.

    The token is added to the cluster's tags (``resumable-token``); a retry finds the cluster the
    crashed attempt created, by that tag, and keeps waiting per ``wait_policy`` /
    ``wait_for_completion`` as the provider does: no second cluster, no orphan. A person's stop
    terminates the cluster; a worker's SIGTERM does not. Waiting is bounded by
    ``waiter_delay * waiter_max_attempts`` seconds, after which the cluster is terminated when
    ``terminate_job_flow_on_failure`` (the default) says so.
    """

    def submit_is_idempotent(self) -> bool:
        return False  # no token in the API: the job is found again by the token in its name or tag

    job_system = "emr-cluster"
    #: Its name until operators/emr.py was split into a module per operator.
    former_names = ("resumable.operators.emr.ResumableEmrCreateJobFlowOperator",)
    operator_extra_links = (
        # type: ignore[assignment]
        *EmrCreateJobFlowOperator.operator_extra_links,
        ResumableJobLink(),
    )

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("poll_interval", kwargs.get("waiter_delay") or 60)
        super().__init__(**kwargs)

    def _overrides(self) -> dict[str, Any]:
        overrides = self.job_flow_overrides
        if isinstance(overrides, str):
            overrides = ast.literal_eval(overrides)
        return dict(overrides)

    def _job_handle(self, cluster_id: str) -> JobHandle:
        return JobHandle(self.job_system, cluster_id, self._console(f"clusterDetails/{cluster_id}"))

    def submit_job(self, context: Any, token: str) -> JobHandle:  # type: ignore[override]
        overrides = self._overrides()
        tags = [t for t in overrides.get("Tags", []) if t.get("Key") != TOKEN_TAG]
        overrides["Tags"] = [*tags, {"Key": TOKEN_TAG, "Value": token}]
        response = self.hook.create_job_flow(overrides)
        cluster_id = str(response["JobFlowId"])
        self._job_flow_id = cluster_id
        return self._job_handle(cluster_id)

    def find_job(self, context: Mapping[str, Any], token: str) -> JobHandle | None:
        run = context.get("dag_run")
        times = [getattr(run, name, None) for name in ("queued_at", "start_date", "run_after")]
        known = [t for t in times if t is not None]
        created_after = (min(known) - timedelta(hours=1)) if known else None
        listing: dict[str, Any] = {"ClusterStates": ALL_CLUSTER_STATES}
        if created_after is not None:
            listing["CreatedAfter"] = created_after
        for cluster_id in self._cluster_ids(listing):
            tags = self.hook.conn.describe_cluster(ClusterId=cluster_id)["Cluster"].get("Tags", [])
            if any(t.get("Key") == TOKEN_TAG and t.get("Value") == token for t in tags):
                return self._job_handle(cluster_id)
        return None

    def _cluster_ids(self, listing: dict[str, Any]) -> Iterable[str]:
        for page in self.hook.conn.get_paginator("list_clusters").paginate(**listing):
            for cluster in page["Clusters"]:
                yield str(cluster["Id"])

    def _success_states(self) -> frozenset[str]:
        if self.wait_policy is WaitPolicy.WAIT_FOR_STEPS_COMPLETION:
            return frozenset({"TERMINATED"})
        return frozenset({"WAITING", "RUNNING", "TERMINATED"})

    def get_job_status(self, handle: JobHandle) -> JobStatus:  # type: ignore[override]
        answer = self._describe(self.hook.conn.describe_cluster, ClusterId=handle.job_id)
        if answer is None:
            return JobStatus(JobState.NOT_FOUND, "missing", f"cluster {handle.job_id} does not exist")
        status = answer["Cluster"]["Status"]
        return self._cluster_status(status).created(status.get("Timeline", {}).get("CreationDateTime"))

    def _cluster_status(self, status: dict[str, Any]) -> JobStatus:
        state, reason = str(status["State"]), status.get("StateChangeReason", {})
        message = str(reason.get("Message", ""))
        if state == "TERMINATED_WITH_ERRORS":
            return JobStatus(JobState.FAILED, state, message)
        if state == "TERMINATED" and reason.get("Code") == "USER_REQUEST":
            return JobStatus(JobState.CANCELLED, state, message)
        if state in self._success_states():
            return JobStatus(JobState.SUCCEEDED, state, message)
        if state == "TERMINATING":
            return JobStatus(JobState.STOPPING, state, message)
        return JobStatus(
            JobState.PENDING if state in ("STARTING", "BOOTSTRAPPING") else JobState.RUNNING, state
        )

    def cancel_job(self, handle: JobHandle) -> None:
        self.hook.conn.terminate_job_flows(JobFlowIds=[handle.job_id])

    def announce_job(self, context: Mapping[str, Any], handle: JobHandle) -> None:
        super().announce_job(context, handle)
        self._job_flow_id = handle.job_id
        EmrClusterLink.persist(
            context=context,
            operator=self,
            region_name=self.hook.conn_region_name,
            aws_partition=self.hook.conn_partition,
            job_flow_id=handle.job_id,
        )

    @property
    def cancel_at_wait_limit(self) -> bool:  # type: ignore[override]
        return bool(self.terminate_job_flow_on_failure)

    def job_trigger(self, context: Mapping[str, Any], handle: JobHandle) -> ResumableEmrCreateJobFlowTrigger:
        return ResumableEmrCreateJobFlowTrigger(
            cancel_on_kill=self._trigger_cancels(),
            job_flow_id=handle.job_id,
            waiter_delay=self.waiter_delay,
            waiter_max_attempts=self.waiter_max_attempts,
            waiter_name=WAITER_POLICY_NAME_MAPPING[self.wait_policy or WaitPolicy.WAIT_FOR_COMPLETION],
            **self._aws_trigger_args(),
        )


__all__ = ["ALL_CLUSTER_STATES", "TOKEN_TAG", "ResumableEmrCreateJobFlowOperator"]
