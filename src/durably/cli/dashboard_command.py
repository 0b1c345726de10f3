"""``durably dashboard``: serve the web dashboard over a store (``durably[dashboard]``)."""

from __future__ import annotations

import asyncio
import socket

import click

from durably.cli.common import Command, db_option, run_on_store
from durably.errors import ConfigurationError
from durably.store import Store


async def _reachable(store: Store) -> None:
    """Read the store once: a database that cannot serve the pages is refused before
    anything is printed."""
    await store.count_workflows()


def _missing_extra(error: ImportError) -> click.ClickException:
    return click.ClickException(
        f"the dashboard needs the dashboard extra: pip install 'durably[dashboard]' ({error})"
    )


@click.command(
    "dashboard", cls=Command, short_help="Serve the web dashboard (list, timeline, actions)."
)
@db_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="the address to listen on; anything but loopback exposes the dashboard",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="the port (0: any free port, printed at start-up)",
)
@click.option(
    "--token",
    envvar="DURABLY_DASHBOARD_TOKEN",
    help="the token that actions need (default: $DURABLY_DASHBOARD_TOKEN, else a random "
    "one printed at start-up)",
)
def dashboard_command(db: str | None, host: str, port: int, token: str | None) -> None:
    """Serve the dashboard: workflows by status, each workflow's step timeline, and the
    actions signal, cancel, resume and retry (which need the token printed here)."""
    try:
        import uvicorn

        from durably.dashboard import create_app, new_token
    except ImportError as error:
        raise _missing_extra(error) from None
    if token is not None and not token.strip():
        raise click.UsageError("--token must not be empty")
    # Opened (without creating or migrating anything) and closed again here, so that a
    # bad --db fails as in every other command: one error, before the banner.
    run_on_store(db, _reachable)
    assert db is not None  # run_on_store refused a missing one
    secret = token or new_token()
    try:
        app = create_app(db, token=secret)
    except (ConfigurationError, ValueError) as error:
        raise click.UsageError(str(error)) from None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise click.UsageError(
            f"cannot listen on {host}:{port} ({error}); choose another --port (0: any free)"
        ) from None
    listener.listen(128)  # connections wait in the backlog until the server accepts
    bound_port = listener.getsockname()[1]
    shown_host = f"[{host}]" if family == socket.AF_INET6 else host
    url = f"http://{shown_host}:{bound_port}/"
    click.echo(f"durably dashboard on {url}")
    click.echo(f"token for actions: {secret}")
    click.echo(f"(open {url}#token={secret} to fill it in)")
    if host not in {"127.0.0.1", "localhost", "::1"}:
        click.echo(
            f"warning: listening on {host}: anyone who can reach it reads every workflow",
            err=True,
        )
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    try:
        asyncio.run(server.serve(sockets=[listener]))
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()
