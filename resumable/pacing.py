"""How long a throttled call waits before it is tried again: what the service asked for, spread.

A service that throttles usually says how long to wait (HTTP ``Retry-After``, RFC 9110 10.2.3:
seconds, or a date). When a whole fleet's retries reattach in the same second, waiting what the
service asked, plus up to as much again at random, spreads the fleet's calls over the service's
rate; exponential backoff instead grows each task's waits past what the service needs (30 s and
more), so the last tasks poll again long after the service could have answered them.

:func:`retry_after_of` finds the header in the error a hook raised: on a ``requests`` or ``httpx``
response, on an ``aiohttp`` error, in a botocore ``ClientError``'s response, and through the
errors a hook wraps it in (``raise ... from``, tenacity's ``RetryError``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from tenacity import RetryCallState, RetryError
from tenacity.wait import wait_base

#: The longest wait a ``Retry-After`` can ask of one call (a longer one is cut to this).
RETRY_AFTER_CAP = 300.0


def parse_retry_after(value: object, *, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` value asks for (delta-seconds or an HTTP date), or ``None`` if it
    is absent or not one of those forms. Never negative; at most :data:`RETRY_AFTER_CAP`."""
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    text = text.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


def _header(headers: Any) -> object:
    if headers is None:
        return None
    getter = getattr(headers, "get", None)
    if getter is None:
        return None
    for name in ("Retry-After", "retry-after"):  # botocore lowercases; requests/httpx ignore case
        found = getter(name)
        if found is not None:
            return found
    return None


def _errors(error: BaseException) -> Iterator[BaseException]:
    """``error`` and every error it was raised from or during, tenacity's last attempt included."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, RetryError) and current.last_attempt is not None:
            last = current.last_attempt.exception()
            if last is not None:
                pending.append(last)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)


def retry_after_of(error: BaseException) -> float | None:
    """The seconds the service asked the caller to wait in the answer that raised ``error``, or
    ``None`` where it said nothing (see the module's docstring for where it is looked for)."""
    for current in _errors(error):
        response = getattr(current, "response", None)
        if isinstance(response, Mapping):  # botocore ClientError
            metadata = response.get("ResponseMetadata") or {}
            value = _header(metadata.get("HTTPHeaders"))
        else:
            value = _header(getattr(response, "headers", None)) or _header(getattr(current, "headers", None))
        seconds = parse_retry_after(value)
        if seconds is not None:
            return seconds
    return None


def paced(asked: float, rng: random.Random | None = None) -> float:
    """The wait for a call the service asked to delay by ``asked`` seconds: at least that, and up to
    twice it, at random, so that the callers it throttled together do not come back together."""
    return asked + (rng or random).uniform(0.0, asked)


class wait_retry_after(wait_base):  # noqa: N801 - named as tenacity names its waits
    """A tenacity wait: :func:`paced` on what the failed call's answer asked for (``asked``: how that
    is read from the error; :func:`retry_after_of` by default), or ``fallback`` where it asked for
    nothing."""

    def __init__(
        self,
        fallback: wait_base,
        asked: Callable[[BaseException], float | None] = retry_after_of,
    ) -> None:
        self.fallback, self.asked = fallback, asked

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None and outcome.failed else None
        seconds = self.asked(error) if error is not None else None
        return paced(seconds) if seconds is not None else self.fallback(retry_state)
