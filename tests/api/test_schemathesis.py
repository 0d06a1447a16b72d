"""Property-based run of the OpenAPI schema against the real server: no 5xx, responses as documented.

One test per operation (listed from the app's own schema at collection time); Hypothesis drives
schemathesis' case strategy for the operation of the running server's schema. Each operation is
called with a token of the role it is meant for (analyst by default, the owner for decisions, the
operator for audit, usage, metrics and registration), so generated requests get past
authentication into the endpoints' own validation. Positive (schema-valid) and negative
(schema-violating) requests are both generated.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from gateway_support import World
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from sandbox.api import create_app
from sandbox.settings import Settings

OWNER_PATHS = ("/approve", "/reject", "/revoke")
OPERATOR_PATHS = ("/api/v1/audit", "/api/v1/usage", "/metrics")
OPERATIONS = [
    (method.upper(), path)
    for path, item in create_app(Settings(home="/nonexistent")).openapi()["paths"].items()
    for method in item
]
EXAMPLES = 10


@pytest.fixture(scope="session")
def api_schema(world: World) -> schemathesis.BaseSchema:
    """The running gateway's OpenAPI schema."""
    return schemathesis.openapi.from_url(f"{world.base_url}/openapi.json")


def token_user(method: str, path: str) -> str:
    """Who calls an operation in this run."""
    if path.endswith(OWNER_PATHS):
        return "olivia"
    if path.startswith(OPERATOR_PATHS) or (method == "POST" and path == "/api/v1/datasets"):
        return "oscar"
    return "alice"


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_conforms_and_never_fails(
    api_schema: schemathesis.BaseSchema, world: World, method: str, path: str
) -> None:
    operation = api_schema[path][method]
    headers = {"Authorization": f"Bearer {world.tokens[token_user(method, path)]}"}
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
    )

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def call(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(
            base_url=world.base_url,
            headers=headers,
            checks=[
                not_a_server_error,
                status_code_conformance,
                content_type_conformance,
                response_schema_conformance,
            ],
            timeout=60,
        )

    call()
