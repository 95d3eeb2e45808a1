"""The operator extra links, rendered by the API server for real task instances."""

from __future__ import annotations

import pytest

from resumable.testing.crash import CrashLab

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("system", "link", "expected"),
    [
        ("databricks", "See Databricks Job Run", "/#job/"),
        ("emr_serverless", "Job page", "console.aws.amazon.com/emr/home"),
        ("emr_steps", "Job page", "console.aws.amazon.com/emr/home"),
    ],
)
def test_the_job_page_link_points_at_the_job(lab: CrashLab, system: str, link: str, expected: str) -> None:
    lab.script(system, 3)
    run = lab.start_run(system)
    assert lab.finish(run) == "success"
    links = lab.stack.api("GET", f"dags/{run.dag_id}/dagRuns/{run.run_id}/taskInstances/job/links")[
        "extra_links"
    ]
    if not links.get(link):  # say why, with what the worker did
        ti = lab.task(run)
        logs = "\n".join(lab.task_log(run, n)[-4000:] for n in range(1, int(ti["try_number"]) + 1))
        pytest.fail(f"no {link!r} link: {links}; task instance {ti}; task log:\n{logs}")
    assert expected in links[link], links
    job_id = lab.job_ids(run)[0]
    if system == "databricks":
        assert links[link].startswith(lab.databricks.url) and links[link].endswith(f"/run/{job_id}")
    elif system == "emr_serverless":
        assert links[link].endswith(f"/job-runs/{job_id}"), links[link]
    else:
        assert links[link].endswith(f"#/clusterDetails/{lab.stack.env['RESUMABLE_CRASH_CLUSTER_ID']}"), links[
            link
        ]
