"""Dependencies: the services, the authenticated principal and role checks as ``Annotated`` aliases.

``PrincipalDep`` authenticates the bearer token (``Authorization: Bearer <t>``; the hub's
``Authorization: token <t>`` is accepted too) and applies the per-principal rate limit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sandbox.api.services import Services
from sandbox.errors import Forbidden, Unauthenticated
from sandbox.principals import Principal, Role

_bearer = HTTPBearer(
    auto_error=False,
    description="An API token from `sandbox token create`, or (JupyterHub mode) the caller's hub token.",
)


async def get_services(request: Request) -> Services:
    """The services opened by the app's lifespan."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def _token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() not in ("bearer", "token") or not token:
        raise Unauthenticated(
            "no token: send 'Authorization: Bearer <token>' (a token from `sandbox token create`, "
            "or your JupyterHub API token)",
            code="auth.missing_token",
        )
    return token


def get_principal(
    request: Request,
    services: ServicesDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Principal:
    """The caller, authenticated and within its request rate."""
    principal = services.authenticator.authenticate(_token(request))
    services.rate_limiter.check(principal.name)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency admitting principals that hold any of ``roles``."""
    wanted = ", ".join(r.value for r in roles)

    async def check(principal: PrincipalDep) -> Principal:
        if not any(principal.has(role) for role in roles):
            held = ", ".join(sorted(r.value for r in principal.roles)) or "none"
            raise Forbidden(
                f"this endpoint needs the role {wanted}; you have: {held}", code="auth.role_required"
            )
        return principal

    return check


AnalystDep = Annotated[Principal, Depends(require(Role.ANALYST))]
OwnerDep = Annotated[Principal, Depends(require(Role.OWNER))]
OperatorDep = Annotated[Principal, Depends(require(Role.OPERATOR))]
OwnerOrOperatorDep = Annotated[Principal, Depends(require(Role.OWNER, Role.OPERATOR))]
AnalystOrOwnerDep = Annotated[Principal, Depends(require(Role.ANALYST, Role.OWNER))]
