"""Long run of the model checker: the state machine of tests/model on each backend, for N sequences.

It drives the real ResumableMixin (through FakeJobOperator and FakeJobService) through random
sequences of attempts and disruptions and checks the guarantees of docs/concepts.md after every step
(see tests/model/world.py). When a sequence breaks one, Hypothesis shrinks it and this script
prints the short sequence, then goes on looking for violations of other kinds with what is left
of the same budget. It prints how many sequences and steps it ran (shrinking included) and what it found.

    python bench/model_check.py --examples 2000 --steps 40 --seed 1
    python bench/model_check.py --examples 300 --backend sql
    python bench/model_check.py --system glue --examples 300 --backend memory

``--system glue`` drives the real ResumableGlueJobOperator (the amazon provider's hook, over HTTP to
moto with the kit's driver) instead of FakeJobOperator; see tests/model/glue.py.

Exit status: 0 when nothing was found, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# Airflow reads its configuration once, on import: a private home before anything imports it.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="resumable-model-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")

import logging  # noqa: E402

from hypothesis import seed as hypothesis_seed  # noqa: E402
from hypothesis import settings  # noqa: E402
from hypothesis.reporting import with_reporter  # noqa: E402
from hypothesis.stateful import run_state_machine_as_test  # noqa: E402

from tests.model.machine import EXPLORED, SYSTEMS, ResumeMachine, ci_settings  # noqa: E402
from tests.model.world import GuaranteeViolated  # noqa: E402


def explore(
    backend: str, examples: int, steps: int, seed: int, max_findings: int, system: str = "fake"
) -> list[tuple[str, str]]:
    """Run the machine for ``examples`` sequences; after each finding, run it again (ignoring the kinds
    found) until a run finds nothing new. Returns (kinds, report) per finding."""
    findings: list[tuple[str, str]] = []
    ignore: frozenset[str] = frozenset()
    while len(findings) < max_findings:
        machine = hypothesis_seed(seed)(ResumeMachine.for_backend(backend, ignore=ignore, system=system))
        lines: list[str] = []

        def report(value: object, lines: list[str] = lines) -> None:
            lines.append(str(value))

        base = ci_settings(examples, steps)
        run_settings = settings(base, derandomize=False, report_multiple_bugs=False)
        try:
            with with_reporter(report):
                run_state_machine_as_test(machine, settings=run_settings)
        except GuaranteeViolated as violated:
            notes = [str(n) for n in getattr(violated, "__notes__", [])]
            findings.append((", ".join(violated.kinds), "\n".join(lines + notes + [str(violated)])))
            ignore |= frozenset(violated.kinds)
            continue
        except Exception as error:  # noqa: BLE001 - a crash of the model itself: show it and stop
            notes = [str(n) for n in getattr(error, "__notes__", [])]
            findings.append((f"error: {type(error).__name__}", "\n".join(lines + notes + [repr(error)])))
            break
        break
    return findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--examples", type=int, default=500, help="sequences per backend (default %(default)s)"
    )
    parser.add_argument(
        "--steps", type=int, default=30, help="most steps in one sequence (default %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=1, help="Hypothesis seed (default %(default)s)")
    parser.add_argument(
        "--backend",
        nargs="+",
        choices=["memory", "sql", "airflow"],
        default=["memory", "sql", "airflow"],
        help="state backends",
    )
    parser.add_argument(
        "--system",
        choices=list(SYSTEMS),
        default="fake",
        help="the job system: the fake service, or the real Glue operator against moto (default %(default)s)",
    )
    parser.add_argument(
        "--max-findings", type=int, default=12, help="stop a backend after this many violation kinds"
    )
    args = parser.parse_args(argv)
    logging.getLogger("airflow.task").setLevel(logging.CRITICAL)

    found_any = False
    label = "" if args.system == "fake" else f"system {args.system}, "
    for backend in args.backend:
        sequences, steps, started = EXPLORED["sequences"], EXPLORED["steps"], time.monotonic()
        findings = explore(backend, args.examples, args.steps, args.seed, args.max_findings, args.system)
        took = time.monotonic() - started
        print(
            f"{label}backend {backend}: {EXPLORED['sequences'] - sequences} sequences, "
            f"{EXPLORED['steps'] - steps} steps (shrinking included) in {took:.0f} s, seed {args.seed}: "
            + (f"{len(findings)} finding(s)" if findings else "nothing found"),
            flush=True,
        )
        for kinds, report in findings:
            found_any = True
            print(f"\n--- {label}{backend}: {kinds}\n{report}\n", flush=True)
    return 1 if found_any else 0


if __name__ == "__main__":
    sys.exit(main())
