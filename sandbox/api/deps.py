"""Dependencies: the services, the authenticated principal and role checks as ``Annotated`` aliases.

``PrincipalDep`` authenticates the bearer token (``Authorization: Bearer <t>``; the hub's
``Authorization: token <t>`` is accepted too) and applies the per-principal rate limit.
Hot endpoints take ``TokenDep`` (the token only, no IO) and call ``authenticate`` inside their own
thread-pool call, so one request makes one thread-pool hop instead of one per sync dependency.
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


async def get_token(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> str:
    """The bearer token of the request (not yet checked); 401 when there is none."""
    return _token(request)


TokenDep = Annotated[str, Depends(get_token)]


def authenticate(services: Services, token: str, *roles: Role) -> Principal:
    """The token's principal, within its request rate and holding any of ``roles`` (if given).

    Blocking (it reads the state store): call it from a thread-pool function.
    """
    principal = services.authenticator.authenticate(token)
    services.rate_limiter.check(principal.name)
    if principal.roles == {Role.METRICS} and Role.METRICS not in roles:
        raise Forbidden(
            "a metrics-only user may only scrape /metrics", code="auth.scrape_only", rule="auth.scrape_only"
        )
    if roles:
        ensure_role(principal, roles)
    return principal


def ensure_role(principal: Principal, roles: tuple[Role, ...]) -> None:
    """``Forbidden`` unless the principal holds any of ``roles``."""
    if not any(principal.has(role) for role in roles):
        wanted = ", ".join(r.value for r in roles)
        held = ", ".join(sorted(r.value for r in principal.roles)) or "none"
        raise Forbidden(f"this endpoint needs the role {wanted}; you have: {held}", code="auth.role_required")


def get_principal(request: Request, services: ServicesDep, token: TokenDep) -> Principal:
    """The caller, authenticated and within its request rate (named in any refusal's audit event)."""
    principal = authenticate(services, token)
    request.state.principal = principal.name
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency admitting principals that hold any of ``roles``."""

    async def check(principal: PrincipalDep) -> Principal:
        ensure_role(principal, roles)
        return principal

    return check


AnalystDep = Annotated[Principal, Depends(require(Role.ANALYST))]
OwnerDep = Annotated[Principal, Depends(require(Role.OWNER))]
OperatorDep = Annotated[Principal, Depends(require(Role.OPERATOR))]
OwnerOrOperatorDep = Annotated[Principal, Depends(require(Role.OWNER, Role.OPERATOR))]
AnalystOrOwnerDep = Annotated[Principal, Depends(require(Role.ANALYST, Role.OWNER))]
MemberDep = Annotated[Principal, Depends(require(Role.ANALYST, Role.OWNER, Role.OPERATOR))]


def get_scraper(request: Request, services: ServicesDep, token: TokenDep) -> Principal:
    """A Prometheus scraper: a metrics-only user, or an operator."""
    principal = authenticate(services, token, Role.METRICS, Role.OPERATOR)
    request.state.principal = principal.name
    return principal


ScraperDep = Annotated[Principal, Depends(get_scraper)]
