"""The fixed public dimensions and constants of shared/data/README.md §8.3, §8.5 and §8.7."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

K_VISIT = 16
K_TRIP = 64
CARD_ID_OFFSET = 10_000_000_000
VISIT_YEAR_START = date(2024, 1, 1)
VISIT_DAYS = 366
TRIP_START = date(2024, 3, 4)
TRIP_DAYS = 14


@dataclass(frozen=True)
class District:
    """One row of the district table (§8.3)."""

    code: str
    name: str
    name_en: str
    urban: bool
    pop_weight: float
    income_multiplier: float


DISTRICTS: tuple[District, ...] = (
    District("990101", "中心区", "Zhongxin", True, 0.14, 1.30),
    District("990102", "东湖区", "Donghu", True, 0.12, 1.15),
    District("990103", "西山区", "Xishan", True, 0.11, 1.05),
    District("990104", "南江区", "Nanjiang", True, 0.10, 1.00),
    District("990105", "北城区", "Beicheng", True, 0.10, 0.95),
    District("990106", "高新区", "Gaoxin", True, 0.09, 1.40),
    District("990107", "经开区", "Jingkai", True, 0.08, 1.10),
    District("990108", "临港区", "Lingang", True, 0.07, 0.90),
    District("990121", "青云县", "Qingyun", False, 0.06, 0.65),
    District("990122", "白石县", "Baishi", False, 0.05, 0.60),
    District("990123", "梅林县", "Meilin", False, 0.04, 0.60),
    District("990124", "江口县", "Jiangkou", False, 0.04, 0.55),
)
DISTRICT_CODES = [d.code for d in DISTRICTS]
DISTRICT_URBAN: NDArray[np.bool_] = np.array([d.urban for d in DISTRICTS])
DISTRICT_INCOME_MULTIPLIER: NDArray[np.float64] = np.array([d.income_multiplier for d in DISTRICTS])

# Hospital levels, indexed as in the level Categorical of §8.6.
LEVELS = ("primary", "secondary", "tertiary")
PRIMARY, SECONDARY, TERTIARY = 0, 1, 2
N_HOSPITALS = 4 * len(DISTRICTS)


def hospital_level(hospital_id: int) -> int:
    """The level index of a hospital (§8.5)."""
    district, slot = divmod(hospital_id - 1, 4)
    if slot == 0:
        return TERTIARY if DISTRICTS[district].urban else SECONDARY
    return SECONDARY if slot == 1 else PRIMARY


HOSPITAL_LEVEL: NDArray[np.intp] = np.array([hospital_level(h) for h in range(1, N_HOSPITALS + 1)])

N_LINES = 120


def line_n_stops(line_id: int) -> int:
    """Number of stops of a bus line (§8.7): 18..40."""
    return 18 + (7 * line_id) % 23


LINE_N_STOPS: NDArray[np.int64] = np.array([line_n_stops(line) for line in range(1, N_LINES + 1)])
LINE_FLAT_FARE: NDArray[np.bool_] = np.array(
    [DISTRICTS[(line - 1) % len(DISTRICTS)].urban for line in range(1, N_LINES + 1)]
)


def districts_table() -> pa.Table:
    """The 12 districts."""
    return pa.table(
        {
            "district_code": pa.array(DISTRICT_CODES, pa.string()),
            "name": pa.array([d.name for d in DISTRICTS], pa.string()),
            "name_en": pa.array([d.name_en for d in DISTRICTS], pa.string()),
            "type": pa.array(["urban" if d.urban else "county" for d in DISTRICTS], pa.string()),
            "pop_weight": pa.array([d.pop_weight for d in DISTRICTS], pa.float64()),
            "income_multiplier": pa.array([d.income_multiplier for d in DISTRICTS], pa.float64()),
        }
    )


def hospitals_table() -> pa.Table:
    """The 48 hospitals, four per district."""
    ids = list(range(1, N_HOSPITALS + 1))
    return pa.table(
        {
            "hospital_id": pa.array(ids, pa.int32()),
            "district_code": pa.array([DISTRICT_CODES[(h - 1) // 4] for h in ids], pa.string()),
            "level": pa.array([LEVELS[hospital_level(h)] for h in ids], pa.string()),
            "name": pa.array([f"H{h:03d}" for h in ids], pa.string()),
        }
    )


def bus_lines_table() -> pa.Table:
    """The 120 bus lines, ten per district."""
    ids = list(range(1, N_LINES + 1))
    return pa.table(
        {
            "line_id": pa.array(ids, pa.int32()),
            "line_name": pa.array([f"{line}路" for line in ids], pa.string()),
            "district_code": pa.array(
                [DISTRICT_CODES[(line - 1) % len(DISTRICTS)] for line in ids], pa.string()
            ),
            "n_stops": pa.array([line_n_stops(line) for line in ids], pa.int32()),
            "fare_type": pa.array(
                ["flat" if LINE_FLAT_FARE[line - 1] else "distance" for line in ids], pa.string()
            ),
        }
    )
