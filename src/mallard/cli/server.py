"""`mallard server start|stop|status`: the long-lived local Prefect server flow commands use
when PREFECT_API_URL is not set (see cli/prefect_api.py for why and in which order)."""

from __future__ import annotations

import typer

from mallard.cli import prefect_api
from mallard.cli.app import app
from mallard.cli.output import console, user_errors

# Exit 1 means a bug in mallard; a server that is not up is a state the user acts on.
EXIT_NOT_UP = 2

server_app = typer.Typer(
    help="The local Prefect server flow runs report to when PREFECT_API_URL is not set.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(server_app, name="server")


@server_app.command()
@user_errors
def start() -> None:
    """Start the local Prefect server (detached) if it is not running, and print its address."""
    server, started = prefect_api.start_server(announce=False)
    verb = "started" if started else "already running"
    console.print(
        f"local Prefect server {verb}: UI {server.ui_url}, API {server.api_url} "
        f"(PID {server.pid}, home {server.home}, log {prefect_api.log_file()})",
        markup=False,
        highlight=False,
    )


@server_app.command()
@user_errors
def stop() -> None:
    """Stop the local Prefect server; its runs stay in its database for the next start."""
    server = prefect_api.stop_server()
    if server is None:
        console.print("no local Prefect server is running", markup=False)
    else:
        console.print(f"local Prefect server stopped (PID {server.pid})", markup=False)


@server_app.command()
@user_errors
def status() -> None:
    """Say which Prefect API flow commands would use now; exit 2 if it is not up."""
    configured = prefect_api.configured_api_url()  # environment or Prefect profile
    if configured:
        up = prefect_api.healthy(configured)
        state = "reachable" if up else "UNREACHABLE"
        console.print(f"PREFECT_API_URL={configured}: {state}", markup=False, highlight=False)
        raise typer.Exit(0 if up else EXIT_NOT_UP)
    if prefect_api.temporary_server_requested():
        console.print(
            "PREFECT_SERVER_EPHEMERAL_ENABLED=true: each flow command starts Prefect's "
            "temporary server",
            markup=False,
        )
        return
    server = prefect_api.recorded_server()
    if server is None or not prefect_api.healthy(server.api_url):
        console.print(
            "local Prefect server: not running (the next flow command or "
            "`mallard server start` starts it)",
            markup=False,
        )
        raise typer.Exit(EXIT_NOT_UP)
    console.print(
        f"local Prefect server: running, UI {server.ui_url}, API {server.api_url} "
        f"(PID {server.pid}, home {server.home})",
        markup=False,
        highlight=False,
    )
