"""The error tree. Every error carries a stable ``code``, an HTTP status and a safe message.

Messages never contain data values or secrets: they are built from the query text, the
metadata and the policy only.
"""

from __future__ import annotations

from typing import Any, ClassVar


class SandboxError(Exception):
    """Base of every error the product reports to a user."""

    http_status: ClassVar[int] = 400
    default_code: ClassVar[str] = "error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        rule: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.rule = rule
        self.details = details or {}

    def to_body(self) -> dict[str, Any]:
        """The one JSON error body: ``{"error": {"code", "message", "rule", ...}}``."""
        body: dict[str, Any] = {"code": self.code, "message": self.message, "rule": self.rule}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class QueryRejected(SandboxError):
    """The SQL is not accepted by the whitelist; ``code`` names the rule (``sql.*``)."""

    http_status = 400
    default_code = "sql.rejected"

    def __init__(self, code: str, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, code=code, rule=code, details=details)


class InvalidRequest(SandboxError):
    """A request parameter is out of range (epsilon, delta, limits)."""

    http_status = 422
    default_code = "request.invalid"


class MetadataInvalid(SandboxError):
    """A dataset metadata document does not fit its data; ``details['problems']`` lists all."""

    http_status = 422
    default_code = "metadata.invalid"


class NotFound(SandboxError):
    """A named object does not exist (or is not visible to the caller)."""

    http_status = 404
    default_code = "not_found"


class Conflict(SandboxError):
    """The request conflicts with the current state (already decided, already registered)."""

    http_status = 409
    default_code = "conflict"


class PolicyDenied(SandboxError):
    """The policy engine denied the request; ``rule`` is the policy rule id."""

    http_status = 403
    default_code = "policy.denied"

    def __init__(self, rule: str, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, code=rule, rule=rule, details=details)


class BudgetExhausted(PolicyDenied):
    """The query would overspend the privacy budget."""


class Unauthenticated(SandboxError):
    """No token, or an invalid, expired or revoked one."""

    http_status = 401
    default_code = "auth.unauthenticated"


class Forbidden(SandboxError):
    """The caller's role does not allow this action."""

    http_status = 403
    default_code = "auth.forbidden"


class PayloadTooLarge(SandboxError):
    """The request body or SQL text exceeds the configured limit."""

    http_status = 413
    default_code = "request.too_large"


class RateLimited(SandboxError):
    """Too many requests from this principal."""

    http_status = 429
    default_code = "request.rate_limited"


class QueryFailed(SandboxError):
    """The query was accepted but execution failed (time or memory limit). No data in the message."""

    http_status = 503
    default_code = "query.failed"


class StoreUnavailable(SandboxError):
    """The state store cannot be reached or refuses writes now; nothing was released, retry later."""

    http_status = 503
    default_code = "store.unavailable"


class InternalError(SandboxError):
    """A bug: an invariant of the product itself was broken."""

    http_status = 500
    default_code = "internal"
