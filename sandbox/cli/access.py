"""``sandbox request list|approve|reject|withdraw``, ``sandbox policy list|amend|revoke`` and
``sandbox budget show|cap``.

Decisions are taken for the dataset's owning body by the verified actor (see ``cli.context``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from sandbox.cli.context import state
from sandbox.cli.output import err, out, print_json, print_table
from sandbox.policies.models import RequestStatus
from sandbox.query.summary import AggregateKind

request_app = typer.Typer(help="Access requests: review, approve, reject, withdraw.", no_args_is_help=True)
policy_app = typer.Typer(help="Access policies: list, amend, revoke.", no_args_is_help=True)
budget_app = typer.Typer(
    help="Budgets: `sandbox budget` lists every organisation's; `budget cap` sets the owner's lifetime caps.",
    invoke_without_command=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=moment.tzinfo or UTC)


@request_app.command("list")
def list_requests(
    ctx: typer.Context,
    status: Annotated[RequestStatus | None, typer.Option(help="Only requests in this state.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Access requests, newest first."""
    cli = state(ctx)
    with cli.control() as control:
        views = control.list_requests(cli.reader(), status=status.value if status else None)
    if as_json:
        print_json(views)
        return
    print_table(
        "access requests",
        ["id", "status", "organisation", "dataset", "by", "epsilon", "delta", "until", "purpose"],
        [
            (
                r.id,
                r.status.value,
                r.organisation,
                r.dataset,
                r.requested_by,
                r.epsilon,
                r.delta,
                f"{r.valid_until:%Y-%m-%d}",
                r.purpose,
            )
            for r in views
        ],
    )


@request_app.command("approve")
def approve(
    ctx: typer.Context,
    *,
    request_id: Annotated[str, typer.Argument(help="Request id.")],
    max_epsilon_per_query: Annotated[float, typer.Option(min=0.0, help="Largest epsilon of one query.")],
    epsilon: Annotated[
        float | None, typer.Option(min=0.0, help="Total epsilon granted (default: asked).")
    ] = None,
    delta: Annotated[
        float | None, typer.Option(min=0.0, help="Total delta granted (default: asked).")
    ] = None,
    columns: Annotated[
        str | None, typer.Option(help="Comma-separated granted columns (default: asked).")
    ] = None,
    valid_until: Annotated[
        datetime | None, typer.Option(formats=DATE_FORMATS, help="End of validity, UTC (default: asked).")
    ] = None,
    max_delta_per_query: Annotated[float, typer.Option(min=0.0, help="Largest delta of one query.")] = 0.0,
    min_group_size: Annotated[int, typer.Option(min=0, help="Smallest released group size.")] = 0,
    aggregate: Annotated[
        list[AggregateKind] | None, typer.Option(help="Allowed aggregate; repeat (default: all).")
    ] = None,
) -> None:
    """Approve a pending request for the dataset's owner, possibly narrowing it."""
    cli = state(ctx)
    with cli.control() as control:
        request = control.get_request(cli.reader(), request_id)
        record = cli.catalog().get(request.dataset)
        policy = control.approve(
            cli.owner_of(control, record),
            request_id,
            record,
            columns=[c.strip() for c in columns.split(",") if c.strip()] if columns else None,
            epsilon=epsilon,
            delta=delta,
            valid_until=_utc(valid_until),
            max_epsilon_per_query=max_epsilon_per_query,
            max_delta_per_query=max_delta_per_query,
            min_group_size=min_group_size,
            aggregates=aggregate or None,
        )
        budget = next(b for b in control.budget(cli.reader()) if b.policy_id == policy.id)
    until = f"{policy.valid_until:%Y-%m-%d}"
    out.print(f"approved {request_id}: policy {policy.id}, epsilon {policy.epsilon:g} until {until}")
    cap = "no cap" if budget.lifetime_epsilon_cap is None else f"cap {budget.lifetime_epsilon_cap:g}"
    err.print(
        f"{policy.organisation} has spent epsilon {budget.lifetime_epsilon_used:g} on this dataset over "
        f"its earlier policies ({cap}); `sandbox budget cap` bounds its lifetime loss"
    )


@request_app.command("reject")
def reject(
    ctx: typer.Context,
    request_id: Annotated[str, typer.Argument(help="Request id.")],
    reason: Annotated[str, typer.Option(help="Why; the analyst reads it.")],
) -> None:
    """Reject a pending request for the dataset's owner, with a reason."""
    cli = state(ctx)
    with cli.control() as control:
        request = control.get_request(cli.reader(), request_id)
        record = cli.catalog().get(request.dataset)
        control.reject(cli.owner_of(control, record), request_id, record, reason=reason)
    out.print(f"rejected {request_id}")


@policy_app.command("list")
def list_policies(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every access policy, newest first."""
    cli = state(ctx)
    with cli.control() as control:
        views = control.list_policies(cli.reader())
    if as_json:
        print_json(views)
        return
    print_table(
        "policies",
        ["id", "status", "organisation", "dataset", "epsilon", "per query", "until", "approved by"],
        [
            (
                p.id,
                p.status.value,
                p.organisation,
                p.dataset,
                p.epsilon,
                p.max_epsilon_per_query,
                f"{p.valid_until:%Y-%m-%d}",
                p.approved_by,
            )
            for p in views
        ],
    )


@policy_app.command("revoke")
def revoke(
    ctx: typer.Context,
    policy_id: Annotated[str, typer.Argument(help="Policy id.")],
    reason: Annotated[str, typer.Option(help="Why; recorded in the audit log.")],
) -> None:
    """Revoke a policy for the dataset's owner; its next query is refused."""
    cli = state(ctx)
    with cli.control() as control:
        policy = control.get_policy(cli.reader(), policy_id)
        record = cli.catalog().get(policy.dataset)
        control.revoke_policy(cli.owner_of(control, record), policy_id, record, reason=reason)
    out.print(f"revoked {policy_id}")


@request_app.command("withdraw")
def withdraw(ctx: typer.Context, request_id: Annotated[str, typer.Argument(help="Request id.")]) -> None:
    """Withdraw a pending request of your organisation (``--as`` an analyst of it)."""
    cli = state(ctx)
    with cli.control() as control:
        control.withdraw_request(cli.analyst(control), request_id)
    out.print(f"withdrew {request_id}")


@policy_app.command("amend")
def amend(
    ctx: typer.Context,
    *,
    policy_id: Annotated[str, typer.Argument(help="Policy id.")],
    epsilon: Annotated[float | None, typer.Option(min=0.0, help="New total epsilon (top up).")] = None,
    delta: Annotated[float | None, typer.Option(min=0.0, help="New total delta.")] = None,
    valid_until: Annotated[
        datetime | None, typer.Option(formats=DATE_FORMATS, help="New end of validity, UTC.")
    ] = None,
    columns: Annotated[str | None, typer.Option(help="Comma-separated columns (narrow only).")] = None,
    aggregate: Annotated[
        list[AggregateKind] | None, typer.Option(help="Allowed aggregate; repeat (narrow only).")
    ] = None,
    max_epsilon_per_query: Annotated[float | None, typer.Option(min=0.0, help="New per-query cap.")] = None,
    reason: Annotated[str, typer.Option(help="Why; recorded in the audit log.")] = "",
) -> None:
    """Amend an active policy for the dataset's owner: top up, extend, narrow (audited old/new)."""
    cli = state(ctx)
    with cli.control() as control:
        policy = control.get_policy(cli.reader(), policy_id)
        record = cli.catalog().get(policy.dataset)
        amended = control.amend_policy(
            cli.owner_of(control, record),
            policy_id,
            record,
            epsilon=epsilon,
            delta=delta,
            valid_until=_utc(valid_until),
            columns=[c.strip() for c in columns.split(",") if c.strip()] if columns else None,
            aggregates=aggregate or None,
            max_epsilon_per_query=max_epsilon_per_query,
            reason=reason,
        )
    out.print(f"amended {policy_id}: epsilon {amended.epsilon:g} until {amended.valid_until:%Y-%m-%d}")


@budget_app.callback()
def budget(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every organisation's budget per policy, with its lifetime loss on the dataset (without a
    subcommand; same as `budget show`)."""
    if ctx.invoked_subcommand is None:
        show_budget(ctx, as_json=as_json)


@budget_app.command("show")
def show_budget(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every organisation's budget per policy, with its lifetime loss on the dataset."""
    cli = state(ctx)
    with cli.control() as control:
        views = control.budget(cli.reader())
    if as_json:
        print_json(views)
        return
    print_table(
        "budgets",
        ["policy", "status", "organisation", "dataset", "granted", "spent", "remaining", "lifetime", "cap"],
        [
            (
                b.policy_id,
                b.status,
                b.organisation,
                b.dataset,
                b.epsilon_granted,
                b.epsilon_spent,
                b.epsilon_remaining,
                b.lifetime_epsilon_used,
                "-" if b.lifetime_epsilon_cap is None else b.lifetime_epsilon_cap,
            )
            for b in views
        ],
    )


@budget_app.command("cap")
def set_cap(
    ctx: typer.Context,
    *,
    dataset: Annotated[str, typer.Argument(help="Dataset name.")],
    epsilon: Annotated[
        float | None, typer.Option(min=0.0, help="Lifetime epsilon cap (omit: no cap).")
    ] = None,
    delta: Annotated[float | None, typer.Option(min=0.0, help="Lifetime delta cap (omit: no cap).")] = None,
    org: Annotated[str | None, typer.Option(help="Cap this organisation's lifetime loss only.")] = None,
    per_organisation: Annotated[
        bool, typer.Option(help="Set the default lifetime cap of every organisation.")
    ] = False,
) -> None:
    """Set a lifetime cap for the dataset's owner: dataset-wide (all organisations together), per
    organisation by default (``--per-organisation``), or for one organisation (``--org``)."""
    cli = state(ctx)
    with cli.control() as control:
        record = cli.catalog().get(dataset)
        control.set_dataset_cap(
            cli.owner_of(control, record),
            record,
            epsilon,
            delta,
            organisation=org,
            per_organisation=per_organisation,
        )
    scope = f"organisation {org}" if org else "each organisation" if per_organisation else "all organisations"
    out.print(f"cap on {dataset} for {scope}: epsilon {epsilon if epsilon is not None else 'none'}")
