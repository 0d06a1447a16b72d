"""End to end with a real JupyterHub (``deploy/local/jupyterhub_config.py``) started by the test.

An analyst logs in, their server is spawned and the quickstart notebook runs inside it with the
analyst's own hub token; a user outside the analyst groups is refused; a revoked policy stops the
next query. Run as root, servers run as their own Unix users and the gateway as a separate service
user, and the analyst's kernel cannot read the gateway's files.
"""

from __future__ import annotations

import json
import pwd
import time
from pathlib import Path

import httpx
import pytest
from workspace_support import NOTEBOOKS, PASSWORD, Hub, last_json_line, run_in_user_kernel

from sandbox.client import Client
from sandbox.client import errors as e

pytestmark = [pytest.mark.hub, pytest.mark.slow]

QUICKSTART = "01_analyst_quickstart.ipynb"


@pytest.fixture(scope="module")
def analyst_server(hub: Hub) -> str:
    """The analyst logs in with the shared password and their server is spawned; a token to drive it."""
    with httpx.Client(base_url=hub.process.public_url, timeout=60) as browser:
        browser.get("/hub/login")
        response = browser.post(
            "/hub/login",
            data={"username": hub.analyst, "password": PASSWORD, "_xsrf": browser.cookies.get("_xsrf", "")},
        )
        assert response.status_code == 302, response.text[:500]
        browser.get("/hub/spawn", follow_redirects=False)
    deadline = time.monotonic() + 120
    while not (hub.admin.get(f"/users/{hub.analyst}").json().get("servers", {}).get("") or {}).get("ready"):
        assert time.monotonic() < deadline, hub.process.log_tail()
        time.sleep(0.2)
    hub.process.track()
    return hub.token(hub.analyst, [f"access:servers!user={hub.analyst}"])


def test_a_wrong_password_is_refused(hub: Hub) -> None:
    with httpx.Client(base_url=hub.process.public_url, timeout=60) as browser:
        browser.get("/hub/login")
        response = browser.post(
            "/hub/login",
            data={
                "username": hub.analyst,
                "password": "wrong-password",
                "_xsrf": browser.cookies.get("_xsrf", ""),
            },
        )
    assert response.status_code == 403


def test_hub_groups_agree_with_the_gateway_registry(hub: Hub) -> None:
    groups = {g["name"]: set(g["users"]) for g in hub.admin.get("/groups").json()}
    assert groups["analysts-acme"] == {"alice", "bob", hub.analyst}
    assert groups["operators"] == {"oscar"}
    assert hub.client(hub.analyst).me() == {"name": hub.analyst, "roles": ["analyst"], "organisation": "acme"}
    assert hub.client("census").me()["roles"] == ["owner"]


def test_quickstart_runs_inside_the_analysts_server(hub: Hub, analyst_server: str) -> None:
    base = f"{hub.process.public_url}/user/{hub.analyst}/api/contents"
    content = json.loads((NOTEBOOKS / QUICKSTART).read_text(encoding="utf-8"))
    headers = {"Authorization": f"token {analyst_server}"}
    upload = httpx.put(
        f"{base}/{QUICKSTART}",
        headers=headers,
        json={"type": "notebook", "format": "json", "content": content},
    )
    assert upload.status_code in (200, 201), upload.text
    code = f"""
import json, os, nbclient, nbformat
nb = nbformat.read({QUICKSTART!r}, as_version=4)
nbclient.NotebookClient(nb, timeout=180, kernel_name="python3").execute()
nbformat.write(nb, "quickstart.out.ipynb")
text = json.dumps([c.get("outputs", []) for c in nb.cells], ensure_ascii=False)
print(json.dumps({{"user": os.environ["JUPYTERHUB_USER"], "uses_hub_token": "SANDBOX_TOKEN" not in os.environ,
                  "intervals": "±" in text, "meter": "隐私预算 budget residents" in text}}))
"""
    out = run_in_user_kernel(hub.process.public_url, hub.analyst, analyst_server, code, timeout=300)
    assert out["error"] is None, out
    assert last_json_line(out["stdout"]) == {
        "user": hub.analyst,
        "uses_hub_token": True,
        "intervals": True,
        "meter": True,
    }

    analyst = hub.client(hub.analyst)
    budget = analyst.budget().set_index("dataset").loc["residents"]
    assert budget["epsilon_spent"] == pytest.approx(0.75)  # 0.5 by district + 0.25 by insurance; replays free
    history = analyst.history()
    assert set(history["principal"]) == {hub.analyst}
    assert {"answered", "replayed", "rejected"} <= set(history["status"])
    events = hub.client("oscar").audit(actor=hub.analyst)
    assert {"access.requested", "query.answered", "query.replayed", "query.rejected"} <= set(events["type"])
    assert hub.client("oscar").verify_audit()["ok"] is True


def test_a_user_outside_the_analyst_groups_is_refused(hub: Hub) -> None:
    outsider = Client(hub.process.gateway_url, hub.token(hub.outsider))
    with pytest.raises(e.PermissionDenied) as caught:
        outsider.me()
    assert caught.value.code == "auth.hub_scope_missing"
    with pytest.raises(e.AuthenticationError):
        Client(hub.process.gateway_url, "not-a-hub-token").me()


def test_the_analysts_kernel_cannot_read_the_gateways_files(hub: Hub, analyst_server: str) -> None:
    if hub.gateway_user is None:
        pytest.skip("isolation needs root and system mode: servers and the gateway as their own Unix users")
    gateway = next(p for p in hub.process.tracked.values() if "sandbox.cli serve" in " ".join(p.cmdline()))
    secrets_and_data = [
        hub.home / "state.db",
        *sorted(hub.home.glob("datasets/**/*.duckdb")),
        hub.home / "sources" / "synthetic" / "residents.parquet",
        hub.home / "import" / "pums.yaml",
        Path(f"/proc/{gateway.pid}/environ"),
    ]
    assert len(secrets_and_data) >= 6
    code = f"""
import json, os
from sandbox.client import Client
found = {{}}
for path in {[str(p) for p in secrets_and_data]!r}:
    try:
        open(path, "rb").read(1)
        found[path] = "readable"
    except PermissionError:
        found[path] = "denied"
answer = Client().query("SELECT COUNT(*) AS n FROM residents", dataset="residents", epsilon=0.1)
print(json.dumps({{"uid": os.getuid(), "found": found, "answer": int(answer["n"][0])}}))
"""
    out = run_in_user_kernel(hub.process.public_url, hub.analyst, analyst_server, code)
    assert out["error"] is None, out
    result = last_json_line(out["stdout"])
    assert result["uid"] == pwd.getpwnam(hub.analyst).pw_uid
    assert set(result["found"].values()) == {"denied"}, result["found"]
    assert abs(result["answer"] - 2_000) < 100


def test_a_revoked_policy_stops_the_next_query(hub: Hub, analyst_server: str) -> None:
    civil = hub.client("civil")
    policies = civil.policies()
    active = policies[(policies["organisation"] == "acme") & (policies["status"] == "active")]
    civil.revoke_policy(active["id"].iloc[0], reason="study ended")
    code = """
from sandbox.client import Client
from sandbox.client.errors import PolicyDenied
try:
    Client().query("SELECT COUNT(*) AS n FROM residents WHERE age > 40", dataset="residents", epsilon=0.1)
    print("ANSWERED")
except PolicyDenied as denied:
    print(denied.code)
"""
    out = run_in_user_kernel(hub.process.public_url, hub.analyst, analyst_server, code)
    assert out["error"] is None, out
    assert out["stdout"].strip().startswith("policy."), out
