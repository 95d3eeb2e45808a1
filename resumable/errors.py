"""Errors the library raises; each says what happened, what was kept and how to fix it."""

from __future__ import annotations


class ResumableError(Exception):
    """Base class of every error airflow-resumable raises on purpose."""


class RecordError(ResumableError):
    """The persisted record cannot be used: corrupt, of an unknown version, or not ours.

    Raised before anything is submitted; the message names the record and how to clear it.
    """


class StateBackendError(ResumableError):
    """The configured state backend is unknown, misconfigured or unreachable."""


class VersionConflict(ResumableError):
    """A compare-and-set write lost: someone else wrote the record since it was read."""


class JobFailedError(ResumableError):
    """The external job ended in failure or was cancelled."""


class SupersededError(ResumableError):
    """A newer try owns the job now; this attempt stopped polling and did not cancel it."""


class RecordUnreadableHere(SupersededError):
    """This attempt can no longer read its record: it was deleted, or (airflow backend) the task
    instance this attempt ran as was replaced by a clear or a retry."""


class AttemptInterrupted(ResumableError):
    """The worker was told to stop (SIGTERM) and the job was kept for the retry to reattach."""


class InjectedFault(ResumableError):
    """Raised at a fault point named in RESUMABLE_FAULT_POINT; only ever in tests."""


class TransientJobError(ResumableError):
    """An operator raises this (or classifies its own errors as transient) for a retryable call."""
