"""Airflow provider registration: ``airflow providers list`` shows the package, its extra link and
the ``[resumable]`` configuration options (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any


def _version() -> str:
    try:
        return version("airflow-resumable")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-resumable",
        "name": "Resumable operators",
        "description": "Operators whose retry reattaches to the job the lost worker submitted, "
        "instead of submitting it again (Databricks, EMR, and your own through ResumableMixin).",
        "versions": [_version()],
        "extra-links": ["resumable.links.ResumableJobLink"],
        "config": {
            "resumable": {
                "description": "Where resumable operators keep their records, and for how long.",
                "options": {
                    "state_backend": {
                        "description": "auto (Airflow's task_state_store where the task has one, Airflow "
                        ">= 3.3; else sql), airflow, sql, or memory (unit tests only).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "sql",
                        "default": "auto",
                    },
                    "sql_alchemy_conn": {
                        "description": "SQLAlchemy URL of the sql backend's database. Every worker must "
                        "reach it; use PostgreSQL with many workers. Default: a SQLite file "
                        "resumable_state.db in AIRFLOW_HOME.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "postgresql+psycopg2://airflow@db/resumable",
                        "default": None,
                        "sensitive": True,
                    },
                    "state_retention_days": {
                        "description": "Days a record is kept after its last write: the airflow "
                        "backend's retention, and the age past which the sql backend's purge deletes it. "
                        "Make it longer than any retry delay you use: an expired record means a retry "
                        "submits again.",
                        "version_added": "0.1.0",
                        "type": "integer",
                        "example": "30",
                        "default": "90",
                    },
                    "stop_follow_up_seconds": {
                        "description": "Seconds the follow-up process of a stop that came while a submit "
                        "call was in flight looks for the job of its token (a repeated submit with the "
                        "token, or find_job) to cancel it, after Airflow has killed the task process.",
                        "version_added": "0.1.0",
                        "type": "float",
                        "example": "300",
                        "default": "900",
                    },
                    "deployment_id": {
                        "description": "What tells this Airflow deployment's idempotency tokens from "
                        "another's (staging and production running the same DAG against one Databricks "
                        "workspace or AWS account would otherwise be handed each other's jobs). Unset, the "
                        "deployment's API server address ([core] execution_api_server_url, else "
                        "[api] base_url).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "production-eu",
                        "default": None,
                    },
                    "ui_enabled": {
                        "description": 'Whether the API server serves the "Resumable jobs" page (at '
                        "/resumable/, in the Browse menu from Airflow 3.1): the records across DAGs, and a "
                        "clear for users who may edit the DAG's task instances. Read when the API server "
                        "starts.",
                        "version_added": "0.1.0",
                        "type": "boolean",
                        "example": "False",
                        "default": "True",
                    },
                },
            }
        },
    }


def config_reference() -> str:
    """The ``[resumable]`` options as a Markdown table, from :func:`get_provider_info` (the docs'
    configuration reference is generated from it, so that it cannot drift from what Airflow reads)."""
    section = get_provider_info()["config"]["resumable"]
    rows = [
        "| option | environment variable | type | default | example | what it does |",
        "|---|---|---|---|---|---|",
    ]
    for name, option in section["options"].items():
        default = option.get("default")
        rows.append(
            f"| `{name}` | `AIRFLOW__RESUMABLE__{name.upper()}` | {option['type']} | "
            f"{'(unset)' if default is None else f'`{default}`'} | `{option['example']}` | "
            f"{option['description']}{' Sensitive: hidden in the UI.' if option.get('sensitive') else ''} |"
        )
    return "\n".join(rows)
