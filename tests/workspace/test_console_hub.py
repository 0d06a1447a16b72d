"""JupyterHub mode: the console signs people in through the hub's OAuth, one login for both.

A demo owner opens the console through the proxy, follows "Sign in with JupyterHub", signs in on
the hub's own login page and lands on the owner's inbox; the analyst of the test lands on their
policies. Headless Debian Chromium; nothing but 127.0.0.1 is reachable.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chromium import chromium, needs_chromium
from playwright.sync_api import Browser, Route, expect
from workspace_support import PASSWORD, Hub

STEP_MS = 60_000

pytestmark = [
    pytest.mark.hub,
    pytest.mark.slow,
    needs_chromium,
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium."""
    with chromium() as launched:
        yield launched


@pytest.mark.parametrize(
    ("user", "home", "heading"),
    [
        ("census", "/owner", "Pending requests"),
        ("oscar", "/operator", "Service health"),
        (None, "/analyst", "My policies"),
    ],
)
def test_one_hub_login_reaches_the_console_home(
    browser: Browser, hub: Hub, user: str | None, home: str, heading: str
) -> None:
    name = user or hub.analyst
    context = browser.new_context(locale="en-US")
    context.set_default_timeout(STEP_MS)
    blocked: list[str] = []

    def only_loopback(route: Route) -> None:
        if route.request.url.startswith(hub.process.public_url + "/"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_loopback)
    page = context.new_page()
    console = f"{hub.process.gateway_url}console"
    page.goto(f"{console}/")
    page.get_by_role("link", name="Sign in with JupyterHub").click()
    page.get_by_label("Username:").fill(name)
    page.get_by_label("Password:", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**/console{home}")
    expect(page.get_by_role("heading", name=heading)).to_be_visible()
    expect(page.locator("header .who")).to_contain_text(name)
    context.close()
    assert blocked == []
