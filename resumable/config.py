"""The library's settings, read through Airflow's own configuration (``[resumable]`` section).

Every option can also be set as an environment variable, the Airflow way:
``AIRFLOW__RESUMABLE__STATE_BACKEND``, ``AIRFLOW__RESUMABLE__SQL_ALCHEMY_CONN``, ...
"""

from __future__ import annotations

import os


def _conf_get(section: str, key: str, fallback: str) -> str:
    from resumable._compat import conf_get  # Airflow's configuration, read only when asked

    return conf_get(section, key, fallback)


def get(key: str, fallback: str) -> str:
    """An option of the ``[resumable]`` section, or ``fallback``."""
    return _conf_get("resumable", key, fallback)


def deployment_id() -> str:
    """``[resumable] deployment_id``, else this deployment's API server address
    (``[core] execution_api_server_url``, else ``[api] base_url``): what salts its tokens."""
    explicit = get("deployment_id", "").strip()
    if explicit:
        return explicit
    return _conf_get("core", "execution_api_server_url", "").strip() or api_base_url()


def airflow_home() -> str:
    return os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")


def state_backend_name() -> str:
    """``auto`` (the default), ``airflow``, ``sql`` or ``memory``."""
    return get("state_backend", "auto").strip().lower() or "auto"


def sql_alchemy_conn() -> str:
    """The database of the ``sql`` backend; a SQLite file in AIRFLOW_HOME unless set."""
    default = "sqlite:///" + os.path.join(airflow_home(), "resumable_state.db")
    return get("sql_alchemy_conn", default)


def state_retention_days() -> int:
    """How long the ``airflow`` backend keeps a record: longer than any retry delay you use."""
    return int(get("state_retention_days", "90"))


def api_base_url() -> str:
    return _conf_get("api", "base_url", "http://localhost:8080").rstrip("/")


def ui_enabled() -> bool:
    """``[resumable] ui_enabled``: whether the plugin adds the "Resumable jobs" page to Airflow's UI."""
    return get("ui_enabled", "True").strip().lower() in ("true", "t", "1", "yes", "on")
