"""``sandbox dataset register|list|certificate|verify-certificate|generate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sandbox.budget import NewVersionBudget
from sandbox.cli.context import CliState, state
from sandbox.cli.output import err, out, print_json, print_table, progress_bar

if TYPE_CHECKING:
    from sandbox.catalog.models import DatasetRecord

app = typer.Typer(help="Register and inspect datasets.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.command("register")
def register(
    ctx: typer.Context,
    metadata: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Metadata YAML.")],
    source_root: Annotated[
        Path | None,
        typer.Option(
            file_okay=False, exists=True, help="Folder the sources are relative to (default: the YAML's)."
        ),
    ] = None,
    replace: Annotated[
        bool, typer.Option(help="Replace an already registered dataset of that name.")
    ] = False,
    new_version_budget: Annotated[
        NewVersionBudget,
        typer.Option(
            help="A new version's budget: carry the lifetime ledger over, or renew it (new data only)."
        ),
    ] = NewVersionBudget.CARRY,
) -> None:
    """Validate, load and record a dataset from its metadata YAML (shows a progress bar)."""
    cli = state(ctx)
    record = _register(cli, metadata, source_root, replace=replace, new_version_budget=new_version_budget)
    out.print(f"registered {record.name} version {record.version[:16]}")


def _register(
    cli: CliState,
    metadata: Path,
    source_root: Path | None,
    *,
    replace: bool,
    new_version_budget: NewVersionBudget = NewVersionBudget.CARRY,
) -> DatasetRecord:
    catalog = cli.catalog()
    with cli.control() as control, progress_bar(f"loading {metadata.name}", "rows") as report:
        return control.register_dataset(
            cli.registrar(control),
            catalog,
            metadata,
            source_root=source_root,
            replace=replace,
            new_version_budget=new_version_budget,
            progress=report,
        )


@app.command("list")
def list_datasets(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every registered dataset."""
    records = state(ctx).catalog().list()
    if as_json:
        print_json(
            [r.model_dump(mode="json", include={"metadata", "version", "registered_at"}) for r in records]
        )
        return
    print_table(
        "datasets",
        ["name", "owner", "classification", "tables", "version", "registered", "title"],
        [
            (
                r.name,
                r.metadata.owner,
                r.metadata.classification.value,
                ", ".join(t.name for t in r.metadata.tables),
                r.version[:12],
                r.registered_at.strftime("%Y-%m-%d %H:%M"),
                r.metadata.title,
            )
            for r in records
        ],
    )


@app.command("certificate")
def certificate(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    version: Annotated[str | None, typer.Option(help="A specific registered version.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
) -> None:
    """The registration certificate (登记存证) of a dataset, as JSON."""
    with state(ctx).control() as control:
        document = control.certificate(name, version)
    text = json.dumps(document, indent=2, ensure_ascii=False)
    if output is None:
        print(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")
        err.print(f"certificate written to {output}")


@app.command("verify-certificate")
def verify_certificate(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Certificate JSON file.")],
    public_key: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Operator public key (PEM).")
    ] = None,
) -> None:
    """Check a registration certificate against the audit chain; exit 1 if it does not hold."""
    document = json.loads(path.read_text(encoding="utf-8"))
    with state(ctx).control() as control:
        report = control.verify_certificate(document, public_key)
    print_json(report)
    if not report.ok:
        raise typer.Exit(1)


@app.command("generate")
def generate(
    ctx: typer.Context,
    *,
    out_dir: Annotated[Path, typer.Option("--out", file_okay=False, help="Output folder.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of residents.")] = 1_000_000,
    seed: Annotated[int, typer.Option(min=0, help="Seed (same seed, same files).")] = 42,
    chunk_size: Annotated[int, typer.Option(min=1, help="Residents per chunk (memory).")] = 1_000_000,
    register: Annotated[bool, typer.Option(help="Register the generated datasets afterwards.")] = False,
    replace: Annotated[bool, typer.Option(help="With --register: replace existing datasets.")] = False,
) -> None:
    """Generate the synthetic provincial datasets (Parquet + metadata YAML), optionally register them."""
    from sandbox.catalog.synthetic import generate as generate_files  # noqa: PLC0415

    with progress_bar("generating residents", "residents") as report:
        files = generate_files(out_dir, n, seed, chunk_size=chunk_size, progress=report)
    print_table(
        "generated",
        ["table", "rows", "file"],
        [(name, f"{rows:,}", files.parquet[name]) for name, rows in files.rows.items()],
    )
    if register:
        cli = state(ctx)
        for path in files.metadata.values():
            record = _register(cli, path, None, replace=replace)
            out.print(f"registered {record.name} version {record.version[:16]}")
