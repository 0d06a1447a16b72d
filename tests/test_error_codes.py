"""One registry of error codes (``sandbox/error_codes.py``): every code is explained in its
document, and every code written in the source is registered."""

from __future__ import annotations

from error_code_scan import REPO, written_codes

from sandbox.error_codes import CODES


def test_every_code_is_explained_in_its_document() -> None:
    documents = {name: (REPO / "docs" / name).read_text(encoding="utf-8") for name in set(CODES.values())}
    missing = sorted(f"{code} ({doc})" for code, doc in CODES.items() if f"`{code}`" not in documents[doc])
    assert missing == []


def test_every_code_in_the_source_is_registered() -> None:
    written = written_codes()
    assert len(written) > 150
    assert sorted(written - set(CODES)) == []


def test_the_registry_names_no_code_the_source_never_writes() -> None:
    assert sorted(set(CODES) - written_codes()) == []
