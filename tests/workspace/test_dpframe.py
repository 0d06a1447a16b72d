"""``DPFrame`` and ``answer_frame``: values shown with their 95% CI, intervals that follow their rows."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from sandbox.client.client import answer_frame
from sandbox.client.frame import DPFrame

ANSWER = {
    "query_id": "q_1",
    "columns": ["district", "n", "mean_income"],
    "rows": [["a", 120, 51234.5678], ["b", 80, None], ["c", 300, 40000.0]],
    "epsilon_spent": 0.5,
    "delta_spent": 0.0,
    "cached": False,
    "accuracy": [
        {"column": "n", "aggregate": "count(*)", "mechanisms": [], "ci95": [6.5, 6.5, 6.5], "note": ""},
        {
            "column": "mean_income",
            "aggregate": "avg(income)",
            "mechanisms": [],
            "ci95": [900.0, None, 450.25],
        },
    ],
    "budget": {"epsilon_remaining": 2.5, "delta_remaining": 0.0},
}


def frame() -> DPFrame:
    return answer_frame(ANSWER, dataset="residents", sql="SELECT ...")


def test_answer_frame_carries_cost_intervals_and_budget() -> None:
    answer = frame()
    assert list(answer["n"]) == [120, 80, 300]
    assert answer.attrs["ci95"] == {"n": [6.5, 6.5, 6.5], "mean_income": [900.0, None, 450.25]}
    assert (
        answer.attrs["query_id"],
        answer.attrs["epsilon_spent"],
        answer.attrs["budget"]["epsilon_remaining"],
    ) == (
        "q_1",
        0.5,
        2.5,
    )


def test_display_puts_the_interval_next_to_each_value() -> None:
    html = frame()._repr_html_()
    assert html is not None
    assert "120 ± 6.50" in html and "51,234.57 ± 900" in html and "40,000 ± 450.25" in html
    assert "ε spent 0.5" in html and "ε remaining 2.50" in html and "q_1" in html
    text = repr(frame())
    assert "300 ± 6.50" in text and text.splitlines()[-1].startswith("ε spent 0.5")


def test_intervals_follow_rows_through_sorting_and_filtering() -> None:
    ordered = frame().sort_values("n", ascending=False)
    assert isinstance(ordered, DPFrame)
    assert list(ordered.ci95("mean_income").fillna(-1)) == [450.25, 900.0, -1]
    kept = frame()[frame()["n"] > 100]
    assert isinstance(kept, DPFrame) and list(kept.ci95("n")) == [6.5, 6.5]
    assert "40,000 ± 450.25" in (kept._repr_html_() or "")


def test_with_ci_gives_plain_columns() -> None:
    plain = frame().with_ci()
    assert type(plain) is pd.DataFrame
    assert list(plain.columns) == ["district", "n", "mean_income", "n_ci95", "mean_income_ci95"]
    assert math.isnan(plain["mean_income_ci95"][1]) and plain["n_ci95"][0] == 6.5


def test_unknown_interval_shows_the_value_alone() -> None:
    reindexed = frame().set_index("district")
    assert list(reindexed.ci95("n").isna()) == [True, True, True]
    html = reindexed._repr_html_() or ""
    assert "<td>120</td>" in html and "<td>300</td>" in html


def test_a_frame_without_answer_metadata_displays_like_pandas() -> None:
    plain = DPFrame({"x": [1, 2]})
    assert plain._repr_html_() == pd.DataFrame({"x": [1, 2]})._repr_html_()  # type: ignore[operator]
    assert repr(plain) == repr(pd.DataFrame({"x": [1, 2]}))


WITHHELD: dict[str, Any] = {
    **ANSWER,
    "rows": [["a", 120, 51234.5], ["b", None, None], ["c", 300, None]],
    "accuracy": [
        {"column": "n", "aggregate": "count(*)", "mechanisms": [], "ci95": [6.5, None, 6.5]},
        {
            "column": "median_income",
            "aggregate": "quantile(income, 0.5)",
            "mechanisms": [],
            "ci95": [None, None, None],
            "rank_error95": 37.25,
        },
    ],
    "columns": ["district", "n", "median_income"],
    "grouping": "public_keys",
    "suppressed_rows": 1,
    "min_group_size": 10,
}


def test_withheld_groups_say_why() -> None:
    """A group below the minimum group size shows the reason, not a bare NaN; attrs carry it."""
    answer = answer_frame(WITHHELD, dataset="residents", sql="SELECT ...")
    assert (answer.attrs["grouping"], answer.attrs["suppressed_rows"], answer.attrs["min_group_size"]) == (
        "public_keys",
        1,
        10,
    )
    shown = repr(answer)
    assert shown.count("withheld (fewer than 10)") == 4  # row b twice, row c's median, the summary
    assert "51,234.50 (rank ±37.25 rows)" in shown
    assert "1 group(s) withheld (fewer than 10)" in shown
    assert "withheld" in (answer._repr_html_() or "")


def test_quantile_bands_show_as_levels() -> None:
    banded = {
        **WITHHELD,
        "accuracy": [
            WITHHELD["accuracy"][0],
            {**WITHHELD["accuracy"][1], "quantile_band95": [[0.47, 0.53], None, None]},
        ],
    }
    shown = repr(answer_frame(banded, dataset="residents", sql="SELECT ..."))
    assert "51,234.50 (q 0.470–0.530)" in shown


def test_quantile_intervals_show_as_lower_and_upper() -> None:
    """A quantile's 95% interval on the value is shown as [lower – upper] and added by with_ci."""
    answer = answer_frame(
        {
            **WITHHELD,
            "accuracy": [
                WITHHELD["accuracy"][0],
                {
                    **WITHHELD["accuracy"][1],
                    "ci95": [1234.5, None, None],
                    "interval95": [[50000.0, 52469.0], None, None],
                    "quantile_band95": [[0.47, 0.53], None, None],
                },
            ],
        },
        dataset="residents",
        sql="SELECT ...",
    )
    shown = repr(answer)
    assert "51,234.50 [50,000 – 52,469]" in shown and "(q 0.470" not in shown
    assert "[a – b] = 95% CI" in shown
    table = answer.sort_values("district", ascending=False).with_ci()
    assert list(table.loc[0, ["median_income_lower", "median_income_upper", "median_income_ci95"]]) == [
        50000.0,
        52469.0,
        1234.5,
    ]
    assert table.loc[[1, 2], "median_income_lower"].isna().all()


def test_no_minimum_group_size_means_no_withheld_text() -> None:
    answer = answer_frame({**WITHHELD, "min_group_size": 0, "suppressed_rows": 0}, dataset="r", sql="S")
    assert "withheld" not in repr(answer)
