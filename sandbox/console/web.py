"""Request plumbing shared by the console's pages: the signed-in viewer, CSRF-checked forms, rendering.

``ViewerDep`` turns the session cookie into the authenticated principal (the API's authenticator
and rate limit); ``FormDep`` reads a posted form and refuses it unless its CSRF token matches the
session. ``render`` fills every template with the translator, the viewer, the CSRF token and the
navigation of the viewer's roles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from sandbox.api.deps import ensure_role
from sandbox.console.backend import Backend
from sandbox.console.i18n import LANG_COOKIE, Translator, lazy, negotiate, translator
from sandbox.console.session import NONCE_COOKIE, SESSION_COOKIE, Session, SessionKeys
from sandbox.errors import Forbidden, SandboxError
from sandbox.principals import Principal, Role

TEMPLATES = Path(__file__).parent / "templates"

templates = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


class LoginRequired(Exception):
    """No (valid) session: the page sends the browser to the sign-in page."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class CsrfRejected(Forbidden):
    """A form arrived without the CSRF token of the session that showed it."""

    default_code = "console.csrf_failed"


@dataclass(frozen=True)
class Console:
    """What the console app holds: the session keys and the sign-in mode."""

    keys: SessionKeys
    auth_mode: str

    @staticmethod
    def of(request: Request) -> Console:
        """The console state of the app serving ``request``."""
        console: Console = request.app.state.console
        return console


def backend(request: Request) -> Backend:
    """The backend over the gateway's services (opened by the parent app's lifespan)."""
    backend_: Backend = request.app.state.backend()
    return backend_


def language(request: Request) -> Translator:
    """The request's translator (cookie, else browser, else Chinese)."""
    return translator(negotiate(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language")))


def base_url(request: Request) -> str:
    """The console's path prefix as the browser sees it (mount path, behind any service prefix)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


@dataclass(frozen=True)
class Viewer:
    """The signed-in person of a request."""

    principal: Principal
    session: Session

    @property
    def token(self) -> str:
        """The bearer token the session holds."""
        return self.session.token

    def has(self, role: Role) -> bool:
        """Whether the viewer holds ``role``."""
        return self.principal.has(role)


def current_session(request: Request) -> Session | None:
    """The session in the request's cookie, if valid."""
    return Console.of(request).keys.open(request.cookies.get(SESSION_COOKIE))


def get_viewer(request: Request) -> Viewer:
    """The authenticated viewer; ``LoginRequired`` without a session or with a dead token."""
    session = current_session(request)
    if session is None:
        raise LoginRequired()
    try:
        principal = backend(request).principal(session.token)
    except SandboxError as error:
        if error.http_status == 401:
            raise LoginRequired(error.code) from None
        raise
    return Viewer(principal, session)


ViewerDep = Annotated[Viewer, Depends(get_viewer)]


def requires(*roles: Role) -> Callable[[Viewer], Viewer]:
    """A dependency admitting viewers holding any of ``roles`` (the API's check and error code)."""

    def check(viewer: ViewerDep) -> Viewer:
        ensure_role(viewer.principal, roles)
        return viewer

    return check


AnalystDep = Annotated[Viewer, Depends(requires(Role.ANALYST))]
OwnerDep = Annotated[Viewer, Depends(requires(Role.OWNER))]
OperatorDep = Annotated[Viewer, Depends(requires(Role.OPERATOR))]


async def get_form(request: Request) -> dict[str, Any]:
    """The posted form (lists for repeated fields), after its CSRF token was checked."""
    form = await request.form()
    data: dict[str, Any] = {}
    for key in form:
        values = [v for v in form.getlist(key) if isinstance(v, str)]
        data[key] = values if len(values) > 1 or key.endswith("[]") else (values[0] if values else "")
    keys = Console.of(request).keys
    session = current_session(request)
    binding = session.sid if session is not None else request.cookies.get(NONCE_COOKIE)
    if not keys.csrf_ok(binding, data.pop("csrf", None)):
        raise CsrfRejected(
            "this form was not sent from the page the console showed you (missing or stale CSRF token); "
            "reload the page and try again"
        )
    return data


FormDep = Annotated[dict[str, Any], Depends(get_form)]


NAV = (
    (Role.ANALYST, "analyst", lazy("Analyst")),
    (Role.OWNER, "owner", lazy("Data owner")),
    (Role.OPERATOR, "operator", lazy("Operator")),
)
PAGES = {
    "analyst": (
        ("/analyst", lazy("My policies")),
        ("/analyst/catalogue", lazy("Catalogue")),
        ("/analyst/requests", lazy("My requests")),
        ("/analyst/queries", lazy("Query history")),
        ("/analyst/sql", lazy("SQL")),
    ),
    "owner": (
        ("/owner", lazy("Inbox")),
        ("/owner/policies", lazy("Policies")),
        ("/owner/datasets", lazy("Datasets")),
        ("/owner/register", lazy("Register a dataset")),
        ("/owner/usage", lazy("Usage")),
    ),
    "operator": (
        ("/operator", lazy("Service health")),
        ("/operator/audit", lazy("Audit log")),
        ("/operator/budgets", lazy("Budgets")),
        ("/operator/users", lazy("Users and tokens")),
        ("/operator/usage", lazy("Usage")),
    ),
}


def render(
    request: Request,
    template: str,
    viewer: Viewer | None = None,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """The template rendered for the request's language, viewer and CSRF token."""
    t = language(request)
    keys = Console.of(request).keys
    binding = viewer.session.sid if viewer is not None else request.cookies.get(NONCE_COOKIE, "")
    csrf = context.pop("csrf", None) or (keys.csrf_for(binding) if binding else "")
    html = templates.get_template(template).render(
        request=request,
        t=t,
        _=t.gettext,
        base=base_url(request),
        viewer=viewer,
        csrf=csrf,
        nav=[(path, label) for role, path, label in NAV if viewer is not None and viewer.has(role)],
        path=request.url.path,
        pages=PAGES,
        **context,
    )
    return HTMLResponse(html, status_code=status_code)
