"""The distributed tier: PostgreSQL metadata database, CeleryExecutor on Redis, two Celery workers.

A Celery worker is killed with SIGKILL (with its pool and the task it runs) while the task polls
its job; the retry runs on the other worker and reattaches to the same job.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import psutil
import pytest

from resumable.testing.crash import CrashLab
from resumable.testing.stack import postgres_database
from tests.e2e.conftest import KEEP

# One part of a sharded run (pytest-xdist) runs all of them, on one Celery stack.
pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis, pytest.mark.xdist_group("celery")]


@pytest.fixture(scope="module")
def celery_lab(postgres_url: str, redis_url: str) -> Iterator[CrashLab]:
    broker = redis_url.rsplit("/", 1)[0] + "/9"
    with (
        postgres_database(postgres_url, keep=KEEP) as url,
        CrashLab(
            executor="CeleryExecutor",
            sql_alchemy_conn=url,
            broker_url=broker,
            celery_workers=2,
            keep_home=KEEP,
        ) as lab,
    ):
        yield lab


def celery_worker_of(lab: CrashLab, process: psutil.Process) -> str:
    """The name of the stack's Celery worker (``celery-worker-N``) that ``process`` runs under."""
    ancestors = {p.pid for p in process.parents()}
    for name, popen in lab.stack.processes.items():
        if name.startswith("celery-worker-") and popen.pid in ancestors:
            return name
    raise AssertionError(f"process {process.pid} runs under no Celery worker of the stack")


@pytest.mark.parametrize("system", ["databricks", "emr_serverless"])
def test_celery_worker_killed_the_retry_reattaches_on_the_other_worker(
    celery_lab: CrashLab, system: str
) -> None:
    lab = celery_lab
    lab.script(system, 40)
    run = lab.start_run(system)
    lab.wait_until_submitted(run)
    first = celery_worker_of(lab, lab.processes(run).task)
    time.sleep(3)
    lab.stack.kill(first, signal.SIGKILL)

    lab.wait_for_state(run, ("running",), try_number=2)
    second = celery_worker_of(lab, lab.processes(run).task)
    assert second != first
    assert lab.finish(run) == "success"
    assert lab.submitted(run) == 1
    assert lab.cancelled(run) == 0
    lab.stack.restart(first)  # the next test has two workers again
