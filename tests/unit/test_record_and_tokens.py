"""The persisted record's validation and the deterministic tokens."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest

from resumable.errors import RecordError
from resumable.job import JobHandle, JobState, JobStatus
from resumable.record import Phase, Record
from resumable.records import Entry, SqlSource, record_problem
from resumable.state import SqlBackend, TaskScope
from resumable.state.sql import state_table
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
        ([1, 2], "is a JSON list ([1, 2]), not an object"),
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


# ---- a stored value that is not a JSON object says what it is --------------------------------

DOUBLE_ENCODED = (
    "is a JSON string, not an object: it looks double-encoded (a JSON object inside a string); "
    "store the object itself"
)


def problem_of(raw: Any, **kwargs: Any) -> str:
    """The words between the record's name and "Nothing was submitted" of its ``RecordError``."""
    with pytest.raises(RecordError) as info:
        Record.from_json(raw, where=WHERE, clear_hint=HINT, **kwargs)
    message = str(info.value)
    head = f"The resumable record {WHERE} "
    tail = (
        ". Nothing was submitted and the record was left as it is, so no job is lost. Look at the job "
        f"it names (if any) yourself, then clear the record with: {HINT}"
    )
    assert message.startswith(head) and message.endswith(tail), message
    return message[len(head) : -len(tail)]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ('{"phase": "submitted"}', DOUBLE_ENCODED),
        (json.dumps(sample().to_json()), DOUBLE_ENCODED),  # a whole record, double-encoded: not taken
        ("[1, 2]", 'is a JSON string ("[1, 2]"), not an object'),
        ("123", 'is a JSON string ("123"), not an object'),
        ([1, 2], "is a JSON list ([1, 2]), not an object"),
        ([], "is a JSON list ([]), not an object"),
        (3, "is a JSON number (3), not an object"),
        (2.5, "is a JSON number (2.5), not an object"),
        (True, "is a JSON boolean (true), not an object"),
        (False, "is a JSON boolean (false), not an object"),
        (None, "is a JSON null, not an object"),
        ({1, 2}, "is a Python set, not a JSON object"),  # only the memory backend keeps Python objects
        (b"[1]", "is a JSON list ([1]), not an object"),
        (b'"x"', 'is a JSON string ("x"), not an object'),
        (
            b"{bad",
            "is not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 "
            "(char 1)): the stored text is '{bad'",
        ),
    ],
)
def test_a_value_that_is_not_an_object_says_what_it_is(raw, problem) -> None:
    assert problem_of(raw) == problem
    assert problem_of(raw, decoded=True) == problem


@pytest.mark.parametrize(
    ("raw", "as_read_by_a_task"),
    [
        (
            "hello",
            "is the text 'hello', not a JSON object: either the stored text is not valid JSON "
            "(Expecting value: line 1 column 1 (char 0)) or it is a JSON string",
        ),
        (
            "{not json",
            "is the text '{not json', not a JSON object: either the stored text is not valid JSON "
            "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1)) or it is a JSON "
            "string",
        ),
    ],
)
def test_text_that_is_not_json_says_both_what_it_may_be_unless_known_decoded(raw, as_read_by_a_task) -> None:
    # A task's backend hands over decoded JSON, but the sql backend hands over text that does not
    # decode as it is: a str that does not decode either is one or a JSON string.
    assert problem_of(raw) == as_read_by_a_task
    assert problem_of(raw, decoded=True) == f"is a JSON string ({json.dumps(raw)}), not an object"


def test_a_long_value_is_quoted_cut_short() -> None:
    assert problem_of(["x" * 100]) == f'is a JSON list (["{"x" * 58}…), not an object'
    text = "y" * 100
    assert problem_of(text).startswith(f"is the text '{'y' * 60}'…, not a JSON object")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('{"phase": "submitted"}', DOUBLE_ENCODED),
        ("hello", 'is a JSON string ("hello"), not an object'),
        ([1, 2], "is a JSON list ([1, 2]), not an object"),
        (7, "is a JSON number (7), not an object"),
        (False, "is a JSON boolean (false), not an object"),
        (None, "is a JSON null, not an object"),
        (
            {**sample().to_json(), "v": 99},
            "has schema version v=99, which this airflow-resumable (writes v=1) "
            "does not know; it was written by another version of the library",
        ),
        (sample().to_json(), None),
    ],
)
def test_listed_values_say_what_they_are(value, problem) -> None:
    """What ``resumable state list`` and the page say: the value is decoded JSON, a str a JSON string."""
    entry = Entry(TaskScope("d", "r", "t"), "resumable.job", value)
    assert entry.problem == record_problem(value) == problem
    assert Entry(TaskScope("d", "r", "t"), "checkpoint:c", value).problem is None  # any JSON is a checkpoint


def test_a_listed_value_that_is_not_json_quotes_the_stored_text() -> None:
    error = "Expecting value: line 1 column 1 (char 0)"
    entry = Entry(TaskScope("d", "r", "t"), "resumable.job", "hello", decode_error=error)
    assert entry.problem == f"is not valid JSON ({error}): the stored text is 'hello'"
    checkpoint = Entry(TaskScope("d", "r", "t"), "checkpoint:c", "hello", decode_error=error)
    assert checkpoint.problem == entry.problem


@pytest.mark.parametrize(
    ("stored", "task_says", "list_says"),
    [
        (json.dumps(json.dumps({"phase": "submitted"})), DOUBLE_ENCODED, DOUBLE_ENCODED),
        (json.dumps(json.dumps(sample().to_json())), DOUBLE_ENCODED, DOUBLE_ENCODED),
        (
            '"hello"',
            "is the text 'hello', not a JSON object: either the stored text is not valid JSON "
            "(Expecting value: line 1 column 1 (char 0)) or it is a JSON string",
            'is a JSON string ("hello"), not an object',
        ),
        (
            "hello",
            "is the text 'hello', not a JSON object: either the stored text is not valid JSON "
            "(Expecting value: line 1 column 1 (char 0)) or it is a JSON string",
            "is not valid JSON (Expecting value: line 1 column 1 (char 0)): the stored text is 'hello'",
        ),
        ("[1, 2]", "is a JSON list ([1, 2]), not an object", "is a JSON list ([1, 2]), not an object"),
        ("null", "is a JSON null, not an object", "is a JSON null, not an object"),
    ],
    ids=["double-encoded", "double-encoded-record", "json-string", "not-json", "list", "null"],
)
def test_sql_backend_text_as_a_task_and_the_listing_read_it(tmp_path, stored, task_says, list_says) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    backend = SqlBackend(url, auto_purge=False)
    scope = TaskScope("d", "r", "t")
    with backend.engine.begin() as conn:
        conn.execute(
            state_table.insert().values(
                dag_id="d",
                run_id="r",
                task_id="t",
                map_index=-1,
                key="resumable.job",
                value=stored,
                version=1,
                updated_at=datetime.now(timezone.utc),
            )
        )
    found = backend.get(scope, "resumable.job")
    assert found is not None and problem_of(found.value) == task_says
    [entry] = SqlSource(url).entries("d", None, None, None)
    assert entry.problem == list_says


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
