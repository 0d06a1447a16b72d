"""What a query releases: noisy rows, their cost and their accuracy. Never exact values."""

from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class ColumnAccuracy:
    """Noise of one output aggregate column: how it was made and how far off it may be."""

    column: str
    aggregate: str
    mechanisms: list[dict[str, Any]]
    ci95: list[float | None]
    note: str = ""
    rank_error95: float | None = None  # quantiles: see accuracy.py
    quantile_band95: list[list[float] | None] | None = None  # quantiles with COUNT(col): levels per row
    interval95: list[list[float] | None] | None = None  # quantiles: [lower, upper] values per row


@dataclass(frozen=True)
class Result:
    """A released answer: rows and columns, privacy cost, per-aggregate accuracy."""

    columns: list[str]
    rows: list[list[Any]]
    epsilon: float
    delta: float
    accuracy: list[ColumnAccuracy]
    dataset: str
    dataset_version: str
    grouping: str
    suppressed_rows: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def to_pandas(self) -> pd.DataFrame:
        """The rows as a DataFrame; ``attrs`` carry cost and accuracy."""
        import pandas as pd  # noqa: PLC0415 (pandas is heavy; only imported when asked for)

        frame = pd.DataFrame(self.rows, columns=self.columns)
        frame.attrs.update(
            {
                "epsilon": self.epsilon,
                "delta": self.delta,
                "ci95": {a.column: a.ci95 for a in self.accuracy},
                "accuracy": [asdict(a) for a in self.accuracy],
                "grouping": self.grouping,
                "suppressed_rows": self.suppressed_rows,
            }
        )
        return frame

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (dates as ISO strings, decimals as floats)."""
        return {
            "columns": self.columns,
            "rows": [[_json_value(v) for v in row] for row in self.rows],
            "epsilon": self.epsilon,
            "delta": self.delta,
            "accuracy": [asdict(a) for a in self.accuracy],
            "dataset": self.dataset,
            "dataset_version": self.dataset_version,
            "grouping": self.grouping,
            "suppressed_rows": self.suppressed_rows,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        """Inverse of ``to_dict`` (for replayed answers)."""
        return cls(
            columns=list(data["columns"]),
            rows=[list(r) for r in data["rows"]],
            epsilon=float(data["epsilon"]),
            delta=float(data["delta"]),
            accuracy=[ColumnAccuracy(**a) for a in data["accuracy"]],
            dataset=data["dataset"],
            dataset_version=data["dataset_version"],
            grouping=data["grouping"],
            suppressed_rows=int(data.get("suppressed_rows", 0)),
            meta=dict(data.get("meta", {})),
        )


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value
