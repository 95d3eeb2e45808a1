"""The persisted record's validation and the deterministic tokens."""

from __future__ import annotations

import json

import pytest

from resumable.errors import RecordError
from resumable.job import JobHandle, JobState, JobStatus
from resumable.record import Phase, Record
from resumable.tokens import TOKEN_PATTERN, make_token

WHERE, HINT = "dag_id='d' run_id='r' task_id='t' key='k'", "python -m resumable state clear --key k"


def sample() -> Record:
    return Record(
        1,
        1,
        1,
        Phase.SUBMITTED,
        "rsm-a",
        "m.Op",
        JobHandle("fake", "7", "u", {"a": 1}),
        JobStatus(JobState.RUNNING, "RUNNING"),
    )


def test_record_round_trips_through_json() -> None:
    rec = sample()
    assert Record.from_json(json.loads(json.dumps(rec.to_json())), where=WHERE, clear_hint=HINT) == rec


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("{not json", "not valid JSON"),
        ([1, 2], "not a JSON object"),
        ({**sample().to_json(), "v": 99}, "schema version v=99"),
        ({**sample().to_json(), "phase": "flying"}, "corrupt"),
        ({**sample().to_json(), "owner": "one"}, "corrupt"),
        ({**sample().to_json(), "handle": None}, "without a job handle"),
        ({**sample().to_json(), "v": True}, "schema version v=True"),
        ({**sample().to_json(), "v": 1.0}, "schema version v=1.0"),
        ({**sample().to_json(), "stop_reason": 7}, "stop_reason must be a str"),
        ({**sample().to_json(), "stop_reason": ["cleared"]}, "stop_reason must be a str"),
        ({**sample().to_json(), "clear_number": "2"}, "clear_number must be a int"),
    ],
)
def test_bad_record_error_names_the_record_and_the_command_that_clears_it(raw, problem) -> None:
    with pytest.raises(RecordError) as info:
        Record.from_json(raw, where=WHERE, clear_hint=HINT)
    message = str(info.value)
    assert problem in message and WHERE in message and HINT in message
    assert "Nothing was submitted" in message


def test_token_is_deterministic_short_and_safe() -> None:
    token = make_token("dag", "manual__2025-01-01T00:00:00+00:00", "task", -1, 2, 1)
    assert token == make_token("dag", "manual__2025-01-01T00:00:00+00:00", "task", -1, 2, 1)
    assert TOKEN_PATTERN.match(token) and len(token) <= 64


def test_every_new_submission_gets_a_new_token() -> None:
    base = ("dag", "run", "task", -1, 2, 1)
    variants = [
        ("dag2", "run", "task", -1, 2, 1),
        ("dag", "run2", "task", -1, 2, 1),
        ("dag", "run", "task2", -1, 2, 1),
        ("dag", "run", "task", 0, 2, 1),
        ("dag", "run", "task", -1, 3, 1),  # new lineage
        ("dag", "run", "task", -1, 2, 2),  # next submission of the lineage
    ]
    tokens = {make_token(*base)} | {make_token(*v) for v in variants}
    assert len(tokens) == 1 + len(variants)


def test_long_names_still_give_a_valid_token() -> None:
    token = make_token("d" * 250, "r" * 250, "t" * 250, 12345, 10**6, 10**4)
    assert TOKEN_PATTERN.match(token)


def test_a_dag_run_triggered_again_under_the_same_run_id_gets_new_tokens() -> None:
    first = make_token("dag", "run", "task", -1, 2, 1, "2025-01-01T00:00:00+00:00")
    again = make_token("dag", "run", "task", -1, 2, 1, "2025-01-02T09:30:00+00:00")
    assert first != again


def test_a_deferred_attempt_resumes_only_while_the_record_still_names_it_as_owner() -> None:
    from resumable.attempt import Attempt
    from resumable.errors import SupersededError
    from resumable.protocol import Facts
    from resumable.state import MemoryBackend, TaskScope

    attempt = Attempt({}, TaskScope("d", "r", "t"), MemoryBackend(), "k", Facts(1, 2), "m.Op", "fake")
    attempt.check_resumed_owner(sample().evolve(owner=2))
    with pytest.raises(SupersededError, match="try 3"):
        attempt.check_resumed_owner(sample().evolve(owner=3))
    with pytest.raises(SupersededError):
        attempt.check_resumed_owner(sample().evolve(owner=2, lineage=4))
