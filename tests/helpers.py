"""Helpers the test modules share (fixtures live in the conftest files)."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from airflow.sdk import DAG
from tenacity import stop_after_attempt, wait_fixed


def new_dag(prefix: str) -> DAG:
    """An empty DAG with a unique id, for tests that add their own operators."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    return DAG(name, schedule=None, start_date=datetime(2025, 1, 1), catchup=False)


def a_record(phase: str, state: str | None, job_id: str = "42") -> dict[str, Any]:
    """A stored record of the fake service's operator as the mixin writes it (lineage 3, owner try 2):
    ``phase`` "submitting" (no job id yet), "submitted" or "done", ``state`` the job's last status."""
    last = {"state": state, "raw": state, "message": ""} if state else None
    handle = {"system": "fake", "job_id": job_id, "url": f"fake://jobs/{job_id}", "extras": {}}
    return {
        "v": 1,
        "lineage": 3,
        "owner": 2,
        "seq": 1,
        "phase": phase,
        "token": "rsm-x-3-1",
        "operator": "resumable.testing.fake.FakeJobOperator",
        "handle": None if phase == "submitting" else handle,
        "last_status": last,
    }


def load_bench(name: str) -> Any:
    """The module of ``bench/<name>.py`` (the benches are scripts, not a package)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_bench", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


#: Both ways Airflow stops a deferred task's trigger (see :func:`stop_deferred_task`).
EVERY_TRIGGER_STOP = pytest.mark.parametrize("before_3_3", [True, False], ids=["airflow<3.3", "airflow>=3.3"])
#: The task's state when its trigger stops, and whether that is a person's stop, which cancels the job:
#: marked failed, cleared (none), or still deferred (a triggerer restart, a trigger handed on).
PERSONS_STOP = pytest.mark.parametrize(
    ("state", "cancelled"), [("failed", True), ("none", True), ("deferred", False)]
)


@contextlib.contextmanager
def on_the_retrys_first_look(operator: type, inject: Callable[[], None]) -> Iterator[None]:
    """While inside, ``inject`` runs as the DAG's second status read of its job begins: the first
    read of the retry that follows a crash while polling (the crashed try read once)."""
    original = operator.get_job_status  # type: ignore[attr-defined]
    calls = {"n": 0}

    def reading(self: Any, handle: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            inject()
        return original(self, handle)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(operator, "get_job_status", reading)
        yield


def stop_deferred_task(
    trigger_path: str, kwargs: dict[str, Any], monkeypatch: Any, *, state: str, before_3_3: bool
) -> None:
    """Rebuild a trigger from its serialised form, as the triggerer does, and stop it the way Airflow
    stops a deferred task's trigger: before 3.3 the triggerer cancels it without saying why (a
    person's stop and a triggerer restart alike); from 3.3 it calls ``on_kill`` for a person's action.
    ``state`` is what Airflow answers about the task instance then."""
    import asyncio
    from importlib import import_module

    from resumable import trigger_stop

    module, _, name = trigger_path.rpartition(".")
    trigger = getattr(import_module(module), name)(**kwargs)
    trigger.task_instance = type(
        "Ti", (), {"dag_id": "d", "run_id": "r", "task_id": "job", "map_index": -1}
    )()
    monkeypatch.setattr(trigger_stop, "TRIGGERER_CALLS_ON_KILL", not before_3_3)

    async def task_state() -> str:
        return state

    monkeypatch.setattr(trigger, "_task_state", task_state)

    async def stopped() -> None:
        if not before_3_3:
            await trigger.on_kill()
            return
        waiting = asyncio.ensure_future(trigger.run().__anext__())
        await asyncio.sleep(0.5)  # the trigger watches the running job
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(stopped())


#: The Databricks hook's own retries, fast: four tries, no waiting (the emulators answer at once).
FAST_HOOK = {"stop": stop_after_attempt(4), "wait": wait_fixed(0)}


def databricks_operator_kwargs(**kwargs: Any) -> dict[str, Any]:
    """What every Databricks operator of the integration tests gets unless a test says otherwise."""
    kwargs.setdefault("retries", 2)
    kwargs.setdefault("retry_delay", timedelta(0))
    kwargs.setdefault("poll_interval", 0.02)
    kwargs.setdefault("databricks_retry_args", FAST_HOOK)
    return kwargs


def raised_by(call: Callable[[], object], within: float) -> BaseException | None:
    """What ``call`` raised (None: it returned), run in a daemon thread so that a call that hangs does
    not hang the tests. Fails the test when the call still runs after ``within`` seconds, a bound far
    above the timeouts under test: the call must end, not merely be slow."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as error:  # noqa: BLE001 - the caller reads it
            raised.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=within)
    assert not thread.is_alive(), f"still waiting {within:g} s later"
    return raised[0] if raised else None
