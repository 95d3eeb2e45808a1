"""Resumable EMR operators: steps, EMR Serverless, EMR on EKS and cluster creation, surviving a crash.

Each class is the amazon provider's operator with the same parameters, plus ResumableMixin's. Where
the service honours an idempotency token (Serverless, EKS) ours is sent as ``clientToken``; where it
does not (steps, clusters) the token is written into the job (step name, cluster tag) and a retry
finds the job by it instead of creating another.

Each operator lives in a module of its own (:mod:`resumable.operators.emr_steps`,
:mod:`~resumable.operators.emr_serverless`, :mod:`~resumable.operators.emr_eks`,
:mod:`~resumable.operators.emr_cluster`); this module imports them all, as DAG files written for the
releases before the split do.
"""

from __future__ import annotations

from resumable.operators._aws import (
    NOT_FOUND_CODES,
    THROTTLED_CODES,
    TRANSIENT_CODES,
    error_code,
    is_not_found,
    is_throttled,
    is_transient,
)
from resumable.operators.emr_cluster import ALL_CLUSTER_STATES, TOKEN_TAG, ResumableEmrCreateJobFlowOperator
from resumable.operators.emr_eks import EKS_STATES, ResumableEmrContainerOperator
from resumable.operators.emr_serverless import SERVERLESS_STATES, ResumableEmrServerlessStartJobOperator
from resumable.operators.emr_steps import CLUSTER_ACCEPTS_STEPS, STEP_STATES, ResumableEmrAddStepsOperator

__all__ = [
    "ALL_CLUSTER_STATES",
    "CLUSTER_ACCEPTS_STEPS",
    "EKS_STATES",
    "NOT_FOUND_CODES",
    "SERVERLESS_STATES",
    "STEP_STATES",
    "THROTTLED_CODES",
    "TOKEN_TAG",
    "TRANSIENT_CODES",
    "ResumableEmrAddStepsOperator",
    "ResumableEmrContainerOperator",
    "ResumableEmrCreateJobFlowOperator",
    "ResumableEmrServerlessStartJobOperator",
    "error_code",
    "is_not_found",
    "is_throttled",
    "is_transient",
]
