"""How the resumable triggers read their deferred task instance's state from ``get_task_states``' answer."""

from __future__ import annotations

from airflow.utils.state import TaskInstanceState

from resumable.protocol import DELETED
from resumable.trigger_stop import UNKNOWN, task_state_in


def test_a_mapped_task_instance_is_found_under_the_key_the_execution_api_gives_it() -> None:
    answer = {"run": {"job_0": TaskInstanceState.DEFERRED, "job_3": TaskInstanceState.FAILED}}
    assert task_state_in(answer, "run", "job", 3) == "failed"
    assert task_state_in(answer, "run", "job", 0) == "deferred"


def test_an_unmapped_task_instance_is_found_under_its_task_id() -> None:
    assert task_state_in({"run": {"job": TaskInstanceState.SUCCESS}}, "run", "job", -1) == "success"
    assert task_state_in({"run": {"job": "deferred"}}, "run", "job", None) == "deferred"


def test_no_state_is_a_state_a_missing_task_instance_was_deleted_and_no_answer_is_unknown() -> None:
    assert task_state_in({"run": {"job": None}}, "run", "job", -1) == "none"  # cleared while deferred
    # Airflow answered without the task instance: a person deleted its DAG run
    assert task_state_in({"run": {}}, "run", "job", -1) == DELETED
    assert task_state_in({}, "run", "job", 2) == DELETED
    assert task_state_in({"run": {"job_1": "deferred"}}, "run", "job", 2) == DELETED
    assert task_state_in(None, "run", "job", -1) is UNKNOWN
