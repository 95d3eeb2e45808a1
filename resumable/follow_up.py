"""A stop that outlives the task process: the follow-up that cancels a job whose id never arrived.

A person marks a task failed while its submit call is in flight (a slow control plane: the job
exists, its id has not reached the worker). Airflow sends SIGTERM, runs ``on_kill``, and SIGKILLs
the task process 5 s later (``kill(SIGTERM, escalation_delay=5)`` in the task SDK's supervisor),
whether or not the answer came. So the stop cannot wait for the answer. ``on_kill`` writes the stop
into the record (token, reason, no job id), then starts this follow-up: a process of its own
(forked, in a session of its own, so that the SIGKILL of the task's process group does not reach
it) that learns the job from the token (``find_job``, then a repeated submit with the same token,
which an idempotent service answers with the job that exists) and cancels it, for up to
``[resumable] stop_follow_up_seconds``.

It holds nothing of the task's channel to Airflow's supervisor (those sockets are pointed at
``/dev/null`` in the follow-up, so the supervisor sees them close when the task process dies), and
it writes nothing to Airflow: the record already says a stop was asked for, and whoever reads it
next (a retry, a clear's attempt, ``resumable state``, the page) cancels the job of that token too.
A follow-up dies with its machine: on Kubernetes, the worker pod's end ends it, and the record is
what remains.

The same holds for a stop whose job id is known but whose cancel the service does not take at once
(it throttles, it is down): the task asks inline, and a follow-up started first looks at the job a
few seconds later and, if nobody's cancel has landed by then, cancels it with the operator's
retries, long after Airflow has killed the task.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from resumable import config
from resumable.job import JobState

if TYPE_CHECKING:
    from resumable.attempt import Attempt
    from resumable.job import JobHandle
    from resumable.mixin import ResumableMixin

#: Default of ``[resumable] stop_follow_up_seconds``.
DEFAULT_BUDGET_SECONDS = 900.0
#: Longest pause between two rounds of looking for the job.
MAX_PAUSE_SECONDS = 15.0
#: Seconds a follow-up of a known job waits before it looks: the task's own cancel, asked at once,
#: has usually landed by then, and the follow-up then has nothing to do.
KNOWN_JOB_GRACE_SECONDS = 3.0


def budget_seconds() -> float:
    """``[resumable] stop_follow_up_seconds``: how long the follow-up looks for the job of the token."""
    value = config.get("stop_follow_up_seconds", str(DEFAULT_BUDGET_SECONDS))
    try:
        return max(0.0, float(value))
    except ValueError:
        raise ValueError(
            f"[resumable] stop_follow_up_seconds must be a number of seconds, got {value!r}"
        ) from None


def start(
    operator: ResumableMixin, attempt: Attempt, token: str | None, handle: JobHandle | None = None
) -> int | None:
    """Start the follow-up for the job of ``token`` (or the known job ``handle``); its pid, or ``None``
    where it cannot run (no ``fork``, or no ``/proc`` to tell Airflow's sockets by)."""
    if not hasattr(os, "fork") or not os.path.isdir("/proc/self/fd"):
        return None
    budget = budget_seconds()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the intermediate child: detach and fork the follow-up, then exit at once
        code = 0
        try:
            os.close(read_end)
            os.setsid()
            follower = os.fork()
            if follower == 0:
                os.close(write_end)
                code = _run(operator, attempt, token, budget, handle)
            else:
                os.write(write_end, str(follower).encode())
        except BaseException:  # noqa: BLE001 - nothing may escape a forked child
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        os.waitpid(pid, 0)
        answer = os.read(read_end, 32)
    finally:
        os.close(read_end)
    return int(answer) if answer else None


def _run(
    operator: ResumableMixin, attempt: Attempt, token: str | None, budget: float, handle: JobHandle | None
) -> int:
    """In the follow-up process: let go of Airflow, then follow the token or the job."""
    _detach_from_airflow()
    return 0 if follow(operator, attempt, token, budget, handle=handle) else 1


def follow(
    operator: ResumableMixin,
    attempt: Attempt,
    token: str | None,
    budget: float,
    *,
    handle: JobHandle | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_rounds: int | None = None,
) -> bool:
    """Look for the job of ``token`` and cancel it; ``True`` once a cancel was asked for. Gives up when
    ``budget`` seconds (or ``max_rounds`` rounds) are spent without finding the job or getting a cancel in.

    With ``handle`` (the job is known): wait :data:`KNOWN_JOB_GRACE_SECONDS`, then cancel the job
    unless it is already stopping or has ended (the task's own cancel landed)."""
    deadline = time.monotonic() + budget
    if handle is not None:
        sleep(min(KNOWN_JOB_GRACE_SECONDS, budget))
    pause = 1.0
    rounds = 0
    while True:
        rounds += 1
        try:
            found = handle if handle is not None else operator._recover_handle(attempt)
            if found is not None:
                if handle is not None:
                    status = operator._call(lambda: operator.get_job_status(found), "read the job status")  # noqa: B023
                    if status.state not in (JobState.PENDING, JobState.RUNNING):
                        return True  # a cancel landed (the job is stopping), or the job has ended
                operator._call(lambda: operator.cancel_job(found), "cancel the job")  # noqa: B023 - called at once
                return True
        except Exception:  # noqa: BLE001 - asked again until the budget is spent
            pass
        left = deadline - time.monotonic()
        if left <= 0 or (max_rounds is not None and rounds >= max_rounds):
            return False
        sleep(min(pause, left))
        pause = min(pause * 2, MAX_PAUSE_SECONDS)


def _detach_from_airflow() -> None:
    """Let go of everything that ties this process to the task's supervisor: standard streams and the
    Unix sockets (requests and logs) are pointed at /dev/null, so writes succeed and reach nobody."""
    logging.disable(logging.CRITICAL)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in _open_fds():
        if fd == null:
            continue
        if fd <= 2 or _is_unix_socket(fd):
            with contextlib.suppress(OSError):
                os.dup2(null, fd)


def _open_fds() -> list[int]:
    fds = []
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(ValueError):
            fds.append(int(name))
    return fds


def _is_unix_socket(fd: int) -> bool:
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return False
        sock = socket.socket(fileno=fd)
    except OSError:
        return False
    try:
        return sock.family == socket.AF_UNIX
    finally:
        sock.detach()
