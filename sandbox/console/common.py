"""Pages for everyone: the home redirect (each role has its own home) and the notification list."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from sandbox.console.notifications import notifications
from sandbox.console.web import ViewerDep, backend, base_url, render
from sandbox.principals import Role

router = APIRouter()


@router.get("/")
def home(request: Request, viewer: ViewerDep) -> Response:
    """The home of the viewer's first role: analyst, data owner, operator."""
    for role, path in ((Role.ANALYST, "analyst"), (Role.OWNER, "owner"), (Role.OPERATOR, "operator")):
        if viewer.has(role):
            return RedirectResponse(f"{base_url(request)}/{path}", status_code=303)
    return render(request, "norole.html", viewer)


@router.get("/notifications")
def notification_list(request: Request, viewer: ViewerDep) -> Response:
    """Pending requests, decisions, low budgets and expiring policies."""
    return render(
        request, "notifications.html", viewer, items=notifications(backend(request), viewer.principal)
    )
