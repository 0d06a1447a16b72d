"""In a real headless Chromium against a real JupyterHub: the analyst's quickstart through the UI.

An analyst signs in on the hub's login page, lands in JupyterLab in their spawned server, opens
``notebooks/01_analyst_quickstart.ipynb`` from the file browser and runs it with "Run → Run All
Cells"; the rendered page shows answers with ± intervals, the budget meter and the one expected
refusal line, and no traceback. A user outside the analyst groups sees the gateway's refusal as one
readable line. Chromium is Debian's ``/usr/bin/chromium`` (``make test`` installs it as root).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from chromium import chromium, needs_chromium
from playwright.sync_api import Browser, Page, expect
from workspace_support import NOTEBOOKS, PASSWORD, Hub

from sandbox.demo import isolation

QUICKSTART = "01_analyst_quickstart.ipynb"
WHOAMI = "whoami.ipynb"
STEP_MS = 60_000  # one UI step: a spawn, loading JupyterLab, running the quickstart
LISTING = ".jp-DirListing-content"  # the file browser's list of files
STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'

pytestmark = [
    pytest.mark.hub,
    pytest.mark.slow,
    needs_chromium,
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium that stays off the network except for the hub on 127.0.0.1."""
    with chromium() as launched:
        yield launched


def put_notebooks(hub: Hub, user: str, notebooks: dict[str, str]) -> None:
    """Write notebooks (name → JSON text) into ``notebooks/`` of the user's server folder, as the
    demo does."""
    if hub.process.environment["SANDBOX_LOCAL_SPAWNER"] == "system":
        folder = isolation.home_of(user) / "notebooks"
    else:
        folder = Path(hub.process.environment["SANDBOX_LOCAL_HOMES"]) / user / "notebooks"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in notebooks.items():
        (folder / name).write_text(text, encoding="utf-8")
    if hub.process.environment["SANDBOX_LOCAL_SPAWNER"] == "system":
        isolation.give_to(folder, user)


def sign_in(browser: Browser, hub: Hub, user: str) -> Page:
    """Sign in through the hub's login page; the page once JupyterLab of the spawned server is up."""
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.set_default_timeout(STEP_MS)
    page.goto(f"{hub.process.public_url}/hub/login")
    page.get_by_label("Username:").fill(user)
    page.get_by_label("Password:", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**/user/{user}/lab**", timeout=2 * STEP_MS)
    expect(page.locator(LISTING).get_by_text("notebooks", exact=True)).to_be_visible()
    hub.process.track()
    return page


def run_notebook(page: Page, name: str) -> None:
    """Open ``notebooks/<name>`` from the file browser, run all cells from the menu, wait until done."""
    page.locator(LISTING).get_by_text("notebooks", exact=True).dblclick()
    page.locator(LISTING).get_by_text(name, exact=True).dblclick()
    idle = page.get_by_text(re.compile(r"Python 3 \(ipykernel\) \| Idle"))
    expect(idle).to_be_visible(timeout=STEP_MS)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
    prompts = page.locator(".jp-CodeCell .jp-InputPrompt")
    expect(prompts.filter(has_text=re.compile(r"\[\s*[*]?\s*\]"))).to_have_count(0, timeout=STEP_MS)
    expect(idle).to_be_visible(timeout=STEP_MS)


def output_texts(page: Page, selector: str = ".jp-OutputArea-output") -> list[str]:
    """The text of every rendered output (also of cells scrolled out of view)."""
    return [text.strip() for text in page.locator(selector).all_text_contents()]


def test_an_analyst_runs_the_quickstart_in_jupyterlab(browser: Browser, hub: Hub, tmp_path: Path) -> None:
    put_notebooks(hub, hub.analyst, {QUICKSTART: (NOTEBOOKS / QUICKSTART).read_text(encoding="utf-8")})
    page = sign_in(browser, hub, hub.analyst)
    run_notebook(page, QUICKSTART)

    outputs = output_texts(page)
    assert any(hub.analyst in text and "acme" in text for text in outputs)  # client.me()
    assert any(re.search(r"\d ± \d", text) for text in outputs)  # DPFrame: value ± CI half-width
    meter = [text for text in outputs if text.startswith("隐私预算 budget residents")]
    assert len(meter) == 1 and "this answer ε 0.25" in meter[0], meter
    assert any("cached: True" in text for text in outputs)  # the replay
    assert page.locator(".jp-OutputArea-output img").count() == 1  # the bar chart
    errors = output_texts(page, STDERR)
    assert len(errors) == 1 and errors[0].startswith("QueryRejected [sql."), errors
    assert len(errors[0].splitlines()) == 1
    assert not any("Traceback" in text for text in outputs)

    page.get_by_text(meter[0]).scroll_into_view_if_needed()
    page.screenshot(path=tmp_path / "quickstart.png")
    page.context.close()


def test_an_outsider_sees_the_refusal_as_one_line(browser: Browser, hub: Hub, tmp_path: Path) -> None:
    cell: dict[str, object] = {
        "cell_type": "code",
        "id": "whoami",
        "metadata": {},
        "execution_count": None,
        "outputs": [],
        "source": "from sandbox.client import Client\n\nClient().me()",
    }
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook = {"cells": [cell], "metadata": {"kernelspec": kernelspec}, "nbformat": 4, "nbformat_minor": 5}
    put_notebooks(hub, hub.outsider, {WHOAMI: json.dumps(notebook)})
    page = sign_in(browser, hub, hub.outsider)
    run_notebook(page, WHOAMI)

    errors = output_texts(page, STDERR)
    assert len(errors) == 1, errors
    assert errors[0].startswith("PermissionDenied [auth.hub_scope_missing]"), errors
    assert len(errors[0].splitlines()) == 1
    assert not any("Traceback" in text for text in output_texts(page))
    page.screenshot(path=tmp_path / "outsider.png")
    page.context.close()
