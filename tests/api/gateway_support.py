"""Helpers of the gateway tests: a real uvicorn server in a thread, and a populated service home.

The world: datasets ``pums`` (census-bureau, general), ``pums_null`` (census-bureau, core) and
``pums_t`` (transport-bureau, general); users ``alice`` (analyst, acme), ``bob`` (analyst,
globex), ``ivan`` (analyst, initech), ``olivia`` (owner, census-bureau), ``otto`` (owner,
transport-bureau), ``oscar`` (operator); acme holds an active policy on ``pums``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import yaml

from sandbox.catalog.registry import Catalog
from sandbox.control import ControlPlane, PolicyView
from sandbox.principals import Principal, Role
from sandbox.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SHARED_METADATA = REPO / "deploy" / "datasets" / "shared"
ADMIN = Principal("test-admin", frozenset({Role.OPERATOR}))

USERS: dict[str, tuple[tuple[Role, ...], str | None]] = {
    "alice": ((Role.ANALYST,), "acme"),
    "bob": ((Role.ANALYST,), "globex"),
    "ivan": ((Role.ANALYST,), "initech"),
    "olivia": ((Role.OWNER,), "census-bureau"),
    "otto": ((Role.OWNER,), "transport-bureau"),
    "oscar": ((Role.OPERATOR,), None),
}


def variant_metadata(source: Path, target: Path, **changes: str) -> Path:
    """A copy of a metadata YAML with top-level fields changed (sources made absolute-free)."""
    document = yaml.safe_load(source.read_text(encoding="utf-8"))
    document.update(changes)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return target


@dataclass
class World:
    """A populated home: settings, tokens per user and the acme policy on pums."""

    settings: Settings
    tokens: dict[str, str]
    token_ids: dict[str, str]
    acme_policy: PolicyView
    base_url: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def client(self, user: str | None = None, **kwargs: object) -> httpx.Client:
        """An HTTP client for the running gateway, authenticated as ``user`` (if given)."""
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]


def build_world(home: Path, shared_data: Path, **settings_overrides: object) -> World:
    """Create a home with datasets, users, tokens and acme's policy on pums."""
    settings = Settings(home=home, import_dir=home / "import", **settings_overrides)  # type: ignore[arg-type]
    catalog = Catalog(settings.home_dir)
    with ControlPlane(settings, create=True) as control:
        for name in ("pums", "pums_null"):
            record = catalog.register(SHARED_METADATA / f"{name}.yaml", source_root=shared_data)
            control.record_registration(ADMIN, record)
        variant = variant_metadata(
            SHARED_METADATA / "pums.yaml",
            home / "variants" / "pums_t.yaml",
            dataset="pums_t",
            owner="transport-bureau",
            title="PUMS copy owned by the transport bureau",
        )
        record = catalog.register(variant, source_root=shared_data)
        control.record_registration(ADMIN, record)
        tokens: dict[str, str] = {}
        token_ids: dict[str, str] = {}
        for name, (roles, organisation) in USERS.items():
            control.add_user(name, roles, organisation, actor=ADMIN.name)
            issued = control.issue_token(name, actor=ADMIN.name, note="tests")
            tokens[name] = issued.token
            token_ids[name] = issued.id
        alice = control.get_principal("alice")
        olivia = control.get_principal("olivia")
        pums = catalog.get("pums")
        request = control.request_access(
            alice,
            pums,
            purpose="gateway tests",
            columns=["age", "sex", "educ", "race", "income", "married", "pid"],
            epsilon=100.0,
            delta=0.0,
            valid_until=datetime.now(UTC) + timedelta(days=30),
        )
        policy = control.approve(olivia, request.id, pums, max_epsilon_per_query=5.0)
    import_dir = settings.effective_import_dir
    import_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(shared_data / "pums" / "pums_1000.parquet", import_dir / "pums_1000.parquet")
    return World(settings=settings, tokens=tokens, token_ids=token_ids, acme_policy=policy)


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, object]:
    """The response has ``status`` and exactly the one error body; returns its ``error`` object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert {"code", "message", "rule"} <= set(error)
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return dict(error)
