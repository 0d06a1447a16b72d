"""docs/api.md names every endpoint of the OpenAPI document and every error code the gateway emits."""

from __future__ import annotations

from pathlib import Path

from error_code_scan import written_codes

from sandbox.api import create_app
from sandbox.error_codes import CODES
from sandbox.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
GATEWAY_SOURCES = [
    *sorted((REPO / "sandbox" / "api").rglob("*.py")),
    REPO / "sandbox" / "auth" / "base.py",
    REPO / "sandbox" / "auth" / "jupyterhub.py",
]


def test_every_endpoint_is_documented() -> None:
    paths = create_app(Settings(home=Path("/nonexistent"))).openapi()["paths"]
    for path, item in paths.items():
        for method in item:
            assert f"`{method.upper()} {path}`" in DOC, f"{method.upper()} {path}"


def test_every_gateway_error_code_is_registered_and_documented() -> None:
    """The codes the gateway and its authenticators write are in the one registry, which says
    where each is explained (``tests/test_error_codes.py`` checks the documents)."""
    written = written_codes(GATEWAY_SOURCES)
    assert len(written) > 15
    assert sorted(written - set(CODES)) == []
    assert "`http.error`" in DOC
