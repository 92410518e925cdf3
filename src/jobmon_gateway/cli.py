"""The ``jobmon-gateway`` command line: look at a Jobmon server and its workflows.

Every command reads the server's address from ``--url`` / ``--prefix``, which
default to ``JOBMON__HTTP__SERVICE_URL`` / ``JOBMON__HTTP__ROUTE_PREFIX`` (and
the ``JOBMON__CONFIG_FILE`` YAML), like the SDK itself. ``--json`` prints
machine-readable output. An expected failure prints one line on stderr, with
the full URL the request went to, and exits non-zero, without a traceback;
Ctrl-C prints ``stopped`` and exits 130.

One-shot commands (``time``, ``workflow``, ``heartbeat``) give up retrying
after :data:`ONE_SHOT_RETRIES_TIMEOUT` seconds; ``watch`` keeps the
configured budget so that it rides out a server restart.
``--retries-attempts`` and ``--retries-timeout`` override both.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import click

from . import routes
from .errors import (
    ConfigurationError,
    GatewayError,
    RetryBudgetExhaustedError,
    WorkflowNotFoundError,
)
from .models import WorkflowRunStatus
from .routes import Call
from .transport import Requester

if TYPE_CHECKING:
    from rich.console import Console

    from .gateway import ServerGateway
    from .progress import StatusTally

__all__ = ["ONE_SHOT_RETRIES_TIMEOUT", "STUCK_POLLS", "main", "watch_workflow"]

T = TypeVar("T")

ONE_SHOT_RETRIES_TIMEOUT = 10.0
"""Most seconds ``time``, ``workflow`` and ``heartbeat`` spend retrying one call.

A wrong port or an unknown run then fails in seconds, not after the SDK's
five-minute budget; the configured budget is used when it is smaller.
"""

STUCK_POLLS = 3
"""Polls without change after which a workflow with failed, idle tasks is given up on."""

SERVICE_URL_VARIABLE = "JOBMON__HTTP__SERVICE_URL"
ROUTE_PREFIX_VARIABLE = "JOBMON__HTTP__ROUTE_PREFIX"
CONFIG_FILE_VARIABLE = "JOBMON__CONFIG_FILE"


class _Context:
    def __init__(
        self,
        url: str | None,
        prefix: str | None,
        as_json: bool,
        retries_attempts: int | None,
        retries_timeout: float | None,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.as_json = as_json
        self.retries_attempts = retries_attempts
        self.retries_timeout = retries_timeout
        # Where the requests of this command go, for the error line.
        self.base_url: str | None = None
        self.route_prefix: str | None = None
        # Whether the server has answered a call of this command yet: a 404
        # on the very first call says more about --prefix than about the call.
        self.answered = False
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        # rich is imported only by the commands that draw (start-up time).
        if self._console is None:
            from rich.console import Console

            # With --json, stdout carries only JSON; live views go to stderr.
            self._console = Console(stderr=self.as_json)
        return self._console

    def requester(self, *, one_shot: bool) -> Requester:
        """The requester of this command; raises ConfigurationError on bad settings."""
        # The options win over the environment and the YAML file, as documented.
        environ = dict(os.environ)
        if self.url is not None:
            environ[SERVICE_URL_VARIABLE] = self.url
        if self.prefix is not None:
            environ[ROUTE_PREFIX_VARIABLE] = self.prefix
        config_file = environ.get(CONFIG_FILE_VARIABLE)
        missing = f"no Jobmon server given: pass --url or set {SERVICE_URL_VARIABLE}"
        if not environ.get(SERVICE_URL_VARIABLE) and not config_file:
            raise ConfigurationError(missing)
        try:
            requester = Requester.from_env(environ)
        except ConfigurationError as exc:
            if not str(exc).startswith("no Jobmon service URL"):
                raise
            # The YAML file named no URL either.
            raise ConfigurationError(f"{missing} (or http.service_url in {config_file})") from exc
        changes: dict[str, Any] = {}
        if self.retries_attempts is not None:
            changes["retries_attempts"] = self.retries_attempts
        if self.retries_timeout is not None:
            changes["retries_timeout"] = self.retries_timeout
        elif one_shot and requester.retries_timeout > ONE_SHOT_RETRIES_TIMEOUT:
            changes["retries_timeout"] = ONE_SHOT_RETRIES_TIMEOUT
        doubled = _doubled_prefix(requester.service_url, requester.route_prefix)
        if doubled is not None:
            # "--url http://host:5000/api/v3" with the default prefix would ask
            # for /api/v3/api/v3/...: the URL already holds the prefix.
            changes["service_url"] = doubled
        if changes:
            requester = requester.with_options(**changes)
        self.base_url = requester.base_url
        self.route_prefix = requester.route_prefix
        return requester

    def emit(self, data: Any, human: Callable[[], None]) -> None:
        if self.as_json:
            click.echo(json.dumps(data, default=str, sort_keys=True))
        else:
            human()


def _doubled_prefix(service_url: str, route_prefix: str) -> str | None:
    """``service_url`` without its path when that path already ends in ``route_prefix``."""
    if not route_prefix:
        return None
    parts = urlsplit(service_url)
    path = parts.path.rstrip("/")
    if not path.endswith(route_prefix):
        return None
    return urlunsplit(parts._replace(path=path[: -len(route_prefix)]))


def _request_url(error: GatewayError, base_url: str | None) -> str | None:
    # The SDK names the URL of every request it sent (never with user info:
    # a Requester refuses it); a call refused before sending has none.
    if error.url:
        return error.url
    if error.route is not None and base_url is not None:
        return base_url + error.route
    return None


def _refused(error: BaseException) -> bool:
    """Whether a connection refusal is somewhere in ``error``'s chain of causes."""
    seen: BaseException | None = error
    for _ in range(12):
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _host_and_port(url: str) -> str:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return f"{parts.hostname} port {port}"


def _describe(
    error: GatewayError,
    base_url: str | None,
    *,
    route_prefix: str | None = None,
    first_call: bool = False,
) -> str:
    """One line saying what went wrong and where the request went.

    Args:
        error: The failure.
        base_url: The requester's base URL (service URL and route prefix),
            used when the error does not carry its own ``url``.
        route_prefix: The route prefix in use, for the hint after a 404.
        first_call: Whether the server had answered nothing yet in this
            command; a 404 then most likely means a wrong ``--prefix``.
    """
    url = _request_url(error, base_url)
    request = f"{error.method} {url}" if error.method and url else (url or "")
    answered = f"{request} -> {error.status}" if error.status is not None else request
    if isinstance(error, WorkflowNotFoundError):
        what = error.message.removesuffix(" on the server")
        return f"{what}: the server answered an empty workflow ({answered})"
    if url is not None and error.status is None and _refused(error):
        tries = ""
        if isinstance(error, RetryBudgetExhaustedError):
            tries = f"; gave up after {error.attempts} attempt{'s' if error.attempts != 1 else ''}"
        return (
            f"connection refused by {_host_and_port(url)}: is the Jobmon server"
            f" running there? ({request}{tries})"
        )
    line = error.message
    details = [answered] if answered else []
    if error.attempts > 1 and not isinstance(error, RetryBudgetExhaustedError):
        details.append(f"{error.attempts} attempts")
    if details:
        line += f" ({'; '.join(details)})"
    if error.server_message and error.server_message not in error.message:
        line += f"; server said: {error.server_message}"
    if error.status == 404 and first_call:
        prefix = route_prefix if route_prefix is not None else "?"
        line += (
            f"; is the route prefix right? It is {prefix!r} (--prefix or"
            f" {ROUTE_PREFIX_VARIABLE}): '/api/v3' for Jobmon 3.4 and later, '' for 3.2"
        )
        path = urlsplit(base_url or "").path.removesuffix(route_prefix or "")
        if path.strip("/"):
            line += f", after the URL's own path {path!r}"
    return line


@contextmanager
def _expected_failures(obj: _Context) -> Iterator[None]:
    try:
        yield
    except ConfigurationError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except GatewayError as exc:
        line = _describe(
            exc, obj.base_url, route_prefix=obj.route_prefix, first_call=not obj.answered
        )
        click.echo(f"error: {line}", err=True)
        sys.exit(1)


def _send(obj: _Context, requester: Requester, call: Call[T]) -> T:
    with requester.new_client() as client:
        answer = requester.send(call, client)
    obj.answered = True
    return answer


class _Commands(click.Group):
    """The command group; Ctrl-C in any command is one line and exit 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # click would print "Aborted!" and exit 1.
            _stopped()


_NEGATIVE_NUMBER = re.compile(r"-[0-9]+")


class _IdCommand(click.Command):
    """A command taking an id, where ``-3`` is a (refused) id, not an unknown option.

    click takes every word that starts with ``-`` for an option and would say
    "No such option '-3'"; the id's own check says what is wrong with it.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = {
            name
            for param in self.params
            if isinstance(param, click.Option) and not param.is_flag and not param.count
            for name in param.opts
        }
        kept: list[str] = []
        negative: list[str] = []
        after_dashes: list[str] = []
        index = 0
        while index < len(args):
            word = args[index]
            if word == "--":
                after_dashes = args[index + 1 :]
                break
            if word in takes_value:
                # An option's value is the option's, even when it looks negative.
                kept += args[index : index + 2]
                index += 2
                continue
            (negative if _NEGATIVE_NUMBER.fullmatch(word) else kept).append(word)
            index += 1
        if negative:
            # After "--" click reads every word as an argument.
            args = [*kept, "--", *negative, *after_dashes]
        return super().parse_args(ctx, args)


def _stopped() -> NoReturn:
    click.echo("stopped", err=True)
    sys.exit(130)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar=SERVICE_URL_VARIABLE, help="Server URL (scheme, host, port).")
@click.option("--prefix", envvar=ROUTE_PREFIX_VARIABLE, help="Route prefix [/api/v3].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option(
    "--retries-attempts",
    type=click.IntRange(min=1),
    metavar="N",
    help="Most requests per call, the first included (every command).",
)
@click.option(
    "--retries-timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help=(
        f"Most seconds spent retrying one call (every command). Default: the"
        f" configured budget, at most {ONE_SHOT_RETRIES_TIMEOUT:g} s for time,"
        f" workflow and heartbeat."
    ),
)
@click.version_option(package_name="jobmon-gateway")
@click.pass_context
def main(
    ctx: click.Context,
    url: str | None,
    prefix: str | None,
    as_json: bool,
    retries_attempts: int | None,
    retries_timeout: float | None,
) -> None:
    """Talk to a Jobmon server's workflow-run API."""
    ctx.obj = _Context(url, prefix, as_json, retries_attempts, retries_timeout)


@main.command("time")
@click.pass_obj
def time_command(obj: _Context) -> None:
    """Print the server's database clock."""
    with _expected_failures(obj):
        now = _send(obj, obj.requester(one_shot=True), routes.get_server_time())
    obj.emit({"time": now.isoformat(sep=" ")}, lambda: click.echo(now.isoformat(sep=" ")))


@main.command("workflow", cls=_IdCommand)
@click.argument("workflow_id", type=int)
@click.pass_obj
def workflow_command(obj: _Context, workflow_id: int) -> None:
    """Show a workflow: metadata, limits and task counts by status."""
    from .progress import STATUS_NAMES, StatusTally

    with _expected_failures(obj):
        metadata_call = routes.get_workflow_metadata(workflow_id)
        requester = obj.requester(one_shot=True)
        with requester.new_client() as client:
            metadata = requester.send(metadata_call, client)
            obj.answered = True
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
        from rich.table import Table

        table = Table(title=f"workflow {metadata.workflow_id} (dag {metadata.dag_id})")
        table.add_column("status")
        table.add_column("tasks", justify="right")
        for letter in sorted(counts, key=lambda s: -counts[s]):
            table.add_row(f"{letter} {STATUS_NAMES.get(letter, 'unknown')}", str(counts[letter]))
        table.add_row("[bold]all", f"[bold]{len(tally.status_of)}")
        obj.console.print(table)
        click.echo(
            f"max concurrently running: {metadata.max_concurrently_running}"
            f"   server time: {updates.time:%Y-%m-%d %H:%M:%S}"
        )

    obj.emit(data, human)


def watch_workflow(
    gateway: ServerGateway,
    console: Console,
    *,
    interval: float,
    as_json: bool = False,
    between_polls: Callable[[], None] | None = None,
    max_polls: int | None = None,
    title: str | None = None,
) -> StatusTally:
    """Follow a workflow's task statuses until every task is done or failed.

    The first poll takes a full snapshot; later polls ask only for what
    changed since the server time of the previous answer. A workflow whose
    snapshot has no tasks at all is finished at once: there is nothing to wait for.
    A workflow whose failed tasks leave the rest unable to run (nothing
    queued or running, nothing changing for :data:`STUCK_POLLS` polls) ends
    the watch too, instead of waiting forever for tasks no one will start.

    On a terminal the bars are redrawn in place; otherwise a plain line is
    printed every few seconds (none with ``as_json``: its JSON lines say it all).
    """
    from .progress import ProgressView, StatusTally, follow

    tally = StatusTally()
    view = ProgressView(title or f"workflow {gateway.workflow_id}")
    polls = 0
    still = 0
    with follow(console, view, quiet=as_json, transient=as_json) as progress:
        while True:
            before = tally.counts()
            tally.apply(gateway.get_task_status_updates_sync(since=tally.last_sync))
            polls += 1
            still = still + 1 if tally.counts() == before else 0
            if as_json:
                click.echo(json.dumps({"counts": tally.counts(), "time": str(tally.last_sync)}))
            progress.show(tally)
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


@main.command("watch", cls=_IdCommand)
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
    from .gateway import ServerGateway

    # The run id is only used by run-level calls; watching needs none.
    with (
        _expected_failures(obj),
        ServerGateway(obj.requester(one_shot=False), workflow_id, 1) as gateway,
    ):
        # An unknown workflow answers task_status_updates with no
        # tasks rather than an error; ask for it by name first so it
        # fails as "not found" instead of looking like an empty one.
        metadata = gateway.get_workflow_metadata_sync()
        obj.answered = True
        tally = watch_workflow(
            gateway,
            obj.console,
            interval=interval,
            as_json=obj.as_json,
            title=f"workflow {workflow_id} (dag {metadata.dag_id})",
        )
    if not obj.as_json:
        counts = tally.counts()
        waiting = len(tally.status_of) - counts.get("D", 0) - counts.get("F", 0)
        click.echo(
            f"finished: {counts.get('D', 0)} done, {counts.get('F', 0)} failed"
            + (f", {waiting} cannot run (upstream failed)" if waiting else "")
            + f" of {len(tally.status_of)} tasks"
        )


def _status_name(letter: str) -> str | None:
    try:
        return WorkflowRunStatus(letter).name
    except ValueError:
        return None


@main.command("heartbeat", cls=_IdCommand)
@click.argument("workflow_run_id", type=int)
@click.option("--status", required=True, help="The run's status letter, e.g. R.")
@click.option("--next-report-increment", default=30.0, show_default=True, type=float)
@click.pass_obj
def heartbeat_command(
    obj: _Context, workflow_run_id: int, status: str, next_report_increment: float
) -> None:
    """Log a heartbeat for a workflow run and print the status the server answers."""
    with _expected_failures(obj):
        # Built first: a malformed letter is refused before anything is sent.
        call = routes.log_heartbeat(workflow_run_id, status, next_report_increment)
        if _status_name(status) is None:
            # Sent all the same: a newer server may know letters this SDK does not.
            click.echo(
                f"warning: {status!r} is not a workflow run status this SDK knows; sending it",
                err=True,
            )
        answer = _send(obj, obj.requester(one_shot=True), call)
    letter = str(answer.status)
    name = _status_name(letter)
    obj.emit(
        {"status": letter, "name": name},
        lambda: click.echo(f"{letter} ({name or 'unknown to this SDK'})"),
    )


@main.command("schema")
@click.argument("models", nargs=-1, metavar="[MODEL]...")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one <MODEL>.json file per model into this folder instead of printing.",
)
@click.pass_obj
def schema_command(obj: _Context, models: tuple[str, ...], out_dir: Path | None) -> None:
    """Print (or write) the JSON Schema of the response models.

    One MODEL prints exactly the bytes of its MODEL.json file; several, or
    none (every model), print one JSON object keyed by model name.
    """
    from .schemas import RESPONSE_MODELS, export_schemas, schema_of, schema_text

    by_name = {model.__name__: model for model in RESPONSE_MODELS}
    unknown = [name for name in models if name not in by_name]
    if unknown:
        click.echo(
            f"error: no response model {', '.join(unknown)}; one of: {', '.join(by_name)}",
            err=True,
        )
        sys.exit(2)
    chosen = [by_name[name] for name in models] or list(RESPONSE_MODELS)
    if out_dir is None:
        if len(models) == 1:
            click.echo(schema_text(chosen[0]), nl=False)
        else:
            everything = {model.__name__: schema_of(model) for model in chosen}
            click.echo(json.dumps(everything, indent=2, sort_keys=True))
        return
    try:
        written = export_schemas(out_dir, chosen)
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

    with _expected_failures(obj):
        report = run_demo(obj.console, tasks=tasks, seed=seed, delay=delay, quiet=obj.as_json)
    obj.emit(report, lambda: click.echo(report["summary"]))
