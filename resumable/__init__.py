"""airflow-resumable: Airflow operators that reattach to their running job after a worker is lost.

The names below are loaded on first use, so that importing the package (Airflow does, for its
provider entry point, while it loads its configuration) never reaches Airflow's task machinery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from resumable._lazy import lazy_getattr

__version__ = "0.1.0"

_WHERE = {
    "AttemptInterrupted": "resumable.errors",
    "Checkpoint": "resumable.checkpoint",
    "DoneSet": "resumable.checkpoint",
    "JobFailedError": "resumable.errors",
    "JobHandle": "resumable.job",
    "JobState": "resumable.job",
    "JobStatus": "resumable.job",
    "RecordError": "resumable.errors",
    "ResumableError": "resumable.errors",
    "ResumableMixin": "resumable.mixin",
    "StateBackendError": "resumable.errors",
    "SupersededError": "resumable.errors",
    "TransientJobError": "resumable.errors",
}

__all__ = [
    "AttemptInterrupted",
    "Checkpoint",
    "DoneSet",
    "JobFailedError",
    "JobHandle",
    "JobState",
    "JobStatus",
    "RecordError",
    "ResumableError",
    "ResumableMixin",
    "StateBackendError",
    "SupersededError",
    "TransientJobError",
]

if TYPE_CHECKING:
    from resumable.checkpoint import Checkpoint, DoneSet
    from resumable.errors import (
        AttemptInterrupted,
        JobFailedError,
        RecordError,
        ResumableError,
        StateBackendError,
        SupersededError,
        TransientJobError,
    )
    from resumable.job import JobHandle, JobState, JobStatus
    from resumable.mixin import ResumableMixin


__getattr__ = lazy_getattr(__name__, _WHERE)
