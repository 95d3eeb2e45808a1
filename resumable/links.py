"""The operator extra link to the external job's page, for operators whose provider has no such link."""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

#: XCom key under which a resumable operator keeps the URL of its job's page.
JOB_URL_XCOM_KEY = "resumable_job_url"


class ResumableJobLink(BaseOperatorLink):  # type: ignore[misc,valid-type]
    """Links a task to the page of the job it submitted or reattached to (pushed as soon as it is known)."""

    name = "Job page"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        url = XCom.get_value(key=JOB_URL_XCOM_KEY, ti_key=ti_key)
        return str(url) if url else ""
