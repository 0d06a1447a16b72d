"""Finding the error codes written in source files (for the registry's completeness tests)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# where a code is written: code="…" / code = "…" if … else "…", rule ids of the policy engine,
# SQL rule ids, default codes of the error classes, the gateway's framework codes
_CALLS = re.compile(
    r'(?:deny|QueryRejected|raise_rejected|BodyRefused)\(\s*"([a-z_]+\.[a-z_.]+)"|default_code = "([a-z_.]+)"'
    r'|\d{3}: \("([a-z_]+\.[a-z_]+)"|\.get\(status, \("([a-z_]+\.[a-z_]+)"'
)
_CODE_LINE = re.compile(r"\b(?:code|rule)\s*=\s*(.*)")
_DOTTED = re.compile(r'"([a-z_]+\.[a-z_.]+)"')


def written_codes(paths: Iterable[Path] | None = None) -> set[str]:
    """Every error code written in ``paths`` (default: the product's whole source)."""
    found: set[str] = set()
    for path in paths if paths is not None else (REPO / "sandbox").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        found |= {next(g for g in match.groups() if g) for match in _CALLS.finditer(text)}
        for line in _CODE_LINE.findall(text):
            found |= set(_DOTTED.findall(line))
    return found
