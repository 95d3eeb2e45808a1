"""DAG for bench/overhead.py: one job per task, timed from inside.

Each task runs one attempt of a job and pushes to XCom ``{"round_trips": n, "state_ms": x}``: how
many times it went to its state store and how long those calls took. ``ours_<backend>`` run
ResumableMixin with that state backend; ``airflow33`` runs Airflow 3.3's ``ResumableJobMixin`` on
the same fake service. The job of a task ends at its first status call; that of its ``_polled``
twin after ``POLLS`` more (what polling a running job costs).
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, BaseOperator, ResumableJobMixin

import resumable.attempt
from resumable.testing.fake import FakeJobOperator, FakeJobService

#: Status calls that find the ``_polled`` tasks' jobs still running (bench/overhead.py sets it).
POLLS = int(os.environ.get("BENCH_POLLS", "10"))
SERVICES = {
    "bench": FakeJobService(name="bench", polls=0),
    "bench_polled": FakeJobService(name="bench_polled", polls=POLLS),
}
BACKEND_METHODS = ("get", "put", "delete")
ACCESSOR_METHODS = ("get", "set", "delete")


class Meter:
    """Counts and times calls made through the objects it wraps."""

    def __init__(self) -> None:
        self.calls, self.seconds = 0, 0.0

    def wrap(self, target: Any, methods: tuple[str, ...]) -> Any:
        meter = self

        class Timed:
            def __getattr__(self, name: str) -> Any:
                attr = getattr(target, name)
                if name not in methods:
                    return attr

                def timed(*args: Any, **kwargs: Any) -> Any:
                    start = time.perf_counter()
                    try:
                        return attr(*args, **kwargs)
                    finally:
                        meter.calls += 1
                        meter.seconds += time.perf_counter() - start

                return timed

        return Timed()

    def result(self) -> dict[str, Any]:
        return {"round_trips": self.calls, "state_ms": self.seconds * 1000}


class OursTimed(FakeJobOperator):
    def __init__(self, *, backend: str, database: str = "", **kwargs: Any) -> None:
        super().__init__(poll_interval=0.01, **kwargs)
        self.backend, self.database = backend, database

    def execute(self, context: Any) -> Any:
        meter = Meter()
        os.environ["AIRFLOW__RESUMABLE__STATE_BACKEND"] = self.backend
        if self.backend == "sql":
            os.environ["AIRFLOW__RESUMABLE__SQL_ALCHEMY_CONN"] = os.environ[
                f"BENCH_SQL_{self.database.upper()}"
            ]
        original = resumable.attempt.backend_for
        if self.backend == "airflow":
            context["task_state_store"] = meter.wrap(context["task_state_store"], ACCESSOR_METHODS)
        else:
            resumable.attempt.backend_for = lambda ctx: meter.wrap(original(ctx), BACKEND_METHODS)  # type: ignore[assignment]
        try:
            super().execute(context)
        finally:
            resumable.attempt.backend_for = original  # type: ignore[assignment]
        return meter.result()


class Airflow33Timed(ResumableJobMixin, BaseOperator):
    external_id_key = "bench_job_id"

    def __init__(self, *, service: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service

    def execute(self, context: Any) -> Any:
        meter = Meter()
        context["task_state_store"] = meter.wrap(context["task_state_store"], ACCESSOR_METHODS)
        self.execute_resumable(context)
        return meter.result()

    def submit_job(self, context: Any) -> Any:
        return SERVICES[self.service].submit(f"a33-{context['ti'].id}", "bench")

    def get_job_status(self, external_id: Any, context: Any) -> str:
        return SERVICES[self.service].status(str(external_id)).value

    def is_job_active(self, status: str) -> bool:
        return status in ("PENDING", "RUNNING")

    def is_job_succeeded(self, status: str) -> bool:
        return status == "SUCCEEDED"

    def poll_until_complete(self, external_id: Any, context: Any) -> None:
        while self.is_job_active(self.get_job_status(external_id, context)):
            time.sleep(0.01)

    def get_job_result(self, external_id: Any, context: Any) -> Any:
        return None


with DAG(
    "resumable_overhead", schedule=None, start_date=datetime(2025, 1, 1), catchup=False, max_active_runs=1
):
    for service, suffix in (("bench", ""), ("bench_polled", "_polled")):
        OursTimed(task_id=f"ours_airflow{suffix}", backend="airflow", service=service)
        OursTimed(task_id=f"ours_sqlite{suffix}", backend="sql", database="ours_sqlite", service=service)
        if os.environ.get("BENCH_SQL_OURS_POSTGRES"):
            OursTimed(
                task_id=f"ours_postgres{suffix}", backend="sql", database="ours_postgres", service=service
            )
        Airflow33Timed(task_id=f"airflow33{suffix}", service=service)
