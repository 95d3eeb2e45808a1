"""The ``resumable`` command: the demo, the records of resumable tasks, and a check of the set-up.

    resumable demo [--scenario databricks|emr|clear|mark-failed] [--keep] [--json]
    resumable state list  --dag-id D [--run-id R] [--task-id T] [--map-index N] [--json]
    resumable state show  --dag-id D --run-id R --task-id T [--map-index N] [--key K]
    resumable state clear --dag-id D --run-id R --task-id T [--map-index N] [--key K]
                          [--cancel-job [--dags-folder PATH] | --leave-job] [--yes]
    resumable state purge [--older-than-days N] [--dry-run]
    resumable doctor [--dags-folder PATH]

Records are read where the tasks write them (``[resumable] state_backend``; override with
``--backend``): the ``sql`` backend's database, or Airflow's task state store through the REST
API (``--api-url``, default ``[api] base_url``; ``--token`` or ``AIRFLOW_API_TOKEN``, or
``--username`` and ``--password``, or ``AIRFLOW_USERNAME`` / ``AIRFLOW_PASSWORD``). ``auto``
means what it means in the tasks of the installed Airflow: ``airflow`` from Airflow 3.3 (tasks
have ``task_state_store``), ``sql`` below.

Every key of a task is listed (job records under any ``state_key``, checkpoints); a value that
cannot be used is shown as ``unusable`` with why and the command that clears it.

``demo --json`` prints the demo's verdict as one JSON document on stdout, and everything else
(the live view, the messages) on stderr.

Exit codes: 0 success; 1 the demo saw a duplicate or lost job, or ``doctor`` found a problem;
2 bad usage or an unusable backend; 3 no record (``list`` too, in either form); 4 ``clear``
refused (the job may still run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from rich.markup import escape

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_NO_RECORD, EXIT_REFUSED = 0, 1, 2, 3, 4


def _scope_args(parser: argparse.ArgumentParser, *, whole_scope: bool) -> None:
    parser.add_argument("--dag-id", required=True)
    parser.add_argument("--run-id", required=whole_scope)
    parser.add_argument("--task-id", required=whole_scope)
    parser.add_argument("--map-index", type=int, default=-1 if whole_scope else None)
    if whole_scope:
        parser.add_argument("--key", default="resumable.job", help="the state_key (default: %(default)s)")
    parser.add_argument(
        "--backend", choices=["sql", "airflow"], help="where the records are (default: config)"
    )
    parser.add_argument("--api-url", help="Airflow's API server (airflow backend; default: [api] base_url)")
    parser.add_argument(
        "--token", default=os.environ.get("AIRFLOW_API_TOKEN"), help="bearer token for the API"
    )
    parser.add_argument("--username", default=os.environ.get("AIRFLOW_USERNAME"))
    parser.add_argument("--password", default=os.environ.get("AIRFLOW_PASSWORD"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resumable", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
    demo.add_argument(
        "--json",
        action="store_true",
        help="print the verdict per task as one JSON document on stdout; everything else goes to stderr",
    )
    state = commands.add_parser("state", help="list, show or clear the records of resumable tasks")
    verbs = state.add_subparsers(dest="verb", required=True)
    listing = verbs.add_parser("list", help="a table of the records of a DAG (or a run, a task)")
    _scope_args(listing, whole_scope=False)
    listing.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    _scope_args(verbs.add_parser("show", help="print one record as JSON"), whole_scope=True)
    clear = verbs.add_parser("clear", help="delete a record: the next attempt submits a new job")
    _scope_args(clear, whole_scope=True)
    choice = clear.add_mutually_exclusive_group()
    choice.add_argument(
        "--cancel-job", action="store_true", help="cancel the record's job first (loads the DAG)"
    )
    choice.add_argument("--leave-job", action="store_true", help="leave a job that may still run as it is")
    clear.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    clear.add_argument("--dags-folder", help="where --cancel-job finds the DAG (default: [core] dags_folder)")
    purge = verbs.add_parser(
        "purge", help="delete the sql backend's records not written for a while (the retention)"
    )
    purge.add_argument(
        "--older-than-days",
        type=int,
        help="delete records not written for this many days (default: [resumable] state_retention_days)",
    )
    purge.add_argument("--dry-run", action="store_true", help="count them, delete nothing")
    purge.add_argument(
        "--backend", choices=["sql", "airflow"], help="where the records are (default: config)"
    )
    doctor = commands.add_parser("doctor", help="check the set-up and say what to change")
    doctor.add_argument("--dags-folder", help="the DAGs to check (default: [core] dags_folder)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        return _demo(args.scenario, args.keep, args.json)
    if args.command == "doctor":
        from resumable.doctor import run_doctor

        return run_doctor(args.dags_folder)
    from resumable.errors import StateBackendError

    try:
        return _state(args)
    except StateBackendError as error:
        print(f"[resumable] {error}", file=sys.stderr)
        return EXIT_USAGE


def _demo(scenario: str, keep: bool, as_json: bool = False) -> int:
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
                f"import sys, resumable.demo as d; sys.exit(d.main({scenario!r}, {keep!r}, {as_json!r}))",
            ],
            env=env,
        )
    except KeyboardInterrupt:
        return 130
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _source(args: argparse.Namespace) -> Any:
    """Where the records are: the backend the tasks write to (see ``records.resolve_backend``)."""
    from resumable import config
    from resumable.errors import StateBackendError
    from resumable.records import ApiSource, SqlSource, resolve_backend

    name, why = resolve_backend(args.backend)
    if name == "sql":
        return SqlSource(config.sql_alchemy_conn())
    if name == "airflow":
        return ApiSource(
            args.api_url or config.api_base_url(),
            token=args.token,
            username=args.username,
            password=args.password,
        )
    if name == "memory":
        raise StateBackendError(
            f"[resumable] state_backend is {name!r}: its records live only inside a test process. "
            "Pass --backend sql or --backend airflow."
        )
    raise StateBackendError(
        f"The state backend is {name!r} ({why}), which is not one of auto, airflow, sql, memory. "
        "Nothing was read. Pass --backend sql or --backend airflow, or fix AIRFLOW__RESUMABLE__STATE_BACKEND."
    )


def _state(args: argparse.Namespace) -> int:
    from rich.console import Console

    from resumable.records import find
    from resumable.state import TaskScope

    if args.verb == "purge":
        return _purge(args)
    source = _source(args)
    out, err = Console(), Console(stderr=True)
    if args.verb == "list":
        entries = source.entries(args.dag_id, args.run_id, args.task_id, args.map_index)
        if not entries:
            # One rule for both forms: nothing found is exit 3 (the JSON form prints nothing).
            err.print(
                escape(f"No records of resumable tasks for DAG {args.dag_id!r} in {source.describe()}.")
            )
            return EXIT_NO_RECORD
        if args.json:
            for entry in entries:
                summary = entry.summary()
                summary["fix"] = source.fix_command(entry.scope, entry.key) if entry.problem else None
                print(json.dumps(summary, default=str))
            return EXIT_OK
        out.print(_table(entries, source.describe()))
        _print_unusable(entries, source, err)
        return EXIT_OK
    scope = TaskScope(args.dag_id, args.run_id, args.task_id, args.map_index)
    entry = find(source, scope, args.key)
    if entry is None:
        of_task = source.entries(args.dag_id, args.run_id, args.task_id, args.map_index)
        others = ", ".join(repr(e.key) for e in of_task)
        err.print(
            escape(
                f"No record {args.key!r} for {scope.describe()} in {source.describe()}."
                + (f" The task has {others}: pass --key." if others else "")
            )
        )
        return EXIT_NO_RECORD
    print(entry.show())
    _print_unusable([entry], source, err)
    if args.verb == "show":
        return EXIT_OK
    return _clear(args, source, entry, out, err)


def _print_unusable(entries: list[Any], source: Any, err: Any) -> None:
    for entry in entries:
        if entry.problem:
            err.print(
                "[red]Unusable:[/] "
                + escape(
                    f"{entry.key!r} of {entry.scope.describe()} {entry.problem}. A task that reads it fails "
                    f"without submitting. Look at the job it names (if any), then clear it with: "
                    f"{source.fix_command(entry.scope, entry.key)}"
                ),
                soft_wrap=True,
            )


def _purge(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from rich.console import Console

    from resumable import config
    from resumable.errors import StateBackendError
    from resumable.records import SqlSource, resolve_backend

    out = Console()
    name, why = resolve_backend(args.backend)
    if name != "sql":
        raise StateBackendError(
            f"The state backend is {name!r} ({why}): `resumable state purge` only purges the sql backend. "
            "Nothing was deleted. Airflow's task state store expires records by itself (each write sets "
            "[resumable] state_retention_days); `airflow state-store clean` removes expired ones now."
        )
    days = args.older_than_days if args.older_than_days is not None else config.state_retention_days()
    if days < 1:
        raise StateBackendError(
            f"--older-than-days is {days}: records of tasks that still run or wait for a retry would be "
            "deleted, and their retries would submit their jobs again. Nothing was deleted. Pass 1 or more."
        )
    source = SqlSource(config.sql_alchemy_conn())
    count = source.backend.purge(timedelta(days=days), dry_run=args.dry_run)
    verb = "Would delete" if args.dry_run else "Deleted"
    out.print(escape(f"{verb} {count} record(s) not written for {days} days from {source.describe()}."))
    return EXIT_OK


def _table(entries: list[Any], where: str) -> Any:
    from rich.table import Table

    table = Table(title=escape(f"Records in {where}"))
    for column in ("run", "task", "key", "phase", "owner", "lineage", "job", "last status", "url"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        s = entry.summary()
        task = s["task_id"] if s["map_index"] < 0 else f"{s['task_id']}[{s['map_index']}]"
        phase = {
            "done": "[green]done[/]",
            "submitting": "[yellow]submitting[/]",
            "unusable": "[red]unusable[/]",
        }.get(s["phase"], escape(s["phase"]))
        table.add_row(
            escape(s["run_id"]),
            escape(task),
            escape(s["key"]),
            phase,
            "-" if s["owner_try"] is None else f"try {s['owner_try']}",
            "-" if s["lineage"] is None else str(s["lineage"]),
            escape(str(s["job_id"] or "-")),
            escape(str(s["last_status"] or "-") + (f" ({s['stop_reason']})" if s["stop_reason"] else "")),
            escape(str(s["url"] or "-")),
        )
    return table


def _clear(args: argparse.Namespace, source: Any, entry: Any, out: Any, err: Any) -> int:
    from resumable import clearing

    refused = clearing.refusal(entry, source, cancel_job=args.cancel_job, leave_job=args.leave_job)
    if refused is not None:
        _say(err, refused)
        return EXIT_REFUSED
    if not args.yes:
        after = (
            "The next attempt starts this checkpoint from the beginning."
            if entry.is_checkpoint
            else "The next attempt submits a new job."
        )
        answer = input(f"Delete {entry.key!r} of {entry.scope.describe()}? {after} [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            out.print("Kept.")
            return EXIT_OK

    def load_task(entry: Any) -> Any:
        from resumable.doctor import load_task

        return load_task(entry.scope.dag_id, entry.scope.task_id, args.dags_folder, entry.scope.map_index)

    outcome = clearing.clear(source, entry, cancel_job=args.cancel_job, load_task=load_task)
    for said in outcome.said:
        _say(err if said.title else out, said)
    return {"done": EXIT_OK, "refused": EXIT_REFUSED, "not_cancelled": EXIT_USAGE}[outcome.result]


def _say(console: Any, said: Any) -> None:
    title = f"[red]{escape(said.title)}:[/] " if said.title else ""
    console.print(title + escape(said.text), soft_wrap=bool(said.title))
