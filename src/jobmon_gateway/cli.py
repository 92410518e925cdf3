"""The ``jobmon-gateway`` command line: look at a Jobmon server and its workflows.

Every command reads the server's address from ``--url`` / ``--prefix``, which
default to ``JOBMON__HTTP__SERVICE_URL`` / ``JOBMON__HTTP__ROUTE_PREFIX`` (and
the ``JOBMON__CONFIG_FILE`` YAML), like the SDK itself. ``--json`` prints
machine-readable output. An expected failure prints one line on stderr and
exits non-zero, without a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from . import routes
from .errors import ConfigurationError, GatewayError
from .gateway import ServerGateway
from .progress import STATUS_NAMES, ProgressView, StatusTally
from .routes import Call
from .transport import Requester

__all__ = ["main", "watch_workflow"]

T = TypeVar("T")


class _Context:
    def __init__(self, url: str | None, prefix: str | None, as_json: bool) -> None:
        self.url = url
        self.prefix = prefix
        self.as_json = as_json
        # With --json, stdout carries only JSON; live views go to stderr.
        self.console = Console(stderr=as_json)

    def requester(self) -> Requester:
        # The options win over the environment and the YAML file, as documented.
        environ = dict(os.environ)
        if self.url is not None:
            environ["JOBMON__HTTP__SERVICE_URL"] = self.url
        if self.prefix is not None:
            environ["JOBMON__HTTP__ROUTE_PREFIX"] = self.prefix
        return Requester.from_env(environ)

    def emit(self, data: Any, human: Callable[[], None]) -> None:
        if self.as_json:
            click.echo(json.dumps(data, default=str, sort_keys=True))
        else:
            human()


@contextmanager
def _expected_failures() -> Iterator[None]:
    try:
        yield
    except ConfigurationError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except GatewayError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def _send(requester: Requester, call: Call[T]) -> T:
    with requester.new_client() as client:
        return requester.send(call, client)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar="JOBMON__HTTP__SERVICE_URL", help="Server URL (scheme, host, port).")
@click.option("--prefix", envvar="JOBMON__HTTP__ROUTE_PREFIX", help="Route prefix [/api/v3].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.version_option(package_name="jobmon-gateway")
@click.pass_context
def main(ctx: click.Context, url: str | None, prefix: str | None, as_json: bool) -> None:
    """Talk to a Jobmon server's workflow-run API."""
    ctx.obj = _Context(url, prefix, as_json)


@main.command("time")
@click.pass_obj
def time_command(obj: _Context) -> None:
    """Print the server's database clock."""
    with _expected_failures():
        now = _send(obj.requester(), routes.get_server_time())
    obj.emit({"time": now.isoformat(sep=" ")}, lambda: click.echo(now.isoformat(sep=" ")))


@main.command("workflow")
@click.argument("workflow_id", type=int)
@click.pass_obj
def workflow_command(obj: _Context, workflow_id: int) -> None:
    """Show a workflow: metadata, limits and task counts by status."""
    with _expected_failures():
        requester = obj.requester()
        with requester.new_client() as client:
            metadata = requester.send(routes.get_workflow_metadata(workflow_id), client)
            updates = requester.send(routes.get_task_status_updates(workflow_id), client)
    tally = StatusTally()
    tally.apply(updates)
    counts = tally.counts()
    data = {
        "workflow_id": metadata.workflow_id,
        "dag_id": metadata.dag_id,
        "max_concurrently_running": metadata.max_concurrently_running,
        "tasks": len(tally.status_of),
        "counts": counts,
        "time": updates.time.isoformat(sep=" "),
    }

    def human() -> None:
        table = Table(title=f"workflow {metadata.workflow_id} (dag {metadata.dag_id})")
        table.add_column("status")
        table.add_column("tasks", justify="right")
        for letter in sorted(counts, key=lambda s: -counts[s]):
            table.add_row(f"{letter} {STATUS_NAMES.get(letter, 'unknown')}", str(counts[letter]))
        table.add_row("[bold]all", f"[bold]{len(tally.status_of)}")
        obj.console.print(table)
        obj.console.print(
            f"max concurrently running: {metadata.max_concurrently_running}"
            f"   server time: {updates.time:%Y-%m-%d %H:%M:%S}"
        )

    obj.emit(data, human)


STUCK_POLLS = 3
"""Polls without change after which a workflow with failed, idle tasks is given up on."""


def watch_workflow(
    gateway: ServerGateway,
    console: Console,
    *,
    interval: float,
    as_json: bool = False,
    between_polls: Callable[[], None] | None = None,
    max_polls: int | None = None,
) -> StatusTally:
    """Follow a workflow's task statuses until every task is done or failed.

    The first poll takes a full snapshot; later polls ask only for what
    changed since the server time of the previous answer. A workflow whose
    snapshot has no tasks at all is finished at once: there is nothing to wait for.
    A workflow whose failed tasks leave the rest unable to run (nothing
    queued or running, nothing changing for :data:`STUCK_POLLS` polls) ends
    the watch too, instead of waiting forever for tasks no one will start.
    """
    tally = StatusTally()
    view = ProgressView(console, f"workflow {gateway.workflow_id}")
    polls = 0
    still = 0
    with Live(view.progress, console=console, transient=as_json, refresh_per_second=8):
        while True:
            before = tally.counts()
            tally.apply(gateway.get_task_status_updates_sync(since=tally.last_sync))
            polls += 1
            still = still + 1 if tally.counts() == before else 0
            if as_json:
                click.echo(json.dumps({"counts": tally.counts(), "time": str(tally.last_sync)}))
            view.show(tally)
            # Without the emptiness check a workflow with no tasks would be
            # polled forever: StatusTally.finished is False when it has no tasks.
            if (
                tally.finished
                or not tally.status_of
                or (still >= STUCK_POLLS and tally.stuck)
                or (max_polls is not None and polls >= max_polls)
            ):
                return tally
            if between_polls is not None:
                between_polls()
            time.sleep(interval)


@main.command("watch")
@click.argument("workflow_id", type=int)
@click.option(
    "--interval",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds between polls.",
)
@click.pass_obj
def watch_command(obj: _Context, workflow_id: int, interval: float) -> None:
    """Live progress bars by task status until every task is done (D) or failed (F)."""
    with _expected_failures():
        try:
            # The run id is only used by run-level calls; watching needs none.
            with ServerGateway(obj.requester(), workflow_id, 1) as gateway:
                # An unknown workflow answers task_status_updates with no
                # tasks rather than an error; ask for it by name first so it
                # fails as "not found" instead of looking like an empty one.
                gateway.get_workflow_metadata_sync()
                tally = watch_workflow(gateway, obj.console, interval=interval, as_json=obj.as_json)
        except KeyboardInterrupt:
            click.echo("stopped", err=True)
            sys.exit(130)
    if not obj.as_json:
        counts = tally.counts()
        waiting = len(tally.status_of) - counts.get("D", 0) - counts.get("F", 0)
        obj.console.print(
            f"finished: {counts.get('D', 0)} done, {counts.get('F', 0)} failed"
            + (f", {waiting} cannot run (upstream failed)" if waiting else "")
            + f" of {len(tally.status_of)} tasks"
        )


@main.command("heartbeat")
@click.argument("workflow_run_id", type=int)
@click.option("--status", required=True, help="The run's status letter, e.g. R.")
@click.option("--next-report-increment", default=30.0, show_default=True, type=float)
@click.pass_obj
def heartbeat_command(
    obj: _Context, workflow_run_id: int, status: str, next_report_increment: float
) -> None:
    """Log a heartbeat for a workflow run and print the status the server answers."""
    with _expected_failures():
        answer = _send(
            obj.requester(),
            routes.log_heartbeat(workflow_run_id, status, next_report_increment),
        )
    obj.emit({"status": str(answer.status)}, lambda: click.echo(str(answer.status)))


@main.command("schema")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write one JSON Schema file per model into.",
)
@click.pass_obj
def schema_command(obj: _Context, out_dir: Path) -> None:
    """Export the JSON Schema of every response model, one file per model."""
    from .schemas import export_schemas

    try:
        written = export_schemas(out_dir)
    except OSError as exc:
        click.echo(f"error: cannot write schemas to {out_dir}: {exc}", err=True)
        sys.exit(1)
    obj.emit(
        [str(path) for path in written],
        lambda: click.echo("\n".join(str(path) for path in written)),
    )


@main.command("demo")
@click.option(
    "--tasks",
    default=300,
    show_default=True,
    type=click.IntRange(min=1),
    help="Tasks in the demo DAG.",
)
@click.option("--seed", default=7, show_default=True, help="Seed of the demo's randomness.")
@click.option(
    "--delay",
    default=0.05,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds between driver steps.",
)
@click.pass_obj
def demo_command(obj: _Context, tasks: int, seed: int, delay: float) -> None:
    """Drive a workflow run against an in-process fake Jobmon server, with live progress."""
    from .demo import run_demo

    with _expected_failures():
        try:
            report = run_demo(obj.console, tasks=tasks, seed=seed, delay=delay)
        except KeyboardInterrupt:
            click.echo("stopped", err=True)
            sys.exit(130)
    obj.emit(report, lambda: obj.console.print(report["summary"]))
