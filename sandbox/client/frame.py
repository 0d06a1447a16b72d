"""``DPFrame``: a pandas DataFrame of noisy answers that shows each value with its 95% CI.

The gateway returns, per aggregate column, the half-width of the 95% confidence interval of every
row (``accuracy[].ci95``). The frame keeps them in ``attrs["ci95"]`` (column -> list in answer row
order) and finds a row's interval through its index label, which starts as the answer's row
number; sorting or filtering keeps labels, so the intervals follow their rows. A quantile's
interval is not symmetric: ``attrs["interval95"]`` holds its ``[lower, upper]`` per row, shown as
``value [lower – upper]``.
"""

from __future__ import annotations

import html
import math
import numbers
from typing import Any, cast

import pandas as pd

__all__ = ["DPFrame"]

PLUS_MINUS = "±"


class DPFrame(pd.DataFrame):
    """Noisy answer rows; ``attrs`` hold the cost, the per-cell 95% CI, the query id and the budget."""

    @property
    def _constructor(self) -> type[DPFrame]:
        return DPFrame

    def ci95(self, column: str) -> pd.Series:
        """Half-widths of the 95% CIs of ``column``, aligned with the frame's rows (NaN if unknown)."""
        widths = self.attrs.get("ci95", {}).get(column)
        values = [_lookup(widths, label) for label in self.index]
        return pd.Series(values, index=self.index, name=f"{column}_ci95", dtype="float64")

    def interval95(self, column: str) -> pd.DataFrame:
        """A quantile's 95% intervals on the value (``lower``, ``upper``), aligned with the rows
        (NaN where unknown or withheld)."""
        intervals = (self.attrs.get("interval95") or {}).get(column)
        ends = [_lookup_band(intervals, label) or [math.nan, math.nan] for label in self.index]
        return pd.DataFrame(ends, index=self.index, columns=["lower", "upper"], dtype="float64")

    def with_ci(self) -> pd.DataFrame:
        """A plain DataFrame with the answer and one ``<column>_ci95`` column per aggregate; a
        quantile also gets ``<column>_lower`` and ``<column>_upper``, its 95% interval."""
        plain = pd.DataFrame(self)
        intervals = self.attrs.get("interval95") or {}
        for column in self.attrs.get("ci95", {}):
            if column in plain.columns:
                plain[f"{column}_ci95"] = self.ci95(column)
                if column in intervals:
                    ends = self.interval95(column)
                    plain[f"{column}_lower"], plain[f"{column}_upper"] = ends["lower"], ends["upper"]
        return plain

    def _display_frame(self) -> pd.DataFrame:
        """The rows as text, aggregates as ``value ± half-width``, quantiles as ``value [lower –
        upper]`` (or their band or rank error from older answers), and withheld groups (noisy count
        below the policy's minimum group size) saying so."""
        shown = pd.DataFrame(self).astype(object)
        minimum = int(self.attrs.get("min_group_size") or 0)
        withheld = f"withheld (fewer than {minimum})"
        ranks = self.attrs.get("rank_error95") or {}
        bands = self.attrs.get("quantile_band95") or {}
        intervals = self.attrs.get("interval95") or {}
        for column in self.attrs.get("ci95", {}):
            if column not in shown.columns:
                continue
            widths = self.ci95(column)
            cells = []
            for label, value, width in zip(self.index, self[column], widths, strict=True):
                band = _lookup_band(bands.get(column), label)
                interval = _lookup_band(intervals.get(column), label)
                if minimum > 0 and _missing(value):
                    cells.append(withheld)
                elif interval is not None and not _missing(value):
                    cells.append(f"{_number(value)} [{_number(interval[0])} – {_number(interval[1])}]")
                elif band is not None and not _missing(value):
                    cells.append(f"{_number(value)} (q {band[0]:.3f}–{band[1]:.3f})")
                elif column in ranks and not _missing(value):
                    cells.append(f"{_number(value)} (rank ±{_number(ranks[column])} rows)")
                else:
                    cells.append(_with_interval(value, width))
            shown[column] = cells
        return shown

    def summary_line(self) -> str:
        """One line: privacy cost, cache, query id and remaining budget."""
        attrs = self.attrs
        if "query_id" not in attrs:
            return ""
        parts = [f"ε spent {_number(attrs.get('epsilon_spent', 0.0))}"]
        if attrs.get("delta_spent"):
            parts.append(f"δ spent {_number(attrs['delta_spent'])}")
        if attrs.get("cached"):
            parts.append("replayed from cache, no cost")
        budget = attrs.get("budget") or {}
        if "epsilon_remaining" in budget:
            parts.append(f"ε remaining {_number(budget['epsilon_remaining'])}")
        if attrs.get("ci_target") is not None:
            parts.append(f"ε derived from ci={_number(attrs['ci_target'])}")
        if attrs.get("suppressed_rows"):
            minimum = attrs.get("min_group_size")
            parts.append(f"{attrs['suppressed_rows']} group(s) withheld (fewer than {minimum})")
        parts.append(f"query {attrs['query_id']}")
        parts.append(f"{PLUS_MINUS} = 95% CI half-width")
        if attrs.get("interval95"):
            parts.append("[a – b] = 95% CI")
        return " · ".join(parts)

    def __repr__(self) -> str:
        line = self.summary_line()
        text = repr(self._display_frame()) if "ci95" in self.attrs else super().__repr__()
        return f"{text}\n{line}" if line else text

    def _repr_html_(self) -> str | None:
        pandas_html = pd.DataFrame._repr_html_  # type: ignore[attr-defined]
        if "ci95" not in self.attrs:
            return cast("str | None", pandas_html(self))
        table = cast("str", pandas_html(self._display_frame()))
        line = self.summary_line()
        if not line:
            return table
        return f'{table}<p style="font-size:smaller;color:#555">{html.escape(line)}</p>'


def _lookup(widths: Any, label: Any) -> float:
    if not isinstance(widths, list) or not isinstance(label, numbers.Integral):
        return math.nan
    position = int(label)
    if not 0 <= position < len(widths):
        return math.nan
    width = widths[position]
    return float(width) if isinstance(width, numbers.Real) else math.nan


def _lookup_band(bands: Any, label: Any) -> list[float] | None:
    """The pair (a quantile band or interval) of the row with index ``label`` (its answer row
    number), if any."""
    if (
        not isinstance(bands, list)
        or not isinstance(label, numbers.Integral)
        or not 0 <= int(label) < len(bands)
    ):
        return None
    band = bands[int(label)]
    return band if isinstance(band, list) and len(band) == 2 else None


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _with_interval(value: Any, width: float) -> Any:
    if _missing(value):
        return value
    if math.isnan(width):
        return _number(value) if isinstance(value, numbers.Real) else value
    return f"{_number(value)} {PLUS_MINUS} {_number(width)}"


def _number(value: Any) -> str:
    """A compact rendering: whole numbers with thousands separators, others with 2 decimals or
    4 significant digits below 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        return str(number)
    if number.is_integer() and abs(number) < 1e15:
        return f"{int(number):,}"
    return f"{number:,.2f}" if abs(number) >= 1 else f"{number:.4g}"
