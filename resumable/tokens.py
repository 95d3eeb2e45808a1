"""Deterministic idempotency tokens: the same submission always gets the same token."""

from __future__ import annotations

import hashlib
import re

TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
TOKEN_PREFIX = "rsm"


def deployment_salt() -> str:
    """What tells this Airflow deployment's tokens from another's (``[resumable] deployment_id``).

    Two deployments (staging and production) running the same DAG against one Databricks
    workspace or AWS account would otherwise compute the same token for the same scheduled run
    and be handed each other's job. Unset, it is the deployment's API server address
    (``[core] execution_api_server_url``, else ``[api] base_url``), which differs between
    deployments. Tokens are computed only for new submissions and stored in the record, so
    workers that see the address differently never split one submission's token.
    """
    from resumable import config

    return config.deployment_id()


def make_token(
    dag_id: str,
    run_id: str,
    task_id: str,
    map_index: int,
    lineage: int,
    seq: int,
    run_after: str = "",
    *,
    run_started_at: str = "",
    salt: str = "",
    try_number: int = 0,
) -> str:
    """Return the idempotency token of one submission of one task instance.

    It is a hash of the task instance, its lineage and the submission number, so a retry of the
    same submission reuses it and a new submission (new ``seq`` or new lineage) never does.
    ``run_after`` (the DAG run's) tells apart a DAG run deleted and triggered again under the same run_id;
    ``run_started_at`` (when the DAG run started) a DAG run from a deleted one with the same run_id
    and run_after (a backfill), whose job an idempotent service would otherwise hand back; ``salt``
    (:func:`deployment_salt`) one Airflow deployment from another, and ``try_number`` (the try that
    makes the submission) a submission from one made before a person deleted the record. A token
    is computed once per submission and kept in the record, so these only need to hold until the
    intent is written.
    At most 64 characters of ``[A-Za-z0-9._-]``: Databricks, EMR Serverless and EMR on EKS all accept it.
    """
    parts = [dag_id, run_id, task_id, str(map_index), str(lineage), str(seq), run_after]
    extra = [run_started_at, salt] if run_started_at else ([salt] if salt else [])
    if try_number:
        extra.append(f"try={try_number}")
    material = "\x1f".join([*parts, *extra])
    digest = hashlib.sha256(material.encode("utf-8")).hexdigest()[:40]
    token = f"{TOKEN_PREFIX}-{digest}-{lineage}-{seq}"[:64]
    assert TOKEN_PATTERN.match(token), token
    return token
