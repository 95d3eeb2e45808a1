"""The Airflow plugin that adds the "Resumable jobs" page (entry point ``airflow.plugins``).

It mounts :func:`resumable.ui.app.create_app` in the API server at ``/resumable`` and, from
Airflow 3.1 (which has plugin views in its UI), adds "Resumable jobs" to the Browse menu.
``[resumable] ui_enabled = False`` turns both off; the API server reads it when it starts.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from resumable import config

#: Where the app is mounted in the API server.
URL_PREFIX = "/resumable"


def fastapi_apps() -> list[dict[str, Any]]:
    if not config.ui_enabled():
        return []
    from resumable.ui.app import create_app

    return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Resumable jobs"}]


def external_views() -> list[dict[str, Any]]:
    if not config.ui_enabled():
        return []
    return [
        {
            "name": "Resumable jobs",
            "href": URL_PREFIX + "/",
            "url_route": "resumable-jobs",
            "destination": "nav",
            "category": "browse",
        }
    ]


class ResumablePlugin(AirflowPlugin):
    name = "resumable"
    fastapi_apps = fastapi_apps()
    external_views = external_views()
