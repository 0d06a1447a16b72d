"""Row generation of the person-keyed tables (shared/data/README.md §8.4, §8.6, §8.8).

Each function turns one range of ``person_id`` into Arrow tables; every value depends only on the
seed and the row's natural key, so the rows do not depend on how persons are chunked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from sandbox.catalog.synthetic.dimensions import (
    CARD_ID_OFFSET,
    DISTRICT_CODES,
    DISTRICT_INCOME_MULTIPLIER,
    DISTRICT_URBAN,
    DISTRICTS,
    HOSPITAL_LEVEL,
    K_TRIP,
    K_VISIT,
    LINE_FLAT_FARE,
    LINE_N_STOPS,
    N_LINES,
    PRIMARY,
    SECONDARY,
    TERTIARY,
    TRIP_DAYS,
    TRIP_START,
    VISIT_DAYS,
    VISIT_YEAR_START,
)
from sandbox.catalog.synthetic.rng import (
    Indices,
    Keys,
    categorical,
    categorical_by_class,
    categorical_cdf,
    normal,
    poisson_by_class,
    uniform,
)

Ints = NDArray[np.int64]
Bools = NDArray[np.bool_]

_EPOCH = np.datetime64("1970-01-01", "D")
_VISIT_DAY0 = int((np.datetime64(VISIT_YEAR_START, "D") - _EPOCH).astype(np.int64))
_TRIP_DAY0 = int((np.datetime64(TRIP_START, "D") - _EPOCH).astype(np.int64))
_MICROS_PER_MINUTE = 60_000_000
_MINUTES_PER_DAY = 1440

# ---- residents (§8.4) ------------------------------------------------------------------------

SEXES = ("M", "F")
HUKOU = ("local", "nonlocal")
INSURANCE = ("none", "employee", "resident")
NO_INSURANCE, EMPLOYEE, RESIDENT = 0, 1, 2
AGE_BAND_WEIGHTS = (
    5.5, 6.3, 6.0, 5.2, 5.3, 6.2, 8.8, 7.1, 6.6, 8.1, 8.7, 7.2, 5.2, 5.0, 3.5, 2.3, 1.5, 0.8, 0.3, 0.1,
)  # fmt: skip
_DISTRICT_CDF = categorical_cdf([d.pop_weight for d in DISTRICTS])
_AGE_BAND_CDF = categorical_cdf(list(AGE_BAND_WEIGHTS))

RESIDENTS_SCHEMA = pa.schema(
    [
        pa.field("person_id", pa.int64(), nullable=False),
        pa.field("district_code", pa.string(), nullable=False),
        pa.field("sex", pa.string(), nullable=False),
        pa.field("age", pa.int32(), nullable=False),
        pa.field("hukou", pa.string(), nullable=False),
        pa.field("income", pa.int64(), nullable=False),
        pa.field("insurance", pa.string(), nullable=False),
    ]
)


@dataclass(frozen=True)
class Persons:
    """The residents of one ``person_id`` range, as arrays (categories as indices)."""

    person_id: Ints
    district: Indices
    male: Bools
    age: Ints
    local_hukou: Bools
    income: Ints
    insurance: Indices

    @property
    def keys(self) -> Keys:
        """``person_id`` as the uint64 key of the per-person draws."""
        return self.person_id.astype(np.uint64)


def persons(seed: int, first: int, stop: int) -> Persons:
    """Residents with ``first <= person_id < stop``."""
    person_id = np.arange(first, stop, dtype=np.int64)
    keys = person_id.astype(np.uint64)

    district = categorical(_DISTRICT_CDF, uniform(seed, "residents.district", keys))
    male = uniform(seed, "residents.sex", keys) < 0.512

    band = categorical(_AGE_BAND_CDF, uniform(seed, "residents.age_band", keys))
    width = np.where(band == len(AGE_BAND_WEIGHTS) - 1, 6, 5)
    age = (5 * band + np.floor(uniform(seed, "residents.age", keys) * width)).astype(np.int64)

    local_threshold = np.where(DISTRICT_URBAN[district], 0.80, 0.92)
    local_hukou = uniform(seed, "residents.hukou", keys) < local_threshold

    income = _income(seed, keys, district, age)

    u = uniform(seed, "residents.insurance", keys)
    employee = ((age >= 18) & (age < 60) & (income > 0) & (u < 0.78)) | ((age >= 60) & (u < 0.45))
    insurance = np.where(u < 0.03, NO_INSURANCE, np.where(employee, EMPLOYEE, RESIDENT))
    return Persons(person_id, district, male, age, local_hukou, income, insurance)


def _income(seed: int, keys: Keys, district: Indices, age: Ints) -> Ints:
    multiplier = DISTRICT_INCOME_MULTIPLIER[district]
    n = normal(seed, "residents.income", keys)
    pension = 36_000 * multiplier * np.exp(0.5 * n)
    wage = 72_000 * multiplier * np.exp(0.65 * n)
    zero_probability = np.where(age <= 22, 0.70, 0.12)
    no_wage = uniform(seed, "residents.income_zero", keys) < zero_probability
    raw = np.where(age < 16, 0.0, np.where(age >= 60, pension, np.where(no_wage, 0.0, wage)))
    rounded = np.floor(raw / 100 + 0.5) * 100
    income: Ints = np.clip(rounded, 0, 5_000_000).astype(np.int64)
    return income


def residents_table(p: Persons) -> pa.Table:
    """The ``residents`` rows of these persons."""
    return pa.Table.from_arrays(
        [
            pa.array(p.person_id),
            _labels(DISTRICT_CODES, p.district),
            _labels(SEXES, np.where(p.male, 0, 1)),
            pa.array(p.age.astype(np.int32)),
            _labels(HUKOU, np.where(p.local_hukou, 0, 1)),
            pa.array(p.income),
            _labels(INSURANCE, p.insurance),
        ],
        schema=RESIDENTS_SCHEMA,
    )


# ---- medical_visits (§8.6) ---------------------------------------------------------------------

VISIT_TYPES = ("outpatient", "emergency", "inpatient")
OUTPATIENT, EMERGENCY, INPATIENT = 0, 1, 2
DEPARTMENTS = (
    "internal", "surgery", "pediatrics", "obgyn", "orthopedics", "ophthalmology",
    "dental", "dermatology", "tcm", "cardiology", "respiratory", "emergency",
)  # fmt: skip
_DEPT_WEIGHTS = np.array([0.24, 0.10, 0.0, 0.08, 0.08, 0.05, 0.07, 0.05, 0.08, 0.06, 0.07])
_PEDIATRICS, _OBGYN, _CARDIOLOGY, _EMERGENCY_DEPT = 2, 3, 9, 11
_VISIT_LAMBDAS = [3.0, 1.2, 1.0, 1.8, 3.5, 5.0]
_VISIT_TYPE_THRESHOLDS = np.array([0.88, 0.95])
_LEVEL_CDFS = np.stack(
    [categorical_cdf([0.55, 0.25, 0.20]), categorical_cdf([0.0, 0.5, 0.5]), categorical_cdf([0.0, 0.4, 0.6])]
)
_COST_MEDIAN = np.array([180.0, 650.0, 12_000.0])
_COST_SIGMA = np.array([0.9, 0.8, 0.85])
_LEVEL_COST_FACTOR = np.array([0.7, 1.0, 1.4])
# reimbursement rate in percent, by [insurance, inpatient]
_REIMBURSED_PERCENT = np.array([[0, 0], [70, 80], [50, 60]], dtype=np.int64)


def _month_weekday_cdf() -> NDArray[np.float64]:
    month_weight = [1.25, 1.05, 1.00, 0.95, 0.90, 0.90, 0.95, 0.95, 0.95, 1.00, 1.10, 1.20]
    weekday_weight = [1.25, 1.10, 1.05, 1.00, 1.00, 0.80, 0.60]
    days = np.datetime64(VISIT_YEAR_START, "D") + np.arange(VISIT_DAYS)
    month = days.astype("datetime64[M]").astype(np.int64) % 12
    weekday = np.arange(VISIT_DAYS) % 7  # 2024-01-01 is a Monday
    return categorical_cdf(np.array(month_weight)[month] * np.array(weekday_weight)[weekday])


def _department_cdfs() -> NDArray[np.float64]:
    """Department cdfs by class: 0 child (<14), 1 other, 2 woman aged 15-55, 3 aged 60+."""
    other = _DEPT_WEIGHTS.copy()
    other[_OBGYN] = 0.0
    women = _DEPT_WEIGHTS.copy()
    senior = other.copy()
    senior[_CARDIOLOGY] *= 3
    child = 0.40 * other / other.sum()
    child[_PEDIATRICS] = 0.60
    return np.stack([categorical_cdf(w) for w in (child, other, women, senior)])


def _hospital_candidates() -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Candidate hospital ids and their counts, by [district, level, local]."""
    n_districts = len(DISTRICTS)
    ids = np.arange(1, len(HOSPITAL_LEVEL) + 1)
    width = int(np.bincount(HOSPITAL_LEVEL).max())
    candidates = np.zeros((n_districts, 3, 2, width), dtype=np.int64)
    counts = np.zeros((n_districts, 3, 2), dtype=np.int64)
    home = (ids - 1) // 4
    for district in range(n_districts):
        for level in (PRIMARY, SECONDARY, TERTIARY):
            for local, chosen in (
                (0, ids[level == HOSPITAL_LEVEL]),
                (1, ids[(level == HOSPITAL_LEVEL) & (home == district)]),
            ):
                candidates[district, level, local, : len(chosen)] = chosen
                counts[district, level, local] = len(chosen)
    return candidates, counts


_VISIT_DATE_CDF = _month_weekday_cdf()
_DEPARTMENT_CDFS = _department_cdfs()
_HOSPITAL_CANDIDATES, _HOSPITAL_COUNTS = _hospital_candidates()

VISITS_SCHEMA = pa.schema(
    [
        pa.field("visit_id", pa.int64(), nullable=False),
        pa.field("person_id", pa.int64(), nullable=False),
        pa.field("visit_date", pa.date32(), nullable=False),
        pa.field("visit_type", pa.string(), nullable=False),
        pa.field("hospital_id", pa.int32(), nullable=False),
        pa.field("department", pa.string(), nullable=False),
        pa.field("cost", pa.decimal128(12, 2), nullable=False),
        pa.field("reimbursed", pa.decimal128(12, 2), nullable=False),
        pa.field("los_days", pa.int32(), nullable=True),
    ]
)


def visit_counts(seed: int, p: Persons) -> Indices:
    """Visits per person: Poisson(lambda(age)) capped at ``K_VISIT``."""
    age_class = np.searchsorted(np.array([6, 18, 45, 60, 75]), p.age, side="right")
    return poisson_by_class(_VISIT_LAMBDAS, age_class, uniform(seed, "visits.count", p.keys), K_VISIT)


def visits_table(seed: int, p: Persons) -> pa.Table:
    """The ``medical_visits`` rows of these persons."""
    owner, slot = _expand(visit_counts(seed, p))
    person_id = p.person_id[owner]
    visit_id = person_id * K_VISIT + slot
    keys = visit_id.astype(np.uint64)
    district = p.district[owner]
    age = p.age[owner]

    day = categorical(_VISIT_DATE_CDF, uniform(seed, "visits.date", keys))
    visit_type = np.searchsorted(_VISIT_TYPE_THRESHOLDS, uniform(seed, "visits.type", keys), side="right")

    level = categorical_by_class(_LEVEL_CDFS, visit_type, uniform(seed, "visits.level", keys))
    local = (uniform(seed, "visits.local", keys) < 0.75) & (_HOSPITAL_COUNTS[district, level, 1] > 0)
    local_index = local.astype(np.intp)
    count = _HOSPITAL_COUNTS[district, level, local_index]
    pick = np.floor(uniform(seed, "visits.pick", keys) * count).astype(np.intp)
    hospital_id = _HOSPITAL_CANDIDATES[district, level, local_index, pick]

    dept_class = np.where(
        age < 14, 0, np.where(age >= 60, 3, np.where(~p.male[owner] & (age >= 15) & (age <= 55), 2, 1))
    )
    department = np.where(
        visit_type == EMERGENCY,
        _EMERGENCY_DEPT,
        categorical_by_class(_DEPARTMENT_CDFS, dept_class, uniform(seed, "visits.dept", keys)),
    )

    lognormal = _COST_MEDIAN[visit_type] * np.exp(_COST_SIGMA[visit_type] * normal(seed, "visits.cost", keys))
    cost = np.clip(np.floor(lognormal * _LEVEL_COST_FACTOR[level] * 100 + 0.5), 500, 100_000_000).astype(
        np.int64
    )
    percent = _REIMBURSED_PERCENT[p.insurance[owner], (visit_type == INPATIENT).astype(np.intp)]
    reimbursed = (cost * percent + 50) // 100

    los = 1 + np.floor(6 * np.exp(0.6 * normal(seed, "visits.los", keys)))
    los_days = np.clip(los, 1, 90).astype(np.int32)

    return pa.Table.from_arrays(
        [
            pa.array(visit_id),
            pa.array(person_id),
            _dates(_VISIT_DAY0 + day),
            _labels(VISIT_TYPES, visit_type),
            pa.array(hospital_id.astype(np.int32)),
            _labels(DEPARTMENTS, department),
            _decimal(cost, 12),
            _decimal(reimbursed, 12),
            pa.array(los_days, mask=visit_type != INPATIENT),
        ],
        schema=VISITS_SCHEMA,
    )


# ---- bus_trips (§8.8) --------------------------------------------------------------------------

CARD_TYPES = ("child", "student", "adult", "senior")
CHILD, STUDENT, ADULT, SENIOR = 0, 1, 2, 3
_HAS_CARD_PROBABILITY = np.array([0.10, 0.75, 0.80, 0.90])  # by card type
_FARE_HALVES = np.array([0, 1, 2, 0])  # fare discount x 2, by card type
# trip classes: child, student, adult with income, adult without income, senior
_TRIP_MEANS = [3.0, 12.0, 16.0, 6.0, 7.0]
_TRIP_DATE_CDF = categorical_cdf([1.0 if d % 7 < 5 else 0.55 for d in range(TRIP_DAYS)])
_MORNING, _EVENING, _OFF_PEAK = 0, 1, 2
_PEAK_THRESHOLDS = np.array([0.40, 0.80])
_OFF_PEAK_WEIGHTS = [2, 3, 4, 6, 7, 7, 6, 5, 5, 6, 6, 5, 4, 3, 2, 1]  # hours 6..21
_HOURS = np.zeros((3, len(_OFF_PEAK_WEIGHTS)), dtype=np.int64)
_HOURS[_MORNING, :3] = [7, 8, 9]
_HOURS[_EVENING, :3] = [17, 18, 19]
_HOURS[_OFF_PEAK] = np.arange(6, 22)
_HOUR_CDFS = np.ones((3, len(_OFF_PEAK_WEIGHTS)))
_HOUR_CDFS[_MORNING, :3] = categorical_cdf([0.45, 0.40, 0.15])
_HOUR_CDFS[_EVENING, :3] = categorical_cdf([0.40, 0.45, 0.15])
_HOUR_CDFS[_OFF_PEAK] = categorical_cdf([float(w) for w in _OFF_PEAK_WEIGHTS])
_ZIPF_CDF = categorical_cdf([1.0 / line for line in range(1, N_LINES + 1)])

TRIPS_SCHEMA = pa.schema(
    [
        pa.field("trip_id", pa.int64(), nullable=False),
        pa.field("card_id", pa.int64(), nullable=False),
        pa.field("card_type", pa.string(), nullable=False),
        pa.field("trip_date", pa.date32(), nullable=False),
        pa.field("tap_time", pa.timestamp("us"), nullable=False),
        pa.field("line_id", pa.int32(), nullable=False),
        pa.field("stop_id", pa.int32(), nullable=False),
        pa.field("fare", pa.decimal128(5, 2), nullable=False),
    ]
)


def card_types(p: Persons) -> Indices:
    """Card type of every person, by age."""
    return np.where(p.age < 6, CHILD, np.where(p.age < 18, STUDENT, np.where(p.age >= 60, SENIOR, ADULT)))


def trip_counts(seed: int, p: Persons) -> Indices:
    """Trips per person in the 14 days: 0 without a card, else Poisson(mu) capped at ``K_TRIP``."""
    card_type = card_types(p)
    has_card = uniform(seed, "cards.has", p.keys) < _HAS_CARD_PROBABILITY[card_type]
    trip_class = np.select(
        [card_type == CHILD, card_type == STUDENT, card_type == SENIOR, p.income > 0], [0, 1, 4, 2], 3
    )
    counts = poisson_by_class(_TRIP_MEANS, trip_class, uniform(seed, "trips.count", p.keys), K_TRIP)
    return np.where(has_card, counts, 0)


def trips_table(seed: int, p: Persons) -> pa.Table:
    """The ``bus_trips`` rows of these persons' cards."""
    owner, slot = _expand(trip_counts(seed, p))
    person_id = p.person_id[owner]
    trip_id = person_id * K_TRIP + slot
    keys = trip_id.astype(np.uint64)
    card_type = card_types(p)[owner]

    day = categorical(_TRIP_DATE_CDF, uniform(seed, "trips.date", keys))
    commuter = ((card_type == STUDENT) | ((card_type == ADULT) & (p.income[owner] > 0))) & (day % 7 < 5)
    peak = np.searchsorted(_PEAK_THRESHOLDS, uniform(seed, "trips.peak", keys), side="right")
    profile = np.where(commuter, peak, _OFF_PEAK)
    hour = _HOURS[profile, categorical_by_class(_HOUR_CDFS, profile, uniform(seed, "trips.hour", keys))]
    minute = np.floor(60 * uniform(seed, "trips.minute", keys)).astype(np.int64)
    epoch_day = _TRIP_DAY0 + day
    tap_minutes = epoch_day * _MINUTES_PER_DAY + hour * 60 + minute

    u_line = uniform(seed, "trips.line", keys)
    home_line = p.district[owner] + 1 + 12 * np.floor(10 * u_line).astype(np.int64)
    any_line = categorical(_ZIPF_CDF, u_line) + 1
    line_id = np.where(uniform(seed, "trips.local", keys) < 0.65, home_line, any_line)
    n_stops = LINE_N_STOPS[line_id - 1]
    stop_id = line_id * 100 + 1 + np.floor(n_stops * uniform(seed, "trips.stop", keys)).astype(np.int64)

    distance_fare = 200 + 100 * np.floor(5 * uniform(seed, "trips.fare", keys)).astype(np.int64)
    full_fare = np.where(LINE_FLAT_FARE[line_id - 1], 200, distance_fare)
    fare = full_fare * _FARE_HALVES[card_type] // 2

    return pa.Table.from_arrays(
        [
            pa.array(trip_id),
            pa.array(person_id + CARD_ID_OFFSET),
            _labels(CARD_TYPES, card_type),
            _dates(epoch_day),
            pa.array((tap_minutes * _MICROS_PER_MINUTE).astype("datetime64[us]")),
            pa.array(line_id.astype(np.int32)),
            pa.array(stop_id.astype(np.int32)),
            _decimal(fare, 5),
        ],
        schema=TRIPS_SCHEMA,
    )


# ---- helpers -----------------------------------------------------------------------------------


def _expand(counts: Indices) -> tuple[Indices, Ints]:
    """For child rows: the owning person's index and the slot number j = 0..count-1."""
    owner = np.repeat(np.arange(len(counts)), counts)
    first_row = np.cumsum(counts) - counts
    slot = np.arange(len(owner), dtype=np.int64) - first_row[owner]
    return owner, slot


def _labels(labels: Sequence[str], index: NDArray[np.integer]) -> pa.Array:
    """String column from category indices."""
    return pc.take(pa.array(labels, pa.string()), pa.array(index))


def _dates(epoch_days: NDArray[np.integer]) -> pa.Array:
    """DATE column from days since 1970-01-01."""
    return pa.array(epoch_days.astype("datetime64[D]"))


def _decimal(cents: Ints, precision: int) -> pa.Array:
    """DECIMAL(precision, 2) column from non-negative integer cents."""
    words = np.zeros((len(cents), 2), dtype=np.int64)
    words[:, 0] = cents
    return pa.Array.from_buffers(pa.decimal128(precision, 2), len(cents), [None, pa.py_buffer(words)])
