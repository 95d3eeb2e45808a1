"""The model checker, bounded for CI: random sequences of attempts and disruptions of one task
instance, on the ``memory``, ``sql`` (SQLite file) and ``airflow`` (Airflow's task state store as
the API server serves it: a replaced try is refused) backends, with the guarantees of
``docs/concepts.md`` checked after every step (see ``world.py`` for the model and ``machine.py``
for the rules).

The seed is fixed (``derandomize``), so every run explores the same sequences; ``bench/model_check.py``
explores many more with any seed. A failure prints the shrunk sequence of steps that broke a
guarantee: replay it by hand in ``test_found_interleavings.py``.
"""

from __future__ import annotations

from tests.model.machine import ResumeMachine, ci_settings

TestModelOnMemory = ResumeMachine.for_backend("memory").TestCase
TestModelOnMemory.settings = ci_settings(max_examples=400, steps=30)

TestModelOnSql = ResumeMachine.for_backend("sql").TestCase
TestModelOnSql.settings = ci_settings(max_examples=160, steps=30)

TestModelOnAirflow = ResumeMachine.for_backend("airflow").TestCase
TestModelOnAirflow.settings = ci_settings(max_examples=400, steps=30)
