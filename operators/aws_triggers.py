"""What the resumable AWS operators' triggers share: the provider's trigger, plus a person's stop of the
deferred task stopping the job (see :mod:`resumable.trigger_stop`).

A triggerer restart or a trigger moved to another triggerer is not a person's stop and keeps the job.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async

from resumable.trigger_stop import StopsJobOnAPersonsStop


class StopsAwsJob(StopsJobOnAPersonsStop):
    """For a provider trigger that carries its own ``cancel_on_kill``: :meth:`stop_job` stops the job,
    in asgiref's thread (the hook may ask the triggerer's supervisor for its connection), and raises
    when the service did not take it; throttling, a 5xx or a lost connection is asked again, an error
    that says the job cannot be stopped (it has ended) is not."""

    def stop_job(self) -> None:
        raise NotImplementedError

    async def stop_for_a_person(self) -> None:
        await sync_to_async(self.stop_job, thread_sensitive=False)()

    def stop_worth_retrying(self, error: BaseException) -> bool:
        from resumable.operators._aws import is_transient

        return is_transient(error)


class StopsAwsJobOnAPersonsStop(StopsAwsJob):
    """For the provider's triggers that never stop their job: ``cancel_on_kill`` (ours, serialised with
    the trigger) says whether a person's stop of the deferred task stops it."""

    serialized_fields: dict[str, Any]

    def __init__(self, *, cancel_on_kill: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cancel_on_kill = cancel_on_kill
        self.serialized_fields["cancel_on_kill"] = cancel_on_kill


__all__ = ["StopsAwsJob", "StopsAwsJobOnAPersonsStop"]
