"""Airflow finds the package through its provider entry point, with its extra link and options."""

from __future__ import annotations

import subprocess
import sys


def test_providers_manager_lists_the_package_its_link_and_its_config() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-resumable" in manager.providers
    info = manager.providers["airflow-resumable"]
    assert info.version
    assert "resumable.links.ResumableJobLink" in manager.extra_links_class_names
    configs = dict(manager.provider_configs)  # (package, {section: {...}}) pairs
    section = configs["airflow-resumable"]["resumable"]["options"]
    assert set(section) == {"state_backend", "sql_alchemy_conn", "state_retention_days", "deployment_id"}


def test_airflow_cli_shows_the_provider_and_its_default_option(tmp_path) -> None:
    env = {"AIRFLOW_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    listed = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "airflow-resumable" in listed.stdout
    value = subprocess.run(
        [sys.executable, "-m", "airflow", "config", "get-value", "resumable", "state_retention_days"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert value.stdout.strip().splitlines()[-1] == "90"  # Airflow 3.0 logs to stdout first
