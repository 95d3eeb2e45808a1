"""The model checker on the real Glue operator, bounded for CI: the same random sequences of attempts
and disruptions as ``test_resume_model.py``, with each attempt's operator a real
``ResumableGlueJobOperator`` that talks to moto over HTTP through the amazon provider's hook (its
token in the run's arguments, its retry finding the run with ``GetJobRuns``), and the guarantees of
``docs/concepts.md`` checked after every step. ``tests/model/glue.py`` says how the World's model of
the runs and moto are kept in step.

The seed is fixed (``derandomize``), and the bounds are a fraction of ``test_resume_model.py``'s (the
Glue operator drives the same protocol); ``bench/model_check.py --system glue`` explores many more
sequences. A failure prints the shrunk sequence of steps: replay it with ``GlueWorld`` by hand.
"""

from __future__ import annotations

from tests.model.machine import ResumeMachine, ci_settings

TestGlueModelOnMemory = ResumeMachine.for_backend("memory", system="glue").TestCase
TestGlueModelOnMemory.settings = ci_settings(max_examples=60, steps=30)

TestGlueModelOnSql = ResumeMachine.for_backend("sql", system="glue").TestCase
TestGlueModelOnSql.settings = ci_settings(max_examples=25, steps=30)

TestGlueModelOnAirflow = ResumeMachine.for_backend("airflow", system="glue").TestCase
TestGlueModelOnAirflow.settings = ci_settings(max_examples=40, steps=30)
