"""Marks the calls a task makes to Airflow through its supervisor, so that ``on_kill`` can tell
when it interrupted one.

A task process reaches Airflow (its state store, its task states, XComs) over one channel to its
supervisor, one request at a time. On SIGTERM, Airflow runs ``on_kill`` in the task's main thread,
in the middle of whatever that thread was doing. If the thread was waiting for the supervisor's
answer, a call from ``on_kill`` would wait for the channel that the interrupted call holds, and
the supervisor would kill the process a few seconds later with nothing decided.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_local = threading.local()


@contextmanager
def through_supervisor() -> Iterator[None]:
    """Wrap a call that goes to Airflow through the supervisor."""
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1


def in_supervisor_call() -> bool:
    """Whether this thread is inside a call wrapped by :func:`through_supervisor` (for a signal
    handler: whether it interrupted one)."""
    return getattr(_local, "depth", 0) > 0
