"""Your own resumable operator: a shell command that runs detached from the worker.

The "external system" here is the machine itself: the job is a process group started with the
token in its files, so a retry on the same host finds it (``find_job``) and waits for it instead
of starting it again. Replace submit/status/cancel with your system's API calls.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, BaseOperator

from resumable import JobHandle, JobState, JobStatus, ResumableMixin


class DetachedCommandOperator(ResumableMixin, BaseOperator):
    """Runs ``command`` in its own process group; its exit code is the job's outcome."""

    job_system = "local-command"
    template_fields = ("command",)

    def __init__(self, *, command: str, workdir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.command = command
        self.workdir = workdir or os.path.join(tempfile.gettempdir(), "resumable-commands")

    def _file(self, token: str, suffix: str) -> Path:
        return Path(self.workdir) / f"{token}.{suffix}"

    def submit_job(self, context: Mapping[str, Any], token: str) -> JobHandle:
        os.makedirs(self.workdir, exist_ok=True)
        rc = self._file(token, "rc")
        process = subprocess.Popen(
            ["/bin/sh", "-c", f'({self.command}); echo $? > "{rc}.tmp" && mv "{rc}.tmp" "{rc}"'],
            start_new_session=True,
        )
        self._file(token, "pid").write_text(str(process.pid))
        return JobHandle(self.job_system, str(process.pid), extras={"token": token})

    def find_job(self, context: Mapping[str, Any], token: str) -> JobHandle | None:
        pid_file = self._file(token, "pid")
        if not pid_file.exists():
            return None  # the lost worker died before starting it
        return JobHandle(self.job_system, pid_file.read_text().strip(), extras={"token": token})

    def get_job_status(self, handle: JobHandle) -> JobStatus:
        rc_file = self._file(str(handle.extras["token"]), "rc")
        if rc_file.exists():
            code = int(rc_file.read_text().strip() or 1)
            return JobStatus(JobState.SUCCEEDED if code == 0 else JobState.FAILED, f"exit {code}")
        try:
            os.kill(int(handle.job_id), 0)
        except ProcessLookupError:
            return JobStatus(JobState.NOT_FOUND, "gone", "the process ended without an exit code")
        return JobStatus(JobState.RUNNING, "running")

    def cancel_job(self, handle: JobHandle) -> None:
        with contextlib.suppress(ProcessLookupError):  # it ended on its own meanwhile
            os.killpg(int(handle.job_id), signal.SIGTERM)


with DAG(
    "example_custom_operator",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    tags=["resumable", "example"],
):
    DetachedCommandOperator(task_id="export", command="sleep 2 && echo exported {{ ds }}", poll_interval=1)
