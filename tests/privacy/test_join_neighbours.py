"""Property: joins give the same outcome on neighbouring datasets (issue 12; docs/sql.md, Joins).

Hypothesis draws D — units with rows in ``people`` and ``visits`` (within both bounds), repeated to
make large groups, values from the harness's adversarial pools — and D′ = D plus one unit with
extreme rows in both tables (more visits than the bound, too). The profile draws the bounds
``k₁``, ``k₂`` and sometimes an owner's ``max_joined_rows_per_unit``; the shapes are inner and
left joins on the unit, a public lookup join, and both together, each with an analyst's clamp or
not (``privacy_joins``). ``privacy_compare.compare`` then checks what it checks for one table, with
one unit's reach computed from the joined bound. A fixed pair runs a fifth of the join shapes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import event, given
from hypothesis import strategies as st
from privacy_check import content_digests, digest_leaks
from privacy_compare import compare, engine_for, run
from privacy_data import BIGINT_POOL, DOUBLE_POOL, STRING_KEYS, Profile, Row, with_units
from privacy_joins import KINDS, JoinPair, JoinProfile, JoinShape, join_shapes
from privacy_profile import chosen

ADDED_UID = 1_000_000
SHAPES = join_shapes()

people_rows = st.fixed_dictionaries(
    {
        "k": st.sampled_from([*STRING_KEYS, "z", None]),
        "s": st.sampled_from(["a", "b", "数据", None]),
        "g": st.sampled_from(BIGINT_POOL),
        "x": st.sampled_from(DOUBLE_POOL) | st.floats(-20, 20, allow_nan=False),
        "n": st.integers(-200, 200),
    }
)
visit_rows = st.fixed_dictionaries(
    {
        "kind": st.sampled_from([*KINDS, "other", None]),
        "code": st.sampled_from(["a", "b", "q", None]),
        "cost": st.sampled_from([0, 1, 499, 501, 1000, -7, 10**9, 2**63 - 1, None]) | st.integers(0, 1000),
    }
)
profiles = st.builds(
    JoinProfile,
    people=st.builds(Profile, max_rows_per_unit=st.integers(1, 2)),
    visits_per_unit=st.integers(1, 3),
    owner_clamp=st.sampled_from([None, None, 1, 2]),
)


@st.composite
def join_pairs(draw: st.DrawFn) -> JoinPair:
    """D: up to 3 unit templates (people rows, visits rows) repeated up to 30 times; D′ adds one unit."""
    profile = draw(profiles)
    k1, k2 = profile.people.max_rows_per_unit, profile.visits_per_unit
    template = st.tuples(
        st.lists(people_rows, min_size=1, max_size=k1), st.lists(visit_rows, max_size=k2), st.integers(1, 30)
    )
    templates = draw(st.lists(template, min_size=1, max_size=3))
    units = [(p, v) for p, v, copies in templates for _ in range(copies)]
    people = with_units([p for p, _ in units])
    visits = with_units([v for _, v in units])
    added_people = with_units([draw(st.lists(people_rows, min_size=1, max_size=k1))], first_uid=ADDED_UID)
    added_visits = with_units([draw(st.lists(visit_rows, max_size=k2 + 2))], first_uid=ADDED_UID)
    return JoinPair(profile, people, visits, added_people, added_visits)


def check(pair: JoinPair, folder: Path, shapes: list[JoinShape]) -> tuple[list[str], int]:
    """Every difference an analyst could see between D and D′ over ``shapes``; and how many answered."""
    pair.register(folder)
    if pair.d.record is None or pair.d_prime.record is None:
        return [], 0
    problems = []
    if pair.d.record.metadata != pair.d_prime.record.metadata:
        problems.append("catalogue: the declared metadata differs")
    digests = set()
    for side, name in ((pair.d, "d"), (pair.d_prime, "d_prime")):
        digests |= content_digests(side, (folder / name / "source" / "visits.parquet").read_bytes())
    engines = (engine_for(pair.d), engine_for(pair.d_prime))
    answered = 0
    try:
        for join in shapes:
            shape, sql = join.shape, join.sql()
            d, d_prime = (run(e, sql, shape.delta, max_joined_rows_per_unit=join.requested) for e in engines)
            answered += d.answered
            found = compare(shape, join.profile(pair.profile), d, d_prime)
            for outcome in (d, d_prime):
                if outcome.result is not None:
                    found += [f"digest: {leak}" for leak in digest_leaks(outcome.result, digests)]
            problems += [f"{sql} [clamp {join.requested}]\n    {p}" for p in dict.fromkeys(found)]
    finally:
        for engine in engines:
            engine.close()
    return problems, answered


@chosen(scale=0.25)  # type: ignore[untyped-decorator]  # given() returns Callable[..., None]
@given(pair=join_pairs(), shapes=st.lists(st.sampled_from(SHAPES), min_size=1, max_size=6))
def test_joins_on_neighbours_get_the_same_answers(pair: JoinPair, shapes: list[JoinShape]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        problems, answered = check(pair, Path(folder), shapes)
    event("answered" if answered else "nothing answered")
    assert not problems, "\n".join([pair.describe(), *problems[:20]])


def fixed_pair() -> JoinPair:
    """40 units sharing one profile of rows, 10 without visits, and an added unit at every edge."""
    common: tuple[list[Row], list[Row]] = (
        [{"k": "a", "s": "a", "g": 1, "x": 1.5, "n": 3}],
        [{"kind": "in", "code": "a", "cost": 600}, {"kind": "out", "code": "b", "cost": 100}],
    )
    lonely: tuple[list[Row], list[Row]] = ([{"k": "c", "s": "数据", "g": -1, "x": -2.25, "n": 100}], [])
    units = [common] * 40 + [lonely] * 10
    added_people = [{"k": "a", "s": "z", "g": 2**63 - 1, "x": float("inf"), "n": 2**62}]
    added_visits = [{"kind": k, "code": "new", "cost": 2**63 - 1} for k in ("in", "out", "in", None)]
    return JoinPair(
        JoinProfile(Profile(max_rows_per_unit=1), visits_per_unit=2),
        with_units([p for p, _ in units]),
        with_units([v for _, v in units]),
        with_units([added_people], first_uid=ADDED_UID),
        with_units([added_visits], first_uid=ADDED_UID),
    )


def test_join_shapes_on_a_fixed_pair(tmp_path: Path) -> None:
    """Every fifth join shape (each source with almost every grouping and aggregate it can answer,
    and every clamp) on a hand-built pair; the property above draws from all of them."""
    shapes = SHAPES[::5]
    problems, answered = check(fixed_pair(), tmp_path, shapes)
    assert answered > len(shapes) // 2, f"only {answered} of {len(shapes)} join shapes answered"
    assert not problems, "\n".join(problems[:20])
