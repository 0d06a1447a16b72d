"""``sandbox user add|list`` and ``sandbox token create|revoke|list``."""

from __future__ import annotations

from typing import Annotated

import typer

from sandbox.cli.context import state
from sandbox.cli.output import err, out, print_json, print_table
from sandbox.principals import Role

user_app = typer.Typer(help="The user registry (roles and organisations).", no_args_is_help=True)
token_app = typer.Typer(help="API tokens (token mode).", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@user_app.command("add")
def add_user(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="User name (as in JupyterHub, in hub mode).")],
    role: Annotated[list[Role], typer.Option("--role", help="Role; repeat for several.")],
    org: Annotated[
        str | None,
        typer.Option(help="Analysts: their company; owners: the owning body named in metadata `owner:`."),
    ] = None,
) -> None:
    """Register a user with one or more roles (analyst, owner, operator, metrics)."""
    cli = state(ctx)
    with cli.control() as control:
        principal = control.add_user(name, role, org, actor=cli.operator(control))
    roles = ", ".join(sorted(principal.roles))
    out.print(
        f"added {principal.name} ({roles}){f' of {principal.organisation}' if principal.organisation else ''}"
    )


@user_app.command("list")
def list_users(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every registered user."""
    with state(ctx).control() as control:
        principals = control.list_users()
        disabled = control.disabled_users()
    rows = [(p.name, ", ".join(sorted(p.roles)), p.organisation, p.name in disabled) for p in principals]
    if as_json:
        print_json(
            [{"name": n, "roles": r.split(", "), "organisation": o, "disabled": d} for n, r, o, d in rows]
        )
    else:
        print_table("users", ["name", "roles", "organisation", "disabled"], rows)


@user_app.command("roles")
def set_roles(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Registered user.")],
    role: Annotated[list[Role], typer.Option("--role", help="New role; repeat for several.")],
    org: Annotated[str | None, typer.Option(help="New organisation (analysts and owners need one).")] = None,
) -> None:
    """Replace a user's roles and organisation (audited with old and new values)."""
    cli = state(ctx)
    with cli.control() as control:
        principal = control.set_user_roles(name, role, org, actor=cli.operator(control))
    out.print(f"{principal.name}: {', '.join(sorted(principal.roles))}")


@user_app.command("disable")
def disable_user(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Registered user.")]) -> None:
    """Disable a user: its tokens and ``--as`` are refused at once (audited)."""
    cli = state(ctx)
    with cli.control() as control:
        control.disable_user(name, actor=cli.operator(control))
    out.print(f"disabled {name}")


@user_app.command("enable")
def enable_user(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Disabled user.")]) -> None:
    """Enable a disabled user again (audited)."""
    cli = state(ctx)
    with cli.control() as control:
        control.enable_user(name, actor=cli.operator(control))
    out.print(f"enabled {name}")


@token_app.command("create")
def create_token(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="Registered user the token acts for.")],
    ttl_days: Annotated[int | None, typer.Option(min=1, help="Lifetime in days (default: setting).")] = None,
    note: Annotated[str, typer.Option(help="What the token is for.")] = "",
) -> None:
    """Issue an API token; it is printed once, alone on stdout (store it now)."""
    cli = state(ctx)
    with cli.control() as control:
        issued = control.issue_token(user, actor=cli.operator(control), ttl_days=ttl_days, note=note)
    err.print(f"token {issued.id} for {issued.username}, expires {issued.expires_at:%Y-%m-%d}; shown once")
    print(issued.token)


@token_app.command("revoke")
def revoke_token(
    ctx: typer.Context, token_id: Annotated[str, typer.Argument(help="Token id (tok_...).")]
) -> None:
    """Revoke a token; it fails from the next request on."""
    cli = state(ctx)
    with cli.control() as control:
        control.revoke_token(token_id, actor=cli.operator(control))
    out.print(f"revoked {token_id}")


@token_app.command("list")
def list_tokens(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option(help="Only this user's tokens.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Stored tokens (never the secrets)."""
    with state(ctx).control() as control:
        views = control.list_tokens(user)
    if as_json:
        print_json(views)
        return
    print_table(
        "tokens",
        ["id", "user", "created", "expires", "revoked", "note"],
        [
            (
                t.id,
                t.username,
                f"{t.created_at:%Y-%m-%d}",
                f"{t.expires_at:%Y-%m-%d}",
                f"{t.revoked_at:%Y-%m-%d}" if t.revoked_at else None,
                t.note,
            )
            for t in views
        ],
    )
