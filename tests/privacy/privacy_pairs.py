"""Hand-built adversarial neighbours (no randomness in the data), shared by the fixed-pair tests.

Each pair puts one added unit next to large groups of D (40 and 20 units, and 5 units of NULLs)
on every collision we know of — TIMESTAMP_NS values 1 ns apart, ``infinity`` next to 9999-12-31,
-0.0 next to 0.0, dates outside TIMESTAMP_NS next to TIMESTAMP_NS columns, BIGINT values near
2**62 and 2**63, NaN and ±inf — in Parquet (ns and µs timestamps) and CSV.
"""

from __future__ import annotations

from privacy_data import (
    DAY_2024,
    DAY_9999,
    DAY_INFINITY,
    I64_MAX,
    SECOND_2024,
    Pair,
    Profile,
    Row,
    with_units,
)

T0_NS = SECOND_2024 * 10**9
T0_US = SECOND_2024 * 10**6
US_9999 = 253_402_300_799_999_999


def _base(t: list[int | None], extremes: bool) -> list[Row]:
    """Large groups at the colliding values, a group of NULLs, and (Parquet only) extremes."""
    common = {
        "k": "a",
        "s": "a",
        "g": 1,
        "t": t[0],
        "u": t[0],
        "d": DAY_9999,
        "e": DAY_9999,
        "f": 0.0,
        "x": 1.5,
        "n": 3,
    }
    second = {"k": "b", "s": "数据", "g": 2**62, "t": t[1], "u": t[2], "d": DAY_2024, "e": -200_000}
    second |= {"f": 1.5, "x": -2.25, "n": 100}
    nulls = dict.fromkeys(common)
    groups = [[common]] * 40 + [[second]] * 20 + [[nulls]] * 5
    if extremes:
        wild = {"k": "c", "s": "", "g": -(2**63), "t": t[3], "u": t[3], "d": -DAY_INFINITY, "e": DAY_9999 + 1}
        wild |= {"f": float("-inf"), "x": float("inf"), "n": 2**63 - 1}
        groups += [[wild]] * 3 + [[{**wild, "x": float("nan"), "g": 2**63 - 1}]] * 3
    return with_units(groups)


def _added(t: list[int | None], extremes: bool) -> list[Row]:
    """One unit with two rows: twins of the large groups' values, then extremes."""
    twin = {
        "k": "a",
        "s": "a",
        "g": 7,
        "t": t[4],
        "u": t[4],
        "d": DAY_9999,
        "e": DAY_9999,
        "f": -0.0,
        "x": 9.99,
        "n": 100,
    }
    if extremes:
        twin |= {"d": DAY_INFINITY, "e": DAY_INFINITY}
    other = {"k": "z", "s": "A", "g": 2**62 + 1, "t": t[5], "u": t[5], "e": -200_000, "f": float("nan")}
    other |= {"d": DAY_9999 + 1, "x": -1e308, "n": 2**62} if extremes else {"d": DAY_2024, "x": -9.5, "n": -5}
    return with_units([[twin, other]], first_uid=1_000_000)


# Timestamps by index: 0 the large group, 1-2 the second group (t, u), 3 the extremes, 4 the added
# twin of 0, 5 the added other row.
NS: list[int | None] = [
    T0_NS,
    T0_NS + 1_000,
    9_223_372_036_854_775_000,
    I64_MAX,
    T0_NS + 1,
    -9_223_372_036_854_775_000,
]
US: list[int | None] = [T0_US, US_9999, T0_US + 1, -I64_MAX, I64_MAX, -14_831_769_600_000_000]
CSV: list[int | None] = [T0_NS, T0_NS + 1_000, T0_NS + 2_000, T0_NS + 3_000, T0_NS + 4_000, T0_NS - 1_000]
# name -> (pair, part, parts): the richest pair (its added unit stored first) runs every shape, the
# other two half each (together every shape again), to keep the suite's time down.
PAIRS: dict[str, tuple[Pair, int, int]] = {
    "parquet-ns": (Pair(Profile("parquet", "ns", 2), _base(NS, True), _added(NS, True), True), 0, 1),
    "parquet-us": (Pair(Profile("parquet", "us", 2), _base(US, True), _added(US, True)), 0, 2),
    "csv": (Pair(Profile("csv", "ns", 2), _base(CSV, False), _added(CSV, False)), 1, 2),
}
