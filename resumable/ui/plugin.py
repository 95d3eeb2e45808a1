"""The Airflow plugin that adds the "Resumable jobs" page (entry point ``airflow.plugins``).

It mounts :func:`resumable.ui.app.create_app` in the API server at ``/resumable`` and, from
Airflow 3.1 (which has plugin views in its UI), adds "Resumable jobs" to the Browse menu.
``[resumable] ui_enabled = False`` turns both off; the API server reads it when it starts.
"""

from __future__ import annotations

import threading
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from resumable import config

#: Where the app is mounted in the API server.
URL_PREFIX = "/resumable"


class LazyApp:
    """The page's ASGI app, built on its first request.

    Every Airflow process loads plugins (a worker does at each task's start), and building the app
    imports the API server's security code, which takes seconds: only the API server, which serves
    the page, pays for it.
    """

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from resumable.ui.app import create_app

                    self._app = create_app()
        await self._app(scope, receive, send)

    def __repr__(self) -> str:
        return "resumable.ui.app:create_app"


def fastapi_apps() -> list[dict[str, Any]]:
    if not config.ui_enabled():
        return []
    return [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "Resumable jobs"}]


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
