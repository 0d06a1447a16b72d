"""``sandbox init``, ``sandbox serve`` and ``sandbox db upgrade``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sandbox.cli.context import state
from sandbox.cli.output import err, out
from sandbox.errors import SandboxError

if TYPE_CHECKING:
    from sandbox.settings import Settings

db_app = typer.Typer(help="The state database.", no_args_is_help=True)


def init(ctx: typer.Context) -> None:
    """Create the service home: state database, dataset and import folders, keys, settings file.

    Running it again keeps what exists and upgrades the state database.
    """
    from sandbox.settings import SETTINGS_FILE  # noqa: PLC0415
    from sandbox.store import migrate  # noqa: PLC0415

    settings = state(ctx).settings()
    home = settings.home_dir
    for folder in (
        home,
        settings.datasets_dir,
        settings.effective_import_dir,
        settings.keys_dir,
        home / "audit",
    ):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    settings_file = home / SETTINGS_FILE
    if not settings_file.exists():
        descriptor = os.open(settings_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(settings_template())
    revision = migrate.upgrade(settings.state_db_url)
    out.print(f"home        {home}")
    out.print(f"settings    {settings_file}")
    out.print(f"state db    {settings.state_db_url} (schema {revision})")
    out.print(f"datasets    {settings.datasets_dir}")
    out.print(f"import      {settings.effective_import_dir}")
    out.print(f"keys        {settings.keys_dir}")
    err.print("next: `sandbox user add`, `sandbox token create`, `sandbox dataset register`, `sandbox serve`")


def settings_template() -> str:
    """A settings file listing every setting, commented out, with its description and default."""
    from sandbox.settings import Settings  # noqa: PLC0415

    lines = [
        "# sandbox settings: uncomment to change. Environment variables (SANDBOX_*) take precedence.",
        "",
    ]
    for name, field in Settings.model_fields.items():
        if name == "home":
            continue
        default = "" if field.default is None else field.default
        lines.append(f"# {field.description}")
        lines.append(f"# SANDBOX_{name.upper()}={default}")
        lines.append("")
    return "\n".join(lines)


def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option(help="Interface to bind (keep 127.0.0.1 unless proxied).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="uvicorn worker processes.")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the HTTP gateway (uvicorn) on the home's settings."""
    import uvicorn  # noqa: PLC0415

    from sandbox.store import migrate  # noqa: PLC0415

    settings = state(ctx).settings()
    _ensure_initialised(settings)
    migrate.ensure_current(settings.state_db_url)
    os.environ["SANDBOX_HOME"] = str(settings.home_dir)
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        metrics_dir = settings.home_dir / "run" / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(mode=0o700, parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    err.print(f"gateway on http://{host}:{port} (home {settings.home_dir}, {workers} worker(s))")
    uvicorn.run(
        "sandbox.api.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        http="sandbox.api.transport:NoDelayHttpToolsProtocol",
        loop="uvloop",
    )


def _ensure_initialised(settings: Settings) -> None:
    """Refuse a home whose SQLite state database ``sandbox init`` never created, before anything
    (an empty, world-readable database file) is created in it."""
    home = settings.home_dir
    if settings.db_url is None and not (home / "state.db").is_file():
        raise SandboxError(
            f"the service home {home} was never initialised: run `sandbox init` first "
            "(it creates the private state database, folders and settings file)",
            code="service.not_initialised",
        )


def sweep(
    ctx: typer.Context,
    older_than: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Close queries whose replica missed its heartbeat this many seconds (default: setting).",
        ),
    ] = None,
) -> None:
    """Expire policies and pending requests past due and close abandoned queries, once.

    A query is abandoned when its replica stopped its heartbeat: it is closed as failed and its
    charge kept. The gateway runs this every ``maintenance_interval_s``; running it from cron or
    from several gateway processes at once is safe (each row is expired or closed exactly once).
    """
    from datetime import timedelta  # noqa: PLC0415

    cli = state(ctx)
    with cli.control() as control:
        seconds = control.settings.abandoned_reservation_s if older_than is None else older_than
        policies = control.expire_policies()
        requests = control.expire_requests()
        settled = control.settle_abandoned(timedelta(seconds=seconds))
    out.print(f"expired {policies} policies and {requests} requests; closed {settled} abandoned queries")


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Upgrade the state database to the current schema (creates it when missing)."""
    from sandbox.store import migrate  # noqa: PLC0415

    settings = state(ctx).settings()
    Path(settings.home_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    revision = migrate.upgrade(settings.state_db_url)
    out.print(f"state database at schema {revision}")
