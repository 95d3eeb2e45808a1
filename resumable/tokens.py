"""Deterministic idempotency tokens: the same submission always gets the same token."""

from __future__ import annotations

import hashlib
import re

TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
TOKEN_PREFIX = "rsm"


def make_token(
    dag_id: str, run_id: str, task_id: str, map_index: int, lineage: int, seq: int, run_after: str = ""
) -> str:
    """Return the idempotency token of one submission of one task instance.

    It is a hash of the task instance, its lineage and the submission number, so a retry of the
    same submission reuses it and a new submission (new ``seq`` or new lineage) never does.
    ``run_after`` (the DAG run's) tells apart a DAG run deleted and triggered again under the same run_id.
    At most 64 characters of ``[A-Za-z0-9._-]``: Databricks, EMR Serverless and EMR on EKS all accept it.
    """
    material = "\x1f".join([dag_id, run_id, task_id, str(map_index), str(lineage), str(seq), run_after])
    digest = hashlib.sha256(material.encode("utf-8")).hexdigest()[:40]
    token = f"{TOKEN_PREFIX}-{digest}-{lineage}-{seq}"[:64]
    assert TOKEN_PATTERN.match(token), token
    return token
