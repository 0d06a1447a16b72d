"""The console tests' world: a home with datasets, users and tokens, served by a real gateway.

Datasets: ``pums`` (census-bureau, general), ``pums_null`` (census-bureau, core) and ``pums_xss``
(census-bureau, general) whose title is a stored XSS attempt. Users: ``alice`` (analyst, acme),
``bob`` (analyst, globex), ``olivia`` (owner, census-bureau), ``oscar`` (operator). No policy
exists at the start: the flows create them through the console.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from sandbox.catalog.registry import Catalog
from sandbox.control import ControlPlane
from sandbox.principals import Principal, Role
from sandbox.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SHARED_METADATA = REPO / "deploy" / "datasets" / "shared"
ADMIN = Principal("test-admin", frozenset({Role.OPERATOR}))
XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'
USERS: dict[str, tuple[tuple[Role, ...], str | None]] = {
    "alice": ((Role.ANALYST,), "acme"),
    "bob": ((Role.ANALYST,), "globex"),
    "olivia": ((Role.OWNER,), "census-bureau"),
    "oscar": ((Role.OPERATOR,), None),
}


@dataclass
class ConsoleWorld:
    """Settings, a token per user and the gateway's base URL."""

    settings: Settings
    tokens: dict[str, str]
    base_url: str = ""

    @property
    def console(self) -> str:
        """The console's URL."""
        return f"{self.base_url}/console"


def build_world(home: Path, shared_data: Path) -> ConsoleWorld:
    """Register the datasets, add the users and issue their tokens."""
    settings = Settings(home=home, import_dir=home / "import", rate_limit_per_minute=100_000)
    catalog = Catalog(settings.home_dir)
    tokens: dict[str, str] = {}
    with ControlPlane(settings, create=True) as control:
        for name in ("pums", "pums_null"):
            record = catalog.register(SHARED_METADATA / f"{name}.yaml", source_root=shared_data)
            control.record_registration(ADMIN, record)
        document = yaml.safe_load((SHARED_METADATA / "pums.yaml").read_text(encoding="utf-8"))
        document.update(dataset="pums_xss", title=XSS, description=XSS)
        variant = home / "variants" / "pums_xss.yaml"
        variant.parent.mkdir(parents=True)
        variant.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        record = catalog.register(variant, source_root=shared_data)
        control.record_registration(ADMIN, record)
        for name, (roles, organisation) in USERS.items():
            control.add_user(name, roles, organisation, actor=ADMIN.name)
            tokens[name] = control.issue_token(name, actor=ADMIN.name, note="console tests").token
    (home / "import").mkdir(parents=True, exist_ok=True)
    return ConsoleWorld(settings=settings, tokens=tokens)
