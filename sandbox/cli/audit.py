"""``sandbox audit list|verify|verify-export|export|checkpoint|keygen`` and ``sandbox usage``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from sandbox.cli.context import state
from sandbox.cli.output import err, out, print_json, print_table

if TYPE_CHECKING:
    from sandbox.audit.models import VerifyReport

app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)

DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Actor = Annotated[str | None, typer.Option(help="Only events by this user.")]
Org = Annotated[str | None, typer.Option(help="Only this organisation.")]
Dataset = Annotated[str | None, typer.Option(help="Only this dataset.")]
EventType = Annotated[str | None, typer.Option("--type", help="Only this event type, e.g. query.answered.")]
Since = Annotated[datetime | None, typer.Option(formats=DATE_FORMATS, help="From this time (UTC).")]
Until = Annotated[datetime | None, typer.Option(formats=DATE_FORMATS, help="Before this time (UTC).")]


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=moment.tzinfo or UTC)


def _filters(
    *,
    actor: str | None,
    org: str | None,
    dataset: str | None,
    type_: str | None,
    since: datetime | None,
    until: datetime | None,
) -> dict[str, Any]:
    return {
        "actor": actor,
        "organisation": org,
        "dataset": dataset,
        "type": type_,
        "since": _utc(since),
        "until": _utc(until),
    }


@app.command("list")
def list_events(
    ctx: typer.Context,
    *,
    actor: Actor = None,
    org: Org = None,
    dataset: Dataset = None,
    type_: EventType = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many events.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """Audit events in chain order, filtered."""
    cli = state(ctx)
    with cli.control() as control:
        events = control.audit_events(
            cli.reader(),
            limit=limit,
            **_filters(actor=actor, org=org, dataset=dataset, type_=type_, since=since, until=until),
        )
    if as_json:
        print_json(events)
        return
    print_table(
        "audit events",
        ["seq", "time", "type", "actor", "organisation", "dataset"],
        [(e.seq, e.time, e.type, e.actor, e.organisation, e.dataset) for e in events],
    )


@app.command("verify")
def verify(
    ctx: typer.Context,
    public_key: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Operator public key (PEM).")
    ] = None,
    checkpoints: Annotated[
        list[Path] | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="An off-host copy of the checkpoint log (JSON Lines); repeatable.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Walk the hash chain, check every checkpoint, and replay the chain to prove the stored state
    (policies, lifetime ledgers, users); exit 1 at a broken link or any divergence."""
    with state(ctx).control() as control:
        report = control.verify_audit(public_key, checkpoint_files=checkpoints or ())
    _report(report, as_json=as_json)


@app.command("verify-export")
def verify_export(
    export_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSON Lines export.")],
    public_key: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Operator public key (PEM).")
    ] = None,
    checkpoints: Annotated[
        list[Path] | None,
        typer.Option(exists=True, dir_okay=False, help="A checkpoint log (JSON Lines); repeatable."),
    ] = None,
    certificate: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="Also check this registration certificate against it."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Verify an exported chain offline (no service home needed): links, hashes, signed checkpoints,
    and optionally a registration certificate."""
    import json  # noqa: PLC0415

    from sandbox.audit import checkpoints as signed  # noqa: PLC0415
    from sandbox.audit.certificate import verify_certificate  # noqa: PLC0415
    from sandbox.audit.export import from_jsonl  # noqa: PLC0415
    from sandbox.audit.verify import verify_export as verify_events  # noqa: PLC0415

    try:
        events = from_jsonl(export_file.read_text(encoding="utf-8"))
    except ValueError as error:
        err.print(f"error: {export_file} is not a JSON Lines audit export: {error}")
        raise typer.Exit(1) from None
    key = signed.load_public_key(public_key) if public_key is not None else None
    logged = [c for path in checkpoints or () for c in signed.read_log(path)]
    report = verify_events(events, key, logged)
    if report.ok and certificate is not None:
        report = verify_certificate(json.loads(certificate.read_text(encoding="utf-8")), events, key)
    _report(report, as_json=as_json)


def _report(report: VerifyReport, *, as_json: bool) -> None:
    if as_json:
        print_json(report)
    for warning in report.warnings:
        err.print(f"warning: {warning}")
    if report.ok:
        if not as_json:
            out.print(
                f"ok: {report.events} events, head {report.head_seq} {report.head_hash[:16]}, "
                f"{report.checkpoints_verified}/{report.checkpoints} checkpoints verified"
                + (", stored state proven" if report.state_checked else "")
            )
        return
    problem = report.first_error
    if problem is not None:
        err.print(f"BROKEN at event {problem.seq}: {problem.reason}")
    for found in report.divergences:
        err.print(
            f"DIVERGES {found.table} {found.row} {found.field}: "
            f"chain {found.chain!r}, stored {found.stored!r}"
        )
    raise typer.Exit(1)


@app.command("export")
def export(
    ctx: typer.Context,
    *,
    format: Annotated[Literal["jsonl", "csv"], typer.Option(help="JSON Lines or CSV.")] = "jsonl",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
    actor: Actor = None,
    org: Org = None,
    dataset: Dataset = None,
    type_: EventType = None,
    since: Since = None,
    until: Until = None,
) -> None:
    """Export filtered audit events exactly as hashed."""
    cli = state(ctx)
    with cli.control() as control:
        text = control.export_audit(
            cli.reader(),
            format,
            **_filters(actor=actor, org=org, dataset=dataset, type_=type_, since=since, until=until),
        )
    if output is None:
        print(text, end="")
    else:
        output.write_text(text, encoding="utf-8")
        err.print(f"exported to {output}")


@app.command("checkpoint")
def checkpoint(
    ctx: typer.Context,
    key: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Private key (default: the home's).")
    ] = None,
) -> None:
    """Sign the chain head with the operator's Ed25519 key (keep the checkpoint log off this host)."""
    cli = state(ctx)
    with cli.control() as control:
        signed = control.checkpoint(key, actor=cli.operator(control))
    out.print(f"checkpoint at event {signed.seq} {signed.hash[:16]} signed with key {signed.key_id}")


@app.command("keygen")
def keygen(
    ctx: typer.Context,
    force: Annotated[
        bool,
        typer.Option(
            help="Replace an existing key (old checkpoints stay valid only with the old public key)."
        ),
    ] = False,
) -> None:
    """Create the operator's Ed25519 signing key pair in the home's keys folder."""
    from sandbox.audit.checkpoints import generate_key  # noqa: PLC0415

    settings = state(ctx).settings()
    try:
        private, public = generate_key(settings.keys_dir, overwrite=force)
    except FileExistsError as error:
        err.print(f"error: {error}")
        raise typer.Exit(1) from None
    out.print(f"private key {private} (mode 0600; keep it off the gateway host if you can)")
    out.print(f"public key  {public}")


def usage(
    ctx: typer.Context,
    *,
    since: Since = None,
    until: Until = None,
    org: Org = None,
    dataset: Dataset = None,
    as_json: JsonOption = False,
) -> None:
    """The metering report: queries and budget spent per organisation and dataset."""
    cli = state(ctx)
    with cli.control() as control:
        report = control.usage(
            cli.reader(), since=_utc(since), until=_utc(until), organisation=org, dataset=dataset
        )
    if as_json:
        print_json(report)
        return
    print_table(
        "usage",
        [
            "organisation",
            "dataset",
            "answered",
            "cached",
            "rejected",
            "failed",
            "in flight",
            "epsilon",
            "delta",
        ],
        [
            (
                r.organisation,
                r.dataset,
                r.queries_answered,
                r.queries_cached,
                r.queries_rejected,
                r.queries_failed,
                r.queries_in_flight,
                f"{r.epsilon_spent:g}",
                f"{r.delta_spent:g}",
            )
            for r in report.rows
        ],
    )
