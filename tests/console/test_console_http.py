"""The console's rules over plain HTTP: sign-in, session cookie, CSRF, headers, roles, languages, docs."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from console_support import ConsoleWorld, build_world
from live_gateway import running_gateway

from sandbox.console.app import CONTENT_SECURITY_POLICY


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found is not None, html[:500]
    return found.group(1)


def signed_in(world: ConsoleWorld, user: str, language: str = "en") -> httpx.Client:
    """A client holding a console session of ``user``."""
    client = httpx.Client(base_url=world.console, headers={"Accept-Language": language}, timeout=30)
    form = client.get("/login")
    answer = client.post("/login", data={"token": world.tokens[user], "csrf": csrf_of(form.text)})
    assert answer.status_code == 303, answer.text
    return client


def test_sign_in_sets_an_httponly_samesite_session_cookie(console_world: ConsoleWorld) -> None:
    client = httpx.Client(base_url=console_world.console, timeout=30)
    form = client.get("/login")
    answer = client.post("/login", data={"token": console_world.tokens["alice"], "csrf": csrf_of(form.text)})
    cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith("sandbox_console="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console/" in cookie
    assert console_world.tokens["alice"] not in cookie  # encrypted, not the token itself
    assert answer.headers["location"] == "/console/"
    assert client.get("/", follow_redirects=False).headers["location"] == "/console/analyst"


@pytest.mark.parametrize(
    ("token", "code"), [("", "auth.missing_token"), ("sbx_not-a-token", "auth.unauthenticated")]
)
def test_a_bad_token_is_refused_with_the_api_error_code(
    console_world: ConsoleWorld, token: str, code: str
) -> None:
    client = httpx.Client(base_url=console_world.console, timeout=30)
    form = client.get("/login")
    answer = client.post("/login", data={"token": token, "csrf": csrf_of(form.text)})
    assert answer.status_code == 401
    assert f"<code>{code}</code>" in answer.text
    assert "sandbox_console=" not in answer.headers.get("set-cookie", "")


def test_sign_in_without_the_forms_csrf_token_is_refused(console_world: ConsoleWorld) -> None:
    client = httpx.Client(base_url=console_world.console, timeout=30)
    client.get("/login")
    answer = client.post("/login", data={"token": console_world.tokens["alice"]})
    assert answer.status_code == 403 and "console.csrf_failed" in answer.text


def test_pages_without_a_session_go_to_sign_in(console_world: ConsoleWorld) -> None:
    for path in ("/", "/analyst", "/owner", "/operator/audit"):
        answer = httpx.get(f"{console_world.console}{path}")
        assert answer.status_code == 303 and answer.headers["location"] == "/console/login", path


def test_every_page_carries_a_strict_content_security_policy(console_world: ConsoleWorld) -> None:
    client = signed_in(console_world, "oscar")
    for path in ("/operator", "/operator/audit", "/login", "/nowhere", "/static/console.css"):
        headers = client.get(path).headers
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
    assert (
        "'unsafe-inline'" not in CONTENT_SECURITY_POLICY and "default-src 'none'" in CONTENT_SECURITY_POLICY
    )
    assert "script-src" not in CONTENT_SECURITY_POLICY  # default-src 'none': no script runs


def test_roles_are_checked_server_side_with_the_api_codes(console_world: ConsoleWorld) -> None:
    owner = signed_in(console_world, "olivia")
    for path in ("/analyst", "/analyst/sql", "/operator", "/operator/audit/export?format=csv"):
        answer = owner.get(path)
        assert answer.status_code == 403 and "auth.role_required" in answer.text, path
        assert answer.headers["content-type"].startswith("text/html")
    analyst = signed_in(console_world, "alice")
    answer = analyst.post(
        "/owner/register", data={"metadata_path": "x.yaml", "csrf": csrf_of(analyst.get("/analyst").text)}
    )
    assert answer.status_code == 403 and "auth.role_required" in answer.text
    hidden = analyst.get("/analyst/catalogue/pums_null")  # core: not visible to analysts, as in the API
    assert hidden.status_code == 404 and "catalog.dataset_not_found" in hidden.text


def test_a_registration_with_problems_lists_every_one(console_world: ConsoleWorld) -> None:
    broken = console_world.settings.effective_import_dir / "broken.yaml"
    broken.write_text(
        "dataset: broken\ntitle: t\nowner: census-bureau\nclassification: secret\ntables: []\nextra: 1\n",
        encoding="utf-8",
    )
    owner = signed_in(console_world, "olivia")
    page = owner.get("/owner/register")
    assert "broken.yaml" in page.text
    answer = owner.post("/owner/register", data={"metadata_path": "broken.yaml", "csrf": csrf_of(page.text)})
    assert answer.status_code == 422
    problems = re.findall(r"<li>", answer.text.split('class="problems"')[1].split("</div>")[0])
    assert len(problems) >= 3  # classification, tables, extra field: all at once


def test_the_language_follows_the_browser_then_the_switch(console_world: ConsoleWorld) -> None:
    chinese = httpx.get(f"{console_world.console}/login", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert '<html lang="zh-CN">' in chinese.text and "登录" in chinese.text
    english = httpx.get(f"{console_world.console}/login", headers={"Accept-Language": "en-GB,en;q=0.8"})
    assert '<html lang="en">' in english.text and "Sign in" in english.text
    unknown = httpx.get(f"{console_world.console}/login", headers={"Accept-Language": "fr"})
    assert '<html lang="zh-CN">' in unknown.text
    client = httpx.Client(base_url=console_world.console, headers={"Accept-Language": "zh-CN"}, timeout=30)
    switched = client.get("/lang/en", params={"next": "/console/login"})
    assert switched.status_code == 303 and switched.headers["location"] == "/console/login"
    assert '<html lang="en">' in client.get("/login").text
    away = client.get("/lang/en", params={"next": "//evil.example/"})
    assert away.headers["location"] == "/console/"


def test_api_docs_load_every_asset_from_the_gateway(console_world: ConsoleWorld) -> None:
    for path in ("/docs", "/redoc"):
        page = httpx.get(f"{console_world.base_url}{path}")
        assert page.status_code == 200
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sources, path
        for source in sources:
            assert source.startswith("/"), source  # nothing from another host
            assert httpx.get(f"{console_world.base_url}{source}").status_code == 200, source
        assert "fonts.googleapis" not in page.text and "cdn" not in page.text.lower()


def test_a_token_revoked_by_an_operator_ends_its_session_at_once(console_world: ConsoleWorld) -> None:
    from sandbox.control import ControlPlane

    with ControlPlane(console_world.settings) as control:
        issued = control.issue_token("bob", actor="test", note="revoked in a test")
    client = httpx.Client(base_url=console_world.console, timeout=30)
    form = client.get("/login")
    client.post("/login", data={"token": issued.token, "csrf": csrf_of(form.text)})
    assert client.get("/analyst").status_code == 200
    operator = signed_in(console_world, "oscar")
    users = operator.get("/operator/users")
    assert f"/operator/tokens/{issued.id}/revoke" in users.text
    answer = operator.post(f"/operator/tokens/{issued.id}/revoke", data={"csrf": csrf_of(users.text)})
    assert answer.status_code == 303
    answer = client.get("/analyst")
    assert answer.status_code == 303 and answer.headers["location"] == "/console/login"
    with ControlPlane(console_world.settings) as control:
        event = control.audit_events(control.get_principal("oscar"), type="token.revoked", limit=1)[-1]
    assert event.actor == "oscar"


def test_a_request_form_lists_every_problem_with_the_api_rules(console_world: ConsoleWorld) -> None:
    analyst = signed_in(console_world, "alice")
    page = analyst.get("/analyst/requests/new", params={"dataset": "pums"})
    answer = analyst.post(
        "/analyst/requests/new",
        data={"dataset": "pums", "purpose": "x", "epsilon": "abc", "delta": "2", "csrf": csrf_of(page.text)},
    )
    assert answer.status_code == 422
    listed = answer.text.split('class="problems"')[1].split("</div>")[0]
    for field in ("epsilon", "delta", "columns", "valid_until"):
        assert f"<code>{field}</code>" in listed, field


def test_the_audit_filter_takes_whole_days(console_world: ConsoleWorld) -> None:
    from datetime import UTC, datetime

    operator = signed_in(console_world, "oscar")
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    page = operator.get("/operator/audit", params={"since": today, "until": today, "type": "user.added"})
    assert page.status_code == 200
    assert page.text.count("<code>user.added</code>") == 4  # the four users, added today
    before = operator.get("/operator/audit", params={"until": "2000-01-01"})
    assert "user.added" not in before.text.split("<tbody>")[1]


def test_analyst_pages_carry_no_data_digest(console_world: ConsoleWorld) -> None:
    analyst = signed_in(console_world, "alice")
    for path in (
        "/analyst",
        "/analyst/catalogue",
        "/analyst/catalogue/pums",
        "/analyst/queries",
        "/analyst/sql",
    ):
        text = analyst.get(path).text
        shown = re.sub(r'value="[0-9a-f]{64}"', "", text)  # the CSRF token is not a data digest
        assert re.search(r"[0-9a-f]{64}", shown) is None, path


def test_verify_names_a_tampered_stored_value(tmp_path: Path, shared_data: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from sandbox.catalog.registry import Catalog
    from sandbox.control import ControlPlane
    from sandbox.store.db import make_engine
    from sandbox.store.models import Policy

    world = build_world(tmp_path / "home", shared_data)
    with ControlPlane(world.settings) as control:
        pums = Catalog(world.settings.home_dir).get("pums")
        request = control.request_access(
            control.get_principal("alice"),
            pums,
            purpose="tamper test",
            columns=["age"],
            epsilon=1.0,
            delta=0.0,
            valid_until=datetime.now(UTC) + timedelta(days=3),
        )
        policy = control.approve(control.get_principal("olivia"), request.id, pums, max_epsilon_per_query=1.0)
    engine = make_engine(world.settings.state_db_url)
    with engine.begin() as connection:
        connection.execute(update(Policy).where(Policy.id == policy.id).values(status="revoked"))
    engine.dispose()
    with running_gateway(world.settings) as base_url:
        world.base_url = base_url
        operator = signed_in(world, "oscar")
        page = operator.post("/operator/audit/verify", data={"csrf": csrf_of(operator.get("/operator").text)})
    assert page.status_code == 200
    assert 'class="verdict bad"' in page.text
    table = page.text.split('class="grid divergences"')[1].split("</table>")[0]
    assert policy.id in table and "status" in table and "revoked" in table and "active" in table
