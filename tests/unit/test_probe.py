"""How a stopping task reads its task instance's state from ``get_task_states``' answer."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from resumable.probe import AirflowTaskStateProbe
from resumable.protocol import DELETED


class StubTaskInstance(SimpleNamespace):
    """A task instance whose ``get_task_states`` gives the Execution API's answer (or raises)."""

    answer: Any

    def get_task_states(self, **query: Any) -> Any:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def state_of(answer: Any, map_index: int = -1) -> str | None:
    ti = StubTaskInstance(dag_id="d", run_id="r", task_id="job", map_index=map_index, answer=answer)
    return AirflowTaskStateProbe().state_of({"ti": ti})


@pytest.mark.parametrize(
    ("answer", "map_index", "expected"),
    [
        ({"r": {"job": "running"}}, -1, "running"),
        ({"r": {"job": None}}, -1, "none"),
        ({"r": {"job_2": "failed"}}, 2, "failed"),  # mapped: keyed "<task_id>_<map_index>"
        # Airflow answered and has no row of this task instance: its DAG run was deleted
        ({}, -1, DELETED),
        ({"r": {}}, -1, DELETED),
        ({"r": {"job_1": "running"}}, 2, DELETED),
        (ConnectionError("the API server is down"), -1, None),  # cannot be asked: unknown
    ],
)
def test_state_of(answer: Any, map_index: int, expected: str | None) -> None:
    assert state_of(answer, map_index) == expected


def test_no_task_sdk_behind_the_task_instance_means_unknown() -> None:
    assert AirflowTaskStateProbe().state_of({"ti": SimpleNamespace(task_id="job", map_index=-1)}) is None
    assert AirflowTaskStateProbe().state_of({}) is None
