"""Resumable operators made from provider operators that speak Airflow 3.3's job contract.

Airflow 3.3's ``airflow.sdk.ResumableJobMixin`` asks an operator for ``submit_job(context)``,
``get_job_status(external_id, context)``, ``is_job_active(status)``, ``is_job_succeeded(status)``
and ``get_job_result(external_id, context)``; the amazon provider's ``GlueJobOperator`` and
``RedshiftDataOperator`` implement it, and so do operators of other providers. The contract leaves
out what our guarantees need: where a token goes on submit, whether a repeated submit returns the
first job or how to find it again, how to cancel, and which statuses mean pending, stopping,
cancelled or failed. A :class:`JobContract` declares those for one provider class, and
:class:`ContractOperator` turns the class into a resumable operator with the provider's parameters
unchanged::

    class ResumableGlueJobOperator(ContractOperator, GlueJobOperator):
        job_contract = GLUE_JOB_RUN

The provider's submit, status and result code runs as it is (its hook, its connection, its XComs
and links); ours owns ``execute``, the record, polling, kill semantics and retries. The provider's
own ``durable`` is turned off: one record, ours. A subclass of :class:`ContractOperator` without a
``job_contract``, or whose provider class does not implement the contract, is refused when the class
is defined: nothing is guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from resumable._compat import BaseOperatorMeta
from resumable.errors import ResumableError
from resumable.job import JobHandle, JobState, JobStatus
from resumable.mixin import ResumableMixin

#: The methods of Airflow 3.3's job contract a provider class must implement.
CONTRACT_METHODS = ("submit_job", "get_job_status", "is_job_active", "is_job_succeeded", "get_job_result")


@dataclass(frozen=True)
class JobContract:
    """What one provider operator class leaves unsaid about its jobs. ``op`` below is the operator.

    Args:
        system: the job system's name, written into every handle (``"glue"``).
        put_token: ``put_token(op, context, token)`` puts our token where the provider's
            ``submit_job`` sends it (an argument, a name, an idempotency field); called before each
            submission. ``token_limit`` is the longest token the field takes.
        submit: ``submit(op, context, token)``, for a provider whose ``submit_job`` cannot carry the
            token as it is (it derives the job's id itself, say): submits the job with the token and
            returns its id, in place of ``put_token`` and the provider's ``submit_job``. One of the two
            is required.
        idempotent: whether a repeated submission with one token answers with the job that token
            made. Where it does not, ``find_job`` is required.
        find_job: ``find_job(op, context, token)``: the id of the job submitted with ``token``, or
            None.
        cancel: ``cancel(op, external_id)`` asks the service to stop the job.
        states: the provider's statuses in our terms. A status not listed falls back to the contract
            (active: RUNNING; succeeded: SUCCEEDED; else FAILED) and is logged.
        status: ``status(op, external_id)``, a :class:`JobStatus` in one call (with the failure's
            message and the job's creation time where the service gives them); without it the
            provider's ``get_job_status`` is asked and mapped through ``states``.
        result: ``result(op, context, external_id)``, what the task returns when the job succeeded,
            where the provider's ``execute`` returns something else than its ``get_job_result``.
        announce: ``announce(op, context, external_id)`` pushes the XComs and links the provider's
            operator pushes once it knows its job, on every path (submitted, reattached, found done).
        url: ``url(op, external_id)``, the job's page, for logs and our link.
        provider_off: attributes set on the operator after its ``__init__``, to turn the provider's
            own resuming off (``{"durable": False}``).
    """

    system: str
    cancel: Callable[[Any, str], None]
    put_token: Callable[[Any, Mapping[str, Any], str], None] | None = None
    submit: Callable[[Any, Mapping[str, Any], str], Any] | None = None
    idempotent: bool = False
    find_job: Callable[[Any, Mapping[str, Any], str], str | None] | None = None
    states: Mapping[str, JobState] = field(default_factory=dict)
    status: Callable[[Any, str], JobStatus] | None = None
    announce: Callable[[Any, Mapping[str, Any], str], None] | None = None
    result: Callable[[Any, Mapping[str, Any], str], Any] | None = None
    url: Callable[[Any, str], str | None] | None = None
    token_limit: int | None = None
    provider_off: Mapping[str, Any] = field(default_factory=lambda: {"durable": False})

    def __post_init__(self) -> None:
        if (self.put_token is None) == (self.submit is None):
            raise TypeError(
                f"JobContract {self.system!r}: give put_token (the provider's submit_job sends the token) "
                "or submit (ours submits with it), exactly one: nothing is guessed."
            )
        if not self.idempotent and self.find_job is None:
            raise TypeError(
                f"JobContract {self.system!r}: a service whose repeated submission does not return the "
                "first job (idempotent=False) needs find_job, or a crash between submit and the record "
                "would submit the job again."
            )


class ContractOperator(ResumableMixin):
    """A provider operator that implements Airflow 3.3's job contract, made resumable by its
    :attr:`job_contract`. Put it first in the bases:
    ``class ResumableGlueJobOperator(ContractOperator, GlueJobOperator)``."""

    #: What the provider class leaves unsaid; required on every concrete subclass.
    job_contract: JobContract

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        contract = cls.__dict__.get("job_contract")
        if contract is None:
            raise TypeError(
                f"{cls.__name__} has no job_contract: declare where its token goes, how a job is found "
                "again and cancelled, and what its statuses mean (resumable.adapter.JobContract). "
                "Nothing is guessed from the provider class."
            )
        missing = [name for name in CONTRACT_METHODS if _provider_attr(cls, name) is None]
        if missing:
            raise TypeError(
                f"{cls.__name__}: its provider class does not implement Airflow's job contract "
                f"({', '.join(missing)} missing). Build it on ResumableMixin instead."
            )
        cls.job_system = contract.system

    @BaseOperatorMeta._apply_defaults  # type: ignore[arg-type,type-var,misc]
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name, value in self.job_contract.provider_off.items():
            setattr(self, name, value)
        if getattr(self, "deferrable", False) and type(self).job_trigger is ResumableMixin.job_trigger:
            raise ValueError(
                f"{type(self).__name__} cannot defer: it has no job_trigger, the trigger that waits for its "
                "job in the triggerer. Pass deferrable=False (the task then polls), or implement job_trigger."
            )

    # ---- the contract, through the provider's methods -------------------------------------------

    def _provider(self, name: str) -> Callable[..., Any]:
        found = _provider_attr(type(self), name)
        assert found is not None  # checked when the class was defined
        return found.__get__(self)  # type: ignore[no-any-return]

    def _context(self) -> Mapping[str, Any]:
        """The context of the attempt running here: the provider's contract methods take it."""
        if self._attempt is None:
            raise ResumableError(
                f"{type(self).__name__}: the provider's {self.job_contract.system!r} status call needs the "
                "task's context, which this process does not have; nothing was changed."
            )
        return self._attempt.context

    def _as_handle(self, external_id: Any) -> JobHandle:
        job_id = str(external_id)
        url = self.job_contract.url(self, job_id) if self.job_contract.url else None
        return JobHandle(self.job_system, job_id, url)

    def submit_job(self, context: Mapping[str, Any], token: str) -> JobHandle:  # type: ignore[override]
        limit = self.job_contract.token_limit
        if limit is not None and len(token) > limit:
            raise ResumableError(
                f"The token {token!r} is longer than the {limit} characters {self.job_system} takes; "
                "nothing was submitted."
            )
        if self.job_contract.submit is not None:
            return self._as_handle(self.job_contract.submit(self, context, token))
        assert self.job_contract.put_token is not None  # one of the two, checked in JobContract
        self.job_contract.put_token(self, context, token)
        return self._as_handle(self._provider("submit_job")(context))

    def find_job(self, context: Mapping[str, Any], token: str) -> JobHandle | None:
        if self.job_contract.find_job is None:
            return None
        found = self.job_contract.find_job(self, context, token)
        return None if found is None else self._as_handle(found)

    def get_job_status(self, handle: JobHandle) -> JobStatus:  # type: ignore[override]
        if self.job_contract.status is not None:
            return self.job_contract.status(self, handle.job_id)
        raw = str(self._provider("get_job_status")(handle.job_id, self._context()))
        return self.map_status(raw)

    def map_status(self, raw: str) -> JobStatus:
        """The provider's status ``raw`` in our terms (see :attr:`JobContract.states`)."""
        state = self.job_contract.states.get(raw)
        if state is None:
            if self._provider("is_job_active")(raw):
                state = JobState.RUNNING
            elif self._provider("is_job_succeeded")(raw):
                state = JobState.SUCCEEDED
            else:
                state = JobState.FAILED
            self.log.warning(
                "resumable: %s status %r is not in its job contract; the provider says it is %s",
                self.job_system,
                raw,
                state.value,
            )
        return JobStatus(state, raw)

    def cancel_job(self, handle: JobHandle) -> None:  # type: ignore[override]
        self.job_contract.cancel(self, handle.job_id)

    def submit_is_idempotent(self) -> bool:
        return self.job_contract.idempotent

    def announce_job(self, context: Mapping[str, Any], handle: JobHandle) -> None:
        super().announce_job(context, handle)  # our "Job page" link
        if self.job_contract.announce is not None:
            self.job_contract.announce(self, context, handle.job_id)

    def job_result(self, context: Mapping[str, Any], handle: JobHandle, status: JobStatus) -> Any:
        if self.job_contract.result is not None:
            return self.job_contract.result(self, context, handle.job_id)
        return self._provider("get_job_result")(handle.job_id, context)


def _provider_attr(cls: type, name: str) -> Any:
    """``name`` as the first class after ours in ``cls``'s MRO defines it (the provider's), or None."""
    for base in cls.__mro__:
        if isinstance(base, type) and issubclass(base, ResumableMixin):
            continue
        if name in base.__dict__ and not getattr(base.__dict__[name], "__isabstractmethod__", False):
            return base.__dict__[name]
    return None


__all__ = ["CONTRACT_METHODS", "ContractOperator", "JobContract"]
