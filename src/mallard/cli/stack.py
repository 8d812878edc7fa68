"""`mallard stack up|down|status`: PostgreSQL, a Prefect server on it, a process work pool with
one worker, and a spec's scheduled deployments, on this machine (the processes:
cli/local_stack.py; PostgreSQL: cli/postgres.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mallard.cli.app import app
from mallard.cli.output import WarehouseOption, checked_spec, console, user_errors
from mallard.cli.server import EXIT_NOT_UP

stack_app = typer.Typer(
    help="A real Prefect deployment here: PostgreSQL, a Prefect server, a worker, the spec's "
    "scheduled deployments.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(stack_app, name="stack")

DirOption = Annotated[
    Path,
    typer.Option("--dir", help="State folder: database, logs, pids [default: ./.mallard-stack]"),
]


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


@stack_app.command()
@user_errors
def up(
    spec: Annotated[Path, typer.Argument(help="Pipeline spec with a [schedule] section")],
    warehouse: WarehouseOption = None,
    folder: DirOption = Path(".mallard-stack"),
    port: Annotated[
        int | None, typer.Option("--port", help="Prefect server port [default: 4200 if free]")
    ] = None,
    pg_port: Annotated[
        int | None, typer.Option("--pg-port", help="PostgreSQL port [default: a free one]")
    ] = None,
    host: Annotated[
        str,
        typer.Option(
            "--host", help="Address the Prefect server listens on (0.0.0.0: other machines)"
        ),
    ] = "127.0.0.1",
) -> None:
    """Start PostgreSQL, a Prefect server on it and a worker, and register the spec's crons."""
    from mallard.cli import local_stack, postgres
    from mallard.core.config import prefect_port, warehouse_path
    from mallard.core.errors import InputError
    from mallard.flows.serve import deployments

    postgres.require_pg_bin()  # before the slow imports and the spec checks
    loaded = checked_spec(spec.resolve())  # absolute: the worker's runs start elsewhere
    planned = deployments(loaded, warehouse_path(warehouse).resolve())
    if not planned:
        raise InputError(f"{spec}: [schedule] has no train or score cron to deploy")
    state = local_stack.up(
        folder,
        planned,
        host=host,
        port=port,
        pg_port=pg_port,
        preferred_port=prefect_port(),
        say=_say,
    )
    _say(f"stack up in {state.dir} ({state.timings_s['total']:.1f} s):")
    _say(
        f"  PostgreSQL   127.0.0.1:{state.pg_port}, data {postgres.pg_data(Path(state.dir))}"
        + (f", runs as user {state.pg_user}" if state.pg_user else "")
    )
    _say(f"  server       PID {state.server_pid}, log {Path(state.dir) / 'server.log'}")
    _say(
        f"  worker       PID {state.worker_pid}, pool {state.pool}, "
        f"limit {local_stack.WORKER_LIMIT}, log {Path(state.dir) / 'worker.log'}"
    )
    for deployment in planned:
        crons = ", ".join(str(s.schedule.cron) for s in deployment.schedules or [])  # type: ignore[union-attr]
        _say(f"  deployment   {deployment.flow_name}/{deployment.name}: {crons}")
    _say(f"UI: {state.ui_url}")
    _say(f"export PREFECT_API_URL={state.api_url}")
    if state.server_host != "127.0.0.1":
        remote = local_stack.public_url(state.server_port)
        _say(
            f"other machines: PREFECT_API_URL={remote}/api prefect worker start --pool "
            f"{state.pool} --type process (with mallard installed and the same paths)"
        )


@stack_app.command()
@user_errors
def down(
    folder: DirOption = Path(".mallard-stack"),
    purge: Annotated[
        bool, typer.Option("--purge", help="Also delete the state folder (database, logs)")
    ] = False,
) -> None:
    """Stop the worker (SIGINT), the server and PostgreSQL that `up` started; keep the data."""
    from mallard.cli import local_stack

    _, stopped = local_stack.down(folder, purge=purge)
    if stopped:
        _say("stopped " + ", ".join(stopped))
    if purge:
        _say(f"removed {folder.resolve()}")
    else:
        _say(f"data kept in {folder.resolve()} (`mallard stack down --purge` removes it)")


@stack_app.command()
@user_errors
def status(folder: DirOption = Path(".mallard-stack")) -> None:
    """What the stack runs: pids alive, ports, health. Exit 2 unless every part is up."""
    from mallard.cli import local_stack
    from mallard.cli.prefect_api import healthy

    state = local_stack.read_state(folder.resolve())
    if state is None:
        _say(f"no stack in {folder.resolve()} (`mallard stack up SPEC` starts one)")
        raise typer.Exit(EXIT_NOT_UP)
    parts = local_stack.running_parts(state)
    up_ = healthy(state.api_url) if "server" in parts else False

    def mark(name: str) -> str:
        return f"running (PID {parts[name]})" if name in parts else "NOT RUNNING"

    _say(f"stack in {state.dir}:")
    _say(f"  postgres  {mark('postgres')}, 127.0.0.1:{state.pg_port}")
    _say(f"  server    {mark('server')}, {state.ui_url}, health {'ok' if up_ else 'NO ANSWER'}")
    _say(f"  worker    {mark('worker')}, pool {state.pool}")
    for name in state.deployments:
        _say(f"  deployment {name}")
    _say(f"export PREFECT_API_URL={state.api_url}")
    raise typer.Exit(0 if len(parts) == 3 and up_ else EXIT_NOT_UP)
