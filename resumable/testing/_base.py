"""What the emulators share: an emulated clock, the context-manager life cycle, the Airflow connection."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar, TypeVar

E = TypeVar("E", bound="Emulator")


class TokenBucket:
    """A request-rate limit: ``burst`` tokens, refilled at ``per_second`` a real second (``None``: none)."""

    def __init__(self) -> None:
        self.per_second: float | None = None
        self.burst = 1
        self._tokens, self._at = 1.0, time.monotonic()

    def refill(self) -> None:
        self._tokens, self._at = float(self.burst), time.monotonic()

    def take(self) -> bool:
        """Take a token (the caller holds the emulator's lock); ``False`` when none is left."""
        if self.per_second is None:
            return True
        now = time.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.per_second)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Emulator:
    """A server on loopback with an emulated clock and an Airflow connection pointing at it.

    The clock runs at ``speed`` emulated seconds per real second, or only when :meth:`advance` is
    called (``manual_clock=True``). Subclasses implement ``start``, ``stop`` and ``connection``.
    """

    #: The connection id :meth:`use_as` defines when none is given.
    default_conn_id: ClassVar[str]

    def __init__(self, *, speed: float = 1.0, manual_clock: bool = False) -> None:
        self.speed, self.manual_clock = speed, manual_clock
        self._lock = threading.RLock()
        #: The request-rate limit of :meth:`rate_limit`; a reset refills it but keeps the limit.
        self._limit = TokenBucket()
        self._restart_clock()

    def rate_limit(self, per_second: float | None, burst: int | None = None) -> None:
        """Limit the API to ``per_second`` requests per real second, as the service's control plane
        does (``None`` turns the limit off).

        A token bucket of ``burst`` tokens (by default ``max(1, int(per_second))``) refills at
        ``per_second`` tokens per real second (``time.monotonic()``, not the emulated clock: the limit
        is on the callers' real pace). A request that finds no token is answered the way the service
        throttles (the subclass says how), takes no effect and is counted in ``throttled``. Setting a
        limit starts with a full bucket.
        """
        if per_second is not None and not per_second > 0:
            raise ValueError(f"per_second must be positive (or None for no limit), not {per_second!r}")
        if burst is not None and burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        with self._lock:
            self._limit.per_second = per_second
            self._limit.burst = burst if burst is not None else max(1, int(per_second or 1))
            self._limit.refill()

    def _restart_clock(self) -> None:
        self._t0, self._advanced = time.monotonic(), 0.0

    def now(self) -> float:
        """Emulated seconds since the emulator started (or was reset)."""
        real = 0.0 if self.manual_clock else (time.monotonic() - self._t0) * self.speed
        return real + self._advanced

    def advance(self, seconds: float) -> None:
        """Move the emulated clock forward."""
        with self._lock:
            self._advanced += seconds

    def start(self: E) -> E:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def connection(self) -> dict[str, Any]:
        """The Airflow connection (as a dict) that points the provider's hook at this emulator."""
        raise NotImplementedError

    def __enter__(self: E) -> E:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def airflow_env(self, conn_id: str | None = None) -> dict[str, str]:
        """The environment variable that defines the connection ``conn_id`` for Airflow."""
        return {f"AIRFLOW_CONN_{(conn_id or self.default_conn_id).upper()}": json.dumps(self.connection())}

    @contextlib.contextmanager
    def use_as(self: E, conn_id: str | None = None) -> Iterator[E]:
        """Define the Airflow connection ``conn_id`` as this emulator while the block runs."""
        env = self.airflow_env(conn_id)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield self
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
