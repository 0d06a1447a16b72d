"""docs/cli.md carries the generated reference of every command, and it is up to date.

Regenerate after changing a command: ``SANDBOX_REGENERATE_DOCS=1 pytest tests/cli/test_cli_docs.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer

from sandbox.cli import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
BEGIN = "<!-- BEGIN GENERATED: python -m typer sandbox.cli utils docs (headings one level down) -->"
END = "<!-- END GENERATED -->"


def generated_reference(tmp_path: Path) -> str:
    """Typer's Markdown reference of the app, headings moved one level down."""
    output = tmp_path / "reference.md"
    subprocess.run(
        [sys.executable, "-m", "typer", "sandbox.cli", "utils", "docs", "--name", "sandbox",
         "--title", "Command reference", "--output", str(output)],
        check=True,
        capture_output=True,
        env={**os.environ, "COLUMNS": "100", "TERM": "dumb"},
    )  # fmt: skip
    text = output.read_text(encoding="utf-8").strip()
    return re.sub(r"^(#+) ", r"#\1 ", text, flags=re.MULTILINE)


def all_commands() -> list[str]:
    """Every command path, e.g. ``sandbox dataset register``."""
    root = typer.main.get_command(app)
    found: list[str] = []

    def walk(command: Any, prefix: str) -> None:
        found.append(prefix)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{prefix} {name}")

    walk(root, "sandbox")
    return found[1:]


def test_cli_reference_is_current(tmp_path: Path) -> None:
    document = DOC.read_text(encoding="utf-8")
    head, rest = document.split(BEGIN, 1)
    current, tail = rest.split(END, 1)
    fresh = generated_reference(tmp_path)
    if os.environ.get("SANDBOX_REGENERATE_DOCS"):
        DOC.write_text(f"{head}{BEGIN}\n\n{fresh}\n\n{END}{tail}", encoding="utf-8")
        return
    assert current.strip() == fresh, "docs/cli.md is stale: SANDBOX_REGENERATE_DOCS=1 pytest " + __file__


def test_every_command_is_documented() -> None:
    document = DOC.read_text(encoding="utf-8")
    commands = all_commands()
    assert len(commands) >= 30
    for command in commands:
        assert f"`{command}`" in document, command
