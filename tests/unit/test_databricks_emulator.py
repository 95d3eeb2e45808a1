"""The Databricks emulator's own behaviour, checked through the provider's real ``DatabricksHook``
(sync and async paths) so the operator tests that rely on it can be trusted."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest
from airflow.providers.databricks.exceptions import DatabricksApiError
from airflow.providers.databricks.hooks.databricks import DatabricksHook
from tenacity import stop_after_attempt, wait_fixed

from resumable.testing.databricks import DatabricksEmulator, RunScript, TaskScript

NOTEBOOK = {"notebook_task": {"notebook_path": "/x"}}


@pytest.fixture
def emu() -> Iterator[DatabricksEmulator]:
    with DatabricksEmulator(manual_clock=True) as emulator, emulator.use_as("dbx_emulator"):
        yield emulator


def hook(attempts: int = 2, wait: float = 0) -> DatabricksHook:
    return DatabricksHook(
        "dbx_emulator",
        retry_limit=attempts,
        retry_args={"stop": stop_after_attempt(attempts), "wait": wait_fixed(wait)},
    )


def post(emu: DatabricksEmulator, name: str, body: dict) -> tuple[int, str | None, dict]:
    """POST straight to the API (no retries): status, Retry-After header, JSON body."""
    request = urllib.request.Request(
        f"{emu.url}/api/2.2/jobs/{name}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {emu.token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, answer.headers.get("Retry-After"), json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Retry-After"), json.load(error)


def life(emu: DatabricksEmulator, run_id: int) -> tuple[str, str | None]:
    state = hook().get_run(run_id)["state"]
    return state["life_cycle_state"], state.get("result_state")


def test_same_token_returns_the_same_run_finished_or_not(emu) -> None:
    first = hook().submit_run({**NOTEBOOK, "idempotency_token": "tok-1"})
    assert hook().submit_run({**NOTEBOOK, "idempotency_token": "tok-1"}) == first
    emu.advance(60)
    assert life(emu, first) == ("TERMINATED", "SUCCESS")
    assert hook().submit_run({**NOTEBOOK, "idempotency_token": "tok-1"}) == first
    assert emu.runs_created == 1 and emu.submissions["tok-1"] == 3
    assert hook().submit_run({**NOTEBOOK, "idempotency_token": "tok-2"}) != first


def test_token_longer_than_64_characters_is_refused(emu) -> None:
    with pytest.raises(DatabricksApiError) as error:
        hook().submit_run({**NOTEBOOK, "idempotency_token": "x" * 65})
    assert error.value.http_status_code == 400 and emu.runs_created == 0


def test_a_run_goes_pending_running_terminated_on_the_clock(emu) -> None:
    emu.script_next(RunScript(result="FAILED", pending=5, duration=10))
    run_id = hook().submit_run(NOTEBOOK)
    assert life(emu, run_id) == ("PENDING", None)
    emu.advance(6)
    assert life(emu, run_id) == ("RUNNING", None)
    emu.advance(10)
    assert life(emu, run_id) == ("TERMINATED", "FAILED")
    assert emu.compute_seconds() == pytest.approx(10)
    output = hook().get_run_output(run_id)
    assert "FAILED" in output["error"]


def test_multi_task_results_and_success_with_failures(emu) -> None:
    tasks = [{"task_key": "a", **NOTEBOOK}, {"task_key": "b", **NOTEBOOK}]
    emu.script_next(RunScript(tasks={"b": TaskScript(result="FAILED", duration=1)}, duration=2, pending=0))
    failed = hook().submit_run({"tasks": tasks})
    emu.script_next(RunScript(result="SUCCESS_WITH_FAILURES", tasks={"b": TaskScript(result="FAILED")}))
    mixed = hook().submit_run({"tasks": tasks})
    emu.advance(30)
    run = hook().get_run(failed)
    assert run["state"]["result_state"] == "FAILED"
    assert {t["task_key"]: t["state"]["result_state"] for t in run["tasks"]} == {
        "a": "SUCCESS",
        "b": "FAILED",
    }
    assert life(emu, mixed) == ("TERMINATED", "SUCCESS_WITH_FAILURES")


def test_cancel_is_asynchronous(emu) -> None:
    emu.script_next(RunScript(result="HANG", pending=0))
    run_id = hook().submit_run(NOTEBOOK)
    emu.advance(5)
    hook().cancel_run(run_id)
    assert life(emu, run_id) == ("TERMINATING", None)
    emu.advance(5)
    assert life(emu, run_id) == ("TERMINATED", "CANCELED")
    assert emu.cancels == [run_id]


def test_repair_reruns_only_the_failed_tasks_inside_the_same_run(emu) -> None:
    job_id = emu.create_job(
        "job",
        tasks=[{"task_key": "a"}, {"task_key": "b"}],
        script=RunScript(
            tasks={"b": TaskScript(result="FAILED", rerun_result="FAILED")}, pending=0, duration=1
        ),
    )
    run_id = hook().run_now({"job_id": job_id})
    with pytest.raises(DatabricksApiError):  # an active run cannot be repaired
        hook().repair_run({"run_id": run_id, "rerun_all_failed_tasks": True})
    emu.advance(20)
    a_before = {t["task_key"]: t["run_id"] for t in hook().get_run(run_id)["tasks"]}
    first = hook().repair_run({"run_id": run_id, "rerun_all_failed_tasks": True})
    after = {t["task_key"]: t["run_id"] for t in hook().get_run(run_id)["tasks"]}
    assert after["a"] == a_before["a"] and after["b"] != a_before["b"], "only the failed task reruns"
    emu.advance(20)
    assert life(emu, run_id) == ("TERMINATED", "FAILED")  # rerun_result FAILED
    with pytest.raises(DatabricksApiError):  # latest_repair_id is required from the second repair on
        hook().repair_run({"run_id": run_id, "rerun_all_failed_tasks": True})
    assert hook().get_latest_repair_id(run_id) == first
    hook().repair_run({"run_id": run_id, "rerun_all_failed_tasks": True, "latest_repair_id": first})
    history = hook().get_run(run_id) and emu.run(run_id)["repair_history"]
    assert [h["type"] for h in history] == ["ORIGINAL", "REPAIR", "REPAIR"]
    assert emu.repairs == [run_id, run_id] and emu.runs_created == 1


@pytest.mark.parametrize(
    ("status", "code"), [(400, "INVALID_PARAMETER_VALUE"), (404, "RESOURCE_DOES_NOT_EXIST")]
)
def test_unknown_run_answers_like_the_service(emu, status, code) -> None:
    emu.not_found_status = status
    with pytest.raises(DatabricksApiError) as error:
        hook().get_run(424242)
    assert error.value.http_status_code == status
    assert code in str(error.value) and "Run 424242 does not exist" in str(error.value)


def test_throttling_is_retried_by_the_hook(emu) -> None:
    run_id = hook().submit_run(NOTEBOOK)
    emu.fail_next(2, status=429, path="runs/get")
    assert hook(attempts=3).get_run(run_id)["run_id"] == run_id
    emu.fail_next(3, status=503)
    with pytest.raises(Exception, match="failed 3 times"):
        hook(attempts=3).get_run(run_id)


def test_requests_over_the_rate_limit_are_refused_counted_and_take_no_effect(emu) -> None:
    emu.rate_limit(0.001, burst=2)  # two tokens, the next one in ~17 minutes
    assert post(emu, "runs/submit", NOTEBOOK)[0] == 200
    assert post(emu, "runs/submit", {**NOTEBOOK, "idempotency_token": "t"})[0] == 200
    status, retry_after, body = post(emu, "runs/submit", {**NOTEBOOK, "idempotency_token": "u"})
    assert (status, retry_after, body["error_code"]) == (429, "1", "REQUEST_LIMIT_EXCEEDED")
    assert post(emu, "runs/cancel", {"run_id": emu.runs[0]})[0] == 429
    assert emu.runs_created == 2 and "u" not in emu.submissions and emu.cancels == []
    assert emu.throttled == {"POST runs/submit": 1, "POST runs/cancel": 1}
    assert emu.calls["POST runs/submit"] == 3 and emu.stats()["throttled"] == 2
    emu.reset()  # keeps the limit, refills the bucket, forgets the counts
    assert emu.stats()["throttled"] == 0
    assert [post(emu, "runs/submit", NOTEBOOK)[0] for _ in range(3)] == [200, 200, 429]


def test_the_hook_gets_through_a_rate_limit_by_its_own_retries(emu) -> None:
    run_id = hook().submit_run(NOTEBOOK)
    emu.rate_limit(5, burst=1)
    limited = hook(attempts=20, wait=0.05)
    states = [limited.get_run_state(run_id) for _ in range(10)]
    assert [s.life_cycle_state for s in states] == ["PENDING"] * 10
    assert emu.throttled["GET runs/get"] > 0
    assert emu.calls["GET runs/get"] - emu.throttled["GET runs/get"] == 10


def test_a_limit_of_none_lets_everything_through() -> None:
    emulator = DatabricksEmulator(manual_clock=True, rate_limit_per_second=0.001)  # burst 1
    auth = f"Bearer {emulator.token}"
    assert [emulator.handle("GET", "/api/2.2/jobs/runs/list", {}, auth)[0] for _ in range(2)] == [200, 429]
    emulator.rate_limit(None)
    assert {emulator.handle("GET", "/api/2.2/jobs/runs/list", {}, auth)[0] for _ in range(50)} == {200}
    assert emulator.throttled == {"GET runs/list": 1}
    with pytest.raises(ValueError, match="positive"):
        emulator.rate_limit(0)


async def test_the_async_path_sends_get_with_a_json_body(emu) -> None:
    run_id = hook().submit_run(NOTEBOOK)
    async with hook() as async_hook:
        state = await async_hook.a_get_run_state(run_id)
    assert state.life_cycle_state == "PENDING"
    assert emu.calls["GET runs/get"] == 1


def test_jobs_are_found_by_name_and_stats_are_served_over_http(emu) -> None:
    job_id = emu.create_job("nightly")
    assert hook().find_job_id_by_name("nightly") == job_id
    assert hook().run_now({"job_id": job_id, "idempotency_token": "t"}) == emu.runs[0]
    with urllib.request.urlopen(f"{emu.url}/emulator/stats") as answer:
        stats = json.load(answer)
    assert stats["runs_created"] == 1 and stats["submissions"] == {"t": 1}
    assert stats["calls"]["POST run-now"] == 1


def test_a_wrong_token_is_unauthenticated(emu) -> None:
    request = urllib.request.Request(
        f"{emu.url}/api/2.2/jobs/runs/list", headers={"Authorization": "Bearer no"}
    )
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request)
    assert error.value.code == 401


def test_scripts_refuse_states_the_service_does_not_have() -> None:
    with pytest.raises(ValueError, match="not a Databricks result state"):
        TaskScript(result="DONE")
