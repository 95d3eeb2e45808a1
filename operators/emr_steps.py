"""Resumable EMR steps: ``EmrAddStepsOperator`` that adds its steps once, whatever happens to the worker.

The service takes no token for steps: ours is written into each step's name, and a retry finds the
steps by it instead of adding them again.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

from airflow.providers.amazon.aws.links.emr import EmrClusterLink
from airflow.providers.amazon.aws.operators.emr import EmrAddStepsOperator

from resumable.errors import ResumableError
from resumable.job import JobHandle, JobState, JobStatus
from resumable.links import ResumableJobLink
from resumable.operators._aws import ResumableAwsMixin
from resumable.operators.emr_triggers import ResumableEmrAddStepsTrigger

#: Step states, ours rather than the hook's (a CANCEL_PENDING step is still active).
STEP_STATES = {
    "PENDING": JobState.PENDING,
    "CANCEL_PENDING": JobState.STOPPING,
    "RUNNING": JobState.RUNNING,
    "COMPLETED": JobState.SUCCEEDED,
    "CANCELLED": JobState.CANCELLED,
    "FAILED": JobState.FAILED,
    "INTERRUPTED": JobState.FAILED,
}
#: Cluster states in which a cluster takes new steps.
CLUSTER_ACCEPTS_STEPS = frozenset({"STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING"})


class ResumableEmrAddStepsOperator(ResumableAwsMixin, EmrAddStepsOperator):  # type: ignore[misc]
    """``EmrAddStepsOperator`` that adds its steps once, whatever happens to the worker.

    The token is appended to each step's ``Name`` (``"<name> [<token>]"``); after a crash between
    adding the steps and recording their ids, the retry finds them with ``list_steps``. The handle
    holds every step id of the task; the task succeeds when all of them complete. As in the
    provider, the task waits only with ``wait_for_completion=True`` or ``deferrable=True``; a wait
    is bounded by ``waiter_delay * waiter_max_attempts`` seconds, after which the steps are cancelled.
    """

    def submit_is_idempotent(self) -> bool:
        return False  # no token in the API: the job is found again by the token in its name or tag

    job_system = "emr-steps"
    #: Its name until operators/emr.py was split into a module per operator.
    former_names = ("resumable.operators.emr.ResumableEmrAddStepsOperator",)
    operator_extra_links = (
        # type: ignore[assignment]
        *EmrAddStepsOperator.operator_extra_links,
        ResumableJobLink(),
    )

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("poll_interval", kwargs.get("waiter_delay", 30))
        super().__init__(**kwargs)

    def _cluster_id(self) -> str:
        cluster_id = self.job_flow_id or self.hook.get_cluster_id_by_name(
            str(self.job_flow_name), self.cluster_states
        )
        if not cluster_id:
            raise ResumableError(
                f"No EMR cluster named {self.job_flow_name!r} is in states {self.cluster_states}; nothing "
                "was submitted. Start the cluster or correct job_flow_name / cluster_states."
            )
        return str(cluster_id)

    def _steps(self, context: Any) -> list[dict[str, Any]]:
        steps = self.steps
        if isinstance(steps, str):
            steps = ast.literal_eval(steps)
        if self.openlineage_inject_parent_job_info:
            steps = self._inject_openlineage_parent_job_information(steps, context)
        return [dict(step) for step in steps]

    def _job_handle(self, cluster_id: str, step_ids: list[str]) -> JobHandle:
        url = self._console(f"clusterDetails/{cluster_id}")
        return JobHandle(
            self.job_system, ",".join(step_ids), url, {"cluster_id": cluster_id, "step_ids": step_ids}
        )

    def submit_job(self, context: Any, token: str) -> JobHandle:  # type: ignore[override]
        cluster_id = self._cluster_id()
        cluster = self.hook.conn.describe_cluster(ClusterId=cluster_id)["Cluster"]
        state = cluster["Status"]["State"]
        if state not in CLUSTER_ACCEPTS_STEPS:
            raise ResumableError(
                f"EMR cluster {cluster_id} is {state} and cannot take steps; nothing was submitted. Start a "
                "cluster (or point job_flow_id at a running one) and clear the task."
            )
        steps = self._steps(context)
        for step in steps:
            step["Name"] = f"{step.get('Name', self.task_id)} [{token}]"
        step_ids = self.hook.add_job_flow_steps(
            job_flow_id=cluster_id, steps=steps, execution_role_arn=self.execution_role_arn
        )
        return self._job_handle(cluster_id, list(step_ids))

    def find_job(self, context: Mapping[str, Any], token: str) -> JobHandle | None:
        cluster_id = self._cluster_id()
        marker = f"[{token}]"
        found = [
            step
            for page in self.hook.conn.get_paginator("list_steps").paginate(ClusterId=cluster_id)
            for step in page["Steps"]
            if str(step.get("Name", "")).endswith(marker)
        ]
        if not found:
            return None
        found.reverse()  # list_steps is newest first; the task's steps are the oldest ones
        wanted = len(self._steps(context))
        ours, extra = found[:wanted], found[wanted:]
        if extra:
            extra_ids = [
                s["Id"] for s in extra if STEP_STATES.get(s["Status"]["State"], JobState.FAILED).is_active
            ]
            self.log.warning(
                "resumable: cluster %s has %s steps with token %s, %s expected: keeping the first %s and "
                "cancelling the active duplicates %s",
                cluster_id,
                len(found),
                token,
                wanted,
                wanted,
                extra_ids,
            )
            if extra_ids:
                self.hook.conn.cancel_steps(ClusterId=cluster_id, StepIds=extra_ids)
        return self._job_handle(cluster_id, [s["Id"] for s in ours])

    def _step_states(self, handle: JobHandle) -> list[dict[str, Any]] | None:
        cluster_id, step_ids = handle.extras["cluster_id"], list(handle.extras["step_ids"])
        steps: list[dict[str, Any]] = []
        for i in range(0, len(step_ids), 10):  # list_steps takes at most 10 StepIds
            answer = self._describe(
                self.hook.conn.list_steps, ClusterId=cluster_id, StepIds=step_ids[i : i + 10]
            )
            if answer is None:
                return None
            steps.extend(answer["Steps"])
        return steps if len(steps) == len(step_ids) else None

    def get_job_status(self, handle: JobHandle) -> JobStatus:  # type: ignore[override]
        steps = self._step_states(handle)
        if steps is None:
            return JobStatus(
                JobState.NOT_FOUND, "missing", "the cluster or some of its steps no longer exist"
            )
        return self._steps_status(steps).created(
            steps[0]["Status"].get("Timeline", {}).get("CreationDateTime")
        )

    def _steps_status(self, steps: list[dict[str, Any]]) -> JobStatus:
        states = [STEP_STATES.get(s["Status"]["State"], JobState.RUNNING) for s in steps]
        raw = ",".join(s["Status"]["State"] for s in steps)
        if any(state.is_active for state in states):
            state = next(s for s in (JobState.RUNNING, JobState.STOPPING, JobState.PENDING) if s in states)
            return JobStatus(state, raw)
        failures = [
            f"{s['Id']} ({s.get('Name', '')}): {s['Status'].get('FailureDetails', {}).get('Message', '')}"
            for s in steps
            if STEP_STATES.get(s["Status"]["State"]) is JobState.FAILED
        ]
        if failures:
            return JobStatus(JobState.FAILED, raw, "; ".join(failures))
        if JobState.CANCELLED in states:
            return JobStatus(JobState.CANCELLED, raw)
        return JobStatus(JobState.SUCCEEDED, raw)

    def cancel_job(self, handle: JobHandle) -> None:
        steps = self._step_states(handle) or []
        active = [s["Id"] for s in steps if STEP_STATES.get(s["Status"]["State"], JobState.RUNNING).is_active]
        if active:
            self.hook.conn.cancel_steps(ClusterId=handle.extras["cluster_id"], StepIds=active)

    def announce_job(self, context: Mapping[str, Any], handle: JobHandle) -> None:
        super().announce_job(context, handle)
        if self.do_xcom_push:
            context["ti"].xcom_push(key="job_flow_id", value=handle.extras["cluster_id"])
        EmrClusterLink.persist(
            context=context,
            operator=self,
            region_name=self.hook.conn_region_name,
            aws_partition=self.hook.conn_partition,
            job_flow_id=handle.extras["cluster_id"],
        )

    def job_result(self, context: Mapping[str, Any], handle: JobHandle, status: JobStatus) -> Any:
        return list(handle.extras["step_ids"])

    def waits_for_job(self) -> bool:
        return bool(self.wait_for_completion or self.deferrable)

    def job_trigger(self, context: Mapping[str, Any], handle: JobHandle) -> ResumableEmrAddStepsTrigger:
        return ResumableEmrAddStepsTrigger(
            cancel_on_kill=self._trigger_cancels(),
            job_flow_id=handle.extras["cluster_id"],
            step_ids=list(handle.extras["step_ids"]),
            waiter_delay=self.waiter_delay,
            waiter_max_attempts=self.waiter_max_attempts,
            **self._aws_trigger_args(),
        )


__all__ = ["CLUSTER_ACCEPTS_STEPS", "STEP_STATES", "ResumableEmrAddStepsOperator"]
