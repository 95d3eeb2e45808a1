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
    assert set(section) == {
        "state_backend",
        "sql_alchemy_conn",
        "state_retention_days",
        "stop_follow_up_seconds",
        "deployment_id",
        "ui_enabled",
    }


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


def test_the_configuration_reference_is_generated_from_what_airflow_reads() -> None:
    from pathlib import Path

    from resumable.provider import config_reference, get_provider_info

    table = config_reference()
    options = get_provider_info()["config"]["resumable"]["options"]
    for name, option in options.items():
        row = next(line for line in table.splitlines() if line.startswith(f"| `{name}` |"))
        assert f"AIRFLOW__RESUMABLE__{name.upper()}" in row and option["description"] in row
        assert (f"`{option['default']}`" if option["default"] is not None else "(unset)") in row
    root = Path(__file__).resolve().parents[2]
    assert "<!-- config-reference -->" in (root / "docs" / "reference" / "configuration.md").read_text()
    assert "docs/hooks.py" in (root / "mkdocs.yml").read_text()
