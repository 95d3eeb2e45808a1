"""airflow-resumable: Airflow operators that reattach to their running job after a worker is lost."""

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

__version__ = "0.1.0"

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
