"""The persisted record of one task instance's job: schema, versioning and validation."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from resumable.errors import RecordError
from resumable.job import JobHandle, JobState, JobStatus

#: The schema version this library writes. A record with another ``v`` is never guessed at.
RECORD_VERSION = 1


class Phase(str, Enum):
    """Where the last attempt got to in "write intent, submit, write handle, finish"."""

    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    DONE = "done"


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Reuse:
    """A later lineage's submission with the record's token: its lineage (``max_tries``), try and
    clear counter, when it wrote its intent (ISO 8601, before it submitted), and when the record it
    took the token from was last written (``after``)."""

    at: str
    lineage: int
    owner: int
    clear_number: int | None = None
    after: str | None = None
    #: The stop the record carried when this lineage took its token (a person's stop of the earlier
    #: lineage's attempt): it is about a job of the token created before the intent, not after.
    stop: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "at": self.at,
            "lineage": self.lineage,
            "owner": self.owner,
            "clear_number": self.clear_number,
            "after": self.after,
        }
        if self.stop is not None:
            data["stop"] = self.stop
        return data

    @classmethod
    def from_json(cls, data: Any) -> Reuse:
        if not isinstance(data, dict):
            raise TypeError(f"reuse must be an object, got {type(data).__name__}")
        return cls(
            at=_str(data, "at"),
            lineage=_int(data, "lineage"),
            owner=_int(data, "owner"),
            clear_number=_optional(data, "clear_number", int),
            after=_optional(data, "after", str),
            stop=_optional(data, "stop", str),
        )


@dataclass(frozen=True)
class Record:
    """One task instance's knowledge of its external job, as written to the state layer.

    ``lineage`` is ``ti.max_tries`` when the lineage began: a person's clear changes it, an
    automatic retry does not. ``owner`` is the try that owns the job now, ``seq`` counts the
    submissions of this lineage (each gets its own token). ``retries`` and ``clear_number`` (the
    task's retries and the DAG run's clear counter when the record was written) tell a clear from a
    retry where ``max_tries`` repeats; ``run_after`` tells this DAG run from a deleted one with the
    same run_id. ``stop_reason`` set on a ``submitted`` record means a cancel was asked for and the
    job may still be stopping; the outcome is only what the job reports afterwards.
    """

    lineage: int
    owner: int
    seq: int
    phase: Phase
    token: str
    operator: str
    handle: JobHandle | None = None
    last_status: JobStatus | None = None
    stop_reason: str | None = None
    retries: int | None = None
    clear_number: int | None = None
    run_after: str | None = None
    #: Set on an intent that submits with an earlier lineage's token (after a clear): who submitted
    #: and when, so that the job of that token is known for theirs if it was created after that.
    reuse: Reuse | None = None
    created_at: str = field(default_factory=utcnow)
    updated_at: str = field(default_factory=utcnow)
    v: int = RECORD_VERSION

    def evolve(self, **changes: Any) -> Record:
        """A copy with ``changes`` applied and ``updated_at`` set to now."""
        return replace(self, updated_at=utcnow(), **changes)

    @property
    def job_state(self) -> JobState | None:
        return self.last_status.state if self.last_status else None

    def to_json(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "lineage": self.lineage,
            "owner": self.owner,
            "seq": self.seq,
            "phase": self.phase.value,
            "token": self.token,
            "operator": self.operator,
            "handle": self.handle.to_json() if self.handle else None,
            "last_status": self.last_status.to_json() if self.last_status else None,
            "stop_reason": self.stop_reason,
            "retries": self.retries,
            "clear_number": self.clear_number,
            "run_after": self.run_after,
            **({"reuse": self.reuse.to_json()} if self.reuse is not None else {}),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_json(cls, raw: Any, *, where: str, clear_hint: str, decoded: bool = False) -> Record:
        """Parse a stored value, or raise :class:`RecordError` saying what is wrong and how to clear it.

        ``where`` names the record (dag, run, task, map index, key) and ``clear_hint`` is the exact
        command that removes it; both go into the error so the person reading the log can act.

        ``raw`` is the value as a backend's ``get`` hands it over: decoded JSON, except that the sql
        backend hands over the stored text itself when it is not JSON (and ``bytes`` are always
        stored text). A ``str`` is therefore a JSON string, or that undecodable text: the message
        says which when it can. A ``str`` whose text is a JSON object is a double-encoded record,
        refused like any other value that is not an object. ``decoded``: ``raw`` is known to be
        decoded JSON (what :mod:`resumable.records` reads), so a ``str`` is a JSON string.
        """

        def bad(problem: str) -> RecordError:
            return RecordError(
                f"The resumable record {where} {problem}. Nothing was submitted and the record was "
                f"left as it is, so no job is lost. Look at the job it names (if any) yourself, then "
                f"clear the record with: {clear_hint}"
            )

        data = raw
        if isinstance(raw, bytes):
            try:
                data = json.loads(raw)
            except ValueError as exc:
                raise bad(not_json_problem(raw.decode("utf-8", "replace"), str(exc))) from exc
            decoded = True
        if not isinstance(data, dict):
            raise bad(not_an_object_problem(data, decoded=decoded))
        version = data.get("v")
        if type(version) is not int or version != RECORD_VERSION:
            raise bad(
                f"has schema version v={version!r}, which this airflow-resumable (writes v={RECORD_VERSION}) "
                "does not know; it was written by another version of the library"
            )
        if data.get("phase") in (Phase.SUBMITTED.value, Phase.DONE.value) and not data.get("handle"):
            raise bad(f"is corrupt (phase {data['phase']!r} without a job handle)")
        try:
            return cls(
                v=version,
                lineage=_int(data, "lineage"),
                owner=_int(data, "owner"),
                seq=_int(data, "seq"),
                phase=Phase(data["phase"]),
                token=_str(data, "token"),
                operator=_str(data, "operator"),
                handle=JobHandle.from_json(data["handle"]) if data.get("handle") else None,
                last_status=JobStatus.from_json(data["last_status"]) if data.get("last_status") else None,
                stop_reason=_optional(data, "stop_reason", str),
                retries=_optional(data, "retries", int),
                clear_number=_optional(data, "clear_number", int),
                run_after=_optional(data, "run_after", str),
                reuse=Reuse.from_json(data["reuse"]) if data.get("reuse") else None,
                created_at=str(data.get("created_at", "")),
                updated_at=str(data.get("updated_at", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise bad(f"is corrupt ({type(exc).__name__}: {exc})") from exc


#: How much of a stored value a message quotes.
_QUOTE_CHARS = 60


def _quote_text(text: str) -> str:
    """``text`` as Python quotes it (stored text that is not JSON), cut short."""
    return repr(text) if len(text) <= _QUOTE_CHARS else repr(text[:_QUOTE_CHARS]) + "…"


def _quote_json(value: Any) -> str:
    """``value`` as JSON writes it, cut short."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _QUOTE_CHARS else text[:_QUOTE_CHARS] + "…"


def not_json_problem(text: str, error: str) -> str:
    """Why stored ``text`` that does not decode (``error``) is no record: the words after "The record"."""
    return f"is not valid JSON ({error}): the stored text is {_quote_text(text)}"


def not_an_object_problem(value: Any, *, decoded: bool) -> str:
    """Why ``value``, which is not a ``dict``, is no record: what it is in JSON's words.

    ``decoded``: a ``str`` is known to be a JSON string; otherwise it may also be stored text that
    is not JSON (the sql backend hands that over as it is), and the message says both.
    """
    if isinstance(value, str):
        try:
            inner = json.loads(value)
        except ValueError as exc:
            if decoded:
                return f"is a JSON string ({_quote_json(value)}), not an object"
            return (
                f"is the text {_quote_text(value)}, not a JSON object: either the stored text is not "
                f"valid JSON ({exc}) or it is a JSON string"
            )
        if isinstance(inner, dict):
            return (
                "is a JSON string, not an object: it looks double-encoded (a JSON object inside a string); "
                "store the object itself"
            )
        return f"is a JSON string ({_quote_json(value)}), not an object"
    if value is None:
        return "is a JSON null, not an object"
    if isinstance(value, bool):
        kind = "boolean"
    elif isinstance(value, (int, float)):
        kind = "number"
    elif isinstance(value, list):
        kind = "list"
    else:  # only a backend that keeps Python objects (memory) can hold one
        return f"is a Python {type(value).__name__}, not a JSON object"
    return f"is a JSON {kind} ({_quote_json(value)}), not an object"


def _int(data: dict[str, Any], name: str) -> int:
    value = data[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return value


def _str(data: dict[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _optional(data: dict[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    if value is not None and (type(value) is not kind):
        raise TypeError(f"{name} must be a {kind.__name__} or null, got {value!r}")
    return value
