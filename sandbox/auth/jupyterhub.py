"""JupyterHub mode: the gateway runs as a hub service and accepts the callers' hub tokens.

The caller's token is checked with ``GET {hub_api_url}/user`` (``Authorization: token <t>``), the
way a hub service identifies callers. Answers are cached by ``sha256(token)`` for
``auth_cache_seconds`` (refusals for at most ``NEGATIVE_CACHE_SECONDS``), so a token revoked in
the hub stops working within that time.

Identity (the user name) comes from the hub; roles and organisation come from the gateway's user
registry. The hub's groups must agree with the registry: a registered role counts only if the
user is in its hub group (``analysts-<organisation>``, ``owners``, ``operators``), so removing a
user from a hub group takes their role away without touching the registry.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from sandbox.errors import Forbidden, NotFound, SandboxError, Unauthenticated
from sandbox.principals import Principal, Role
from sandbox.settings import Settings

if TYPE_CHECKING:
    from sandbox.control import ControlPlane

ANALYST_GROUP_PREFIX = "analysts-"
OWNER_GROUP = "owners"
OPERATOR_GROUP = "operators"
NEGATIVE_CACHE_SECONDS = 5.0
MAX_CACHE_ENTRIES = 10_000
HUB_TIMEOUT_SECONDS = 5.0


class HubUnavailableError(SandboxError):
    """The hub could not be asked who a token belongs to."""

    http_status = 503
    default_code = "auth.hub_unavailable"


def hub_group(role: Role, organisation: str | None) -> str:
    """The hub group that confirms ``role`` (analysts: ``analysts-<organisation>``)."""
    if role is Role.ANALYST:
        return f"{ANALYST_GROUP_PREFIX}{organisation}"
    return OWNER_GROUP if role is Role.OWNER else OPERATOR_GROUP


@dataclass(frozen=True)
class _Entry:
    expires: float
    model: dict[str, Any] | None  # None: the hub refused the token


class HubAuthenticator:
    """Checks hub tokens with the hub's REST API, with a short cache keyed by the token's hash."""

    def __init__(
        self, settings: Settings, control: ControlPlane, *, client: httpx.Client | None = None
    ) -> None:
        api_url = settings.hub_api_url or os.environ.get("JUPYTERHUB_API_URL")
        if not api_url:
            raise ValueError("jupyterhub mode needs SANDBOX_HUB_API_URL (or JUPYTERHUB_API_URL)")
        self.user_url = api_url.rstrip("/") + "/user"
        self.control = control
        self.ttl = settings.auth_cache_seconds
        self.access_scopes = {"access:services", f"access:services!service={settings.hub_service_name}"}
        self.service_name = settings.hub_service_name
        self._client = client or httpx.Client(timeout=HUB_TIMEOUT_SECONDS)
        self._cache: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def authenticate(self, token: str) -> Principal:
        """The registered principal of a hub token, with the roles the hub's groups confirm."""
        model = self._identify(token)
        if model is None:
            raise Unauthenticated(
                "the hub does not accept this token: send your JupyterHub API token "
                "($JUPYTERHUB_API_TOKEN) as 'Authorization: Bearer <token>'",
                code="auth.hub_token_invalid",
            )
        return self._principal(model)

    def close(self) -> None:
        """Close the HTTP client and forget cached answers."""
        self._client.close()
        with self._lock:
            self._cache.clear()

    def _identify(self, token: str) -> dict[str, Any] | None:
        key = hashlib.sha256(token.encode("utf-8")).hexdigest()
        now = time.monotonic()
        with self._lock:
            entry = self._cache.get(key)
        if entry is not None and entry.expires > now:
            return entry.model
        model = self._ask_hub(token)
        ttl = self.ttl if model is not None else min(self.ttl, NEGATIVE_CACHE_SECONDS)
        if ttl > 0:
            with self._lock:
                if len(self._cache) >= MAX_CACHE_ENTRIES:
                    self._cache = {k: e for k, e in self._cache.items() if e.expires > now}
                    if len(self._cache) >= MAX_CACHE_ENTRIES:
                        self._cache.clear()
                self._cache[key] = _Entry(now + ttl, model)
        return model

    def _ask_hub(self, token: str) -> dict[str, Any] | None:
        try:
            response = self._client.get(self.user_url, headers={"Authorization": f"token {token}"})
        except httpx.HTTPError as error:
            raise HubUnavailableError(
                f"the JupyterHub API could not be reached ({type(error).__name__}); try again shortly"
            ) from None
        if response.status_code in (401, 403, 404):
            return None
        if response.status_code != 200:
            raise HubUnavailableError(
                f"the JupyterHub API answered {response.status_code}; try again shortly"
            )
        try:
            model = response.json()
        except ValueError:
            raise HubUnavailableError("the JupyterHub API answered with something other than JSON") from None
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            raise HubUnavailableError("the JupyterHub API answered without a user name")
        return model

    def _principal(self, model: dict[str, Any]) -> Principal:
        name: str = model["name"]
        if model.get("kind", "user") != "user":
            raise Forbidden(
                "only JupyterHub user tokens may call the gateway, not service tokens",
                code="auth.hub_not_a_user",
            )
        scopes = set(model.get("scopes") or [])
        if not scopes & self.access_scopes:
            raise Forbidden(
                f"this hub token does not grant access:services!service={self.service_name}; "
                "ask the hub administrator to give your group access to the gateway",
                code="auth.hub_scope_missing",
            )
        try:
            registered = self.control.get_principal(name)
        except NotFound:
            raise Forbidden(
                f"hub user {name!r} is not registered with the gateway; ask the operator to run "
                f"`sandbox user add {name} --role analyst --org <organisation>`",
                code="auth.not_registered",
            ) from None
        if name in self.control.disabled_users():
            raise Unauthenticated(f"user {name!r} is disabled: ask the operator", code="auth.user_disabled")
        groups = set(model.get("groups") or [])
        confirmed = frozenset(
            role for role in registered.roles if hub_group(role, registered.organisation) in groups
        )
        if not confirmed:
            expected = sorted(hub_group(role, registered.organisation) for role in registered.roles)
            raise Forbidden(
                f"hub user {name!r} is registered as {', '.join(sorted(registered.roles))} but is in "
                f"none of the matching hub groups ({', '.join(expected)}); ask the hub administrator "
                "to add the user to the right group",
                code="auth.hub_groups_mismatch",
            )
        return Principal(name=name, roles=confirmed, organisation=registered.organisation)
