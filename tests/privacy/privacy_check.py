"""Run query shapes on a registered pair (D, D′) and list every way the analyst could tell them apart.

Registration is the owner's step: when one side cannot be registered the owner sees why and the
analyst sees nothing, so there is nothing to compare. When both are registered, the analyst's view
of the catalogue (declared metadata and published column types) must be the same, and so must every
answer (see ``privacy_shapes.compare``); no answer may carry a digest of the stored content.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privacy_compare import Outcome, compare, engine_for, run
from privacy_data import Pair, Registered
from privacy_shapes import Shape

from sandbox.query import Engine, Result


@dataclass
class Report:
    """What a pair's check found: problems (one line each) and how many shapes were answered."""

    problems: list[str] = field(default_factory=list)
    answered: int = 0
    ran: int = 0
    registered: bool = False

    def message(self, pair: Pair) -> str:
        """The assertion message: the reproduction, then the problems."""
        head = f"{len(self.problems)} difference(s) between D and D′ ({pair.describe()})"
        return "\n".join([head, *self.problems[:30]])


def published_types(side: Registered) -> list[tuple[str, str, str]]:
    """(table, column, type) as the catalogue shows them to analysts."""
    assert side.record is not None
    return [(t.name, c.name, c.duckdb_type) for t in side.record.tables for c in t.columns]


def check_pair(pair: Pair, folder: Path, shapes: Iterable[Shape]) -> Report:
    """Register the pair under ``folder`` and compare the analyst's view of D and D′."""
    pair.register(folder)
    return check_registered(pair, folder, shapes)


def check_registered(pair: Pair, folder: Path, shapes: Iterable[Shape]) -> Report:
    """Compare the analyst's view of D and D′, registered under ``folder/d`` and ``folder/d_prime``."""
    report = Report()
    if pair.d.record is None or pair.d_prime.record is None:
        return report
    report.registered = True
    if pair.d.record.metadata != pair.d_prime.record.metadata:
        report.problems.append("catalogue: the declared metadata differs")
    if published_types(pair.d) != published_types(pair.d_prime):
        report.problems.append(
            f"catalogue: published types differ: {published_types(pair.d)} / {published_types(pair.d_prime)}"
        )
    digests = set()
    for side, folder_name in ((pair.d, "d"), (pair.d_prime, "d_prime")):
        source = next((folder / folder_name / "source").glob("people.*"))
        digests |= content_digests(side, source.read_bytes())
    engines: dict[str, tuple[Engine, Engine]] = {}
    try:
        for shape in shapes:
            if shape.mechanism not in engines:
                engines[shape.mechanism] = (
                    engine_for(pair.d, shape.mechanism),
                    engine_for(pair.d_prime, shape.mechanism),
                )
            sql = shape.sql()
            outcomes: list[Outcome] = [
                run(engine, sql, shape.delta, shape.epsilon, shape.min_group_size)
                for engine in engines[shape.mechanism]
            ]
            report.ran += 1
            report.answered += outcomes[0].answered
            found = compare(shape, pair.profile, outcomes[0], outcomes[1])
            for outcome in outcomes:
                if outcome.result is not None:
                    found += [
                        f"digest shown to the analyst: {leak}"
                        for leak in digest_leaks(outcome.result, digests)
                    ]
            report.problems += [f"{sql}\n    {problem}" for problem in dict.fromkeys(found)]
    finally:
        for engine in (e for both in engines.values() for e in both):
            engine.close()
    return report


HEX_RUN = re.compile(r"[0-9a-f]{16,}")


def strings_of(value: Any) -> Iterator[str]:
    """Every string inside a JSON-like value (keys included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings_of(key)
            yield from strings_of(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings_of(item)


def content_digests(side: Registered, source_bytes: bytes) -> set[str]:
    """Digests an owner or auditor may see: the source's SHA-256, every ``*sha256*`` field and the
    record's ``version`` (the SHA-256 of the metadata and content; analysts get an opaque id)."""
    digests = {hashlib.sha256(source_bytes).hexdigest()}
    if side.record is not None:
        digests.add(side.record.version.lower())
        for key, value in _items(side.record.model_dump(mode="json")):
            if "sha256" in key and isinstance(value, str):
                digests.add(value.lower())
    return digests


def _items(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key), item
            yield from _items(item)
    elif isinstance(value, list):
        for item in value:
            yield from _items(item)


def digest_leaks(result: Result, digests: set[str]) -> list[str]:
    """Analyst-visible strings that contain (16 hex digits or more of) a content digest."""
    leaks = []
    for text in strings_of(result.to_dict()):
        for digits in HEX_RUN.findall(text.lower()):
            if any(digits in digest for digest in digests):
                leaks.append(text)
    return leaks
