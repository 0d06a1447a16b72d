"""Typed errors of the analyst client, built from the gateway's one error body.

The gateway answers every error as ``{"error": {"code", "message", "rule", ...}}`` with an HTTP
status. ``error_from_response`` turns that into the matching exception class, so notebook code can
``except BudgetExhausted:`` and a denial prints as one readable line instead of a traceback.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "BudgetExhausted",
    "Conflict",
    "GatewayUnavailable",
    "InvalidRequest",
    "NotFound",
    "PermissionDenied",
    "PolicyDenied",
    "QueryFailed",
    "QueryRejected",
    "RateLimited",
    "RequestTooLarge",
    "SandboxClientError",
    "ServerError",
    "error_from_response",
]


class SandboxClientError(Exception):
    """An error reported by the gateway (or the failure to reach it).

    ``code`` is the gateway's stable dotted code, ``rule`` the policy or SQL rule that decided,
    ``status`` the HTTP status (0 when no answer arrived) and ``details`` any extra fields.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "error",
        rule: str | None = None,
        status: int = 0,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.rule = rule
        self.status = status
        self.details = details or {}

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"

    def _render_traceback_(self) -> list[str]:
        """IPython hook: show the error as one line, not a traceback."""
        return [f"\x1b[1;31m{type(self).__name__}\x1b[0m {self}"]


class QueryRejected(SandboxClientError):
    """The SQL is not accepted (400): ``code``/``rule`` names the SQL rule (``sql.*``)."""


class InvalidRequest(SandboxClientError):
    """A parameter is out of range or malformed (422)."""


class AuthenticationError(SandboxClientError):
    """No token, or an invalid, expired or revoked one (401)."""


class PermissionDenied(SandboxClientError):
    """The caller's role does not allow this action (403, ``auth.*``)."""


class PolicyDenied(SandboxClientError):
    """The access policy denies the query or request (403); ``rule`` is the policy rule."""


class BudgetExhausted(PolicyDenied):
    """The query would overspend the privacy budget (403, ``budget.*``)."""


class NotFound(SandboxClientError):
    """The named object does not exist or is not visible to the caller (404)."""


class Conflict(SandboxClientError):
    """The request conflicts with the current state (409)."""


class RequestTooLarge(SandboxClientError):
    """The body or the SQL text is longer than the gateway accepts (413)."""


class RateLimited(SandboxClientError):
    """Too many requests from this user in the last minute (429)."""


class QueryFailed(SandboxClientError):
    """The query was accepted but could not be executed (503, time or memory limit)."""


class ServerError(SandboxClientError):
    """The gateway failed (5xx) or answered something that is not its error shape."""


class GatewayUnavailable(SandboxClientError):
    """The gateway could not be reached at all."""


_BY_STATUS: dict[int, type[SandboxClientError]] = {
    400: QueryRejected,
    401: AuthenticationError,
    404: NotFound,
    409: Conflict,
    413: RequestTooLarge,
    422: InvalidRequest,
    429: RateLimited,
    503: QueryFailed,
}


def _class_for(status: int, code: str) -> type[SandboxClientError]:
    if status == 403:
        if code.startswith("budget."):
            return BudgetExhausted
        if code.startswith("auth."):
            return PermissionDenied
        return PolicyDenied
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError


def error_from_response(status: int, body: Any) -> SandboxClientError:
    """The exception for an error answer with HTTP ``status`` and decoded JSON ``body``."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("code"), str):
        return ServerError(
            f"the gateway answered HTTP {status} without its error body", code=f"http.{status}", status=status
        )
    code = error["code"]
    message = str(error.get("message") or code)
    rule = error.get("rule")
    details = error.get("details")
    return _class_for(status, code)(
        message,
        code=code,
        rule=rule if isinstance(rule, str) else None,
        status=status,
        details=details if isinstance(details, dict) else None,
    )
