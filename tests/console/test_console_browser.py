"""The console in a real headless Chromium, one flow per role end to end, in Chinese and English.

An analyst requests access, the owner approves it narrowed, the analyst estimates and runs a query,
the operator finds the events, verifies the chain and exports it. The browser may reach only the
gateway on 127.0.0.1 (every other request is aborted and recorded); screenshots of the main pages
are saved under ``$SANDBOX_TEST_ARTIFACTS`` (default ``.artifacts/``) as test artefacts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from chromium import chromium, needs_chromium
from console_support import REPO, XSS, ConsoleWorld
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Route, expect

from sandbox.catalog.registry import Catalog
from sandbox.control import ControlPlane

ARTIFACTS = Path(os.environ.get("SANDBOX_TEST_ARTIFACTS", REPO / ".artifacts")) / "console"
STEP_MS = 20_000

pytestmark = [
    pytest.mark.slow,
    needs_chromium,
]

# per language: browser locale, analyst, their organisation, words the pages must show
FLOWS = {
    "zh_CN": ("zh-CN", "alice", "acme", {"sign_in": "登录", "catalogue": "数据目录", "approved": "生效中"}),
    "en": ("en-US", "bob", "globex", {"sign_in": "Sign in", "catalogue": "Catalogue", "approved": "active"}),
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium."""
    with chromium() as launched:
        yield launched


class Offline:
    """A browser context that may reach only the gateway; everything else is aborted and recorded."""

    def __init__(self, browser: Browser, world: ConsoleWorld, locale: str) -> None:
        self.world = world
        self.blocked: list[str] = []
        self.console_errors: list[str] = []
        self.context: BrowserContext = browser.new_context(
            locale=locale, viewport={"width": 1280, "height": 900}
        )
        self.context.set_default_timeout(STEP_MS)
        self.context.route("**/*", self._route)

    def _route(self, route: Route) -> None:
        if route.request.url.startswith(self.world.base_url + "/"):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.console_errors.append(message.text)  # CSP violations, script errors

    def page(self) -> Page:
        """A new page whose console errors (CSP violations among them) are recorded."""
        page = self.context.new_page()
        page.on("console", self._console)
        return page

    def close(self) -> None:
        """Close, asserting nothing tried to leave and nothing violated the CSP."""
        self.context.close()
        assert self.blocked == []
        assert self.console_errors == []


def sign_in(offline: Offline, user: str, words: dict[str, str]) -> Page:
    """Sign in with the user's API token; the page of the user's home."""
    page = offline.page()
    page.goto(f"{offline.world.console}/")
    expect(page.get_by_role("heading", name=words["sign_in"])).to_be_visible()
    page.locator("#token").fill(offline.world.tokens[user])
    page.locator("form button[type=submit]").click()
    expect(page.locator("header .who")).to_contain_text(user)
    return page


def shot(page: Page, language: str, name: str) -> None:
    """Save a full-page screenshot as a test artefact."""
    folder = ARTIFACTS / language
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=folder / f"{name}.png", full_page=True)


@pytest.mark.parametrize("language", list(FLOWS))
def test_each_role_end_to_end(browser: Browser, console_world: ConsoleWorld, language: str) -> None:
    locale, analyst, organisation, words = FLOWS[language]
    html_lang = "zh-CN" if language == "zh_CN" else "en"

    # analyst: catalogue, then a request for access
    analyst_side = Offline(browser, console_world, locale)
    page = sign_in(analyst_side, analyst, words)
    assert page.locator("html").get_attribute("lang") == html_lang
    page.locator("nav.subnav a").nth(1).click()
    expect(page.get_by_role("heading", name=words["catalogue"])).to_be_visible()
    shot(page, language, "analyst-catalogue")
    page.goto(f"{console_world.console}/analyst/catalogue/pums")
    expect(page.locator("dl.facts")).to_contain_text("reg_")  # the opaque registration id, no digest
    assert re.search(r"\b[0-9a-f]{64}\b", page.locator("main").inner_text()) is None
    page.goto(f"{console_world.console}/analyst/requests/new?dataset=pums")
    page.locator("#purpose").fill(f"Income by sex for a market study {language}")
    for column in ("age", "sex", "income", "educ"):
        page.locator(f"input[name=columns][value={column}]").check()
    page.locator("#epsilon").fill("5")
    page.locator("#valid_until").fill((datetime.now(UTC) + timedelta(days=60)).strftime("%Y-%m-%d"))
    shot(page, language, "analyst-request")
    page.locator("form.stack button[type=submit]").click()
    expect(page.locator("table.grid")).to_contain_text("pums")
    expect(page.locator("table.grid")).to_contain_text(f"market study {language}")

    # owner: the inbox shows the request; approve it narrowed
    owner_side = Offline(browser, console_world, locale)
    owner = sign_in(owner_side, "olivia", words)
    row = owner.locator("table.grid tbody tr").filter(has_text=organisation)
    expect(row).to_contain_text(f"market study {language}")
    shot(owner, language, "owner-inbox")
    row.locator("a.button").click()
    approve = owner.locator("form#approve")
    approve.locator("input[name=columns][value=educ]").uncheck()
    approve.locator("#epsilon").fill("3")
    approve.locator("#max_epsilon_per_query").fill("1")
    approve.locator("#min_group_size").fill("5")
    approve.locator("input[name=aggregates][value=quantile]").uncheck()
    shot(owner, language, "owner-decide")
    approve.locator("button[type=submit]").click()
    policy_row = owner.locator("table.grid tbody tr").filter(has_text=organisation)
    expect(policy_row).to_contain_text(words["approved"])
    shot(owner, language, "owner-policies")
    owner.goto(f"{console_world.console}/owner/datasets/pums")
    expect(owner.locator("dl.facts .status.ok")).to_be_visible()
    shot(owner, language, "owner-dataset")

    # analyst: estimate, then run; the answer has ± intervals and a bar chart; the meter moved
    page.goto(f"{console_world.console}/analyst/sql?dataset=pums")
    page.locator("#sql").fill("SELECT sex, COUNT(*) AS n FROM people GROUP BY sex")
    page.locator("#epsilon").fill("0.5")
    page.locator("button[value=estimate]").click()
    expect(page.locator("#estimate")).to_be_visible()
    expect(page.locator("#estimate td.num").first).to_have_text(re.compile(r"\d"))
    page.locator("button[value=run]").click()
    expect(page.locator("#answer")).to_be_visible()
    expect(page.locator("#answer table")).to_contain_text("±")
    expect(page.locator("#answer svg.chart rect")).to_have_count(2)
    shot(page, language, "analyst-sql")
    page.goto(f"{console_world.console}/analyst")
    expect(page.locator("svg.meter")).to_have_count(1)
    expect(page.locator("td.num").nth(0)).to_have_text(re.compile(r"^0[.,]5$"))
    shot(page, language, "analyst-home")
    page.goto(f"{console_world.console}/analyst/sql?dataset=pums")
    page.locator("#sql").fill("SELECT educ, COUNT(*) AS n FROM people GROUP BY educ")
    page.locator("button[value=run]").click()
    expect(
        page.locator(".problems code")
    ).to_be_visible()  # educ was narrowed away: a refusal naming its rule
    analyst_side.close()

    # operator: find the events, open one, verify the chain, export
    operator_side = Offline(browser, console_world, locale)
    op = sign_in(operator_side, "oscar", words)
    shot(op, language, "operator-health")
    op.goto(f"{console_world.console}/operator/audit?org={organisation}")
    table = op.locator("table.grid")
    for event in ("access.requested", "access.approved", "query.answered", "query.rejected"):
        expect(table).to_contain_text(event)
    shot(op, language, "operator-audit")
    table.locator("tbody tr").filter(has_text="access.approved").locator("a").first.click()
    expect(op.locator("pre.payload")).to_contain_text('"max_epsilon_per_query"')
    op.goto(f"{console_world.console}/operator/audit")
    op.locator("form.verify button").first.click()
    expect(op.locator("p.verdict.ok")).to_be_visible()
    shot(op, language, "operator-verify")
    op.goto(f"{console_world.console}/operator/audit?org={organisation}")
    with op.expect_download() as download:
        op.get_by_text("CSV", exact=False).first.click()
    exported = Path(download.value.path()).read_text(encoding="utf-8")
    assert exported.splitlines()[0].startswith("seq,") and "access.approved" in exported
    op.goto(f"{console_world.console}/operator/usage")
    expect(op.locator("svg.chart").first).to_be_visible()
    shot(op, language, "operator-usage")
    op.goto(f"{console_world.console}/operator/budgets")
    expect(op.locator("table.grid")).to_contain_text(organisation)
    shot(op, language, "operator-budgets")
    operator_side.close()
    owner.goto(f"{console_world.console}/owner/usage")
    shot(owner, language, "owner-usage")
    owner_side.close()


def test_an_analyst_gets_a_403_page_for_owner_and_operator_pages(
    browser: Browser, console_world: ConsoleWorld
) -> None:
    side = Offline(browser, console_world, "en-US")
    page = sign_in(side, "alice", FLOWS["en"][3])
    for path in (
        "/owner",
        "/owner/policies",
        "/owner/register",
        "/operator",
        "/operator/audit",
        "/operator/users",
    ):
        response = page.goto(f"{console_world.console}{path}")
        assert response is not None and response.status == 403, path
        expect(page.locator(".error-page code.code")).to_have_text("auth.role_required")
        assert "Traceback" not in page.content()
    shot(page, "en", "forbidden")
    side.close()


def test_a_stored_xss_attempt_renders_inert(browser: Browser, console_world: ConsoleWorld) -> None:
    side = Offline(browser, console_world, "en-US")
    analyst = sign_in(side, "alice", FLOWS["en"][3])
    analyst.goto(f"{console_world.console}/analyst/requests/new?dataset=pums_xss")
    analyst.locator("#purpose").fill(XSS)
    analyst.locator("input[name=columns][value=age]").check()
    analyst.locator("#epsilon").fill("1")
    analyst.locator("#valid_until").fill((datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%d"))
    analyst.locator("form.stack button[type=submit]").click()
    analyst.goto(f"{console_world.console}/analyst/catalogue")
    expect(analyst.get_by_text(XSS).first).to_be_visible()  # the title, shown as text
    owner_side = Offline(browser, console_world, "en-US")
    owner = sign_in(owner_side, "olivia", FLOWS["en"][3])
    expect(owner.locator("table.grid").get_by_text(XSS)).to_be_visible()  # the purpose, shown as text
    for page in (analyst, owner):
        assert page.evaluate("window.__xss") is None
        assert page.locator("main img").count() == 0
    side.close()
    owner_side.close()


def test_a_form_posted_without_its_csrf_token_is_refused(
    browser: Browser, console_world: ConsoleWorld
) -> None:
    side = Offline(browser, console_world, "en-US")
    page = sign_in(side, "olivia", FLOWS["en"][3])
    forms: list[dict[str, str | float | bool]] = [
        {"reason": "no token"},
        {"reason": "forged", "csrf": "0" * 64},
    ]
    for form in forms:
        response = page.request.post(f"{console_world.console}/owner/policies/pol_x/revoke", form=form)
        assert response.status == 403
        assert "console.csrf_failed" in response.text()
    side.close()


def test_an_owner_amends_a_policy_and_caps_a_dataset(browser: Browser, console_world: ConsoleWorld) -> None:
    with ControlPlane(console_world.settings) as control:
        record = Catalog(console_world.settings.home_dir).get("pums_xss")
        request = control.request_access(
            control.get_principal("bob"),
            record,
            purpose="amendment test",
            columns=["age", "sex", "income"],
            epsilon=2.0,
            delta=0.0,
            valid_until=datetime.now(UTC) + timedelta(days=30),
        )
        policy = control.approve(
            control.get_principal("olivia"), request.id, record, max_epsilon_per_query=1.0
        )
    side = Offline(browser, console_world, "zh-CN")
    owner = sign_in(side, "olivia", FLOWS["zh_CN"][3])
    owner.goto(f"{console_world.console}/owner/policies/{policy.id}/amend")
    amend = owner.locator("form#amend")
    amend.locator("#epsilon").fill("4")
    amend.locator("input[name=columns][value=income]").uncheck()
    amend.locator("#reason").fill("phase two")
    shot(owner, "zh_CN", "owner-amend")
    amend.locator("button[type=submit]").click()
    expect(
        owner.locator("table.grid tbody tr").filter(has_text="globex").filter(has_text="pums_xss")
    ).to_contain_text("4")
    owner.goto(f"{console_world.console}/owner/datasets/pums_xss")
    caps = owner.locator("form#cap-form")
    caps.locator("select[name=scope]").select_option("organisation")
    caps.locator("input[name=organisation]").fill("globex")
    caps.locator("input[name=epsilon]").fill("3")
    caps.locator("button[type=submit]").click()
    expect(owner.locator("#caps table").filter(has_text="globex")).to_contain_text("3")
    shot(owner, "zh_CN", "owner-caps")
    side.close()
    with ControlPlane(console_world.settings) as control:
        amended = control.get_policy(control.get_principal("olivia"), policy.id)
        events = control.audit_events(control.get_principal("oscar"), type="policy.amended", limit=5)
    assert amended.epsilon == 4.0 and "income" not in amended.columns
    event = next(e for e in events if e.payload["policy_id"] == policy.id)
    assert event.actor == "olivia" and event.payload["reason"] == "phase two"
    assert set(event.payload["new"]) == {"epsilon", "columns"}  # only what the owner changed
