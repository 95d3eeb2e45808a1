"""The testing kit: test DAGs of resumable operators without a cloud, and crash them on purpose.

- :mod:`resumable.testing.airflow`: run a DAG defined in test code with ``dag.test()``
  (:func:`run_dag`, :func:`clear_and_rerun`, :func:`task_states`), on an initialised metadata
  database (:func:`init_db`).
- :mod:`resumable.testing.databricks`: :class:`DatabricksEmulator`, a loopback Databricks Jobs
  API that the provider's real ``DatabricksHook`` talks to, scripted with :class:`RunScript`.
- :mod:`resumable.testing.aws`: :class:`AwsEmulator`, moto as an HTTP server for the amazon
  provider's real hooks, with EMR steps, job runs and clusters scripted with :class:`JobScript`.
  Both emulators take the same outcomes: ``"succeed"``, ``"fail"``, ``"hang"``.
- :mod:`resumable.testing.fake`: :class:`FakeJobService` and :class:`FakeJobOperator`, a job
  system in memory for tests of the mixin itself.
- :mod:`resumable.testing.stack` and :mod:`resumable.testing.crash`: :class:`AirflowStack`, a
  real Airflow started from its own commands, and :class:`CrashLab`, which adds the emulators and
  the crash DAGs and kills workers with signals.
- :mod:`resumable.faults` (fault points) and :mod:`resumable.testing.pytest_plugin` (fixtures).

The names below are imported on first use: importing ``resumable.testing`` loads none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from resumable._lazy import lazy_getattr

_WHERE = {
    "AirflowStack": "resumable.testing.stack",
    "AwsEmulator": "resumable.testing.aws",
    "CrashLab": "resumable.testing.crash",
    "DatabricksEmulator": "resumable.testing.databricks",
    "FakeJobOperator": "resumable.testing.fake",
    "FakeJobService": "resumable.testing.fake",
    "JobScript": "resumable.testing.aws",
    "RunScript": "resumable.testing.databricks",
    "TaskScript": "resumable.testing.databricks",
    "clear_and_rerun": "resumable.testing.airflow",
    "init_db": "resumable.testing.airflow",
    "register_dag": "resumable.testing.airflow",
    "run_dag": "resumable.testing.airflow",
    "task_states": "resumable.testing.airflow",
}

__all__ = [
    "AirflowStack",
    "AwsEmulator",
    "CrashLab",
    "DatabricksEmulator",
    "FakeJobOperator",
    "FakeJobService",
    "JobScript",
    "RunScript",
    "TaskScript",
    "clear_and_rerun",
    "init_db",
    "register_dag",
    "run_dag",
    "task_states",
]

if TYPE_CHECKING:
    from resumable.testing.airflow import clear_and_rerun, init_db, register_dag, run_dag, task_states
    from resumable.testing.aws import AwsEmulator, JobScript
    from resumable.testing.crash import CrashLab
    from resumable.testing.databricks import DatabricksEmulator, RunScript, TaskScript
    from resumable.testing.fake import FakeJobOperator, FakeJobService
    from resumable.testing.stack import AirflowStack


__getattr__ = lazy_getattr(__name__, _WHERE)
