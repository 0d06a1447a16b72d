"""Deterministic, streaming generator of synthetic provincial public data (shared/data/README.md §8)."""

from sandbox.catalog.synthetic.writer import GeneratedFiles, generate

__all__ = ["GeneratedFiles", "generate"]
