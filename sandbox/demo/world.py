"""The demo world: datasets, users, one approved policy and one pending request, built idempotently.

``build_world`` is used by ``python -m sandbox.demo`` (at demo scale) and by the workspace tests
(at a tiny scale), so the notebooks run against the same world everywhere. Every step first looks
at what exists and only adds what is missing.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from sandbox.catalog.models import Classification, ColumnRole, DatasetMetadata, DatasetRecord
from sandbox.catalog.registry import Catalog
from sandbox.catalog.synthetic import generate
from sandbox.control import ControlPlane
from sandbox.errors import NotFound
from sandbox.principals import Principal, Role
from sandbox.settings import Settings

SYNTHETIC = ("residents", "medical_visits", "bus_trips", "province")
SEED = 42
ANALYST_ORG = "acme"
# acme may query these (residents: the quickstart; province: notebooks/05_joins_and_histograms);
# bus_trips stays unapproved: the quickstart's denial. dataset -> the owner login that approves
APPROVED = {"residents": "civil", "medical_visits": "health", "province": "health"}
PENDING_DATASET = "adult"  # acme asked, census-bureau has not decided yet (the owner walkthrough)
STAGED_DATASET = "pums"  # left in the import folder for the owner walkthrough to register
SETUP_ACTOR = "demo-setup"


@dataclass(frozen=True)
class DemoUser:
    """A demo login: hub user name = gateway user name."""

    name: str
    role: Role
    organisation: str | None
    note: str


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("alice", Role.ANALYST, ANALYST_ORG, "analyst at acme: open notebooks/01_analyst_quickstart"),
    DemoUser("bob", Role.ANALYST, ANALYST_ORG, "analyst at acme (shares acme's budget with alice)"),
    DemoUser("census", Role.OWNER, "census-bureau", "data owner: open notebooks/03_data_owner_walkthrough"),
    DemoUser("civil", Role.OWNER, "civil-affairs", "data owner of residents"),
    DemoUser("health", Role.OWNER, "health-commission", "data owner of medical_visits, diabetes_130"),
    DemoUser("transport", Role.OWNER, "transport-bureau", "data owner of bus_trips, nycflights13"),
    DemoUser("environment", Role.OWNER, "environment-bureau", "data owner of beijing_air"),
    DemoUser("oscar", Role.OPERATOR, None, "operator: open notebooks/04_operator_walkthrough"),
)

Log = Callable[[str], None]


@dataclass(frozen=True)
class World:
    """What the demo world holds, for the banner."""

    datasets: list[str]
    users: tuple[DemoUser, ...]
    policy_id: str  # acme's policy on residents
    pending_request_id: str
    approved: tuple[str, ...]


def build_world(
    settings: Settings,
    *,
    shared_data: Path,
    shared_metadata: Path,
    residents: int,
    shared: frozenset[str] | None = None,
    log: Log = print,
) -> World:
    """Create the home, datasets, users, the approved policy and the pending request if missing.

    ``shared`` limits which shared public datasets are registered (default: all of
    ``shared_metadata/*.yaml``; the pending request and the import folder need ``adult`` and ``pums``).
    """
    settings.home_dir.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(settings.home_dir)
    with ControlPlane(settings, create=True) as control:
        users = ensure_users(control)
        operator = users["oscar"]
        synthetic = ensure_synthetic(settings.home_dir / "sources" / "synthetic", residents, log)
        for name in SYNTHETIC:
            ensure_registered(
                catalog, control, operator, synthetic / f"{name}.yaml", source_root=None, log=log
            )
        for document in sorted(shared_metadata.glob("*.yaml")):
            if document.stem != STAGED_DATASET and (shared is None or document.stem in shared):
                ensure_registered(catalog, control, operator, document, source_root=shared_data, log=log)
        stage_for_import(settings, shared_metadata / f"{STAGED_DATASET}.yaml", shared_data)
        policies = {
            name: ensure_policy(control, catalog.get(name), users["alice"], users[owner])
            for name, owner in APPROVED.items()
        }
        pending_id = ensure_pending_request(control, catalog.get(PENDING_DATASET), users["bob"])
        names = [r.name for r in catalog.list()]
    return World(names, DEMO_USERS, policies["residents"], pending_id, tuple(APPROVED))


def ensure_users(control: ControlPlane) -> dict[str, Principal]:
    """Register every demo user that is not registered yet."""
    principals = {}
    for user in DEMO_USERS:
        try:
            principals[user.name] = control.get_principal(user.name)
        except NotFound:
            principals[user.name] = control.add_user(
                user.name, [user.role], user.organisation, actor=SETUP_ACTOR
            )
    return principals


def ensure_synthetic(out_dir: Path, residents: int, log: Log) -> Path:
    """Generate the synthetic provincial data for ``residents`` persons unless already there."""
    marker = out_dir / "generated.json"
    wanted = {"n": residents, "seed": SEED}
    if marker.exists() and json.loads(marker.read_text(encoding="utf-8")) == wanted:
        return out_dir
    log(f"generating synthetic provincial data for {residents:,} residents ...")
    files = generate(out_dir, residents, SEED)
    marker.write_text(json.dumps(wanted), encoding="utf-8")
    log(f"  {files.total_rows:,} rows written")
    return out_dir


def ensure_registered(
    catalog: Catalog,
    control: ControlPlane,
    operator: Principal,
    metadata_path: Path,
    *,
    source_root: Path | None,
    log: Log,
) -> DatasetRecord:
    """Register the dataset of ``metadata_path`` unless a dataset of that name exists."""
    name = metadata_path.stem
    try:
        return catalog.get(name)
    except NotFound:
        pass
    log(f"registering {name} ...")
    return control.register_dataset(operator, catalog, metadata_path, source_root=source_root)


def stage_for_import(settings: Settings, metadata_path: Path, shared_data: Path) -> None:
    """Copy a metadata document and its sources into the import folder (for ``POST /datasets``)."""
    import_dir = settings.effective_import_dir
    target = import_dir / metadata_path.name
    if target.exists():
        return
    import_dir.mkdir(parents=True, exist_ok=True)
    text = metadata_path.read_text(encoding="utf-8")
    metadata = DatasetMetadata.model_validate(yaml.safe_load(text))
    for table in metadata.tables:
        (import_dir / table.source).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_data / table.source, import_dir / table.source)
    target.write_text(text, encoding="utf-8")


def _usable_columns(record: DatasetRecord) -> list[str]:
    names = [c.name for t in record.metadata.tables for c in t.columns if c.role is not ColumnRole.IDENTIFIER]
    return list(dict.fromkeys(names))


def ensure_policy(control: ControlPlane, record: DatasetRecord, analyst: Principal, owner: Principal) -> str:
    """acme's active policy on ``record``, requested by ``analyst`` and approved by ``owner``."""
    for policy in control.list_policies(owner):
        mine = policy.dataset == record.name and policy.organisation == analyst.organisation
        if mine and policy.status == "active":
            return policy.id
    request = control.request_access(
        analyst,
        record,
        purpose=f"Demo: {record.name} statistics by district for a market study.",
        columns=_usable_columns(record),
        epsilon=10.0,
        delta=1e-5,
        valid_until=datetime.now(UTC) + timedelta(days=365),
    )
    settings = control.settings
    important = record.metadata.classification is Classification.IMPORTANT
    policy = control.approve(
        owner,
        request.id,
        record,
        max_epsilon_per_query=min(1.0, settings.important_max_epsilon_per_query) if important else 1.0,
        max_delta_per_query=1e-6,
        min_group_size=settings.important_min_group_size if important else 0,
    )
    return policy.id


def ensure_pending_request(control: ControlPlane, record: DatasetRecord, analyst: Principal) -> str:
    """A pending request of acme on the owner walkthrough's dataset."""
    for request in control.list_requests(analyst, status="pending"):
        if request.dataset == record.name:
            return request.id
    request = control.request_access(
        analyst,
        record,
        purpose="Demo: working hours and income class by education, for a labour-market report.",
        columns=["age", "education", "sex", "hours_per_week", "income"],
        epsilon=4.0,
        delta=0.0,
        valid_until=datetime.now(UTC) + timedelta(days=180),
    )
    return request.id


def write_directory(
    path: Path, users: tuple[DemoUser, ...] = DEMO_USERS, others: list[str] | None = None
) -> None:
    """The hub's user directory (``deploy/local/jupyterhub_config.py`` reads it)."""
    document = {
        "users": [{"name": u.name, "roles": [u.role.value], "organisation": u.organisation} for u in users],
        "others": others or [],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
