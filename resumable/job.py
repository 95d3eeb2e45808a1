"""The normalised view of an external job: its handle, its state and a status read at one moment."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum
from typing import Any


class JobState(str, Enum):
    """The few states the resume protocol understands; every system's own states map onto these."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    #: Active, but on its way out: being cancelled or shutting down (TERMINATING, CANCELLING, ...).
    STOPPING = "STOPPING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    NOT_FOUND = "NOT_FOUND"

    @property
    def is_active(self) -> bool:
        """The job may still change: queued, running, or on its way to a terminal state."""
        return self in (JobState.PENDING, JobState.RUNNING, JobState.STOPPING)

    @property
    def is_terminal(self) -> bool:
        """The job has an outcome and will not change again."""
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class JobStatus:
    """A job's state at one moment, with the system's own words for it (for logs and errors)."""

    state: JobState
    raw: str = ""
    message: str = ""
    #: When the system created the job (timezone-aware), where it says: a job found by a token that two
    #: lineages submitted with belongs to the one that submitted before it was created
    #: (:func:`resumable.protocol.created_by_this_lineage`).
    created_at: datetime | None = None

    def describe(self) -> str:
        text = self.state.value if not self.raw else f"{self.state.value} ({self.raw})"
        return f"{text}: {self.message}" if self.message else text

    def to_json(self) -> dict[str, Any]:
        data = {"state": self.state.value, "raw": self.raw, "message": self.message}
        if self.created_at is not None:
            data["created_at"] = self.created_at.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobStatus:
        created = data.get("created_at")
        return cls(
            JobState(data["state"]),
            str(data.get("raw", "")),
            str(data.get("message", "")),
            created_at=datetime.fromisoformat(created) if isinstance(created, str) else None,
        )

    def created(self, at: Any) -> JobStatus:
        """This status with the job's creation time ``at`` (a ``datetime``, naive meaning UTC, or epoch
        milliseconds as Databricks gives it; anything else is left out)."""
        if isinstance(at, (int, float)) and not isinstance(at, bool) and at > 0:
            at = datetime.fromtimestamp(at / 1000, tz=timezone.utc)
        if not isinstance(at, datetime):
            return self
        return replace(self, created_at=at if at.tzinfo else at.replace(tzinfo=timezone.utc))


@dataclass(frozen=True)
class JobHandle:
    """What identifies a submitted job: small, JSON-serialisable, enough to find the job again.

    ``job_id`` is the system's id (a run id, a cluster id); ``extras`` holds anything else the
    operator needs (a step list, an application id), and ``url`` is the page a person opens.
    """

    system: str
    job_id: str
    url: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"system": self.system, "job_id": self.job_id}
        if self.url:
            data["url"] = self.url
        if self.extras:
            data["extras"] = self.extras
        json.dumps(data)  # fail at submit time, not at the next retry, if an extra is not JSON
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobHandle:
        return cls(
            system=str(data["system"]),
            job_id=str(data["job_id"]),
            url=data.get("url"),
            extras=dict(data.get("extras") or {}),
        )


def keep_the_first(
    log: Any, where: str, token: str, found: list[tuple[str, bool]], stop: Callable[[list[str]], None]
) -> str | None:
    """The discovery rule for a token that more than one job carries (which should not happen): of
    ``found`` (job ids, oldest first, each with whether it is still active), the first is the task's
    and the active others are stopped with ``stop``; returns the first id, or None for no job.
    ``where`` names the place searched, for the log."""
    if not found:
        return None
    (first, _), extra = found[0], found[1:]
    active = [job_id for job_id, is_active in extra if is_active]
    if extra:
        log.warning(
            "resumable: %s has %s jobs with token %s: keeping the first, %s, and stopping the active "
            "others %s",
            where,
            len(found),
            token,
            first,
            active,
        )
    if active:
        stop(active)
    return first
