"""The ``sandbox`` command line: service setup, users and tokens, datasets, access decisions,
audit and usage, acting as a local administrator with direct access to the service home.

Exit codes: 0 done; 1 refused (a ``SandboxError``: the message and code go to stderr); 2 usage
error (unknown command, missing or malformed option). Heavy modules (DuckDB, OpenDP, FastAPI)
are imported inside the commands that need them, so ``sandbox --help`` is fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from sandbox.cli import access, audit, datasets, service, users
from sandbox.cli.context import CliState, os_user
from sandbox.cli.output import fail
from sandbox.errors import SandboxError

__all__ = ["app"]


class _Group(TyperGroup):
    """The top-level group: a ``SandboxError`` anywhere becomes a message on stderr and exit 1."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except SandboxError as error:
            fail(error.message, error.code)
            problems = error.details.get("problems") if error.details else None
            for problem in problems or []:
                fail(f"  {problem}")
            raise typer.Exit(1) from None


app = typer.Typer(
    name="sandbox",
    cls=_Group,
    help="Authorised operation of public data: a differentially private SQL enclave.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def main(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(envvar="SANDBOX_HOME", help="Service home (default ~/.sandbox).", show_default=False),
    ] = None,
    actor: Annotated[
        str | None,
        typer.Option(
            "--as",
            help="Act as this registered user, who must hold the role the command needs "
            "(default: the OS user, as local administrator). The OS user is recorded either way.",
        ),
    ] = None,
) -> None:
    """Authorised operation of public data: a differentially private SQL enclave."""
    ctx.obj = CliState(home=home, as_user=actor, os_user=os_user())


app.command("init")(service.init)
app.command("serve")(service.serve)
app.command("sweep")(service.sweep)
app.command("usage")(audit.usage)
app.add_typer(service.db_app, name="db")
app.add_typer(datasets.app, name="dataset")
app.add_typer(users.user_app, name="user")
app.add_typer(users.token_app, name="token")
app.add_typer(access.request_app, name="request")
app.add_typer(access.policy_app, name="policy")
app.add_typer(access.budget_app, name="budget")
app.add_typer(audit.app, name="audit")
