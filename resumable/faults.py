"""Named fault points where a test makes an attempt die; off unless RESUMABLE_FAULT_POINT names one.

Environment variables (read at each point, so a test can set them before the task runs):

- ``RESUMABLE_FAULT_POINT``: one point or a comma-separated list (see :data:`POINTS`).
- ``RESUMABLE_FAULT_MODE``: ``raise`` (default; raises :class:`InjectedFault`, for ``dag.test()``),
  ``exit`` (``os._exit(70)``: the process vanishes without cleanup), or ``kill`` (SIGKILL to itself).
- ``RESUMABLE_FAULT_TRY``: the try number that dies (default ``1``, so the retry survives);
  ``any`` for every try.
- ``RESUMABLE_FAULT_TASK``: only tasks with this task_id (default: every resumable task).
- ``RESUMABLE_FAULT_DAG``: only tasks of this DAG (default: every DAG).
- ``RESUMABLE_FAULT_FILE``: a JSON file whose keys ``point``, ``mode``, ``try``, ``task`` and ``dag``
  take the place of the variables above while it exists. Workers of a running Airflow read it at
  each point, so a test can arm and disarm faults without restarting them.
"""

from __future__ import annotations

import json
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


_KEYS = ("point", "mode", "try", "task", "dag")


def _settings() -> dict[str, str]:
    path = os.environ.get("RESUMABLE_FAULT_FILE")
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
        return {key: str(data[key]) for key in _KEYS if data.get(key) is not None}
    found = {key: os.environ.get(f"RESUMABLE_FAULT_{key.upper()}") for key in _KEYS}
    return {key: value for key, value in found.items() if value}


def arm(
    path: str, point: str, *, mode: str = "exit", try_number: int | str = 1, task: str = "", dag: str = ""
) -> None:
    """Write a fault file (see ``RESUMABLE_FAULT_FILE``): the next matching attempt dies at ``point``."""
    settings = {
        "point": point,
        "mode": mode,
        "try": str(try_number),
        "task": task or None,
        "dag": dag or None,
    }
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as file:
        json.dump(settings, file)
    os.replace(tmp, path)


def disarm(path: str) -> None:
    """Remove a fault file written by :func:`arm`."""
    if os.path.exists(path):
        os.remove(path)


def fault_point(name: str, context: Mapping[str, Any]) -> None:
    """Die here if the environment (or the fault file) asks for it; otherwise do nothing."""
    settings = _settings()
    wanted = settings.get("point", "")
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
    only_task, only_dag = settings.get("task"), settings.get("dag")
    if (only_task and only_task != ti.task_id) or (only_dag and only_dag != ti.dag_id):
        return
    only_try = settings.get("try", "1")
    if only_try != "any" and int(only_try) != ti.try_number:
        return
    mode = settings.get("mode", "raise")
    if mode == "exit":
        os._exit(70)
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise InjectedFault(f"fault point {name!r} fired on try {ti.try_number} of {ti.task_id}")
