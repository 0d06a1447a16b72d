"""Constants and helper types shared by the DP engine tests (imported as ``query_support``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sandbox.catalog import DatasetRecord

REPO = Path(__file__).resolve().parents[2]
SHARED_METADATA = REPO / "deploy" / "datasets" / "shared"
HUGE_EPSILON = 1e9

Registrar = Callable[[str], DatasetRecord]
DatasetMaker = Callable[..., DatasetRecord]
