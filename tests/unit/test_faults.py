"""Fault points: off by default, and each mode makes the attempt die the way it says."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from resumable import faults
from resumable.errors import InjectedFault


class _Ti:
    task_id, try_number = "job", 1


CONTEXT = {"ti": _Ti()}


def test_fault_points_are_off_unless_named(monkeypatch) -> None:
    monkeypatch.delenv("RESUMABLE_FAULT_POINT", raising=False)
    for point in faults.POINTS:
        faults.fault_point(point, CONTEXT)


def test_named_point_raises_only_on_its_try_and_task(monkeypatch) -> None:
    monkeypatch.setenv("RESUMABLE_FAULT_POINT", "after_submit")
    faults.fault_point("after_intent", CONTEXT)
    with pytest.raises(InjectedFault, match="after_submit"):
        faults.fault_point("after_submit", CONTEXT)
    monkeypatch.setenv("RESUMABLE_FAULT_TRY", "2")
    faults.fault_point("after_submit", CONTEXT)
    monkeypatch.setenv("RESUMABLE_FAULT_TRY", "any")
    monkeypatch.setenv("RESUMABLE_FAULT_TASK", "other")
    faults.fault_point("after_submit", CONTEXT)


def test_unknown_point_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("RESUMABLE_FAULT_POINT", "after_sumbit")
    with pytest.raises(ValueError, match="not fault points"):
        faults.fault_point("after_submit", CONTEXT)


@pytest.mark.parametrize(("mode", "returncode"), [("exit", 70), ("kill", -signal.SIGKILL)])
def test_hard_modes_end_the_process(mode, returncode) -> None:
    code = (
        "from resumable import faults\n"
        "class T: task_id, try_number = 'job', 1\n"
        "faults.fault_point('while_polling', {'ti': T()})\n"
        "print('survived')\n"
    )
    env = {"RESUMABLE_FAULT_POINT": "while_polling", "RESUMABLE_FAULT_MODE": mode}

    done = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert done.returncode == returncode
    assert "survived" not in done.stdout
