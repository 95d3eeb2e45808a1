"""The AWS kit's own behaviour: moto as an HTTP server plus the EMR driver, through real boto3 clients
(the same ones the amazon provider's hooks build), so the operator tests that rely on it can be trusted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from resumable.testing.aws import ACCOUNT, AwsEmulator, JobScript

STEP = {
    "Name": "etl",
    "ActionOnFailure": "CONTINUE",
    "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["x"]},
}


@pytest.fixture(scope="module")
def server() -> Iterator[AwsEmulator]:
    with AwsEmulator(manual_clock=True, default_script=JobScript(duration=10, pending=2)) as emu:
        yield emu


@pytest.fixture
def aws(server: AwsEmulator) -> AwsEmulator:
    server.reset()
    server.rate_limit(None)  # reset() keeps a rate limit an earlier test set
    return server


def client(aws: AwsEmulator, service: str):
    """A client that does not retry, so each test sees every answer of the kit."""
    return aws.client(service, config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))


def step_states(aws: AwsEmulator, cluster_id: str, ids: list[str]) -> list[str]:
    steps = client(aws, "emr").list_steps(ClusterId=cluster_id, StepIds=ids)["Steps"]
    by_id = {s["Id"]: s["Status"]["State"] for s in steps}
    return [by_id[i] for i in ids]


def test_steps_run_one_at_a_time_through_their_real_states(aws) -> None:
    emr = client(aws, "emr")
    cluster_id = aws.create_cluster()
    aws.script_next(
        "step", JobScript(duration=10, pending=2), JobScript(outcome="fail", duration=5, pending=0)
    )
    ids = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[STEP, {**STEP, "Name": "report"}])["StepIds"]
    assert step_states(aws, cluster_id, ids) == ["PENDING", "PENDING"]
    aws.advance(3)
    assert step_states(aws, cluster_id, ids) == ["RUNNING", "PENDING"]
    assert emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"] == "RUNNING"
    aws.advance(10)
    assert step_states(aws, cluster_id, ids) == ["COMPLETED", "RUNNING"]
    aws.advance(5)
    assert step_states(aws, cluster_id, ids) == ["COMPLETED", "FAILED"]
    failed = emr.describe_step(ClusterId=cluster_id, StepId=ids[1])["Step"]["Status"]
    assert failed["FailureDetails"]["Message"]
    assert emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"] == "WAITING"
    assert aws.steps_created == {"etl": 1, "report": 1}
    assert aws.compute_seconds() == pytest.approx(15)


def test_list_steps_finds_steps_by_name_newest_first(aws) -> None:
    emr = client(aws, "emr")
    cluster_id = aws.create_cluster()
    first = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[{**STEP, "Name": "a [tok]"}])["StepIds"]
    second = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[{**STEP, "Name": "b"}])["StepIds"]
    listed = emr.list_steps(ClusterId=cluster_id)["Steps"]
    assert [s["Id"] for s in listed] == second + first
    assert [s["Id"] for s in listed if s["Name"].endswith("[tok]")] == first


def test_cancel_steps_cancels_running_and_pending_steps(aws) -> None:
    emr = client(aws, "emr")
    cluster_id = aws.create_cluster()
    aws.script_next("step", JobScript(outcome="hang", pending=0))
    ids = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[STEP, STEP])["StepIds"]
    aws.advance(1)
    answer = emr.cancel_steps(ClusterId=cluster_id, StepIds=ids)["CancelStepsInfoList"]
    assert [a["Status"] for a in answer] == ["SUBMITTED", "SUBMITTED"]
    assert step_states(aws, cluster_id, ids) == ["CANCEL_PENDING", "CANCELLED"]
    aws.advance(2)
    assert step_states(aws, cluster_id, ids) == ["CANCELLED", "CANCELLED"]
    assert aws.cancels == ids


def test_serverless_client_token_returns_the_same_run(aws) -> None:
    serverless = client(aws, "emr-serverless")
    app_id = aws.create_serverless_application()
    args = {
        "applicationId": app_id,
        "executionRoleArn": "arn:aws:iam::123456789012:role/r",
        "jobDriver": {"sparkSubmit": {"entryPoint": "s3://b/x.py"}},
        "clientToken": "tok-1",
    }
    before = datetime.now(timezone.utc) - timedelta(seconds=5)
    first = serverless.start_job_run(**args)["jobRunId"]
    assert serverless.start_job_run(**args)["jobRunId"] == first
    assert serverless.get_job_run(applicationId=app_id, jobRunId=first)["jobRun"]["createdAt"] > before
    listed = serverless.list_job_runs(applicationId=app_id, createdAtAfter=before)["jobRuns"]
    assert [run["id"] for run in listed] == [first]
    assert aws.job_runs_created == {"tok-1": 1} and aws.start_requests == {"tok-1": 2}
    state = lambda: serverless.get_job_run(applicationId=app_id, jobRunId=first)["jobRun"]["state"]  # noqa: E731
    assert state() == "SUBMITTED"
    aws.advance(1.5)
    assert state() == "SCHEDULED"
    aws.advance(1)
    assert state() == "RUNNING"
    serverless.cancel_job_run(applicationId=app_id, jobRunId=first)
    assert state() == "CANCELLING"
    aws.advance(2)
    assert state() == "CANCELLED"
    with pytest.raises(ClientError) as error:
        serverless.get_job_run(applicationId=app_id, jobRunId="00nosuchrun")
    assert error.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_eks_client_token_dedup_and_failure(aws) -> None:
    eks = client(aws, "emr-containers")
    vc = aws.create_virtual_cluster()
    aws.script_next("eks", JobScript(outcome="fail", duration=3, pending=1))
    args = {
        "virtualClusterId": vc,
        "name": "etl",
        "executionRoleArn": "arn:aws:iam::123456789012:role/r",
        "releaseLabel": "emr-7.0.0-latest",
        "jobDriver": {"sparkSubmitJobDriver": {"entryPoint": "s3://b/x.py"}},
        "clientToken": "tok-e",
    }
    first = eks.start_job_run(**args)["id"]
    assert eks.start_job_run(**args)["id"] == first and aws.job_runs_created == {"tok-e": 1}
    state = lambda: eks.describe_job_run(id=first, virtualClusterId=vc)["jobRun"]["state"]  # noqa: E731
    assert state() == "PENDING"
    aws.advance(2)
    assert state() == "RUNNING"
    aws.advance(3)
    assert state() == "FAILED"


def test_clusters_start_bootstrap_wait_and_terminate_on_request(aws) -> None:
    emr = client(aws, "emr")
    before = datetime.now(timezone.utc) - timedelta(seconds=5)
    cluster_id = emr.run_job_flow(
        Name="c",
        ReleaseLabel="emr-7.0.0",
        Instances={
            "InstanceCount": 1,
            "MasterInstanceType": "m5.xlarge",
            "KeepJobFlowAliveWhenNoSteps": True,
        },
        Tags=[{"Key": "resumable-token", "Value": "tok-c"}],
    )["JobFlowId"]
    state = lambda: emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]  # noqa: E731
    assert state()["State"] == "STARTING"
    aws.advance(3)
    assert state()["State"] == "BOOTSTRAPPING"
    aws.advance(10)
    assert state()["State"] == "WAITING"
    assert aws.clusters_created == {"tok-c": 1}
    listed = emr.list_clusters(CreatedAfter=before)["Clusters"]
    assert cluster_id in [c["Id"] for c in listed]
    emr.terminate_job_flows(JobFlowIds=[cluster_id])
    assert state()["State"] == "TERMINATING"
    aws.advance(2)
    assert state()["State"] == "TERMINATED" and state()["StateChangeReason"]["Code"] == "USER_REQUEST"


def test_a_failing_cluster_ends_terminated_with_errors(aws) -> None:
    emr = client(aws, "emr")
    aws.script_next("cluster", JobScript(outcome="fail", duration=1, pending=1))
    cluster_id = emr.run_job_flow(
        Name="c", ReleaseLabel="emr-7.0.0", Instances={"InstanceCount": 1, "MasterInstanceType": "m5.xlarge"}
    )["JobFlowId"]
    aws.advance(5)
    status = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]
    assert status["State"] == "TERMINATED_WITH_ERRORS"


@pytest.mark.parametrize("service", ["emr", "emr-serverless"])
def test_throttling_arrives_as_a_throttling_exception(aws, service) -> None:
    aws.throttle_next(1, service)
    call = (
        (lambda: client(aws, "emr").list_clusters())
        if service == "emr"
        else (lambda: client(aws, "emr-serverless").list_applications())
    )
    with pytest.raises(ClientError) as error:
        call()
    assert error.value.response["Error"]["Code"] == "ThrottlingException"
    call()  # the next call goes through


def codes(call, n: int) -> list[str]:
    """The error code of each of ``n`` calls ("" for an answer)."""
    found = []
    for _ in range(n):
        try:
            call()
            found.append("")
        except ClientError as error:
            found.append(error.response["Error"]["Code"])
    return found


def test_requests_over_the_rate_limit_are_throttled_and_counted(aws) -> None:
    serverless = client(aws, "emr-serverless")
    aws.rate_limit(5, burst=5)
    found = codes(serverless.list_applications, 20)
    throttled = found.count("ThrottlingException")
    assert found[:5] == [""] * 5 and throttled > 0 and set(found) == {"", "ThrottlingException"}
    assert aws.throttled == {"ListApplications": throttled}
    assert aws.calls["ListApplications"] == 20  # throttled calls are calls too, as with throttle_next
    assert aws.stats()["throttled"] == {"ListApplications": throttled}
    time.sleep(0.5)  # 2.5 tokens come back
    assert codes(serverless.list_applications, 2) == ["", ""]
    aws.rate_limit(None)
    assert codes(serverless.list_applications, 20) == [""] * 20
    assert aws.throttled == {"ListApplications": throttled}


def test_a_throttled_request_takes_no_effect_and_fixtures_are_not_limited(aws) -> None:
    aws.rate_limit(0.001, burst=1)  # one token, the next one in ~17 minutes
    app_id = aws.create_serverless_application()  # two fixture requests, let through
    serverless = client(aws, "emr-serverless")
    args = {
        "applicationId": app_id,
        "executionRoleArn": aws.role_arn(),
        "jobDriver": {"sparkSubmit": {"entryPoint": "s3://b/x.py"}},
    }
    serverless.start_job_run(**args, clientToken="tok-1")
    assert codes(lambda: serverless.start_job_run(**args, clientToken="tok-2"), 1) == ["ThrottlingException"]
    assert codes(client(aws, "emr").list_clusters, 1) == ["ThrottlingException"]
    assert aws.job_runs_created == {"tok-1": 1} and aws.start_requests == {"tok-1": 1}
    assert aws.throttled == {"StartJobRun": 1, "ListClusters": 1}
    aws.reset()  # keeps the limit, refills the bucket
    assert aws.throttled == {}
    assert codes(client(aws, "emr").list_clusters, 2) == ["", "ThrottlingException"]


def test_the_rate_limit_can_be_set_from_the_start() -> None:
    with AwsEmulator(manual_clock=True, rate_limit_per_second=0.001) as emu:  # burst 1
        assert codes(client(emu, "emr").list_clusters, 2) == ["", "ThrottlingException"]
        emu.rate_limit(None)
        assert codes(client(emu, "emr").list_clusters, 2) == ["", ""]
        assert emu.throttled == {"ListClusters": 1}


@pytest.mark.parametrize("per_second, burst", [(0, None), (-1.0, None), (1.0, 0)])
def test_a_bad_rate_limit_is_refused(per_second, burst) -> None:
    emu = AwsEmulator(manual_clock=True)
    with pytest.raises(ValueError, match="per_second" if burst is None else "burst"):
        emu.rate_limit(per_second, burst)
    with pytest.raises(ValueError, match="per_second"):
        AwsEmulator(rate_limit_per_second=0)


def test_an_unknown_cluster_is_an_invalid_request(aws) -> None:
    with pytest.raises(ClientError) as error:
        client(aws, "emr").list_steps(ClusterId="j-NOSUCHCLUSTER")
    assert error.value.response["Error"]["Code"] == "InvalidRequestException"


def test_scripts_refuse_unknown_outcomes() -> None:
    with pytest.raises(ValueError, match="outcome"):
        JobScript(outcome="explode")


def test_emulators_running_together_act_in_accounts_of_their_own(aws) -> None:
    """moto keeps one state per process: a second emulator must neither see nor reset the first's."""
    cluster_id = aws.create_cluster()
    with AwsEmulator(manual_clock=True) as other:
        assert other.account_id != aws.account_id
        assert client(other, "emr").list_clusters()["Clusters"] == []
        app_id = other.create_serverless_application()
        run = client(other, "emr-serverless").start_job_run(
            applicationId=app_id,
            executionRoleArn=other.role_arn(),  # moto refuses a role of another account
            jobDriver={"sparkSubmit": {"entryPoint": "s3://b/x.py"}},
            clientToken="tok-other",
        )
        assert other.job_runs_created == {"tok-other": 1} and run["jobRunId"]
    state = client(aws, "emr").describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"]
    assert state == "WAITING"  # the other emulator's stop reset only its own account


def test_an_emulator_with_an_account_of_its_own_leaves_the_default_to_others() -> None:
    with AwsEmulator(manual_clock=True, own_account=True) as lab:
        assert lab.account_id != ACCOUNT
        assert lab.role_arn() == f"arn:aws:iam::{lab.account_id}:role/emr-job"
