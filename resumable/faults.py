"""Named fault points where a test makes an attempt die; off unless RESUMABLE_FAULT_POINT names one.

Environment variables (read at each point, so a test can set them before the task runs):

- ``RESUMABLE_FAULT_POINT``: one point or a comma-separated list (see :data:`POINTS`).
- ``RESUMABLE_FAULT_MODE``: ``raise`` (default; raises :class:`InjectedFault`, for ``dag.test()``),
  ``exit`` (``os._exit(70)``: the process vanishes without cleanup), or ``kill`` (SIGKILL to itself).
- ``RESUMABLE_FAULT_TRY``: the try number that dies (default ``1``, so the retry survives);
  ``any`` for every try.
- ``RESUMABLE_FAULT_TASK``: only tasks with this task_id (default: every resumable task).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from typing import Any

from resumable.errors import InjectedFault

BEFORE_INTENT = "before_intent"
AFTER_INTENT = "after_intent"
AFTER_SUBMIT = "after_submit"
AFTER_HANDLE = "after_handle"
WHILE_POLLING = "while_polling"
POINTS = (BEFORE_INTENT, AFTER_INTENT, AFTER_SUBMIT, AFTER_HANDLE, WHILE_POLLING)


def fault_point(name: str, context: Mapping[str, Any]) -> None:
    """Die here if the environment asks for it; otherwise do nothing."""
    wanted = os.environ.get("RESUMABLE_FAULT_POINT", "")
    if not wanted:
        return
    points = {p.strip() for p in wanted.split(",") if p.strip()}
    unknown = points - set(POINTS)
    if unknown:
        raise ValueError(
            f"RESUMABLE_FAULT_POINT names {sorted(unknown)}, which are not fault points; "
            f"use one of {', '.join(POINTS)} or unset it."
        )
    if name not in points:
        return
    ti = context["ti"]
    only_task = os.environ.get("RESUMABLE_FAULT_TASK")
    if only_task and only_task != ti.task_id:
        return
    only_try = os.environ.get("RESUMABLE_FAULT_TRY", "1")
    if only_try != "any" and int(only_try) != ti.try_number:
        return
    mode = os.environ.get("RESUMABLE_FAULT_MODE", "raise")
    if mode == "exit":
        os._exit(70)
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise InjectedFault(f"fault point {name!r} fired on try {ti.try_number} of {ti.task_id}")
