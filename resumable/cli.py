"""The ``resumable`` command: the demo, and reading or clearing records of the sql state backend.

Exit codes: 0 success; 1 the demo saw a duplicate or lost job; 2 bad usage or an unusable backend;
3 ``state show`` found no record.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile


def _scope_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dag-id", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--task-id", required=True)
    parser.add_argument("--map-index", type=int, default=-1)
    parser.add_argument("--key", default="resumable.job", help="the state_key (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resumable", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="kill the workers of a real, embedded Airflow: the provider's operator and ours side by side",
    )
    demo.add_argument(
        "--scenario",
        choices=["databricks", "emr", "clear", "mark-failed"],
        default="databricks",
        help="databricks (default): SIGTERM to one pair of workers, SIGKILL to another; emr: the same on EMR "
        "Serverless; clear, mark-failed: a person clears or fails the running tasks through the REST API",
    )
    demo.add_argument(
        "--keep", action="store_true", help="leave Airflow running afterwards, to look at in its UI"
    )
    state = commands.add_parser("state", help="read or clear a record of the sql state backend")
    verbs = state.add_subparsers(dest="verb", required=True)
    _scope_args(verbs.add_parser("show", help="print the record as JSON"))
    clear = verbs.add_parser("clear", help="delete the record (the next attempt submits afresh)")
    _scope_args(clear)
    clear.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        return _demo(args.scenario, args.keep)
    return _state(args)


def _demo(scenario: str, keep: bool) -> int:
    # Importing Airflow reads (and may write) the configuration of AIRFLOW_HOME: the demo's own
    # process gets an empty private one, so that nothing touches the user's Airflow. The
    # embedded Airflow it starts has a temporary home of its own.
    home = tempfile.mkdtemp(prefix="resumable-demo-client-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update({"AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    try:
        return subprocess.call(
            [
                sys.executable,
                "-c",
                f"import sys, resumable.demo as d; sys.exit(d.main({scenario!r}, {keep!r}))",
            ],
            env=env,
        )
    except KeyboardInterrupt:
        return 130
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _state(args: argparse.Namespace) -> int:
    from resumable import config
    from resumable.errors import StateBackendError
    from resumable.state import SqlBackend, TaskScope

    name = config.state_backend_name()
    if name not in ("sql", "auto"):
        print(
            f"[resumable] state_backend is {name!r}; this command reads the sql backend only. Records of "
            "the airflow backend are in Airflow's task state store: read or delete them through Airflow's "
            "REST API (/api/v2/dags/<dag>/dagRuns/<run>/taskInstances/<task>/state-store/<key>).",
            file=sys.stderr,
        )
        return 2
    backend = SqlBackend(config.sql_alchemy_conn())
    try:
        backend.check()
    except StateBackendError as error:
        print(error, file=sys.stderr)
        return 2
    scope = TaskScope(args.dag_id, args.run_id, args.task_id, args.map_index)
    found = backend.get(scope, args.key)
    if found is None:
        print(f"No record {args.key!r} for {scope.describe()} in {backend.describe()}.", file=sys.stderr)
        return 3
    print(json.dumps({"version": found.version, "value": found.value}, indent=2, default=str))
    if args.verb == "show":
        return 0
    if not args.yes:
        answer = input("Delete this record? The next attempt will submit a new job. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Kept.")
            return 0
    backend.delete(scope, args.key)
    print(f"Deleted {args.key!r} of {scope.describe()}.")
    return 0
