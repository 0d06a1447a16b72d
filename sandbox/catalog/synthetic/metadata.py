"""Metadata documents (YAML) of the generated person-level datasets."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from sandbox.catalog.models import Classification, ColumnRole, ColumnSpec, DatasetMetadata, TableSpec
from sandbox.catalog.synthetic.dimensions import DISTRICT_CODES, N_HOSPITALS, N_LINES, TRIP_DAYS, TRIP_START
from sandbox.catalog.synthetic.tables import CARD_TYPES, DEPARTMENTS, HUKOU, INSURANCE, SEXES, VISIT_TYPES
from sandbox.errors import InternalError


def _column(name: str, role: ColumnRole, description: str, **extra: Any) -> ColumnSpec:
    return ColumnSpec.model_validate({"name": name, "role": role, "description": description, **extra})


def _unit(name: str, description: str) -> ColumnSpec:
    return _column(name, ColumnRole.PRIVACY_UNIT, description)


def _identifier(name: str, description: str) -> ColumnSpec:
    return _column(name, ColumnRole.IDENTIFIER, description)


def _dimension(name: str, description: str, keys: list[Any] | None = None) -> ColumnSpec:
    return _column(name, ColumnRole.DIMENSION, description, keys=keys)


def _measure(name: str, description: str, lower: float, upper: float) -> ColumnSpec:
    return _column(name, ColumnRole.MEASURE, description, lower=lower, upper=upper)


def residents_metadata(source: str) -> DatasetMetadata:
    """The ``residents`` dataset: one row per person."""
    table = TableSpec(
        name="residents",
        source=source,
        description="One row per resident.",
        privacy_unit="person_id",
        max_rows_per_unit=1,
        columns=[
            _unit("person_id", "Resident number."),
            _dimension("district_code", "District of residence (public list of 12).", list(DISTRICT_CODES)),
            _dimension("sex", "M or F.", list(SEXES)),
            _dimension("hukou", "Household registration: local or nonlocal.", list(HUKOU)),
            _dimension("insurance", "Health insurance scheme.", list(INSURANCE)),
            _measure("age", "Age in years.", 0, 100),
            _measure("income", "Income, CNY per year.", 0, 500_000),
        ],
    )
    return DatasetMetadata(
        dataset="residents",
        title="Synthetic residents register",
        owner="civil-affairs",
        classification=Classification.GENERAL,
        description="Fictional population register of province 99, one row per resident.",
        tables=[table],
    )


def medical_visits_metadata(source: str) -> DatasetMetadata:
    """The ``medical_visits`` dataset: up to 16 visits per person in 2024."""
    table = TableSpec(
        name="medical_visits",
        source=source,
        description="One row per visit in 2024; at most 16 per person.",
        privacy_unit="person_id",
        max_rows_per_unit=5,
        columns=[
            _unit("person_id", "Resident number of the patient."),
            _identifier("visit_id", "Visit number."),
            _dimension("visit_type", "Outpatient, emergency or inpatient.", list(VISIT_TYPES)),
            _dimension("department", "Hospital department.", list(DEPARTMENTS)),
            _dimension("hospital_id", "Hospital (public list of 48).", list(range(1, N_HOSPITALS + 1))),
            _dimension("visit_date", "Date of the visit."),
            _measure("cost", "Cost, CNY.", 0, 50_000),
            _measure("reimbursed", "Part of the cost paid by insurance, CNY.", 0, 50_000),
            _measure("los_days", "Length of stay in days; NULL unless inpatient.", 1, 90),
        ],
    )
    return DatasetMetadata(
        dataset="medical_visits",
        title="Synthetic medical visits",
        owner="health-commission",
        classification=Classification.IMPORTANT,
        description="Fictional hospital visits of the residents of province 99 in 2024.",
        tables=[table],
    )


def bus_trips_metadata(source: str) -> DatasetMetadata:
    """The ``bus_trips`` dataset: smart-card taps over 14 days."""
    trip_dates = [(TRIP_START + timedelta(days=d)).isoformat() for d in range(TRIP_DAYS)]
    table = TableSpec(
        name="bus_trips",
        source=source,
        description="One row per tap; at most 64 per card.",
        privacy_unit="card_id",
        max_rows_per_unit=30,
        columns=[
            _unit("card_id", "Smart-card number."),
            _identifier("trip_id", "Trip number."),
            _dimension("card_type", "Fare category.", list(CARD_TYPES)),
            _dimension("line_id", "Bus line (public list of 120).", list(range(1, N_LINES + 1))),
            _dimension("trip_date", "Date of the tap.", trip_dates),
            _dimension("stop_id", "Boarding stop: line_id x 100 + stop number."),
            _dimension("tap_time", "Time of the tap."),
            _measure("fare", "Fare paid, CNY.", 0, 6),
        ],
    )
    return DatasetMetadata(
        dataset="bus_trips",
        title="Synthetic bus smart-card trips",
        owner="transport-bureau",
        classification=Classification.GENERAL,
        description="Fictional bus card taps in province 99, 2024-03-04 to 2024-03-17.",
        tables=[table],
    )


def province_metadata(sources: dict[str, str]) -> DatasetMetadata:
    """The ``province`` dataset: residents and their visits in one dataset (joinable on the person),
    with the district and hospital tables as public lookups (issue 12's joins)."""
    residents = residents_metadata(sources["residents"]).tables[0]
    visits = medical_visits_metadata(sources["medical_visits"]).tables[0]
    districts = TableSpec(
        name="districts",
        source=sources["districts"],
        description="The 12 districts (public): code, name, urban or county.",
        public=True,
        join_keys=["district_code"],
        columns=[
            _dimension("district_code", "District code."),
            _dimension("name", "District name (中文)."),
            _dimension("name_en", "District name (English)."),
            _dimension("type", "urban or county."),
        ],
    )
    hospitals = TableSpec(
        name="hospitals",
        source=sources["hospitals"],
        description="The 48 hospitals (public): district and level.",
        public=True,
        join_keys=["hospital_id"],
        columns=[
            _dimension("hospital_id", "Hospital number."),
            _dimension("district_code", "District of the hospital."),
            _dimension("level", "primary, secondary or tertiary."),
        ],
    )
    return DatasetMetadata(
        dataset="province",
        title="Synthetic province: residents, their hospital visits, districts and hospitals",
        owner="health-commission",
        classification=Classification.IMPORTANT,
        description=(
            "The residents and medical_visits tables of province 99 in one dataset, so they can be "
            "joined on person_id, with the public district and hospital lists as lookup tables."
        ),
        tables=[residents, visits, districts, hospitals],
    )


def write_metadata(path: Path, metadata: DatasetMetadata) -> None:
    """Write the YAML document and check that it loads back into the same ``DatasetMetadata``."""
    document = metadata.model_dump(mode="json", exclude_none=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
    loaded = DatasetMetadata.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    if loaded != metadata:
        raise InternalError(f"metadata document {path.name} does not load back unchanged")
