"""docs/api.md names every endpoint of the OpenAPI document and every error code the gateway emits."""

from __future__ import annotations

import re
from pathlib import Path

from sandbox.api import create_app
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


def test_every_gateway_error_code_is_documented() -> None:
    codes: set[str] = set()
    for source in GATEWAY_SOURCES:
        text = source.read_text(encoding="utf-8")
        codes |= set(re.findall(r'code="([a-z_]+\.[a-z_.]+)"', text))
        codes |= set(re.findall(r'default_code = "([a-z_.]+)"', text))
        codes |= set(re.findall(r'\d{3}: \("([a-z_]+\.[a-z_]+)"', text))
    codes.add("http.error")
    assert len(codes) > 15
    for code in sorted(codes):
        assert f"`{code}`" in DOC, code
