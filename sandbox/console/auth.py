"""Signing in and out, and the language switch.

Token mode: the sign-in form takes an API token (``sandbox token create``), checks it exactly as
the API does and keeps it in the encrypted session cookie. JupyterHub mode: the console sends the
browser through the hub's OAuth (``/hub/api/oauth2/authorize``, the gateway is the hub service with
an OAuth client), exchanges the code for a hub token and keeps that: one login for hub and console.
"""

from __future__ import annotations

import os
import secrets
from typing import Annotated
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from sandbox.console.i18n import LANG_COOKIE, LANGUAGES
from sandbox.console.session import NONCE_COOKIE, SESSION_COOKIE, SESSION_SECONDS
from sandbox.console.web import Console, FormDep, backend, base_url, render
from sandbox.errors import SandboxError, Unauthenticated

router = APIRouter()

STATE_COOKIE = "sandbox_console_oauth_state"
HUB_TIMEOUT = 10.0


def _cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=base_url(request) + "/",
        httponly=True,
        samesite="strict" if name != STATE_COOKIE else "lax",
        secure=request.url.scheme == "https",
    )


def _signed_in(request: Request, token: str) -> Response:
    """Redirect home with a new session cookie for ``token``."""
    cookie, _ = Console.of(request).keys.seal(token)
    response = RedirectResponse(f"{base_url(request)}/", status_code=303)
    _cookie(response, request, SESSION_COOKIE, cookie, SESSION_SECONDS)
    response.delete_cookie(NONCE_COOKIE, path=base_url(request) + "/")
    return response


def _login_page(request: Request, *, problem: str = "", status_code: int = 200) -> Response:
    nonce = request.cookies.get(NONCE_COOKIE) or secrets.token_urlsafe(16)
    response = render(
        request,
        "login.html",
        status_code=status_code,
        csrf=Console.of(request).keys.csrf_for(nonce),
        problem=problem,
        hub=Console.of(request).auth_mode == "jupyterhub",
    )
    _cookie(response, request, NONCE_COOKIE, nonce, 3600)
    return response


@router.get("/login")
def login_form(request: Request) -> Response:
    """The sign-in page (a token field, or the JupyterHub button in hub mode)."""
    return _login_page(request)


@router.post("/login")
def login(request: Request, form: FormDep) -> Response:
    """Token mode: check the API token and start a session."""
    token = str(form.get("token", "")).strip()
    if not token:
        return _login_page(request, problem="auth.missing_token", status_code=401)
    try:
        backend(request).principal(token)
    except SandboxError as error:
        return _login_page(request, problem=error.code, status_code=error.http_status)
    return _signed_in(request, token)


@router.post("/logout")
def logout(request: Request, _form: FormDep) -> Response:
    """End the session (the cookie is dropped; the token itself stays valid for the API)."""
    response = RedirectResponse(f"{base_url(request)}/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=base_url(request) + "/")
    return response


@router.get("/lang/{code}")
def switch_language(
    request: Request, code: str, next: Annotated[str, Query(max_length=500)] = ""
) -> Response:
    """Set the language cookie and go back to the page the switch was clicked on."""
    base = base_url(request)
    target = next if next.startswith(base + "/") and "//" not in next and "\\" not in next else f"{base}/"
    response = RedirectResponse(target, status_code=303)
    if code in LANGUAGES:
        response.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, path=base + "/", samesite="lax")
    return response


# ---------------------------------------------------------------------- JupyterHub OAuth


def _hub_environment() -> dict[str, str]:
    names = ("JUPYTERHUB_CLIENT_ID", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL", "JUPYTERHUB_BASE_URL")
    found = {name: os.environ.get(name, "") for name in names}
    missing = [name for name, value in found.items() if not value]
    if missing:
        raise Unauthenticated(
            f"the gateway does not run as a JupyterHub service ({', '.join(missing)} unset): "
            "sign in with an API token instead",
            code="auth.hub_oauth_unavailable",
        )
    return found


def _callback_url(request: Request) -> str:
    """The redirect URI registered with the hub (the gateway service's ``oauth_redirect_uri``)."""
    return f"{base_url(request)}/oauth_callback"


@router.get("/login/hub")
def hub_login(request: Request) -> Response:
    """Send the browser to the hub's authorisation page."""
    hub = _hub_environment()
    state = secrets.token_urlsafe(24)
    query = urlencode(
        {
            "client_id": hub["JUPYTERHUB_CLIENT_ID"],
            "redirect_uri": _callback_url(request),
            "response_type": "code",
            "state": state,
        }
    )
    hub_prefix = hub["JUPYTERHUB_BASE_URL"].rstrip("/") + "/hub"
    response = RedirectResponse(f"{hub_prefix}/api/oauth2/authorize?{query}", status_code=303)
    _cookie(response, request, STATE_COOKIE, state, 600)
    return response


@router.get("/oauth_callback")
def hub_callback(
    request: Request,
    code: Annotated[str, Query(max_length=500)] = "",
    state: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """Exchange the hub's code for the user's token and start a session with it."""
    expected = request.cookies.get(STATE_COOKIE, "")
    if not code or not expected or not secrets.compare_digest(expected, state):
        return _login_page(request, problem="auth.hub_oauth_state", status_code=401)
    hub = _hub_environment()
    try:
        answer = httpx.post(
            hub["JUPYTERHUB_API_URL"].rstrip("/") + "/oauth2/token",
            data={
                "client_id": hub["JUPYTERHUB_CLIENT_ID"],
                "client_secret": hub["JUPYTERHUB_API_TOKEN"],
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": _callback_url(request),
            },
            timeout=HUB_TIMEOUT,
        )
        token = str(answer.json()["access_token"]) if answer.status_code == 200 else ""
    except (httpx.HTTPError, ValueError, KeyError):
        token = ""
    if not token:
        return _login_page(request, problem="auth.hub_oauth_failed", status_code=401)
    try:
        backend(request).principal(token)
    except SandboxError as error:
        return _login_page(request, problem=error.code, status_code=error.http_status)
    response = _signed_in(request, token)
    response.delete_cookie(STATE_COOKIE, path=base_url(request) + "/")
    return response
