"""``%load_ext sandbox.magic``: the ``%%dpsql`` cell magic.

    %%dpsql dataset=residents epsilon=0.5
    SELECT district_code, COUNT(*) AS n FROM residents GROUP BY district_code

shows the noisy answer (a ``DPFrame``, value ± 95% CI) and one budget-meter line under it.
Options: ``dataset=`` and ``epsilon=`` or ``ci=`` (accuracy first: the 95% half-width wanted on
the first aggregate; ``group_size=`` for AVG/VARIANCE/STDDEV), ``delta=`` (default 0),
``max_joined_rows_per_unit=N`` (joins: keep at most N joined rows per person), ``into=NAME`` (keep the
answer in a variable; the last answer is always in ``_dpsql``) and ``client=NAME`` (a ``Client`` in
the notebook; by default one built from the environment).
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import pandas as pd
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.display import display

from sandbox.client.client import Client
from sandbox.client.errors import SandboxClientError
from sandbox.client.frame import DPFrame

__all__ = ["BudgetMeter", "DPSQLMagics", "load_ipython_extension", "parse_options"]

OPTIONS = frozenset(
    {"dataset", "epsilon", "ci", "group_size", "delta", "max_joined_rows_per_unit", "into", "client"}
)
WHOLE_NUMBERS = ("group_size", "max_joined_rows_per_unit")
METER_WIDTH = 20


class MagicUsageError(SandboxClientError):
    """The ``%%dpsql`` line is malformed."""


def parse_options(line: str) -> dict[str, str]:
    """``key=value`` pairs of the magic line; ``dataset`` and one of ``epsilon``/``ci`` are required."""
    options: dict[str, str] = {}
    for token in line.split():
        key, sep, value = token.partition("=")
        if not sep or not value or key not in OPTIONS:
            raise MagicUsageError(
                f"cannot read {token!r}: use %%dpsql dataset=NAME epsilon=NUMBER|ci=NUMBER "
                "[group_size=N] [delta=NUMBER] [max_joined_rows_per_unit=N] [into=VARIABLE] "
                "[client=VARIABLE]",
                code="magic.usage",
            )
        options[key] = value
    missing = [k for k in ("dataset",) if k not in options]
    if "epsilon" not in options and "ci" not in options:
        missing.append("epsilon (or ci)")
    if missing:
        raise MagicUsageError(f"%%dpsql needs {' and '.join(missing)}=...", code="magic.usage")
    if "epsilon" in options and "ci" in options:
        raise MagicUsageError("%%dpsql takes epsilon= or ci=, not both", code="magic.usage")
    for key in WHOLE_NUMBERS:
        if key in options and not (options[key].isascii() and options[key].isdigit()):
            raise MagicUsageError(f"{key} must be a whole number", code="magic.usage")
    for key in ("epsilon", "ci", "delta"):
        if key in options:
            try:
                float(options[key])
            except ValueError:
                raise MagicUsageError(f"{key} must be a number", code="magic.usage") from None
    return options


@dataclass(frozen=True, repr=False)
class BudgetMeter:
    """One line: this answer's cost and the organisation's epsilon spent / remaining on the dataset."""

    dataset: str
    spent_now: float
    cached: bool
    epsilon_spent: float | None
    epsilon_remaining: float
    epsilon_granted: float | None

    @classmethod
    def for_answer(cls, frame: DPFrame, budgets: pd.DataFrame | None) -> BudgetMeter:
        """The meter after ``frame``, from the budget listing when there is one for its dataset."""
        attrs = frame.attrs
        dataset = str(attrs.get("dataset", ""))
        remaining = float((attrs.get("budget") or {}).get("epsilon_remaining", 0.0))
        spent = granted = None
        if budgets is not None and not budgets.empty and "dataset" in budgets.columns:
            rows = budgets[budgets["dataset"] == dataset]
            if "status" in rows.columns:
                rows = rows[rows["status"] == "active"]
            if len(rows) == 1:
                row = rows.iloc[0]
                spent, remaining, granted = (
                    float(row["epsilon_spent"]),
                    float(row["epsilon_remaining"]),
                    float(row["epsilon_granted"]),
                )
        return cls(
            dataset,
            float(attrs.get("epsilon_spent", 0.0)),
            bool(attrs.get("cached")),
            spent,
            remaining,
            granted,
        )

    def bar(self) -> str:
        """A text bar of the spent share of the granted epsilon."""
        if not self.epsilon_granted or self.epsilon_spent is None:
            return ""
        filled = round(METER_WIDTH * min(self.epsilon_spent / self.epsilon_granted, 1.0))
        return "▕" + "█" * filled + "░" * (METER_WIDTH - filled) + "▏"

    def __str__(self) -> str:
        now = "replayed, no cost" if self.cached else f"this answer ε {self.spent_now:g}"
        if self.epsilon_spent is not None and self.epsilon_granted is not None:
            total = (
                f"ε {self.epsilon_spent:g} spent / {self.epsilon_remaining:g} remaining"
                f" of {self.epsilon_granted:g}"
            )
        else:
            total = f"ε {self.epsilon_remaining:g} remaining"
        return f"隐私预算 budget {self.dataset}: {self.bar()} {total} · {now}".replace("  ", " ")

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return f'<pre style="margin:0">{html.escape(str(self))}</pre>'


@magics_class
class DPSQLMagics(Magics):
    """The ``%%dpsql`` magic and its lazily created default client."""

    def __init__(self, shell: InteractiveShell) -> None:
        super().__init__(shell)
        self._client: Client | None = None

    def _client_for(self, options: dict[str, str]) -> Client:
        if "client" in options:
            named = self.shell.user_ns.get(options["client"]) if self.shell else None
            if not isinstance(named, Client):
                raise MagicUsageError(f"{options['client']!r} is not a sandbox Client", code="magic.usage")
            return named
        if self._client is None:
            self._client = Client()
        return self._client

    @cell_magic
    def dpsql(self, line: str, cell: str) -> None:
        """Run the cell's SQL as a DP query; show the answer and the budget meter."""
        options = parse_options(line)
        client = self._client_for(options)
        frame = client.query(
            cell.strip(),
            dataset=options["dataset"],
            epsilon=float(options["epsilon"]) if "epsilon" in options else None,
            delta=float(options.get("delta", 0.0)),
            ci=float(options["ci"]) if "ci" in options else None,
            group_size=int(options["group_size"]) if "group_size" in options else None,
            max_joined_rows_per_unit=(
                int(options["max_joined_rows_per_unit"]) if "max_joined_rows_per_unit" in options else None
            ),
        )
        try:
            budgets: pd.DataFrame | None = client.budget()
        except SandboxClientError:
            budgets = None
        if self.shell is not None:
            self.shell.user_ns["_dpsql"] = frame
            if "into" in options:
                self.shell.user_ns[options["into"]] = frame
        display(frame)  # type: ignore[no-untyped-call]
        display(BudgetMeter.for_answer(frame, budgets))  # type: ignore[no-untyped-call]


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """``%load_ext sandbox.magic``."""
    ipython.register_magics(DPSQLMagics)
