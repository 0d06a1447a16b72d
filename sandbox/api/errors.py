"""Exception handlers: every error leaves the gateway as ``{"error": {"code", "message", "rule", ...}}``.

Messages come from the error tree (never data values); framework errors (validation, unknown
routes, wrong methods, oversized bodies) are mapped onto the same body. Validation problems list
the field and the reason, never the submitted value.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandbox.audit.models import EventType
from sandbox.errors import Forbidden, SandboxError, StoreUnavailable, Unauthenticated

logger = logging.getLogger("sandbox.api")

_HTTP_CODES = {
    422: ("request.malformed", "The request body could not be read; send UTF-8 JSON matching the schema."),
    401: ("auth.unauthenticated", "Send 'Authorization: Bearer <token>'."),
    403: ("auth.forbidden", "This action is not allowed for your role."),
    404: ("route.not_found", "There is no endpoint at this path; the API is described at /openapi.json."),
    405: ("route.method_not_allowed", "This endpoint does not accept this HTTP method."),
    413: ("request.too_large", "The request body is larger than the gateway accepts."),
}


def error_body(
    code: str, message: str, *, rule: str | None = None, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The one JSON error body."""
    body: dict[str, Any] = {"code": code, "message": message, "rule": rule}
    if details:
        body["details"] = details
    return {"error": body}


def error_response(error: SandboxError) -> JSONResponse:
    """The response for a ``SandboxError`` (401 gets ``WWW-Authenticate``; 429 and 503 ``Retry-After``)."""
    headers: dict[str, str] = {}
    if isinstance(error, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="sandbox"'
    if "retry_after_seconds" in error.details:
        headers["Retry-After"] = str(error.details["retry_after_seconds"])
    return JSONResponse(error.to_body(), status_code=error.http_status, headers=headers)


async def _sandbox_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, SandboxError)
    if isinstance(error, Unauthenticated | Forbidden):
        await run_in_threadpool(_record_refusal, request, error)
    return error_response(error)


def _record_refusal(request: Request, error: SandboxError) -> None:
    """A failed authentication or a role refusal as an audit event (rate-limited per caller)."""
    services = getattr(request.app.state, "services", None)
    if services is None:
        return
    host = request.client.host if request.client else "unknown"
    who = getattr(request.state, "principal", None) or f"anonymous@{host}"
    kind = EventType.AUTH_FAILED if isinstance(error, Unauthenticated) else EventType.AUTH_REFUSED
    try:
        services.control.record_refusal(kind, who, f"{request.method} {request.url.path}", error.code)
    except SandboxError:  # recording must never turn a refusal into a different error
        logger.exception("could not record a refusal in the audit chain")


async def _validation_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = [
        {
            "loc": [str(part) for part in problem.get("loc", ())],
            "msg": problem.get("msg", ""),
            "type": problem.get("type", ""),
        }
        for problem in error.errors()
    ]
    summary = "; ".join(f"{'.'.join(p['loc'])}: {p['msg']}" for p in problems[:5])
    return JSONResponse(
        error_body(
            "request.invalid",
            f"The request does not match the schema ({summary}); fix these fields and retry.",
            details={"problems": problems},
        ),
        status_code=422,
    )


async def _http_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    # FastAPI answers 400 to bodies it cannot decode; 400 is reserved for refused SQL here.
    status = 422 if error.status_code == 400 else error.status_code
    code, message = _HTTP_CODES.get(status, ("http.error", "The request failed."))
    headers = dict(error.headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="sandbox"')
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


# SQLSTATE classes of a store that is away or refusing writes for now: connection exceptions,
# read-only transactions, insufficient resources, operator intervention (shutdown, restart)
_STORE_AWAY = ("08", "25006", "53", "57")
STORE_RETRY_AFTER_S = 2


async def _store_error(request: Request, error: Exception) -> JSONResponse:
    """The state store is unreachable or refuses writes: 503 with ``Retry-After``; anything else
    from the database driver is a bug (500)."""
    assert isinstance(error, DBAPIError)
    state = getattr(error.orig, "sqlstate", None) or ""
    away = error.connection_invalidated or state.startswith(_STORE_AWAY)
    if away or type(error.orig).__name__ == "OperationalError":
        logger.warning("state store unavailable on %s %s: %s", request.method, request.url.path, error.orig)
        return error_response(
            StoreUnavailable(
                "The state store is unavailable right now and no answer was released; "
                "retry after the indicated delay.",
                details={"retry_after_seconds": STORE_RETRY_AFTER_S},
            )
        )
    return await _unexpected_error(request, error)


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    incident = uuid.uuid4().hex[:12]
    logger.error("unexpected error %s on %s %s", incident, request.method, request.url.path, exc_info=error)
    return JSONResponse(
        error_body(
            "internal",
            f"Internal error {incident}: the gateway hit a bug; the operator can find it in the log.",
        ),
        status_code=500,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that render every error as the one body."""
    app.add_exception_handler(SandboxError, _sandbox_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _store_error)
    app.add_exception_handler(Exception, _unexpected_error)
