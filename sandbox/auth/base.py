"""The authenticator interface: a bearer token in, a ``Principal`` out.

Two implementations, chosen by ``settings.auth_mode``: ``tokens`` (API tokens issued by the CLI,
checked against the state store on every request, so a revoked or expired token fails at once)
and ``jupyterhub`` (hub tokens checked with the hub, see ``sandbox.auth.jupyterhub``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from sandbox.principals import Principal
from sandbox.settings import Settings

if TYPE_CHECKING:
    from sandbox.control import ControlPlane


class Authenticator(Protocol):
    """Turns a bearer token into the principal it belongs to."""

    def authenticate(self, token: str) -> Principal:
        """The token's principal; raises ``Unauthenticated`` (401) or ``Forbidden`` (403)."""
        ...

    def close(self) -> None:
        """Release network clients and caches."""
        ...


class TokenAuthenticator:
    """Standalone mode: API tokens issued by ``sandbox token create``, stored hashed."""

    def __init__(self, control: ControlPlane) -> None:
        self.control = control

    def authenticate(self, token: str) -> Principal:
        """The token's principal; no caching, so revocation and expiry apply to the next request."""
        return self.control.principal_for_token(token)

    def close(self) -> None:
        """Nothing to release."""


def make_authenticator(settings: Settings, control: ControlPlane) -> Authenticator:
    """The authenticator ``settings.auth_mode`` names."""
    if settings.auth_mode == "jupyterhub":
        from sandbox.auth.jupyterhub import HubAuthenticator  # noqa: PLC0415 (httpx only in hub mode)

        return HubAuthenticator(settings, control)
    return TokenAuthenticator(control)
