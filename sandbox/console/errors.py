"""Error pages: the API's error code, a translated explanation and the API's own message.

Codes stay stable (the same as the HTTP API returns); the explanation above the message is
translated per code family, the message below it is the gateway's, which names the rule.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

from sandbox.console.i18n import lazy
from sandbox.console.web import LoginRequired, Viewer, get_viewer, render
from sandbox.errors import SandboxError

TITLES = {
    401: lazy("Please sign in again."),
    403: lazy("You may not do this."),
    404: lazy("Not found."),
    409: lazy("This conflicts with the current state."),
    413: lazy("Too large."),
    422: lazy("Some values are not acceptable."),
    429: lazy("Too many requests; wait a moment."),
    503: lazy("The service could not answer; try again shortly."),
}
EXPLANATIONS = {
    "auth.role_required": lazy("This page belongs to another role than yours."),
    "auth.operator_only": lazy("Only operators may see this."),
    "console.csrf_failed": lazy(
        "The form was not sent from a page the console showed you. Reload and retry."
    ),
    "route.not_found": lazy("There is no such page."),
    "internal": lazy("The console failed to show this page."),
}


def explanation(error: SandboxError) -> str:
    """The untranslated one-line explanation of an error (by code, else by HTTP status)."""
    return EXPLANATIONS.get(error.code) or TITLES.get(error.http_status, lazy("The request was refused."))


def error_page(request: Request, error: SandboxError, viewer: Viewer | None = None) -> HTMLResponse:
    """The error page with the status, code and message of ``error`` (and the viewer's navigation)."""
    return render(
        request,
        "error.html",
        viewer,
        status_code=error.http_status,
        error=error,
        explanation=explanation(error),
    )


def viewer_or_none(request: Request) -> Viewer | None:
    """The signed-in viewer, if any, for the error page's navigation (blocking: call in a thread)."""
    try:
        return get_viewer(request)
    except (LoginRequired, SandboxError):
        return None
